"""ShellCore's rules that are easiest to state one at a time (the explorer checks the invariants)."""

from policies.schema import load
from shell.core import ShellCore

POLICY = load(model="s1")


def asleep() -> ShellCore:
    core = ShellCore(POLICY, 0.0)
    for daemon in POLICY.system["boot"]["required"]:
        core.daemon_ready(daemon, 0.0)
    idle = POLICY.system["idle"]
    core.tick(idle["dim_after_s"] + 0.1)
    core.tick(idle["dim_after_s"] + idle["sleep_after_s"] + 0.2)
    assert core.state == "sleep"
    return core


def test_a_notification_wakes_sleeping_glasses_and_a_background_claim_does_not():
    core = asleep()
    now = core.clock
    assert core.focus_request("player", "audio_out", "exclusive", "background", "music", now).status == "granted"
    assert core.state == "sleep"  # music resuming in the background is not a reason to light the display
    decision = core.focus_request("notifications", "display", "transient", "background", "message from Ana", now)
    assert decision.status == "granted" and core.state == "active"
    assert core.snapshot()["brightness"] == 1.0


def test_a_tap_wakes_and_restarts_the_idle_clock():
    core = asleep()
    core.input(core.clock + 1.0)
    assert core.state == "active" and core.next_deadline() == core.clock + POLICY.system["idle"]["dim_after_s"]
