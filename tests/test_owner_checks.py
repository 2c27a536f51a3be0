"""No handler in the product restates the topic table's owner column.

A node hands an owned topic to its handlers from the topic's owner only (bus.node.subscribe), so a
handler that compares ``msg.source`` with that owner checks what is already true, and is a second copy
of the table that can drift from it. This scan finds such comparisons, in the product and in the tools:
for each handler subscribed to a topic by name (or by a constant tuple of names; in its own file, or by
its method's name in another), any ``<x>.source`` compared (==, !=, in, not in)
with a string, a constant or a literal of strings that includes the owner of a topic it handles.
Comparisons with something the table does not say (a capture's owner, the asker of a request, the
apps that speak for others) are left alone, as are the tools' subscriptions that take anyone's
messages (``from_anyone=True``: they check sources themselves, on purpose).
"""

from __future__ import annotations

import ast
from pathlib import Path

from bus.topics import ANY_NODE, TOPICS, Kind, matches
from tests.conftest import REPO

PRODUCT = ("daemons", "shell", "apps", "apphost", "frames", "shellclient", "manager", "cli", "bustools", "webview")


def owned_under(prefix: str) -> dict[str, str]:
    """topic -> owner, for the topics under a prefix whose senders the node holds to their owner."""
    return {name: t.owner for name, t in TOPICS.items() if matches(prefix, name) and t.owner != ANY_NODE
            and t.kind is not Kind.REQUEST}


