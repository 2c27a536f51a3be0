"""ShellCore's rules that are easiest to state one at a time (the explorer checks the invariants)."""

import pytest

from policies.loader import load
from shell.core import HOLDER_BEAT_S, ShellCore

POLICY = load(model="s1")


def asleep() -> ShellCore:
    core = ShellCore(POLICY, 0.0)
    for daemon in POLICY.system.boot.required:
        core.daemon_ready(daemon, 0.0)
    idle = POLICY.system.idle
    core.tick(idle.dim_after_s + 0.1)
    core.tick(idle.dim_after_s + idle.sleep_after_s + 0.2)
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
    assert core.state == "active" and core.next_deadline() == core.clock + POLICY.system.idle.dim_after_s


def test_a_silent_owner_loses_its_focus_after_the_timeout_or_three_of_its_own_beats():
    core = asleep()
    limit = POLICY.focus.liveness.heartbeat_timeout_s
    now = core.clock
    core.heartbeat("fast", now, 0.3)  # the developer's key: fast beats, the policy's timeout
    core.heartbeat("slow", now, 2.0)  # a key of its own: its death is seen on the bus, a hang after 3 beats
    for owner, resource in (("fast", "audio_out"), ("slow", "display")):
        assert core.focus_request(owner, resource, "exclusive", "background", "test", now).status == "granted"
    assert core.next_deadline() <= now + limit
    core.tick(now + limit + 0.1)
    assert not core.arbiter.holds("fast", "audio_out") and core.arbiter.holds("slow", "display")
    core.heartbeat("slow", now + 2.0, 2.0)
    core.tick(now + 2.0 + 5.9)
    assert core.arbiter.holds("slow", "display")
    core.tick(now + 2.0 + 6.1)
    assert not core.arbiter.holds("slow", "display")
    assert [n.reason for n in core.notices if n.owner == "slow" and n.status == "lost"] == ["silent for 6.1 s"]


def test_a_capturing_owner_is_told_to_beat_fast_and_never_gets_more_than_the_policys_silence():
    core = asleep()
    limit = POLICY.focus.liveness.heartbeat_timeout_s
    now = core.clock
    core.heartbeat("eye", now, 30.0)  # a key of its own and a slow pace of its own
    assert core.beat_for("eye") is None and core.silence_limit("eye") == 90.0
    core.input(now)  # awake: asleep glasses capture nothing
    assert core.focus_request("eye", "mic", "exclusive", "background", "listen", now).status == "granted"
    assert core.beat_for("eye") == limit / 3
    # Even if it does not keep the pace it was told, a hung capturer is not left the mic for three of its own.
    assert core.silence_limit("eye") == limit
    core.tick(now + limit + 0.1)
    assert not core.arbiter.holds("eye", "mic")
    assert core.beat_for("eye") is None  # nothing held: its own pace again


def booted() -> ShellCore:
    core = ShellCore(POLICY, 0.0)
    for daemon in POLICY.system.boot.required:
        core.daemon_ready(daemon, 0.0)
    assert core.state == "active"
    return core


def recording(core: ShellCore, owner: str = "cam") -> float:
    now = core.clock
    core.set_foreground(owner, now)
    assert core.focus_request(owner, "camera", "exclusive", "foreground", "video", now).status == "granted"
    core.led_report(True, None, now)
    assert (owner, "camera") in core.privacy.granted
    return now


@pytest.mark.fault
def test_after_an_led_fault_and_its_mend_the_led_goes_out_after_the_hold():
    core = booted()
    now = recording(core)
    core.led_report(False, "driver error", now + 1.0)
    assert not core.privacy.granted
    core.led_report(False, "driver error", now + 1.5)  # the broken LED keeps reporting: the hold is not re-armed
    core.led_report(True, None, now + 2.0)  # mended (`lens led mend`): it lights what it was last asked
    hold = POLICY.privacy.led.hold_s
    core.tick(now + 1.0 + hold + 0.1)
    assert core.privacy.snapshot()["led"] == "off", "the LED stays lit with nothing capturing"


def test_a_capture_the_camera_daemon_ends_takes_the_camera_back_and_tells_the_owner():
    core = booted()
    now = recording(core)
    core.notices.clear()
    core.capture_ended("cam", "camera", "the disk is full", now + 1.0)
    assert not core.arbiter.holds("cam", "camera") and not core.privacy.granted
    told = {(n.status, n.reason) for n in core.notices if n.owner == "cam"}
    assert ("lost", "the disk is full") in told and ("revoked", "the disk is full") in told
    assert core.ended == ("camera", "the disk is full"), "the wearer is told as well (the shell's HUD notice)"
    core.tick(now + 1.0 + POLICY.privacy.led.hold_s + 0.1)
    assert core.privacy.snapshot()["led"] == "off"


def test_camerad_gone_ends_every_camera_capture():
    core = booted()
    now = recording(core)
    core.owner_gone("camerad", now + 1.0, "its connection to the bus closed")
    assert not core.arbiter.holds("cam", "camera") and not core.privacy.granted
    assert any(n.owner == "cam" and n.status == "lost" and "camerad stopped" in n.reason for n in core.notices)
    assert core.ended[0] == "camera" and "camerad stopped" in core.ended[1]


