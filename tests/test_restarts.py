"""State across restarts: each process is killed in turn during a session, and the system comes back as it was.

The session: music playing in front (a now-playing card, the speaker its), a notification listed and
unread, the wearer's brightness at half, a card of another app kept by displayd for when it has the
display, the left battery at 56 % (a pulled one is test_power's), the wake-phrase spotter listening. Then
every process but the broker (whose kill tests/bus covers) is killed in turn (SIGKILL: no goodbye, nothing
saved on the way out) and started again: displayd, the notifications app, the music app, appd (which takes
every app with it), powerd, ledd, audiod, inputd, camerad, assistantd, waked and the shell; and the whole
system's state, as the bus shows it, must come back to what it was. assistantd's conversation is not in it:
it is kept in memory only (what the wearer said is never written to disk), so a crash forgets it.
"""

from __future__ import annotations

import os
import signal
import time
import wave

import pytest

from bus import keys
from tests.conftest import DEADLINE_S, wait_for
from tests.system import FAST, System


def digest(user) -> dict:
    """What the wearer's system is, as the bus says it: what is in front, who holds what, what the display
    shows and how bright, the notifications and the music, the apps running."""
    s = user.latest
    shell, display = s["shell.state"], s.get("display.state") or {}
    music, notes = s.get("music.state") or {}, s.get("notifications.state") or {}
    return {"foreground": shell["foreground"],
            "focus": {r: [c["owner"] for c in info["stack"]] for r, info in shell["focus"].items()},
            "display": {k: display.get(k) for k in ("on", "layers", "user_level", "notice")},
            "notifications": {k: notes.get(k) for k in ("count", "unread", "latest")},
            "music": {k: music.get(k) for k in ("title", "index", "playing")},
            "apps": sorted((s.get("appd.state") or {}).get("running", {})),
            "batteries in": (s.get("power.state") or {}).get("present"),
            "led lit": (s.get("led.state") or {}).get("lit"),
            "speaker": sorted(st["owner"] for st in (s.get("audio.state") or {}).get("streams", [])
                              if st["status"] == "playing"),
            "capture": sorted((s.get("privacy.capture") or {}).get("grants", [])),
            "listening": (s.get("privacy.capture") or {}).get("listening"),
            "assistant": (s.get("assistant.state") or {}).get("phase")}


def back_as_before(user, before: dict, what: str, start: float) -> float:
    """Seconds from ``start`` until the system is as it was again (a figure for the report, never asserted)."""
    try:
        user.wait(lambda: digest(user) == before, f"the system as it was before {what}", timeout=2 * DEADLINE_S)
    except AssertionError:
        assert digest(user) == before, f"after {what}"
    return time.monotonic() - start


