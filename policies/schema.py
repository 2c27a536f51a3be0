"""The policy files in policies/, their schema, and the loader that checks them.

Every key the shell reads is declared here once, with its type, its range and
what it means. Nothing has a default in code: a policy directory says
everything, and anything it says wrong (a TOML syntax error, an unknown or
missing key, a wrong type, a value out of range, numbers that contradict each
other) is a PolicyError naming the file, the key and the line.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Callable, NamedTuple

DEFAULT_DIR = Path(__file__).resolve().parent
RESOURCES = ("display", "audio_out", "mic", "camera")
GESTURES = ("tap", "double_tap", "long_press", "swipe_forward", "swipe_back", "button", "button_long")
MODELS = ("s1", "g1")


class PolicyError(ValueError):
    """Policy files are wrong: ``errors`` lists every finding, each starting with file:line; the message is
    them all, one a line."""

    def __init__(self, errors: str | list[str]):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))


class Rule(NamedTuple):
    kind: str  # int, float, bool, str, list[str]
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    doc: str = ""


class Tables(NamedTuple):
    """A section written as an array of tables ([[item]] ...), each checked against ``rules``."""
    rules: dict[str, Rule]
    doc: str = ""


def _fraction(doc: str) -> Rule:
    return Rule("float", 0.0, 1.0, doc=doc)


# file -> section -> key -> Rule. A section that is a Rule instead of a dict
# is an open table: any key, every value checked against that rule.
SCHEMA: dict[str, dict[str, dict[str, Rule] | Rule]] = {
    "system.toml": {
        "boot": {
            "required": Rule("list[str]", doc="daemons that must report ready before the shell leaves booting"),
            "deadline_s": Rule("float", 0.1, 300.0, doc="how long to wait for them before running degraded"),
        },
        "idle": {
            "dim_after_s": Rule("float", 1.0, 3600.0, doc="no input for this long: active -> idle"),
            "sleep_after_s": Rule("float", 1.0, 86400.0, doc="idle for this much longer: sleep"),
            "idle_brightness": _fraction("display brightness while idle"),
        },
        "power": {
            "low_percent": Rule("int", 1, 99, doc="below this: low_power"),
            "recover_percent": Rule("int", 1, 100, doc="leave low_power above this"),
            "critical_percent": Rule("int", 0, 50, doc="below this: critical, orderly shutdown"),
            "low_power_brightness": _fraction("display brightness in low_power"),
        },
        "swap": {
            "brightness": _fraction("display brightness while a battery is out"),
            "bridge_low_s": Rule("float", 1.0, 600.0, doc="bridge seconds left that trigger critical"),
        },
        "apps": {
            "boot": Rule("list[str]", doc="apps appd starts at boot (those the model hides are skipped)"),
            "home": Rule("str", doc="the resting app, in front when no other app is"),
            "first_uid": Rule("int", 1000, 4_000_000_000, doc="the first of the users apps run as, one each"),
            "uids": Rule("int", 1, 65536, doc="how many users there are for apps (at most this many run)"),
        },
    },
    "focus.toml": {
        "priorities": Rule("int", 0, 1000, doc="priority of each class; higher wins"),
        "roles": Rule("str", doc="the highest class a process may claim"),
        "liveness": {
            "heartbeat_timeout_s": Rule("float", 0.1, 60.0,
                                        doc="a silent owner loses focus after this (or 3 of its heartbeat periods)"),
        },
        "ducking": {"level": _fraction("volume a ducked audio owner keeps")},
    },
    "privacy.toml": {
        "led": {
            "hold_s": Rule("float", 0.0, 60.0, doc="LED stays lit this long after the last capture"),
            "confirm_timeout_s": Rule("float", 0.05, 10.0, doc="wait this long for the LED to confirm"),
        },
        "bridge": {
            "out": Rule("list[str]", doc="topic prefixes a paired phone or laptop may see (`lens bus bridge`)"),
            "in": Rule("list[str]", doc="topic prefixes it may publish onto the glasses' bus"),
        },
    },
    "assistant.toml": {
        "trigger": {
            "gestures": Rule("list[str]", choices=GESTURES, doc="temple gestures that start the assistant"),
            "wake_phrase": Rule("str", doc="said first, it wakes the glasses and the assistant"),
        },
        "listen": {
            "stt": Rule("str", choices=("text", "vosk"), doc="the speech-to-text engine"),
            "vosk_model_dir": Rule("str", doc="Vosk's model directory (stt = vosk)"),
            "timeout_s": Rule("float", 1.0, 60.0, doc="stop listening after this long without a request"),
            "grant_timeout_s": Rule("float", 0.1, 30.0, doc="wait this long for the mic to be granted"),
        },
        "answer": {
            "card_s": Rule("float", 1.0, 120.0, doc="how long an answer card stays up"),
            "context_s": Rule("float", 0.0, 86400.0, doc="the conversation is forgotten after this long"),
        },
        "llm": {
            "endpoint": Rule("str", doc="OpenAI-compatible base URL ('' for offline only)"),
            "model": Rule("str", doc="the model name the endpoint expects"),
            "api_key_env": Rule("str", doc="environment variable holding the API key"),
            "timeout_s": Rule("float", 0.1, 120.0, doc="no progress for this long: answer offline"),
            "max_rounds": Rule("int", 1, 10, doc="tool-call rounds before the model must answer"),
        },
    },
    "hardware.toml": {
        "led": {
            "sysfs_dir": Rule("str", doc="the capture LED's /sys/class/leds/<name> directory (real backend)"),
            "confirm_retries": Rule("int", 0, 10, doc="writes retried before a read-back mismatch is a fault"),
            "check_s": Rule("float", 0.05, 60.0, doc="while lit, the LED is read back this often"),
        },
        "power": {
            "sysfs_root": Rule("str", doc="where the power supplies are (real backend)"),
            "batteries": Rule("list[str]", doc="supply names of the swappable batteries, left first"),
            "bridge": Rule("str", doc="supply name of the internal bridge battery"),
            "poll_s": Rule("float", 0.005, 60.0, doc="the supplies are read this often"),
            "low_percent": Rule("int", 1, 99, doc="a battery below this raises a 'low' event"),
        },
        "camera": {
            "device": Rule("str", doc="the V4L2 capture device (real backend)"),
            "width": Rule("int", 16, 7680, doc="frame width in pixels (even: YUYV pairs pixels)"),
            "height": Rule("int", 16, 4320, doc="frame height in pixels"),
            "fps": Rule("float", 1.0, 120.0, doc="frames per second while recording video"),
            "preview_fps": Rule("float", 0.5, 60.0, doc="frames per second in preview"),
            "slots": Rule("int", 2, 64, doc="frames the shared-memory ring holds"),
            "sim_folder": Rule("str", doc="sim backend: show these images instead of the pattern ('' for none)"),
            "jpeg_quality": Rule("int", 10, 100, doc="quality of photos and recording segments"),
            "media_dir": Rule("str", doc="where photos and recordings go ('' for camerad's state directory)"),
        },
        "input": {
            "touchpad": Rule("str", doc="the temple touchpad's evdev device ('' for none; real backend)"),
            "button": Rule("str", doc="the capture button's evdev device ('' for none; real backend)"),
            "button_key": Rule("str", doc="the button's key name (KEY_...)"),
            "tap_max_s": Rule("float", 0.02, 2.0, doc="a touch longer than this is not a tap"),
            "double_s": Rule("float", 0.05, 2.0, doc="a second tap within this is a double tap"),
            "long_s": Rule("float", 0.1, 5.0, doc="held still this long: long press"),
            "slop": _fraction("movement that still counts as still"),
            "swipe_min": _fraction("movement that makes a swipe"),
            "swipe_max_s": Rule("float", 0.05, 5.0, doc="a slower movement is a drag"),
            "debounce_s": Rule("float", 0.0, 0.2, doc="a shorter lift is a bounce"),
            "forward_increasing": Rule("bool", doc="whether larger x is forward"),
        },
        "display": {
            "fb_device": Rule("str", doc="the panel's framebuffer device (real backend)"),
            "fb_bits_per_pixel": Rule("int", 16, 32, doc="pixel size when fb_device is a plain file (16 or 32)"),
            "backlight_dir": Rule("str", doc="the panel's /sys/class/backlight/<name> ('' to dim the pixels)"),
            "font": Rule("str", doc="TrueType font of the HUD and cards"),
            "cards_per_app": Rule("int", 1, 100, doc="cards kept per app"),
        },
        "audio": {
            "out_device": Rule("str", doc="PortAudio output device name ('' for the default; real backend)"),
            "in_device": Rule("str", doc="PortAudio input device name ('' for the default; real backend)"),
            "out_rate": Rule("int", 8000, 96000, doc="speaker sample rate"),
            "mic_rate": Rule("int", 8000, 48000, doc="mic sample rate"),
            "block_s": Rule("float", 0.005, 0.2, doc="samples per device block, in seconds"),
            "ramp_s": Rule("float", 0.001, 1.0, doc="a full 0..1 gain swing takes this long"),
            "volume": _fraction("master volume"),
            "voice": Rule("str", choices=("espeak-ng", "tones"), doc="the speech engine"),
            "voice_name": Rule("str", doc="the engine's voice (espeak-ng -v)"),
            "words_per_minute": Rule("int", 80, 450, doc="speaking rate"),
            "vad_threshold_db": Rule("float", -100.0, 0.0, doc="speech is louder than this (dBFS)"),
            "vad_margin_db": Rule("float", 0.0, 60.0, doc="and this much above the noise floor"),
            "vad_start_s": Rule("float", 0.0, 2.0, doc="for this long, to start"),
            "vad_hang_s": Rule("float", 0.0, 5.0, doc="quiet this long ends speech"),
            "sim_mic_wav": Rule("str", doc="sim backend: the mic plays this WAV in a loop ('' for a quiet room)"),
        },
        "power_sim": {
            "battery_wh": Rule("float", 0.01, 100.0, doc="energy of one full swappable battery"),
            "bridge_wh": Rule("float", 0.001, 10.0, doc="energy of the full bridge battery"),
            "base_w": Rule("float", 0.0, 20.0, doc="draw of the board with everything idle"),
            "display_w": Rule("float", 0.0, 20.0, doc="extra draw of the display at full brightness"),
            "camera_w": Rule("float", 0.0, 20.0, doc="extra draw while the camera captures"),
            "mic_w": Rule("float", 0.0, 20.0, doc="extra draw while the mic captures"),
            "speedup": Rule("float", 1.0, 100000.0, doc="simulated seconds per real second"),
        },
    },
}
MODEL_SCHEMA: dict[str, dict[str, Rule]] = {
    "model": {
        "name": Rule("str", doc="as shown to the wearer"),
        "display": Rule("bool", doc="whether the glasses have a display"),
        "resources": Rule("list[str]", choices=RESOURCES, doc="resources focus is arbitrated for"),
        "batteries": Rule("int", 1, 4, doc="swappable batteries"),
        "panel_width": Rule("int", 0, 7680, doc="panel pixels across (0 without a display)"),
        "panel_height": Rule("int", 0, 4320, doc="panel pixels down (0 without a display)"),
        "refresh_hz": Rule("int", 0, 240, doc="panel refresh: displayd renders at most this often"),
    },
}
REQUIRED_CLASSES = ("system_alert", "foreground", "background")


class Policy(NamedTuple):
    directory: Path
    model: str  # "s1" or "g1"
    system: dict[str, dict[str, Any]]
    focus: dict[str, dict[str, Any]]
    privacy: dict[str, dict[str, Any]]
    hardware: dict[str, dict[str, Any]]
    assistant: dict[str, dict[str, Any]]
    profile: dict[str, Any]  # the [model] table of models/<model>.toml

    @property
    def has_display(self) -> bool:
        return self.profile["display"]

    def priority(self, cls: str) -> int:
        return self.focus["priorities"][cls]


def load(directory: str | Path | None = None, model: str | None = None, *, names: bool = False) -> Policy:
    """Read and check every policy file; PolicyError with every finding.

    ``names``: also check the names that must be a process or an app against those tables (`lens policy
    check`). A running system does not refuse to start over them (the shell names a required daemon that
    never came as degraded, a role for an app not installed is unused) and logs ``unknown_names()``
    instead; a daemon never looks: the tables' imports (dataclasses, inspect, ast) would cost each small
    daemon memory for names it never reads."""
    directory = resolve_dir(directory)
    model = (model or os.environ.get("LENS_MODEL") or "s1").lower()
    if model not in MODELS:
        raise PolicyError(f"unknown model {model!r} (known: {', '.join(MODELS)})")
    files = {name: _File.read(directory / name, schema) for name, schema in SCHEMA.items()}
    profile = _File.read(directory / "models" / f"{model}.toml", MODEL_SCHEMA)
    errors = [error for file in (*files.values(), profile) for error in file.errors]
    if errors:  # the cross-checks read values these files failed to give: they wait for a clean read
        raise PolicyError(errors)
    policy = Policy(directory, model, files["system.toml"].data, files["focus.toml"].data,
                    files["privacy.toml"].data, files["hardware.toml"].data, files["assistant.toml"].data,
                    profile.data["model"])
    errors = _cross_check(policy, files, profile)
    if names:
        errors += [error for found in _check_names(policy, files["system.toml"], files["focus.toml"])
                   for error in found.errors]
    if errors:
        raise PolicyError(errors)
    return policy


def unknown_names(policy: Policy) -> list[str]:
    """The names in ``policy`` that refer to no process and no app, each as file:line: key: why."""
    system, focus = (_File.read(policy.directory / name, SCHEMA[name]) for name in ("system.toml", "focus.toml"))
    return [error for found in _check_names(policy, system, focus) for error in found.errors]


def resolve_dir(directory: str | Path | None = None) -> Path:
    return Path(directory or os.environ.get("LENS_POLICY_DIR") or DEFAULT_DIR)


def check_all(directory: str | Path | None = None) -> list[str]:
    """Every model's view of a directory; the list of errors (empty when all is well)."""
    errors = []
    for model in MODELS:
        try:
            load(directory, model, names=True)
        except PolicyError as exc:
            errors += [error for error in exc.errors if error not in errors]
    return errors