def test_an_app_beats_at_the_holders_pace_only_while_it_holds_or_waits_for_focus():
    """Issue 33: three apps beating every 5 s while holding nothing woke the app, the broker and the shell
    for no one; an app holding focus keeps the pace that gives a hung one's display back in 15 s."""
    from shell.core import HOLDER_BEAT_S

    core = booted()
    now = core.clock
    core.heartbeat("notes", now, 30.0)
    assert core.beat_for("notes", app=True) is None  # holding nothing: its own slow pace
    assert core.focus_request("notes", "display", "exclusive", "background", "card", now).status == "granted"
    assert core.beat_for("notes", app=True) == HOLDER_BEAT_S
    assert core.silence_limit("notes") == 90.0  # by the pace it last said; its next beat says the faster one
    core.heartbeat("notes", now + 1, HOLDER_BEAT_S)
    assert core.silence_limit("notes") == 3 * HOLDER_BEAT_S
    assert core.beat_for("displayd") is None  # a daemon's hang is its watchdog's: its own pace
    core.focus_release("notes", "display", now + 2)
    assert core.beat_for("notes", app=True) is None


def test_state_facts_are_declared_with_the_states_and_published():
    """Nobody outside the machine matches state names: camerad pauses and displayd turns dark on the facts
    shell.state carries, which come from the states' tags (shell/machine.py)."""
    from shell import machine

    assert machine.tagged("capture_paused") == ("sleep", "battery_swap", "critical", "shutdown")
    assert [s["name"] for s in machine.STATES if not machine.has(s["name"], "display_on")] == ["sleep", "shutdown"]
    with pytest.raises(KeyError):
        machine.tagged("capture_pause")
    sleeping = asleep().snapshot()
    assert sleeping["capture_paused"] is True and sleeping["display_on"] is False
    awake = ShellCore(POLICY, 0.0).snapshot()
    assert awake["capture_paused"] is False and awake["display_on"] is True


def test_every_state_property_is_a_field_of_shell_state_and_each_states_brightness_is_its_rows():
    """A tag added to the machine is published (and its field declared in the topic table), so a consumer
    never has to fall back on a state's name; the brightness of each state comes from its row alone."""
    from bus.topics import TOPICS
    from shell import machine

    fields = set(TOPICS["shell.state"].fields)
    assert set(machine.TAGS) <= fields, f"undeclared: {set(machine.TAGS) - fields}"
    assert {tag for state in machine.STATES for tag in state["tags"]} == set(machine.TAGS)
    core = asleep()
    snapshot = core.snapshot()
    assert {tag: snapshot[tag] for tag in machine.TAGS} == {tag: machine.has("sleep", tag) for tag in machine.TAGS}
    system = POLICY.system
    assert [machine.brightness(s["name"], system) for s in machine.STATES] == [
        1.0, 1.0, system.idle.idle_brightness, 0.0, system.power.low_power_brightness, system.swap.brightness,
        system.power.low_power_brightness, 0.0]


def test_a_resumed_shell_counts_the_wearers_last_touch_and_the_leds_confirmation_from_its_own_start():
    """The checkpoint is written when the state changes: a touch while active changes none, so a shell resumed
    from it took glasses in use for idle and then asleep in one tick; and a capture waiting for the LED when the
    shell died would have been refused for a confirmation its restart outlived (the review of the resume)."""
    core = booted()
    core.set_foreground("cam", 0.0)
    assert core.focus_request("cam", "camera", "exclusive", "foreground", "video", 0.0).status == "granted"
    assert ("cam", "camera") in core.privacy.pending  # the LED not yet confirmed
    saved = core.export()
    idle = POLICY.system.idle
    later = idle.dim_after_s + idle.sleep_after_s + 60.0  # the shell's restart, long after that checkpoint
    again = ShellCore(POLICY, later)
    again.restore(saved)
    again.resumed(later)
    again.tick(later)
    assert again.state == "active" and ("cam", "camera") in again.privacy.pending
    again.led_report(True, None, later + 0.5)
    assert ("cam", "camera") in again.privacy.granted


def test_a_node_on_a_shared_key_is_told_to_beat_fast_while_it_holds_anything_and_an_app_at_the_holders_pace():
    # The bus cannot tell when a node on the developer's key dies (no bus.departed): only its silence can.
    core = asleep()
    limit = POLICY.focus.liveness.heartbeat_timeout_s
    now = core.clock
    assert core.beat_for("tool", shared=True) is None  # holding nothing: its own pace
    assert core.focus_request("tool", "audio_out", "exclusive", "background", "route", now).status == "granted"
    assert core.focus_request("nav", "display", "exclusive", "background", "map", now).status == "granted"
    assert core.beat_for("tool", shared=True) == limit / 3
    assert core.beat_for("nav", app=True) == HOLDER_BEAT_S and core.beat_for("nav") is None
    core.focus_release("tool", "audio_out", now)
    assert core.beat_for("tool", shared=True) is None


def test_the_charge_moving_leaves_the_published_state_alone_and_a_pull_changes_it():
    """shell.state wakes every process: it changes with what the shell decides (which batteries are in, the
    state a threshold brings), not with each percent the charge moves; powerd's power.state carries that."""
    core = ShellCore(POLICY, 0.0)
    for daemon in POLICY.system.boot.required:
        core.daemon_ready(daemon, 0.0)
    core.power_report([True, True], 80.4, 600.0, 1.0)
    before = core.snapshot()
    core.power_report([True, True], 79.2, 540.0, 2.0)
    assert core.snapshot() == before
    core.power_report([False, True], 79.2, 530.0, 3.0)
    assert core.snapshot()["power"] == {"present": [False, True]} and core.state == "battery_swap"
