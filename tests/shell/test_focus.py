"""Focus arbitration and the capture LED, decision by decision."""

from shell.focus import Arbiter
from bus.audit import AuditLog
from shell.privacy import Privacy

RESOURCES = ("display", "audio_out", "mic", "camera")


def statuses(notices):
    return [(n.owner, n.status) for n in notices]


def test_transient_preempts_and_hands_focus_back():
    arb = Arbiter(RESOURCES)
    assert arb.request("music", "audio_out", "exclusive", 50, "foreground", "play").status == "granted"
    nav = arb.request("maps", "audio_out", "transient", 70, "navigation", "turn left")
    assert nav.status == "granted" and statuses(nav.notices) == [("music", "suspended")]
    assert statuses(arb.release("maps", "audio_out")) == [("music", "granted")]
    assert arb.holder("audio_out").owner == "music"


def test_ducking_lowers_and_restores():
    arb = Arbiter(RESOURCES)
    arb.request("music", "audio_out", "exclusive", 50, "foreground", "play")
    duck = arb.request("assistantd", "audio_out", "transient_may_duck", 60, "assistant", "answer")
    assert statuses(duck.notices) == [("music", "ducked")]
    assert statuses(arb.release("assistantd", "audio_out")) == [("music", "restored")]


def test_lower_priority_is_queued_behind_transient_and_denied_against_exclusive():
    arb = Arbiter(RESOURCES)
    arb.request("phone", "audio_out", "transient", 90, "call", "ringing")
    queued = arb.request("music", "audio_out", "exclusive", 50, "foreground", "play")
    assert queued.status == "queued" and "phone" in queued.reason
    assert statuses(arb.release("phone", "audio_out")) == [("music", "granted")]
    arb.request("phone", "camera", "exclusive", 90, "call", "video call")
    denied = arb.request("cam", "camera", "exclusive", 50, "foreground", "photo")
    assert denied.status == "denied" and "outranks foreground" in denied.reason


def test_exclusive_takes_for_good_and_the_loser_is_told():
    arb = Arbiter(RESOURCES)
    arb.request("a", "display", "exclusive", 50, "foreground", "home")
    taken = arb.request("b", "display", "exclusive", 50, "foreground", "camera app")
    assert statuses(taken.notices) == [("a", "lost")]
    assert arb.release("b", "display") == []  # a is gone from the stack, nobody to hand back to


def test_capture_waits_for_the_led_and_stops_on_fault():
    privacy = Privacy(hold_s=3.0, confirm_timeout_s=1.0)
    assert privacy.want("cam", "camera", "photo", 0.0) == [] and privacy.led_on
    assert not privacy.granted  # asked for the LED; nothing granted before it confirms
    assert statuses(privacy.led_report(True, None, 0.1)) == [("cam", "granted")]
    assert statuses(privacy.led_report(False, "driver error", 0.2)) == [("cam", "revoked")]
    assert statuses(privacy.want("cam", "camera", "photo", 0.3)) == [("cam", "refused")]
    privacy.led_report(True, None, 0.4)  # working again
    privacy.want("cam", "camera", "photo", 0.5)
    assert ("cam", "camera") in privacy.granted


def test_asking_again_while_capturing_is_granted_again():
    # A new session of the same owner asks before the last one gave the mic back: it must hear its
    # grant, not wait for the one already sent to the session before it.
    privacy = Privacy(hold_s=3.0, confirm_timeout_s=1.0)
    privacy.want("assistantd", "mic", "session 1", 0.0)
    privacy.led_report(True, None, 0.1)
    assert statuses(privacy.want("assistantd", "mic", "session 2", 0.2)) == [("assistantd", "granted")]
    assert privacy.granted[("assistantd", "mic")] == "session 2"


def test_led_that_never_confirms_refuses_and_the_hold_time_is_kept():
    privacy = Privacy(hold_s=3.0, confirm_timeout_s=1.0)
    privacy.want("cam", "camera", "photo", 0.0)
    assert statuses(privacy.tick(1.0)) == [("cam", "refused")] and not privacy.led_on
    privacy.want("cam", "camera", "photo", 2.0)
    privacy.led_report(True, None, 2.1)
    privacy.stop("cam", "camera", 5.0)
    privacy.tick(7.9)
    assert privacy.led_on  # held after the last capture
    privacy.tick(8.0)
    assert not privacy.led_on


def test_a_read_back_from_before_the_led_was_switched_on_confirms_nothing():
    privacy = Privacy(hold_s=1.0, confirm_timeout_s=1.0)
    privacy.want("cam", "camera", "photo", 0.0)
    privacy.led_report(True, None, 0.1)
    privacy.stop("cam", "camera", 0.2)
    privacy.tick(1.2)  # hold over: the LED is told off, its "off" read-back not in yet
    assert not privacy.led_on and privacy.led_lit
    assert privacy.want("mic", "mic", "note", 1.3) == []  # waits for a fresh confirmation
    assert not privacy.confirmed and privacy.pending
    assert statuses(privacy.led_report(True, None, 1.4)) == [("mic", "granted")]


def test_led_reading_back_off_during_capture_is_a_fault():
    privacy = Privacy(hold_s=3.0, confirm_timeout_s=1.0)
    privacy.want("cam", "camera", "photo", 0.0)
    privacy.led_report(True, None, 0.1)
    assert statuses(privacy.led_report(False, None, 0.2)) == [("cam", "revoked")]
    assert "reads back off" in privacy.fault


def test_audit_log_is_append_only_and_survives_a_torn_line(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append({"event": "start", "session": "s1", "owner": "cam", "resource": "camera", "reason": "photo",
                "wall": 1.0})
    with open(log.path, "a") as f:
        f.write('{"event": "end", "sess')  # power lost mid-write
    log.append({"event": "end", "session": "s1", "wall": 2.0, "why": "released"})
    log.append({"event": "counted", "session": "s1", "frames": 30})  # camerad's tally, after the end
    [session] = log.sessions()
    assert session["owner"] == "cam" and session["frames"] == 30 and session["end"] == 2.0
    assert (log.path.stat().st_mode & 0o777) == 0o600
