"""The policy's typed views (policies.settings), and a read of the code, without running it, for every policy value
it reads: each names a section and a key that policies.rules declares, so a key renamed there and not in the
code fails here, not in a daemon at run time.

The static check follows ``<policy>.<file>.<section>.<key>`` where the root is a name or attribute ending in
"policy" (policy, POLICY, self.policy, self.core.policy) or a call of load() / load_checking_names(), and
``<root>.profile.<key>``; through aliases (``n = policy.hardware.audio``, ``self.n = ...``, ``a, b = x, y``);
and into a function or class of the code base that is passed a file or a section (``Camerad(node, source,
numbers, store)`` binds its ``numbers``). A read it cannot follow (getattr with a computed name) is not checked.
"""

from __future__ import annotations

import ast
import copy
import pickle
from pathlib import Path
from types import MappingProxyType

import pytest

from policies.checker import Rule
from policies.loader import load
from policies.rules import MODEL_SCHEMA, SCHEMA
from policies.settings import METHODS, declared
from tests.conftest import REPO

ROOT = ("",)
PROFILE = "models/<model>.toml"
SKIPPED = {".venv", "build", ".git", "node_modules"}


# --- the views ------------------------------------------------------------------------------------------------
def test_a_declared_key_reads_its_checked_value():
    policy = load(model="s1")
    assert policy.hardware.camera.fps == 30.0 and isinstance(policy.system.boot.deadline_s, float)
    assert policy.profile.display is True and policy.has_display
    assert isinstance(policy.system.boot.required, tuple), "lists are tuples: nothing appends to the policy"
    assert policy.privacy.bridge.in_ == getattr(policy.privacy.bridge, "in"), "a keyword key reads as in_"


def test_an_undeclared_key_or_section_names_file_section_key_and_the_known_keys():
    policy = load(model="s1")
    with pytest.raises(AttributeError, match=r"hardware\.toml \[camera\]: no key 'fsp' \(known: device, .*fps"):
        getattr(policy.hardware.camera, "fsp")
    with pytest.raises(AttributeError, match=r"system\.toml: no section 'idel' \(known: boot, idle"):
        getattr(policy.system, "idel")
    with pytest.raises(AttributeError, match=r"models/s1\.toml \[model\]: no key 'colour'"):
        getattr(policy.profile, "colour")


def test_a_section_cannot_be_written_and_an_open_table_is_a_read_only_mapping():
    policy = load(model="s1")
    with pytest.raises(AttributeError, match="read-only"):
        policy.hardware.camera.fps = 1.0
    with pytest.raises(AttributeError, match="read-only"):
        policy.hardware.camera = None
    with pytest.raises(AttributeError, match="read-only"):
        del policy.system.idle.dim_after_s
    priorities = policy.focus.priorities
    assert isinstance(priorities, MappingProxyType) and priorities["system_alert"] > priorities["background"]
    with pytest.raises(TypeError):
        priorities["background"] = 1000  # type: ignore[index]
    assert policy.focus.roles.get("shell") == "system_alert"


def test_replace_and_as_dict_give_copies_and_leave_the_view_as_it_was():
    policy = load(model="s1")
    wake = policy.assistant.wake
    before = wake.listen
    changed = wake.replace(listen="on")
    assert changed.listen == "on" and wake.listen == before
    assert changed.as_dict() == {**wake.as_dict(), "listen": "on"}
    with pytest.raises(AttributeError, match="no key 'lisen'"):
        wake.replace(lisen="on")
    assert copy.deepcopy(policy.hardware.camera) == policy.hardware.camera
    assert pickle.loads(pickle.dumps(policy.profile)) == policy.profile


# --- the static check -----------------------------------------------------------------------------------------
def python_files(repo: Path = REPO) -> dict[str, str]:
    return {str(path.relative_to(repo)): path.read_text(encoding="utf-8") for path in sorted(repo.rglob("*.py"))
            if not SKIPPED & set(path.relative_to(repo).parts)}


def rules_of(path: tuple[str, ...], schema: dict, model_schema: dict):
    if path[0] == PROFILE:
        return model_schema["model"]
    return schema[path[0]] if len(path) == 1 else schema[path[0]][path[1]]


