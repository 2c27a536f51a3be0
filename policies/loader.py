"""The policy directory read and checked, as one Policy: every file against its rules (policies.rules), then
the values that contradict one another (policies.crosscheck). A PolicyError names every finding at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, NamedTuple

from bus import development
from policies.checker import PolicyError, TomlFile
from policies.crosscheck import cross_check
from policies.rules import MODEL_SCHEMA, MODELS, SCHEMA
from policies.settings import File, Section, file_view, section_view

DEFAULT_DIR = Path(__file__).resolve().parent


class Policy(NamedTuple):
    """Each file a read-only view (policies.settings): ``policy.hardware.camera.fps``."""
    directory: Path
    model: str  # "s1" or "g1"
    system: File
    focus: File
    privacy: File
    hardware: File
    assistant: File
    profile: Section  # the [model] table of models/<model>.toml

    @property
    def has_display(self) -> bool:
        return self.profile.display

    def priority(self, cls: str) -> int:
        return self.focus.priorities[cls]

    @property
    def wake_listening(self) -> bool:
        """Whether the wake-phrase spotter may run and hear the mic with the LED off: assistant.toml [wake]
        listen, "development" meaning only where `lens up` started the system or the development image's
        units run (each says so in DEVELOPMENT_ENV; a product image's units never do, so with the shipped
        policy it never listens)."""
        listen = self.assistant.wake.listen
        return listen == "on" or (listen == "development" and development.declared())


def load(directory: str | Path | None = None, model: str | None = None, *,
         also: Callable[[Policy, dict[str, TomlFile]], list[PolicyError]] | None = None) -> Policy:
    """Read and check every policy file; PolicyError with every finding.

    ``also``: further checks of the clean read whose findings join the rest (policies.names checks the
    names that must be a process or an app: `lens policy check`). A running system does not refuse to start
    over those (the shell names a required daemon that never came as degraded, a role for an app not
    installed is unused) and logs ``unknown_names()`` instead."""
    directory = resolve_dir(directory)
    model = (model or os.environ.get("LENS_MODEL") or "s1").lower()
    if model not in MODELS:
        raise PolicyError(f"unknown model {model!r} (known: {', '.join(MODELS)})")
    files = {name: TomlFile.read(directory / name, schema) for name, schema in SCHEMA.items()}
    profile = TomlFile.read(directory / "models" / f"{model}.toml", MODEL_SCHEMA)
    errors = [error for file in (*files.values(), profile) for error in file.errors]
    if errors:  # the cross-checks read values these files failed to give: they wait for a clean read
        raise PolicyError(errors)
    views = {name: file_view(name, SCHEMA[name], file.data) for name, file in files.items()}
    policy = Policy(directory, model, views["system.toml"], views["focus.toml"], views["privacy.toml"],
                    views["hardware.toml"], views["assistant.toml"],
                    section_view(f"models/{model}.toml [model]", MODEL_SCHEMA["model"], profile.data["model"]))
    errors = cross_check(policy, files, profile)
    if also is not None:
        errors += [error for found in also(policy, files) for error in found.errors]
    if errors:
        raise PolicyError(errors)
    return policy


def resolve_dir(directory: str | Path | None = None) -> Path:
    return Path(directory or os.environ.get("LENS_POLICY_DIR") or DEFAULT_DIR)