def read_checked(path: Path, schema: dict) -> dict:
    """Any TOML file checked against a schema of this module's kind (app manifests use it too); PolicyError
    with every finding."""
    file = _File.read(path, schema)
    if file.errors:
        raise PolicyError(file.errors)
    return file.data


class _File:
    """One TOML file read and checked; ``errors`` holds every finding (a file that cannot be read or parsed
    has that one)."""

    def __init__(self, path: Path, text: str, data: dict):
        self.path, self.text, self.data = path, text, data
        self.errors: list[str] = []

    @classmethod
    def read(cls, path: Path, schema: dict) -> "_File":
        file = cls(path, "", {})
        try:
            file.text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            file.errors.append(f"{path}: missing (every policy file is required)")
            return file
        except (OSError, UnicodeDecodeError) as exc:
            file.errors.append(f"{path}: cannot be read: {exc}")
            return file
        try:
            file.data = tomllib.loads(file.text)
        except tomllib.TOMLDecodeError as exc:
            line = re.search(r"line (\d+)", str(exc))
            file.errors.append(f"{path}:{line.group(1) if line else 1}: not valid TOML: {exc}")
            return file
        file._check(schema)
        return file

    def note(self, error: PolicyError) -> None:
        self.errors.extend(error.errors)

    def fail(self, section: str, key: str | None, why: str) -> PolicyError:
        where = f"{section}.{key}" if key else f"[{section}]"
        return PolicyError(f"{self.path}:{self.line_of(section, key)}: {where}: {why}")

    def line_of(self, section: str, key: str | None) -> int:
        """The line of ``key`` in ``[section]`` (or of the header); 1 when it is not written at all."""
        current, header_line = None, 1
        for number, line in enumerate(self.text.splitlines(), 1):
            stripped = line.strip()
            header = re.fullmatch(r"\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?", stripped)
            if header:
                current = header.group(1)
                if current == section:
                    header_line = number
                    if key is None:
                        return number
                continue
            if current == section and key is not None and re.match(rf'"?{re.escape(key)}"?\s*=', stripped):
                return number
        return header_line

    def _check(self, schema: dict) -> None:
        for section in self.data:
            if section not in schema:
                self.note(self.fail(section, None, f"unknown section (known: {', '.join(schema)})"))
        for section, rules in schema.items():
            table = self.data.get(section)
            if isinstance(rules, Tables):
                self._check_tables(section, table, rules)
                continue
            if not isinstance(table, dict):
                self.note(self.fail(section, None, "missing section" if table is None else "must be a table"))
                continue

            def fail(key: str | None, why: str, section=section) -> PolicyError:
                return self.fail(section, key, why)
            if isinstance(rules, Rule):  # open table
                for key in table:
                    self._check_value(table, key, rules, fail)
                continue
            self._check_keys(table, rules, fail)

    def _check_tables(self, section: str, tables: Any, spec: Tables) -> None:
        if not isinstance(tables, list) or not tables:
            self.note(self.fail(section, None, f"missing: at least one [[{section}]] ({spec.doc})"))
            return
        lines = self.text.splitlines()
        headers = [n for n, line in enumerate(lines, 1)
                   if re.fullmatch(rf"\[\[\s*{re.escape(section)}\s*\]\]\s*(#.*)?", line.strip())]
        for index, table in enumerate(tables):
            first = headers[index] if index < len(headers) else 1
            last = headers[index + 1] if index + 1 < len(headers) else len(lines) + 1

            def fail(key: str | None, why: str, first=first, last=last, index=index) -> PolicyError:
                line = next((n for n in range(first, last) if key and re.match(rf'"?{re.escape(key)}"?\s*=',
                                                                                  lines[n - 1].strip())), first)
                return PolicyError(f"{self.path}:{line}: {section}[{index + 1}]{'.' + key if key else ''}: {why}")
            if not isinstance(table, dict):
                self.note(fail(None, f"must be a table ([[{section}]]), got {type(table).__name__}"))
                continue
            self._check_keys(table, spec.rules, fail)

    def _check_keys(self, table: dict, rules: dict[str, Rule], fail: Callable[[str | None, str], PolicyError]) -> None:
        """Unknown keys, missing keys, then each value: alike for a [section] and each [[section]]."""
        for key in table:
            if key not in rules:
                self.note(fail(key, f"unknown key (known: {', '.join(rules)})"))
        for key, rule in rules.items():
            if key not in table:
                self.note(fail(None, f"missing key '{key}' ({rule.kind}: {rule.doc})"))
                continue
            self._check_value(table, key, rule, fail)

    def _check_value(self, table: dict, key: str, rule: Rule, fail: Callable[[str | None, str], PolicyError]) -> None:
        try:
            self._check_one(table, key, rule, fail)
        except PolicyError as error:
            self.note(error)

    @staticmethod
    def _check_one(table: dict, key: str, rule: Rule, fail: Callable[[str | None, str], PolicyError]) -> None:
        value = table[key]
        ok = {
            "int": type(value) is int,
            "float": type(value) in (int, float),
            "bool": type(value) is bool,
            "str": type(value) is str,
            "list[str]": type(value) is list and all(type(v) is str for v in value),
        }[rule.kind]
        if not ok:
            raise fail(key, f"must be {rule.kind}, got {type(value).__name__} {value!r:.40}")
        if rule.kind == "float":
            table[key] = float(value)
        if rule.low is not None and not rule.low <= value <= rule.high:
            raise fail(key, f"{value} is out of range {rule.low:g}..{rule.high:g}")
        for item in value if rule.kind == "list[str]" else [value] if rule.kind == "str" else ():
            if rule.choices and item not in rule.choices:
                raise fail(key, f"unknown {item!r} (known: {', '.join(rule.choices)})")


