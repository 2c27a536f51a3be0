"""The import rules each package's README states: lower layers never import higher ones, no daemon imports
another daemon, no app another app, and no two modules import each other (at load time or lazily).

Every import counts, those inside functions too: a lazy import is still a dependency, only a later one.
Those under ``if TYPE_CHECKING:`` do not: they never run."""

import ast
import tomllib
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("bus", "broker", "frames", "shellclient", "policies", "manager", "apps", "daemons", "shell",
            "apphost", "webview", "bustools", "cli")

# What each layer may import besides itself, from the bottom up. A key is a package, or a module or
# subpackage where it differs from its package (the longest match wins).
ALLOWED: dict[str, set[str]] = {
    "bus": set(),
    "broker": {"bus"},
    "frames": {"bus"},
    "shellclient": {"bus"},
    "policies": {"bus"},
    "policies.names": {"bus", "manager", "apps.sdk"},
    "manager": {"bus", "policies"},
    "apps.sdk": {"bus", "frames", "shellclient", "policies", "manager"},
    "apps": {"bus", "frames", "shellclient", "policies", "apps.sdk"},
    "daemons": {"bus", "frames", "shellclient", "policies", "manager.processes"},  # its own row: its command line
    "shell": {"bus", "shellclient", "policies", "manager", "apps.sdk"},
    "apphost": {"bus", "policies", "manager", "apps.sdk"},
    "webview": {"bus", "policies", "manager.processes"},  # its own row, as a daemon's
    "bustools": {"bus", "broker", "frames", "policies", "manager", "apps.sdk"},
    "cli": set(PACKAGES),
}
# Known exceptions, each with its reason; a new one fails until it is fixed or written here.
EXCEPTIONS: dict[tuple[str, str], str] = {
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules()


def imported(name: str, path: Path) -> set[str]:
    """The lensos modules ``name`` imports, wherever in the file."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue  # for annotations only: never imported at run time
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        out |= {t for t in targets if t.split(".")[0] in PACKAGES}
    return out


def layer(module: str) -> str:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in ALLOWED:
            return ".".join(parts[:n])
    raise AssertionError(f"{module} is in no layer of ALLOWED")


def unit(module: str) -> str:
    """The package a rule is about: a daemon or an app is a unit of its own."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] in ("daemons", "apps") and len(parts) > 1 else parts[0]


def may_import(module: str, target: str) -> bool:
    if unit(module) == unit(target) or (module, target) in EXCEPTIONS:
        return True
    return any(target == allowed or target.startswith(allowed + ".") for allowed in ALLOWED[layer(module)])


def test_lower_layers_never_import_higher_ones_and_no_daemon_or_app_another():
    wrong = sorted(f"{module} imports {target}" for module, path in MODULES.items()
                   for target in imported(module, path) if not may_import(module, target))
    assert wrong == []


def test_every_exception_is_still_needed():
    found = {(m, t) for m, p in MODULES.items() for t in imported(m, p)}
    assert set(EXCEPTIONS) <= found, "an exception that no longer happens: take it out"


def test_no_two_modules_import_each_other():
    graph = {m: {t for t in imported(m, p) if t in MODULES and t != m} for m, p in MODULES.items()}
    cycles, done = [], set()

    def visit(module, trail):
        if module in trail:
            cycles.append(" -> ".join(trail[trail.index(module):] + [module]))
            return
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, trail + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert cycles == []


def test_the_wheel_holds_every_package():
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(p.rstrip("*") for p in include) == sorted(PACKAGES)


def test_every_package_says_what_it_owns_and_may_import():
    missing = [p for p in PACKAGES if p not in ("apps", "daemons") and not (REPO / p / "README.md").exists()]
    assert missing == []


def test_make_install_compiles_every_package():
    line = next(line for line in (REPO / "Makefile").read_text().splitlines() if "compileall" in line)
    compiled = line.split("-j 0", 1)[1].split(">")[0].split()
    assert sorted(compiled) == sorted(PACKAGES)
