"""App manifests: what an app is and what it may do, declared in apps/<id>/manifest.toml.

    [app]
    id = "camera"                 # its node name on the bus, and `python -m apps.<id>`
    name = "Camera"
    permissions = ["camera"]      # camera, mic, location, notifications, network
    background = false            # may it run while another app is in the foreground?
    models = ["s1", "g1"]
    display = false               # needs a display: hidden on G1, with the reason

The shell reads every manifest and refuses what an app did not declare;
the SDK reads its own to know itself. A wrong manifest is an error naming
its file, key and line, like a policy file's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bus.keys import BRIDGE, BROKER, DEVELOPER, valid_name
from policies.checker import PolicyError, Rule, read_checked
from policies.rules import MODELS

APPS_DIR = Path(__file__).resolve().parent.parent
PERMISSIONS = ("camera", "mic", "location", "notifications", "network")
SCHEMA = {"app": {
    "id": Rule("str", doc="the app's node name and package (apps.<id>)"),
    "name": Rule("str", doc="as the wearer sees it"),
    "permissions": Rule("list[str]", choices=PERMISSIONS, doc="what it may use"),
    "background": Rule("bool", doc="whether it may run in the background"),
    "models": Rule("list[str]", choices=MODELS, doc="the glasses models it supports"),
    "display": Rule("bool", doc="whether it needs a display (hidden on G1)"),
}}


class ManifestError(PolicyError):
    """A manifest that is wrong; the message starts with file:line."""


@dataclass(frozen=True)
class Manifest:
    id: str
    name: str
    permissions: tuple[str, ...]
    background: bool
    models: tuple[str, ...]
    display: bool
    path: Path

    def may(self, permission: str) -> bool:
        return permission in self.permissions


def hidden_reason(manifest: Manifest, model: str, has_display: bool) -> str | None:
    """Why the app is not offered on this model (None: it is)."""
    if model not in manifest.models:
        return f"{manifest.name} does not support the {model.upper()} ({', '.join(manifest.models).upper()} only)"
    if manifest.display and not has_display:
        return f"{manifest.name} needs a display and the {model.upper()} has none"
    return None


def reserved_names() -> set[str]:
    from manager.processes import PROCESSES  # the table, not the shell: no import of anything that runs

    return {p.name for p in PROCESSES} | {BRIDGE, BROKER, DEVELOPER}


def apps_dir() -> Path:
    return Path(os.environ.get("LENS_APPS_DIR") or APPS_DIR)


def read(path: Path) -> Manifest:
    try:
        data = read_checked(path, SCHEMA)["app"]
    except PolicyError as exc:
        raise ManifestError(exc.errors) from None
    if data["id"] != path.parent.name:
        raise ManifestError(f"{path}:1: app.id: {data['id']!r} must be the directory's name {path.parent.name!r}")
    if not valid_name(data["id"]) or data["id"] in reserved_names():
        # The id is the app's identity on the bus: it must be a key name, and never a system process's.
        raise ManifestError(f"{path}:1: app.id: {data['id']!r} is not an app's name (lower-case letters, digits, "
                            f"- and _; not one of {', '.join(sorted(reserved_names()))})")
    return Manifest(data["id"], data["name"], tuple(data["permissions"]), data["background"],
                    tuple(data["models"]), data["display"], path)


def load_all(directory: Path | None = None) -> tuple[dict[str, Manifest], list[str]]:
    """Every app's manifest, and the errors of those that are wrong (skipped, never fatal)."""
    manifests, errors = {}, []
    for path in sorted((directory or apps_dir()).glob("*/manifest.toml")):
        try:
            manifest = read(path)
        except ManifestError as exc:
            errors.append(str(exc))
            continue
        manifests[manifest.id] = manifest
    return manifests, errors