@pytest.mark.fault
@pytest.mark.slow
def test_every_process_killed_in_turn_comes_back_with_its_state(procs, runtime, tmp_path):
    changes = {**FAST, "system.toml": {**FAST["system.toml"], "apps": {"boot": ["notifications"]}},
               "focus.toml": {**FAST["focus.toml"], "roles": {"+chimer": "notification"}},
               "assistant.toml": {"wake": {"listen": "on"}}}
    music_dir = tmp_path / "music"
    music_dir.mkdir()
    with wave.open(str(music_dir / "Long_walk.wav"), "wb") as wav:  # longer than the test: no track ends in it
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(16_000)
        wav.writeframes(bytes(2 * 16_000 * 300))
    procs.use_env(LENS_MUSIC_DIR=str(music_dir))
    system = System(procs, runtime, tmp_path, changes)
    keys.generate(keys.keys_dir(runtime), ["waked"])  # its own identity, as `lens up` makes one per row
    started = {m: procs.start_ready("-m", m) for m in ("daemons.input", "daemons.display", "daemons.audio",
                                                        "apphost.appd", "daemons.assistant", "daemons.wake")}
    user = system.watcher
    for prefix in ("music.state", "notifications.state", "display.state", "appd.state", "power.state",
                   "led.state", "privacy.capture", "audio.state", "input.state", "camera.state", "assistant.state",
                   "node.heartbeat"):
        user.node.subscribe(prefix, user._keep)
    heard = []  # (when, music.state): where the song is at any moment
    user.node.subscribe("music.state", lambda msg: heard.append((time.monotonic(), msg.payload)))
    # Another app's card, posted while it has no display: displayd keeps it for when it has.
    memo = system.app("chimer")

    def poll(remaining: float) -> None:  # the in-process memo app beats while the test waits
        user.node.run_once(min(remaining, 0.1))
        memo.node.run_once(0)
    user.wait = lambda condition, what, timeout=DEADLINE_S: wait_for(condition, timeout, what, poll=poll)
    memo.ask("display.card.request", id="memo", title="Buy bread")
    user.ask("display.brightness.request", level=0.5)
    user.ask("power.sim.request", action="charge", battery="left", percent=56.0)

    assert procs.run_lens("app", "start", "music").returncode == 0
    user.wait_state(lambda s: s["foreground"] == "music", "music in front")
    user.wait(lambda: (user.latest.get("music.state") or {}).get("count"), "music's tracks")
    user.ask("input.sim.request", gesture="tap")
    user.wait(lambda: user.latest["music.state"]["playing"], "the music playing")
    user.node.publish("phone.notification", id="n1", source="Messages", title="Ana: running late", body="10 min")
    user.wait(lambda: (user.latest.get("notifications.state") or {}).get("unread") == 1, "the notification")
    user.wait(lambda: any(c["owner"] == "notifications" for m in user.log if m.topic == "shell.state"
                          for c in m.payload["focus"]["display"]["stack"]), "the notification's toast over music")
    before = user.wait(lambda: (d := digest(user))["focus"].get("display") == ["music"]
                       and d["display"]["layers"] == ["hud", "card"] and d, "the toast gone, music's card shown")

    def pid_of(app):
        return user.wait(lambda: (user.latest.get("appd.state") or {}).get("running", {}).get(app), f"{app}'s pid")

    # The restarted process's own word (its own state topic, from a new incarnation) before comparing: the
    # broker's latched copy of the dead one's would match at once.
    own = {"displayd": "display.state", "notifications": "notifications.state", "music": "music.state",
           "appd": "music.state", "shell": "shell.state", "powerd": "power.state", "ledd": "led.state",
           "audiod": "audio.state", "inputd": "input.state", "camerad": "camera.state",
           "assistantd": "assistant.state", "waked": "node.heartbeat"}  # waked says nothing else of its own
    daemons = {"displayd": "daemons.display", "audiod": "daemons.audio", "inputd": "daemons.input",
               "assistantd": "daemons.assistant", "waked": "daemons.wake"}
    supervised = {"powerd": ("powerd", "daemons.power"), "ledd": ("ledd", "daemons.led"),
                  "camerad": ("camerad", "daemons.camera")}  # the System's own
    took = {}
    for name in ("displayd", "notifications", "music", "appd", "powerd", "ledd", "audiod", "inputd", "camerad",
                 "assistantd", "waked", "shell"):
        topic = own[name]
        killed = time.monotonic()

        def its_word(m, topic=topic, name=name) -> bool:
            return m.topic == topic and (topic != "node.heartbeat" or m.source == name)
        old_incarnation = next(m.incarnation for m in reversed(user.log) if its_word(m))
        if name in ("music", "appd"):
            when, said = heard[-1]
            reached = said["position_s"] + (time.monotonic() - when)  # where the song has got to now
            since = len(heard)
        if name in daemons:
            procs.stop(started[daemons[name]], signal.SIGKILL)
            started[daemons[name]] = procs.start_ready("-m", daemons[name])
        elif name in supervised:
            attribute, module = supervised[name]
            procs.stop(getattr(system, attribute), signal.SIGKILL)
            setattr(system, attribute, procs.start_ready("-m", module))
        elif name == "appd":
            old = pid_of("music")
            procs.stop(started["apphost.appd"], signal.SIGKILL)
            started["apphost.appd"] = procs.start_ready("-m", "apphost.appd")
            user.wait(lambda: user.latest["appd.state"]["running"].get("music") not in (None, old), "music again")
        elif name == "shell":
            system.restart_shell()
        else:
            old = pid_of(name)
            os.kill(old, signal.SIGKILL)
            user.wait(lambda: user.latest["appd.state"]["running"].get(name) not in (None, old), f"{name} again")
        user.wait(lambda: any(its_word(m) and m.incarnation != old_incarnation for m in user.log),
                  f"the word of the restarted {name}")
        took[name] = back_as_before(user, before, f"{name} was killed", killed)
        left = user.latest["power.state"]["batteries"][0]["percent"]
        assert left == pytest.approx(56.0, abs=3.0), f"the left battery's charge after {name} was killed"
        if name in ("music", "appd"):
            user.wait(lambda: any(p["playing"] for _, p in heard[since:]),
                      f"the music playing again after {name} was killed")
            again = next(p for _, p in heard[since:] if p["playing"])
            assert again["position_s"] >= reached - 0.5, "the song went on from where it had got to, not its start"
    print("back as before, seconds from the kill (the new process's start included):", {k: round(v, 2) for k, v in took.items()})

    # displayd kept the card of an app not shown at its restart, and did not drop it when the restarted shell
    # had not yet heard every node: shown, not posted again, once that app has the display.
    memo.ask("shell.focus.request", resource="display", kind="transient", cls="notification", reason="memo")
    user.wait(lambda: "toast" in (user.latest.get("display.state") or {}).get("layers", []),
              "the memo card kept through displayd's and the shell's restarts")