def _cross_check(policy: Policy, files: dict[str, _File], profile: _File) -> list[str]:
    """Values that are each in range but contradict one another, and names that must refer to something
    that exists: every finding, not the first."""
    system, focus, hardware = files["system.toml"], files["focus.toml"], files["hardware.toml"]
    found: list[PolicyError] = []
    power = policy.system["power"]
    if not power["critical_percent"] < power["low_percent"] < power["recover_percent"]:
        found.append(system.fail("power", "recover_percent",
                                 "needs critical_percent < low_percent < recover_percent "
                                 f"(got {power['critical_percent']}, {power['low_percent']}, "
                                 f"{power['recover_percent']})"))
    priorities = policy.focus["priorities"]
    found += [focus.fail("priorities", None, f"missing class '{cls}'") for cls in REQUIRED_CLASSES
              if cls not in priorities]
    found += [focus.fail("roles", role, f"class {cls!r} is not in [priorities]")
              for role, cls in policy.focus["roles"].items() if cls not in priorities]
    batteries = policy.hardware["power"]["batteries"]
    if len(batteries) != policy.profile["batteries"]:
        found.append(hardware.fail("power", "batteries",
                                   f"names {len(batteries)} batteries; the model has {policy.profile['batteries']}"))
    if policy.profile["display"] and min(policy.profile[k] for k in ("panel_width", "panel_height", "refresh_hz")) < 1:
        found.append(profile.fail("model", "panel_width", "a model with a display needs panel_width, panel_height "
                                                          "and refresh_hz above 0"))
    if policy.hardware["display"]["fb_bits_per_pixel"] not in (16, 32):
        found.append(hardware.fail("display", "fb_bits_per_pixel", "must be 16 (RGB565) or 32 (XRGB8888)"))
    touch = policy.hardware["input"]
    if not touch["slop"] < touch["swipe_min"]:
        found.append(hardware.fail("input", "swipe_min", "must be more than slop (a swipe moves, a tap does not)"))
    if not touch["tap_max_s"] < touch["long_s"]:
        found.append(hardware.fail("input", "long_s", "must be more than tap_max_s"))
    if policy.profile["display"] != ("display" in policy.profile["resources"]):
        found.append(profile.fail("model", "resources", "lists 'display' exactly when display = true"))
    found += _check_bridge(policy.privacy["bridge"], files["privacy.toml"])
    return [error for found_error in found for error in found_error.errors]


