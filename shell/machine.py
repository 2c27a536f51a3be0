"""The shell's system state machine, as a table for the `transitions` library.

    booting -> running (active <-> idle) <-> sleep
    any running or sleeping state -> battery_swap -> back where it was
    running -> low_power -> running
    anything -> critical -> shutdown

States name what to do on entry (the ShellCore method); transitions name
their guards. Hardware events (a battery pulled, the charge dropping) can
arrive in any state, so each is declared for every state where it is
possible, as an internal transition (dest None) where it changes nothing:
an event that is not in this table for the current state is a bug and
raises MachineError.
"""

from __future__ import annotations

import functools
import importlib.util

from transitions import Machine

# What each state means for the rest of the system, declared with the state (as transitions' Tags would,
# without importing transitions.extensions, which brings asyncio and ssl into the shell). Code asks
# ``tagged(tag)`` or ``has(state, tag)``, and shell.state publishes every tag as a field of its own (true or
# false), so no other file matches state names:
#   running            the wearer is using the glasses (active, idle)
#   resumable          a battery swap returns to it
#   alive              critical can come from it
#   recording_allowed  video may be recorded; elsewhere camerad checkpoints or refuses
#   remote_calls       the assistant may call off the glasses
#   capture_paused     no camera frames at all
#   display_on         the panel is on
#   wake_listening     the wake-phrase spotter may hear the mic (where the policy lets it run at all)
#   power_at_risk      the power may go at any moment: what is recorded is checkpointed as it is entered
#   swapping           a battery is out and the internal bridge carries the glasses
#   shutting_down      the battery is empty: nothing new is granted, and what runs is saved
#   asleep             the wearer is not using them: no capture, and a notification wakes them
# And the panel's brightness in each state: a number, or the policy value that sets it (system.toml).
STATES = [
    {"name": "booting", "brightness": 1.0, "tags": ("alive", "recording_allowed", "display_on")},
    {"name": "active", "brightness": 1.0,
     "tags": ("running", "resumable", "alive", "recording_allowed", "remote_calls", "display_on", "wake_listening")},
    {"name": "idle", "brightness": "idle.idle_brightness",
     "tags": ("running", "resumable", "alive", "recording_allowed", "remote_calls", "display_on", "wake_listening")},
    {"name": "sleep", "brightness": 0.0,
     "tags": ("resumable", "alive", "recording_allowed", "remote_calls", "capture_paused", "wake_listening", "asleep")},
    {"name": "low_power", "brightness": "power.low_power_brightness", "tags": ("resumable", "alive", "display_on")},
    {"name": "battery_swap", "brightness": "swap.brightness",
     "tags": ("alive", "capture_paused", "display_on", "power_at_risk", "swapping")},
    # Lit, as booting is: the wearer sees why the glasses stop.
    {"name": "critical", "on_enter": "enter_critical", "brightness": "power.low_power_brightness",
     "tags": ("capture_paused", "display_on", "power_at_risk", "shutting_down")},
    {"name": "shutdown", "on_enter": "enter_shutdown", "brightness": 0.0,
     "tags": ("capture_paused", "shutting_down")},
]
INITIAL = STATES[0]["name"]
TAGS = tuple(dict.fromkeys(tag for state in STATES for tag in state["tags"]))  # each once, as the rows name them
_TAGS = {state["name"]: frozenset(state["tags"]) for state in STATES}


def tagged(tag: str) -> tuple[str, ...]:
    """The states that carry ``tag``, in the table's order."""
    if tag not in TAGS:
        raise KeyError(f"no state tag {tag!r} (known: {', '.join(TAGS)})")
    return tuple(state["name"] for state in STATES if tag in state["tags"])


def has(state: str, tag: str) -> bool:
    return tag in _TAGS[state]


def brightness(state: str, system) -> float:
    """The panel's brightness in ``state``, as its row says: a number, or a value of ``system`` (the policy's
    system.toml view) named by its dotted path."""
    value = _BRIGHTNESS[state]
    if isinstance(value, str):
        value = functools.reduce(getattr, value.split("."), system)
    return float(value)


RUNNING = tagged("running")
RESUMABLE = tagged("resumable")  # states a battery swap returns to
ALIVE = tagged("alive")  # states critical can come from
RECORDING = tagged("recording_allowed")
_BRIGHTNESS = {state["name"]: state["brightness"] for state in STATES}
_MACHINE_STATES = [{key: value for key, value in state.items() if key not in ("tags", "brightness")}
                   for state in STATES]

AWAKE = "active"  # where the wearer's activity leads (the activity trigger's destination)

