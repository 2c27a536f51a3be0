"""The one table of every process lensos runs.

`lens up` starts these in order, each after the ones it names in ``after``
have reported READY=1, and `lens units install` writes a systemd unit from
each row: what runs, after what, on which models,
how often it must prove its loop alive (watchdog), and the devices, groups
and writable paths the sandbox lets it reach. Nothing else says any of that;
which of them boot waits for is policies/system.toml [boot] required.
"""

from __future__ import annotations

from typing import NamedTuple

from policies.rules import MODELS


class Process(NamedTuple):
    """A row. A NamedTuple, not a dataclass: each daemon reads its own row for its command line, and
    dataclasses would cost every small daemon 1.1 MiB (tests/test_imports.py)."""

    name: str
    module: str  # run as `python -m MODULE`
    args: tuple[str, ...] = ()
    after: tuple[str, ...] = ()  # must be READY before this one starts
    models: tuple[str, ...] = MODELS  # glasses models that run it
    backends: tuple[str, ...] = ()  # hardware backends it offers; the board runs "real", development "sim"
    watchdog_s: float = 10.0  # a loop silent this long is killed and restarted
    devices: tuple[str, ...] = ()  # systemd DeviceAllow= entries: only these device nodes
    groups: tuple[str, ...] = ()  # supplementary groups the devices need (besides lensos, for the bus)
    writes: tuple[str, ...] = ()  # paths outside its state and the bus it may write (sysfs attributes)
    # hardware.toml settings ("section.key") that name a directory outside its state it writes (a media
    # partition); an empty setting names none. The units open each (manager.units.policy_dirs).
    writes_setting: tuple[str, ...] = ()
    sockets: tuple[str, ...] = ("AF_UNIX",)  # address families it may open (AF_INET*: a network at all)
    capabilities: tuple[str, ...] = ()  # the only privileges it keeps (none unless named here)
    jit: bool = False  # needs writable, executable memory (cffi closures)
    state: bool = False  # keeps files (StateDirectory=lensos/NAME): whoever has --state-dir, a test checks
    dev_only: bool = False  # development only: `lens up` with its flag, never a unit on the board
    files: int = 1024  # descriptors it may hold open (LimitNOFILE=), set deliberately, not systemd's default
    runs_if: str = ""  # a name in CONDITIONS: it runs only where that holds (`lens up` skips it, a unit is skipped)
    # Capture focus it may ask for the wearer with no app manifest (the shell's rule: any other identity
    # without one, a bridge peer or an unknown key, is refused the camera and the mic).
    captures: tuple[str, ...] = ()
    doc: str = ""


# Run conditions, each a predicate of the policy (openpilot's process_config predicates). `lens up` starts a row
# only where its holds; its unit asks `python -m manager.condition NAME` first (ExecCondition=), so on the board
# too a process the policy turns off never starts at all.
CONDITIONS = {
    "wake_listening": lambda policy: policy.wake_listening,  # policies/assistant.toml [wake] listen
}


PROCESSES: tuple[Process, ...] = (
    # The broker holds a connection per lane per process and sheds floods of them (broker.connections), within
    # a limit it also raises itself to: broker.connections.WANTED_LIMIT.
    Process("broker", "broker", watchdog_s=10.0, files=65536, doc="the bus: XSUB/XPUB per lane and the latched cache"),
    Process("shell", "shell", after=("broker",), state=True,
            doc="the state machine: focus, the capture LED, battery swap, the privacy audit log"),
    Process("ledd", "daemons.led", after=("broker",), backends=("real", "sim"), writes=("/sys/class/leds",),
            groups=("lensos-led",),  # the LED's brightness and trigger are root's but for this group (udev)
            doc="the capture LED, lit only on the shell's word"),
    Process("powerd", "daemons.power", after=("broker",), backends=("real", "sim"),
            sockets=("AF_UNIX", "AF_NETLINK"),  # kernel uevents: a battery pulled is seen at once
            doc="two swappable batteries and the bridge"),
    Process("inputd", "daemons.input", after=("broker",), backends=("real", "sim"), devices=("char-input r",),
            groups=("input",), doc="the temple touchpad and button, as gestures"),
    Process("displayd", "daemons.display", after=("broker",), backends=("real", "none", "sim"),
            devices=("/dev/fb0 rw",), groups=("video",), writes=("/sys/class/backlight",), state=True,
            doc="the compositor: HUD, the focused app's card, toasts, alerts (G1: cards spoken)"),
    Process("audiod", "daemons.audio", after=("broker",), backends=("real", "sim"), devices=("char-alsa rw",),
            groups=("audio",), jit=True, state=True,  # jit: PortAudio's callbacks go through cffi closures
            doc="the speaker, mixed under the focus rules, and the mic, only with the LED lit"),
    Process("assistantd", "daemons.assistant", after=("broker",), captures=("camera", "mic"),
            sockets=("AF_UNIX", "AF_INET", "AF_INET6"),  # may reach an LLM endpoint off the glasses
            doc="ask and hear or see the answer: offline intents, an optional OpenAI-compatible LLM"),
    # The wake phrase's ear: it hears the mic while nobody captures (the shell grants it, the HUD shows it) and
    # may publish nothing but assistant.wake. Its own process, not a thread of assistantd: that one reaches the
    # network and keeps a conversation; this one gets no network, no storage and no device at all, so the audio
    # it hears with the LED off has nowhere to go (its unit below, from this row).
    Process("waked", "daemons.wake", after=("broker",), runs_if="wake_listening",
            doc="the wake-phrase spotter: the only ear on the mic while the LED is off; says only assistant.wake"),
    Process("camerad", "daemons.camera", after=("broker",), backends=("real", "sim"),
            devices=("/dev/video0 rw",), groups=("video",), state=True, writes_setting=("camera.media_dir",),
            doc="frames into a shared-memory ring, photos, video segments; only with the LED lit"),
    # No network for apps yet: until each app runs in its own sandbox, one with the network permission
    # would open it to all of them (privacy first); the lens app's online backend is for development.
    Process("appd", "apphost.appd", after=("broker",), state=True,
            # Each app a user of its own (apphost.appusers), with a state directory of its own that appd gives
            # to that user (CAP_CHOWN: without it, on the board, the chown's system call killed appd at start).
            capabilities=("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHOWN"),
            doc="the app host: starts and stops apps/<id> on the shell's word (boot apps: system.toml [apps])"),
    Process("webview", "webview", after=("broker",), dev_only=True,
            doc="the live view on 127.0.0.1 for development (`lens up --web`)"),
    Process("foxglove", "bustools.foxglove_service", after=("broker",), dev_only=True, watchdog_s=60.0,
            doc="the bus live to Foxglove on ws://127.0.0.1:8765 for development (`lens up --web`; at idle "
                "priority, hence the longer watchdog)"),
)


def command(process: Process, python: str, backend: str | None) -> list[str]:
    """How a process is started, by systemd (backend real) and by `lens up` (sim unless told) alike."""
    cmd = [python, "-m", process.module, *process.args]
    if process.backends and backend:
        cmd += ["--backend", backend]
    return cmd


def wearer_capturers() -> dict[str, tuple[str, ...]]:
    """The system processes that capture for the wearer (a photo asked by voice), and what they may take."""
    return {p.name: p.captures for p in PROCESSES if p.captures}


def by_name() -> dict[str, Process]:
    return {p.name: p for p in PROCESSES}


def by_module(module: str) -> Process:
    """The row of the process run as ``python -m module``: a daemon's own, for its command line."""
    return next(p for p in PROCESSES if p.module == module)