class Scan:
    def __init__(self, tree: ast.Module):
        self.tree = tree
        self.constants: dict[str, ast.expr] = {}
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                self.constants[stmt.targets[0].id] = stmt.value

    def strings(self, node: ast.expr, depth: int = 0) -> set[str]:
        """The strings an expression can only be: a literal, a module constant, a literal of them, or a
        dict's values looked up."""
        if depth > 4:
            return set()
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.Name) and node.id in self.constants:
            return self.strings(self.constants[node.id], depth + 1)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return set().union(*(self.strings(e, depth + 1) for e in node.elts)) if node.elts else set()
        if isinstance(node, ast.Dict):
            return set().union(*(self.strings(v, depth + 1) for v in node.values)) if node.values else set()
        if isinstance(node, ast.Subscript):
            return self.strings(node.value, depth + 1)
        if isinstance(node, ast.IfExp):
            return self.strings(node.body, depth + 1) | self.strings(node.orelse, depth + 1)
        return set()

    def iterated(self, node: ast.expr) -> set[str]:
        """The strings a for loop over a constant runs through: a dict's keys, else its strings."""
        if isinstance(node, ast.Name) and node.id in self.constants:
            node = self.constants[node.id]
        if isinstance(node, ast.Dict):
            return {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        return self.strings(node)

    def handlers(self) -> dict[str, tuple[set[str], list[ast.AST]]]:
        """Each subscribed handler's name -> (the topics it handles, lambdas among them to scan)."""
        loops: dict[int, dict[str, set[str]]] = {}  # a call in a for loop -> its variable's constant strings
        for node in ast.walk(self.tree):
            if isinstance(node, ast.For) and isinstance(node.target, ast.Name):
                for inner in ast.walk(node):
                    loops.setdefault(id(inner), {})[node.target.id] = self.iterated(node.iter)
        found: dict[str, tuple[set[str], list[ast.AST]]] = {}
        for node in ast.walk(self.tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "subscribe" and len(node.args) >= 2):
                continue
            if any(k.arg == "from_anyone" for k in node.keywords):
                continue
            prefix, handler = node.args[:2]
            if isinstance(prefix, ast.Name):
                prefixes = loops.get(id(node), {}).get(prefix.id, set())
            else:
                prefixes = self.strings(prefix)
            topics = {t for p in prefixes for t in owned_under(p)}
            if isinstance(handler, ast.Attribute):
                name = handler.attr
            elif isinstance(handler, ast.Name):
                name = handler.id
            elif isinstance(handler, ast.Lambda):
                name = f"<lambda line {handler.lineno}>"
            else:
                continue
            entry = found.setdefault(name, (set(), []))
            entry[0].update(topics)
            if isinstance(handler, ast.Lambda):
                entry[1].append(handler)
        return found

    def restated(self, elsewhere: dict[str, set[str]] | None = None) -> list[tuple[int, str, str]]:
        """(line, handler, owner) of each comparison of a source with the owner of a topic it handles;
        ``elsewhere``: the topics of methods subscribed in other files, by name (a helper's handler that its
        user subscribes, as record subscribes the frame door's RingFollower.on_camera)."""
        handlers = self.handlers()
        for name, topics in (elsewhere or {}).items():
            handlers.setdefault(name, (set(), []))[0].update(topics)
        bodies: list[tuple[str, ast.AST]] = [(name, lam) for name, (_, lambdas) in handlers.items()
                                             for lam in lambdas]
        bodies += [(node.name, node) for node in ast.walk(self.tree)
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in handlers]
        out = []
        for name, body in bodies:
            owners = {TOPICS[t].owner for t in handlers[name][0]}
            for node in ast.walk(body):
                if not isinstance(node, ast.Compare):
                    continue
                sides = [node.left, *node.comparators]
                if not any(isinstance(s, ast.Attribute) and s.attr == "source" for s in sides):
                    continue
                said = set().union(*(self.strings(s) for s in sides))
                out += [(node.lineno, name, owner) for owner in sorted(said & owners)]
        return out


def scan(source: str) -> list[tuple[int, str, str]]:
    return Scan(ast.parse(source)).restated()


def scan_tree(root: Path) -> list[str]:
    scans = {path: Scan(ast.parse(path.read_text())) for package in PRODUCT
             for path in sorted((root / package).rglob("*.py"))}
    subscribed: dict[str, set[str]] = {}
    for one in scans.values():
        for name, (topics, lambdas) in one.handlers().items():
            if not lambdas:
                subscribed.setdefault(name, set()).update(topics)
    return [f"{path.relative_to(root)}:{line}: {handler} checks for {owner}, which the node already did"
            for path, one in scans.items() for line, handler, owner in one.restated(subscribed)]


def test_no_handler_in_the_product_compares_a_source_with_the_owner_of_the_topic_it_handles():
    found = scan_tree(REPO)
    assert found == [], "\n".join(found)


def test_the_scan_finds_the_shapes_such_a_check_takes():
    """So that the scan above cannot pass by finding nothing: each shape the product once had is caught."""
    code = '''
STATE_SOURCES = {"shell.state": "shell", "power.state": "powerd"}
WATCHED = ("led.state",)

class Daemon:
    def __init__(self, node):
        for topic in STATE_SOURCES:
            node.subscribe(topic, self.on_state)
        for topic in WATCHED:
            node.subscribe(topic, self.on_led)
        node.subscribe("privacy.capture", self.on_capture)
        node.subscribe("input.gesture", self.on_input)
        node.subscribe("shell.apps", lambda msg: msg.source == "shell" and print(msg))
        node.subscribe("", self.on_anything, from_anyone=True)
        node.subscribe("audio.speak", self.on_speak)

    def on_state(self, msg):
        if msg.source != STATE_SOURCES[msg.topic]:
            return

    def on_led(self, msg):
        if msg.source not in ("ledd",):
            return

    def on_capture(self, msg):
        if msg.source != ("shell" if msg.topic == "privacy.capture" else "ledd"):
            return

    def on_input(self, msg):
        if msg.source == {"input.gesture": "inputd"}[msg.topic]:
            pass

    def on_anything(self, msg):
        if msg.source == "shell":  # a tool that takes anyone's: its own business
            pass

    def on_speak(self, msg):
        if msg.source == "shell":  # audio.speak is anyone's to say: not the table's owner column
            pass
'''
    found = {(handler, owner) for _, handler, owner in scan(code)}
    assert found == {("on_state", "shell"), ("on_state", "powerd"), ("on_led", "ledd"), ("on_capture", "shell"),
                     ("on_input", "inputd"), ("<lambda line 13>", "shell")}
