"""`lens status`'s text, from the latched state it gathers."""

from __future__ import annotations

import time

from cli.status import render

SHELL = {"state": "active", "degraded": [], "model": "S1", "boot_s": 0.5, "foreground": "home", "brightness": 1.0,
         "recording_allowed": True, "remote_calls": True, "focus": {},
         "privacy": {"led": "off", "led_confirmed": False, "capture": [], "waiting_for_led": []},
         "ready": [], "nodes": {}}
DISPLAY = {"on": True, "brightness": 1.0, "user_level": 1.0, "width": 640, "height": 480, "backend": "sim",
           "font": None, "layers": ["hud"], "alert": None, "notice": None}


def power(*present: bool) -> dict:
    return {"percent": 80.0, "load_w": 0.4, "present": list(present),
            "batteries": [{"side": side, "present": p, "percent": 80.0 if p else 0.0}
                          for side, p in zip(("left", "right"), present)],
            "bridge": {"percent": 100.0, "charging": False, "time_s": 180.0}}


def test_the_brightness_is_the_panels_with_the_wearers_own_level():
    # "Set brightness to 50 percent" changed the panel, but lens status said the state's 100 %.
    text = render({"shell.state": SHELL, "display.state": dict(DISPLAY, brightness=0.5, user_level=0.5)})
    assert "brightness 50% (the wearer's 50%)" in text
    assert "brightness 100%   " in render({"shell.state": SHELL, "display.state": DISPLAY})
    assert "brightness 100%   " in render({"shell.state": SHELL})  # no displayd: the state's level


def test_the_bridge_time_is_shown_only_while_a_battery_is_out():
    assert "s left" not in render({"shell.state": SHELL, "power.state": power(True, True)})
    assert "bridge 100% (180.0 s left)" in render({"shell.state": SHELL, "power.state": power(False, True)})


def test_a_silent_process_is_named_as_such_not_as_ready_alive_or_missing():
    now = time.time()
    shell = dict(SHELL, degraded=["inputd", "ledd"], ready=["ledd", "powerd"],
                 nodes={"ledd": {"pid": 7}, "powerd": {"pid": 8}}, silent={"ledd": {"pid": 7, "since": now - 8.4}})
    text = render({"shell.state": shell})
    assert "(degraded: inputd missing; ledd silent)" in text
    assert "ready      powerd\n" in text and "alive      powerd[8]\n" in text
    assert "silent     ledd[7] no heartbeat for 8 s (hung?)" in text
    assert "silent" not in render({"shell.state": SHELL})  # an older shell's state has no silent at all


def test_listening_for_the_wake_phrase_is_said_as_plainly_as_a_capture():
    assert "listening" not in render({"shell.state": SHELL})
    shell = dict(SHELL, privacy=dict(SHELL["privacy"], listening="waked"))
    assert "listening  waked, for the wake phrase (the mic, with the LED off; nothing kept)" in render(
        {"shell.state": shell})
