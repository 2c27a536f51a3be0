"""The home app on S1 (the resting card, the launcher on swipe, tap opens) and the app template of the
README (copied into an apps directory, started, tapped, stopped)."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import REPO
from tests.system import FAST, System


def cards(user, app: str, since: int = 0) -> list[dict]:
    return [m.payload for m in user.log[since:] if m.topic == "display.card.request" and m.source == app]


@pytest.mark.slow
def test_home_rests_with_the_batteries_and_news_and_opens_an_app_from_its_launcher(procs, runtime, tmp_path):
    apps = tmp_path / "apps"
    for app in ("home", "notifications"):
        shutil.copytree(REPO / "apps" / app, apps / app, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "docs" / "app-template", apps / "hello")
    procs.use_env(LENS_APPS_DIR=str(apps))
    changes = {**FAST, "system.toml": {**FAST["system.toml"], "apps": {"boot": ["home", "notifications"]}},
               "privacy.toml": {"led": {"hold_s": 60.0}}}  # lit after the capture for as long as the test looks
    system = System(procs, runtime, tmp_path, changes)
    for module in ("daemons.input", "daemons.display", "daemons.audio", "apphost.appd"):
        procs.start_ready("-m", module)
    user = system.watcher
    for prefix in ("display.card.request", "shell.apps"):
        user.node.subscribe(prefix, user._keep)
    user.wait_state(lambda s: s["foreground"] == "home" and s["focus"]["display"]["owner"] == "home", "home in front")
    resting = user.wait(lambda: [c for c in cards(user, "home") if "Left 100%" in (c["body"] or "")],
                        "the resting card with both batteries")[-1]
    assert "Right 100%" in resting["body"] and ":" in resting["title"]  # the time, HH:MM

    assert procs.run_lens("notify", "Lunch?", "--from", "Chat").returncode == 0
    user.wait(lambda: any("1 new: Chat: Lunch?" in (c["body"] or "") for c in cards(user, "home")),
              "the unread notification on the resting card")
    cam = system.app("cam")  # someone else captures (in front a moment): the resting card says so
    cam.take_camera()
    cam.ask("shell.release.request", resource="camera")
    cam.close()  # gone: home comes back to the front by itself
    user.wait(lambda: any("camera or mic in use" in (c["body"] or "") for c in cards(user, "home")),
              "the capture indicator on the resting card")
    user.wait_state(lambda s: s["foreground"] == "home", "home in front again")

    # The launcher: swipe opens it at the first app, tap opens the chosen one.
    mark = len(user.log)
    user.ask("input.sim.request", gesture="swipe_forward")
    listing = user.wait(lambda: [c for c in cards(user, "home", mark) if c["title"] == "Apps"], "the launcher")[-1]
    assert listing["items"] == ["Hello", "Notifications"] and listing["selected"] == 0
    user.ask("input.sim.request", gesture="tap")
    user.wait_state(lambda s: s["foreground"] == "hello", "the chosen app opened in front")
    user.wait(lambda: [c for c in cards(user, "hello") if c["body"] == "Tap me."], "the template's card")
    user.ask("input.sim.request", gesture="tap")
    user.wait(lambda: [c for c in cards(user, "hello") if c["body"] == "Tapped 1 time."], "the template counting")
    assert procs.run_lens("app", "stop", "hello").returncode == 0
    user.wait_state(lambda s: s["foreground"] == "home", "home back in front")


def test_home_clock_wakes_when_the_minute_shown_turns_and_not_between():
    """The resting card shows HH:MM: its clock wakes just after the minute turns, once a minute (it woke every
    20 s, and each wake sent a card that woke displayd and the broker: issue 33)."""
    from apps.home.__main__ import until_next_minute

    for wall in (1_700_000_000.0, 1_700_000_000.5, 1_700_000_059.99, 1_700_000_030.25):
        wake = wall + until_next_minute(wall)
        assert time_of(wake) != time_of(wall)  # the card shown then is the next minute's
        assert time_of(wake - 0.06) == time_of(wall)  # a moment sooner, it had not turned yet
    # Once a minute: from one wake-up the next is the following minute's turn.
    wake = 1_700_000_000.0 + until_next_minute(1_700_000_000.0)
    assert time_of(wake + until_next_minute(wake)) == time_of(wake + 60)


def time_of(wall: float) -> str:
    import time

    return time.strftime("%H:%M", time.gmtime(wall))