def _check_names(policy: Policy, system: _File, focus: _File) -> list[PolicyError]:
    """Names that must be a process of the process table or an installed app.

    Those tables sit above this package (the process table and the app manifests read the policies), so
    they are imported here, when a policy is checked, and never at import."""
    from apps.sdk.manifest import APPS_DIR, apps_dir
    from manager.processes import PROCESSES

    processes = {process.name for process in PROCESSES}
    # The shipped apps and those of $LENS_APPS_DIR: a policy may name either (a misspelling is neither).
    apps = sorted({path.parent.name for folder in (APPS_DIR, apps_dir()) for path in folder.glob("*/manifest.toml")})
    found = []

    def unknown(file: _File, section: str, key: str, name: str, what: str, known) -> PolicyError:
        return file.fail(section, key, f"unknown {what} {name!r} (known: {', '.join(sorted(known))})")
    found += [unknown(system, "boot", "required", name, "process", processes)
              for name in policy.system["boot"]["required"] if name not in processes]
    found += [unknown(system, "apps", "boot", name, "app", apps)
              for name in policy.system["apps"]["boot"] if name not in apps]
    if policy.system["apps"]["home"] not in apps:
        found.append(unknown(system, "apps", "home", policy.system["apps"]["home"], "app", apps))
    found += [unknown(focus, "roles", role, role, "process or app", processes | set(apps))
              for role in policy.focus["roles"] if role not in processes and role not in apps]
    return found


