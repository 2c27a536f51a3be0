"""The display-less G1 end to end: `lens up --profile g1` boots the same apps, every card is heard, the lens
app started by voice names what the camera sees aloud, a notification is said, music plays by voice, the
launcher is spoken, and asking for the display says why not."""

from __future__ import annotations

import signal
import subprocess

import pytest

from apps.lens.catalog import CATALOG_DIR
from bus.node import Node
from tests.conftest import DEADLINE_S, drain_lines, lines_so_far, wait_for, wait_line


@pytest.mark.slow
def test_the_g1_profile_end_to_end(procs, runtime, tmp_path):
    scene = CATALOG_DIR / "blue-sky-coffee-beans.png"  # `lens camera show` holds it up to the camera
    up = procs.lens("up", "--profile", "g1", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_line(up.stdout, "processes ready in")
    seen: list = []
    latest: dict = {}
    ear = Node("ear", runtime)
    for prefix in ("audio.speak", "audio.state", "shell.apps", "shell.state", "music.state"):
        ear.subscribe(prefix, lambda msg: (seen.append(msg), latest.__setitem__(msg.topic, msg.payload)))
    try:
        ear.start()

        def wait(condition, what):
            try:
                return wait_for(condition, DEADLINE_S, what, poll=ear.run_once)
            except AssertionError as exc:  # what was heard instead says why
                heard = [f"{m.source}: {m.payload['text']}" for m in seen if m.topic == "audio.speak"][-6:]
                logs = "\n".join(lines_so_far(up.stdout))  # the daemons' and the shell's logs: why
                raise AssertionError(f"{exc}; the last said: {heard}; lens up's log:\n{logs}") from None

        def said(text: str, source: str | None = None, since: int = 0):
            return next((m.payload for m in seen[since:] if m.topic == "audio.speak" and text in m.payload["text"]
                         and (source is None or m.source == source)), None)

        apps = wait(lambda: (latest.get("shell.apps") or {}).get("apps", {}).get("home", {}).get("state")
                    == "running" and latest["shell.apps"]["apps"], "home running")
        assert latest["shell.state"]["model"] == "G1" and latest["shell.apps"]["foreground"] == "home"
        assert {a for a, row in apps.items() if row["state"] == "hidden"} == set()  # none needs a display
        snapshot = procs.run_lens("display", "snapshot", "-o", str(tmp_path / "x.png"))
        assert snapshot.returncode != 0 and "this model has no display (cards are spoken)" in snapshot.stderr

        # The launcher, spoken: home is in front, a swipe says the first app.
        mark = len(seen)
        assert procs.run_lens("input", "swipe-fwd").returncode == 0
        wait(lambda: said("Tap to open", since=mark), "the launcher's first app said")

        # "What is this?": the assistant starts the lens app, which looks and says the item and price.
        assert procs.run_lens("camera", "show", str(scene)).returncode == 0
        mark = len(seen)
        asked = procs.run_lens("say", "what is this")
        assert asked.returncode == 0, asked.stderr
        answer = wait(lambda: said("Blue Sky coffee beans, 250 g", since=mark), "the lens app's answer, heard")
        assert answer["text"] == "Blue Sky coffee beans, 250 g. 85.40 yuan." and answer["app"] == "lens"
        assert asked.stdout.strip() == answer["text"], "`lens say` prints what the wearer heard"
        assert not said("Looking", since=mark)  # on G1 only what is worth hearing

        mark = len(seen)
        assert procs.run_lens("notify", "Dinner at 8?", "--from", "Messages").returncode == 0
        wait(lambda: said("Messages: Dinner at 8?", since=mark), "the notification, heard")

        assert procs.run_lens("say", "play music").returncode == 0
        wait(lambda: (latest.get("music.state") or {}).get("playing")
             and any(s["owner"] == "music" for s in latest["audio.state"]["streams"]), "music playing by voice")
    finally:
        ear.close()
        up.send_signal(signal.SIGINT)
        rest = drain_lines(up.stdout)
        up.wait(DEADLINE_S)
    assert up.returncode == 0, rest