class Reads:
    """Every policy read in a set of sources, checked against a schema."""

    def __init__(self, sources: dict[str, str], schema: dict = SCHEMA, model_schema: dict = MODEL_SCHEMA):
        self.schema, self.model_schema = schema, model_schema
        self.files = {name.removesuffix(".toml"): name for name in schema}
        self.trees = {name: ast.parse(text, name) for name, text in sources.items()}
        self.defs: dict[str, list[tuple[str, ast.AST, bool]]] = {}  # name -> (module, def, takes self first)
        self.parents: dict[str, dict[ast.AST, ast.AST]] = {}
        for name, tree in self.trees.items():
            self.parents[name] = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    method = isinstance(self.parents[name].get(node), ast.ClassDef) and not any(
                        getattr(d, "id", None) == "staticmethod" for d in getattr(node, "decorator_list", ()))
                    self.defs.setdefault(node.name, []).append((name, node, method))
        self.bound: dict[ast.AST, dict[str, tuple]] = {}  # a def -> its parameters passed a file or a section
        for _ in range(4):  # a parameter passed on binds the next callee's
            self.errors, self.checked, calls = set(), 0, {}
            for name in self.trees:
                self._module(name, calls)
            if calls == self.bound:
                break
            self.bound = calls

    # scopes: a function (or the module) -> name -> path; a class -> "self.<attr>" -> path
    def _module(self, module: str, calls: dict) -> None:
        tree, parents = self.trees[module], self.parents[module]
        self.module, self.parent = module, parents
        self.names: dict[ast.AST, dict[str, tuple]] = {tree: {}}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                self.names[node] = dict(self.bound.get(node, {}))
        assigns = [node for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))]
        for _ in range(4):  # an alias of an alias
            for node in assigns:
                for target in getattr(node, "targets", None) or [node.target]:
                    if node.value is not None:
                        self._alias(target, node.value, node)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                self.resolve(node)
            elif isinstance(node, ast.Subscript):
                self._subscript(node)
            elif isinstance(node, ast.Call):
                self._bind(node, calls)

    def _scope(self, node: ast.AST) -> ast.AST:
        while node in self.parent and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            node = self.parent[node]
        return node

    def _class(self, node: ast.AST) -> ast.AST | None:
        while node in self.parent:
            node = self.parent[node]
            if isinstance(node, ast.ClassDef):
                return node
        return None

    def _alias(self, target: ast.AST, value: ast.AST, at: ast.AST) -> None:
        if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
            for t, v in zip(target.elts, value.elts):
                self._alias(t, v, at)
            return
        path = self.resolve(value, record=False)
        if path is None:
            return
        if isinstance(target, ast.Name):
            self.names[self._scope(at)][target.id] = path
        elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
            cls = self._class(at)
            if cls is not None:
                self.names.setdefault(cls, {})[f"self.{target.attr}"] = path

    def _name(self, name: str, at: ast.AST) -> tuple | None:
        scope = self._scope(at)
        while True:
            if name in self.names.get(scope, {}):
                return self.names[scope][name]
            if scope not in self.parent:
                return None
            scope = self._scope(self.parent[scope])

    def resolve(self, node: ast.AST, record: bool = True) -> tuple | None:
        """The policy path ``node`` is (ROOT, (file,), (file, section)), None for anything else; an undeclared
        section or key read is an error."""
        if isinstance(node, ast.Name):
            found = self._name(node.id, node)
            return found if found is not None else ROOT if node.id.lower().endswith("policy") else None
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if called in ("load", "load_checking_names"):
                return ROOT
            if isinstance(func, ast.Attribute) and called in ("_replace", "replace"):
                return self.resolve(func.value, record=False)
            return None
        if not isinstance(node, ast.Attribute):
            return None
        path = self.resolve(node.value, record=False)
        attr = node.attr
        if path is None:
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                cls = self._class(node)
                if cls is not None and f"self.{attr}" in self.names.get(cls, {}):
                    return self.names[cls][f"self.{attr}"]
            return ROOT if attr.lower().endswith("policy") else None
        if path == ROOT:
            return (self.files[attr],) if attr in self.files else (PROFILE, "model") if attr == "profile" else None
        rules = rules_of(path, self.schema, self.model_schema)
        if isinstance(rules, Rule) or attr in METHODS:  # an open table is a mapping: its keys are data
            return None
        if declared(attr, rules) not in rules:
            if record:
                where = path[0] if len(path) == 1 else f"{path[0]} [{path[1]}]"
                what = "section" if len(path) == 1 else "key"
                self.errors.add(f"{self.module}:{node.lineno}: {where} has no {what} {attr!r}")
            return None
        if record and len(path) == 2:
            self.checked += 1
        return (*path, declared(attr, rules)) if len(path) == 1 else None

    def _subscript(self, node: ast.Subscript) -> None:
        """A file or a section read like a dict: a view is not one (an open table is a mapping)."""
        path = self.resolve(node.value, record=False)
        if path is not None and path != ROOT and not isinstance(rules_of(path, self.schema, self.model_schema), Rule):
            where = path[0] if len(path) == 1 else f"{path[0]} [{path[1]}]"
            self.errors.add(f"{self.module}:{node.lineno}: {where} read with [...]: read its attributes")

    def _bind(self, call: ast.Call, calls: dict) -> None:
        passed = [(i, None, self.resolve(a, record=False)) for i, a in enumerate(call.args)
                  if not isinstance(a, ast.Starred)]
        passed += [(None, k.arg, self.resolve(k.value, record=False)) for k in call.keywords if k.arg]
        passed = [(i, k, p) for i, k, p in passed if p is not None and p != ROOT]
        if not passed:
            return
        func = call.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        candidates = self.defs.get(name or "", [])
        here = [c for c in candidates if c[0] == self.module]
        chosen = here if here else candidates
        if len(chosen) != 1:
            return
        _, target, method = chosen[0]
        if isinstance(target, ast.ClassDef):
            inits = [n for n in target.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
            if not inits:
                return
            target, method = inits[0], True
        params = [a.arg for a in target.args.posonlyargs + target.args.args][1 if method else 0:]
        keywords = {a.arg for a in target.args.args + target.args.kwonlyargs}
        for index, keyword, path in passed:
            param = params[index] if index is not None and index < len(params) else keyword
            if param in keywords or param in params:
                bound = calls.setdefault(target, {})
                if bound.get(param, path) != path:
                    bound[param] = None  # passed different things: not followed
                else:
                    bound[param] = path


def test_every_policy_read_in_the_code_names_a_declared_section_and_key():
    reads = Reads(python_files())
    assert sorted(reads.errors) == []
    assert reads.checked > 150, f"only {reads.checked} reads found: the check no longer sees the code's reads"


def test_a_key_renamed_in_the_rules_and_not_in_the_code_fails_here():
    schema = copy.deepcopy(SCHEMA)
    camera = schema["hardware.toml"]["camera"]
    camera["frames_per_second"] = camera.pop("fps")
    schema["system.toml"]["dim"] = schema["system.toml"].pop("idle")
    errors = Reads(python_files(), schema).errors
    assert any("daemons/camera/__main__.py" in e and "no key 'fps'" in e for e in errors), errors
    assert any("shell/core.py" in e and "system.toml has no section 'idle'" in e for e in errors), errors


def test_settings_named_in_strings_are_declared():
    """The two tables that name a setting as a string, read through getattr (not seen by the check above)."""
    from cli.timers import TIMERS
    from manager.processes import PROCESSES

    named = [("hardware", *s.split(".")) for p in PROCESSES for s in p.writes_setting]
    named += [tuple(t.period.removeprefix("policy:").split(".")) for t in TIMERS if t.period.startswith("policy:")]
    assert len(named) >= 4
    for file, section, key in named:
        assert key in SCHEMA[f"{file}.toml"][section], (file, section, key)


@pytest.mark.parametrize("source, wrong", [
    ("policy.hardware.camera.fsp", "hardware.toml [camera] has no key 'fsp'"),
    ("load().system.idel.dim_after_s", "system.toml has no section 'idel'"),
    ("policy.profile.colour", "models/<model>.toml [model] has no key 'colour'"),
    ("n = self.policy.hardware.audio\nn.vad_treshold_db", "no key 'vad_treshold_db'"),
    ("hw = load().hardware\nled, x = hw.led, 1\nled.sysfs", "hardware.toml [led] has no key 'sysfs'"),
    ("class A:\n def __init__(self, policy):\n  self.n = policy.assistant\n def f(self):\n  self.n.llm.max_round",
     "assistant.toml [llm] has no key 'max_round'"),
    ("def media(numbers):\n return numbers.media\nmedia(POLICY.hardware.camera)", "[camera] has no key 'media'"),
    ("led = POLICY.privacy.led\nled['hold_s']", "privacy.toml [led] read with [...]"),
    ("class C:\n def __init__(self, node, numbers):\n  self.numbers = numbers\n def f(self):\n  self.numbers.fsp\n"
     "C(None, load().hardware.camera)", "[camera] has no key 'fsp'"),
])
def test_the_check_finds_an_undeclared_read_through_aliases_and_callees(source, wrong):
    errors = Reads({"x.py": source}).errors
    assert len(errors) == 1 and wrong in next(iter(errors)), errors


def test_the_check_lets_declared_reads_open_tables_keyword_keys_and_other_objects_be():
    source = ("policy.focus.priorities['anything'].x\npolicy.privacy.bridge.in_\npolicy.model\n"
              "policy.hardware.camera.replace(fps=1.0).fps\nnumbers = {}\nnumbers.get\nos.times().system\n")
    reads = Reads({"x.py": source})
    assert reads.errors == set() and reads.checked == 2
