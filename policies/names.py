"""Names in the policies that must be a process of the process table or an installed app.

Those tables sit above the policies (the process table and the app manifests read them), so this module,
which imports both, is above them too: `lens policy check`, the shell and appd use it; a daemon never does
(the tables' imports would cost each small daemon memory for names it never reads)."""

from __future__ import annotations

from pathlib import Path

from apps.sdk.manifest import APPS_DIR, apps_dir
from manager.processes import PROCESSES
from policies.checker import PolicyError, TomlFile
from policies.loader import Policy, load
from policies.rules import MODELS, SCHEMA


def load_checking_names(directory: str | Path | None = None, model: str | None = None) -> Policy:
    """``load``, and the names checked against their tables too, every finding in one PolicyError."""
    return load(directory, model, also=lambda policy, files: check_names(policy, files["system.toml"],
                                                                         files["focus.toml"]))


def unknown_names(policy: Policy) -> list[str]:
    """The names in ``policy`` that refer to no process and no app, each as file:line: key: why."""
    system, focus = (TomlFile.read(policy.directory / name, SCHEMA[name]) for name in ("system.toml", "focus.toml"))
    return [error for found in check_names(policy, system, focus) for error in found.errors]


def check_all(directory: str | Path | None = None) -> list[str]:
    """Every model's view of a directory; the list of errors (empty when all is well)."""
    errors = []
    for model in MODELS:
        try:
            load_checking_names(directory, model)
        except PolicyError as exc:
            errors += [error for error in exc.errors if error not in errors]
    return errors


def check_names(policy: Policy, system: TomlFile, focus: TomlFile) -> list[PolicyError]:
    """Names that must be a process of the process table or an installed app."""
    processes = {process.name for process in PROCESSES}
    # The shipped apps and those of $LENS_APPS_DIR: a policy may name either (a misspelling is neither).
    apps = sorted({path.parent.name for folder in (APPS_DIR, apps_dir()) for path in folder.glob("*/manifest.toml")})
    found = []

    def unknown(file: TomlFile, section: str, key: str, name: str, what: str, known) -> PolicyError:
        return file.fail(section, key, f"unknown {what} {name!r} (known: {', '.join(sorted(known))})")
    found += [unknown(system, "boot", "required", name, "process", processes)
              for name in policy.system.boot.required if name not in processes]
    found += [unknown(system, "apps", "boot", name, "app", apps)
              for name in policy.system.apps.boot if name not in apps]
    if policy.system.apps.home not in apps:
        found.append(unknown(system, "apps", "home", policy.system.apps.home, "app", apps))
    found += [unknown(focus, "roles", role, role, "process or app", processes | set(apps))
              for role in policy.focus.roles if role not in processes and role not in apps]
    return found