def _check_bridge(bridge: dict, file: _File) -> list[PolicyError]:
    """What may leave the glasses and what may come in: names in the topic table, never a capture's data,
    never a topic the peer could only publish by speaking for one of the glasses' own processes."""
    from bus.topics import ANY_NODE, TOPICS, Kind, matches

    found = []
    for direction in ("out", "in"):
        for prefix in bridge[direction]:
            covered = [t for t in TOPICS.values() if matches(prefix, t.name) and t.kind is not Kind.REPLY]
            if not covered:
                found.append(file.fail("bridge", direction, f"{prefix!r} names no topic of bus/topics.py"))
                continue
            private = [t.name for t in covered if t.permission]
            if direction == "out" and private:
                found.append(file.fail("bridge", direction,
                                       f"{prefix!r} would send {', '.join(private)} off the glasses"))
            owned = [t.name for t in covered if t.owner != ANY_NODE and t.kind is not Kind.REQUEST]
            if direction == "in" and owned:
                found.append(file.fail("bridge", direction, f"{prefix!r} covers {', '.join(owned)}, which only "
                                                            f"the glasses' own processes publish"))
            # The simulated hardware is driven by the developer's tools alone: a peer pressing the simulated
            # capture button would be a capture nobody on the glasses started.
            simulated = [t.name for t in covered if ".sim." in t.name]
            if direction == "in" and simulated:
                found.append(file.fail("bridge", direction, f"{prefix!r} covers {', '.join(simulated)}, which "
                                                            f"drive the simulated hardware (developer tools only)"))
    return found