TRANSITIONS = [
    {"trigger": "booted", "source": "booting", "dest": "active"},
    # The wearer: a tap, the wake phrase, a notification.
    {"trigger": "activity", "source": ["active", "idle", "sleep"], "dest": AWAKE, "after": "note_activity"},
    {"trigger": "activity", "source": ["booting", "low_power", "battery_swap", "critical", "shutdown"],
     "dest": None, "after": "note_activity"},
    {"trigger": "inactive", "source": "active", "dest": "idle"},
    {"trigger": "idle_timeout", "source": ["idle", "low_power"], "dest": "sleep", "unless": "capturing"},
    {"trigger": "idle_timeout", "source": ["idle", "low_power"], "dest": None, "conditions": "capturing"},
    # Charge: thresholds from policies/system.toml [power].
    {"trigger": "power_low", "source": [*RUNNING, "sleep"], "dest": "low_power"},
    {"trigger": "power_low", "source": ["booting", "low_power", "battery_swap"], "dest": None},
    {"trigger": "power_ok", "source": "low_power", "dest": "active"},
    {"trigger": "power_ok", "source": ["booting", *RUNNING, "sleep", "battery_swap"], "dest": None},
    {"trigger": "power_critical", "source": list(ALIVE), "dest": "critical"},
    # Batteries: one out is a swap; the second out while the first is away stays a swap.
    {"trigger": "battery_out", "source": list(RESUMABLE), "dest": "battery_swap", "before": "remember_state"},
    {"trigger": "battery_out", "source": ["booting", "battery_swap"], "dest": None},
    *[{"trigger": "battery_in", "source": "battery_swap", "dest": state,
       "conditions": ["all_batteries_in", f"resumes_{state}"]} for state in RESUMABLE],
    {"trigger": "battery_in", "source": "battery_swap", "dest": None, "unless": "all_batteries_in"},
    {"trigger": "battery_in", "source": ["booting", *RESUMABLE], "dest": None},
    {"trigger": "bridge_low", "source": "battery_swap", "dest": "critical"},
    {"trigger": "saved", "source": "critical", "dest": "shutdown"},
]

# Events that may arrive in critical or shutdown and are then simply too late to matter.
TOO_LATE = ("power_low", "power_ok", "power_critical", "battery_out", "battery_in", "bridge_low",
            "idle_timeout", "inactive")


_ANY = object()


def sources(trigger: str, dest: object = _ANY) -> tuple[str, ...]:
    """The states ``trigger`` is declared for (only those it leads to ``dest`` from, if given), in the table's
    order: the shell's timers ask which states the idle clock runs in, rather than naming them again."""
    found = [state for t in TRANSITIONS if t["trigger"] == trigger and (dest is _ANY or t["dest"] == dest)
             for state in (t["source"] if isinstance(t["source"], list) else [t["source"]])]
    return tuple(state["name"] for state in STATES if state["name"] in found)


def build(model) -> Machine:
    """Attach the machine to ``model`` (the ShellCore), which provides the callbacks named above."""
    transitions = TRANSITIONS + [{"trigger": t, "source": ["critical", "shutdown"], "dest": None}
                                 for t in TOO_LATE if "critical" not in sources(t)]
    return Machine(model=model, states=_MACHINE_STATES, transitions=transitions, initial=INITIAL,
                   auto_transitions=False, queued=True, send_event=False)


def _yes(*args, **kwargs) -> bool:
    return True


def _callback_names() -> set[str]:
    names = {state[key] for state in STATES for key in ("on_enter", "on_exit") if key in state}
    for t in TRANSITIONS:
        for key in ("conditions", "unless", "before", "after"):
            value = t.get(key, [])
            names.update([value] if isinstance(value, str) else value)
    return names


def draw(path: str, engine: str | None = None) -> str:
    """Write the machine as a diagram; the format follows the suffix (.svg, .png need Graphviz; else Mermaid)."""
    from transitions.extensions.diagrams import GraphMachine

    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    engine = engine or ("graphviz" if suffix in ("svg", "png") else "mermaid")

    if engine == "graphviz" and importlib.util.find_spec("graphviz") is None:
        raise RuntimeError(f"cannot draw {path}: the graphviz Python package is not installed; "
                           "write a .mmd file instead (Mermaid needs nothing installed)")
    model = type("Drawing", (), {name: _yes for name in _callback_names()})()
    try:
        GraphMachine(model=model, states=_MACHINE_STATES, transitions=TRANSITIONS, initial=INITIAL,
                     auto_transitions=False, graph_engine=engine, show_conditions=True, title="lensos shell")
        diagram = model.get_graph()
        if engine == "mermaid":
            with open(path, "w", encoding="utf-8") as out:
                out.write(diagram.draw(None))
        else:
            diagram.draw(path, prog="dot", format=suffix)
    except (ImportError, OSError) as exc:
        raise RuntimeError(f"cannot draw {path} with {engine} ({exc}); "
                           "write a .mmd file instead (Mermaid needs nothing installed)") from None
    return engine
