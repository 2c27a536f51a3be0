"""The app SDK against a real shell: what an app asks for, it gets, however long it runs."""

from __future__ import annotations

import pytest

from apps.sdk.app import App
from shellclient.notices import Notices
from tests.system import System, running

TAKER = """[app]
id = "taker"
name = "Taker"
permissions = ["camera", "mic"]
background = true
models = ["s1", "g1"]
display = false
"""
TIMES = 300


def installed(procs, tmp_path, app: str, manifest: str):
    """An apps directory holding ``app`` (its manifest alone: the test drives it in-process), for the
    processes the test starts."""
    apps = tmp_path / "apps"
    (apps / app).mkdir(parents=True)
    (apps / app / "manifest.toml").write_text(manifest)
    procs.use_env(LENS_APPS_DIR=str(apps))
    return apps


def test_notices_after_a_mark_are_found_however_many_were_forgotten():
    # Sessions wait for "a grant since I asked": with the oldest forgotten, a list index as the mark
    # pointed past the end once the list was full, and the grant was never seen.
    notices = Notices(keep=5)
    for i in range(5):
        notices.add({"topic": "t", "n": i})
    mark = notices.mark()
    assert notices.since(mark) == []
    notices.add({"topic": "t", "n": 5})
    assert notices.since(mark) == [{"topic": "t", "n": 5}]
    for i in range(6, 20):
        notices.add({"topic": "t", "n": i})
    assert [n["n"] for n in notices.since(mark)] == [15, 16, 17, 18, 19]  # newer, and still kept
    assert [n["n"] for n in notices.since(notices.mark() - 2)] == [18, 19]
    assert notices.seen(mark, "t", n=17) == {"topic": "t", "n": 17} and notices.seen(mark, "t", n=3) is None


@pytest.mark.slow
def test_an_app_takes_the_camera_and_the_mic_again_and_again(procs, runtime, tmp_path):
    # The SDK kept its notices in a list trimmed to the last 100 and marked "since I asked" by the list's
    # length: after about 100 notices every later focus() found nothing and raised Refused after 3 s.
    apps = installed(procs, tmp_path, "taker", TAKER)
    system = System(procs, runtime, tmp_path)
    system.watcher.wait_state(running, "boot")
    taker = App("taker", runtime, apps)
    taker.node.start()
    try:
        for turn in range(TIMES):
            resource = ("camera", "mic")[turn % 2]
            assert taker.focus(resource, "transient", f"turn {turn}")["status"] == "granted", turn
            taker.release(resource)
        assert taker.notices.mark() > TIMES > len(taker.notices), "the notices were trimmed meanwhile"
    finally:
        taker.node.close()
    opened = [r for r in system.audit if r["event"] == "start" and r["owner"] == "taker"]
    assert len(opened) == TIMES, "each turn was a capture session of its own"


TOASTER = TAKER.replace('"taker"', '"toaster"').replace("display = false", "display = true")


@pytest.mark.slow
def test_a_toast_that_cannot_be_shown_gives_the_display_back(procs, runtime, tmp_path):
    # The toast's claim was released only by a timer armed after its card was accepted: a card request that
    # failed (displayd restarting at that moment) left the claim over the foreground app for good.
    from apps.sdk.app import Refused
    from bus.errors import BusError
    apps = installed(procs, tmp_path, "toaster", TOASTER)
    System(procs, runtime, tmp_path)  # no displayd: no card is shown
    toaster = App("toaster", runtime, apps)
    stacks = []
    toaster.node.subscribe("shell.state", lambda msg: stacks.append(msg.payload["focus"]["display"]["stack"]))
    toaster.node.start()
    try:
        toaster.wait(lambda: toaster.has_display, 10.0, "the shell's state")
        toaster.come_forward()
        with pytest.raises((Refused, BusError)):
            toaster.toast("Hello", seconds=60.0)
        # The toaster's own loop runs meanwhile (it beats: alive, so only its release can end the claim).
        toaster.wait(lambda: any(stacks) and not stacks[-1], 10.0, "the toast's claim, then the display given back")
    finally:
        toaster.node.close()


@pytest.mark.slow
def test_an_app_in_front_whose_display_claim_went_unanswered_claims_it_again_once_the_shell_answers(
        procs, runtime, tmp_path):
    # Under load, music came forward while the shell was being restarted: "no display: no reply to
    # shell.focus.request from shell within 3 s", and its card stayed off the panel for good.
    import signal

    from bus.errors import BusError
    apps = installed(procs, tmp_path, "toaster", TOASTER)
    system = System(procs, runtime, tmp_path)
    system.watcher.wait_state(running, "boot")
    app = App("toaster", runtime, apps)
    app.node.start()
    try:
        app.wait(lambda: app.has_display, 10.0, "the shell's state")
        app.come_forward()
        system.shell.send_signal(signal.SIGSTOP)  # hung: the claim waits in its socket, then dies with it
        with pytest.raises(BusError):
            app.take_display("now playing")
        system.restart_shell()  # killed and started again, from its checkpoint: the app still in front
        app.wait(lambda: app.shell["focus"]["display"]["owner"] == "toaster" and app.foreground, 20.0,
                 "the claim made again once the new shell answers")
    finally:
        app.node.close()


def test_the_touch_that_wakes_sleeping_glasses_is_not_the_apps_but_the_capture_button_is(runtime):
    """Tapping the dark temple to wake the glasses took a photo when the camera app was in front."""
    from bus.envelope import Message

    class Camera(App):
        global_gestures = ("button",)

        def __init__(self):
            super().__init__("camera", runtime)
            self.got = []

        def on_gesture(self, gesture: str) -> None:
            self.got.append(gesture)

    def msg(topic, sender, **payload):
        return Message(topic, sender, 1, 1, 1, 1, payload, b"")

    app = Camera()
    try:
        app._on_shell(msg("shell.state", "shell", state="sleep", asleep=True, foreground="camera"))
        app._on_gesture(msg("input.gesture", "inputd", gesture="tap", source="touchpad", mono_ns=1))
        app._on_gesture(msg("input.gesture", "inputd", gesture="button", source="button", mono_ns=2))
        app._on_shell(msg("shell.state", "shell", state="active", asleep=False, foreground="camera"))
        app._on_gesture(msg("input.gesture", "inputd", gesture="tap", source="touchpad", mono_ns=3))
        assert app.got == ["button", "tap"], "the waking tap went to the app"
    finally:
        app.node.close()


@pytest.mark.slow
def test_an_app_hears_when_the_wearer_really_saw_its_card(procs, runtime, tmp_path):
    """Issue 32: the display's receipt reaches the app's on_shown, with the frame that showed its card."""
    apps = installed(procs, tmp_path, "toaster", TOASTER)
    System(procs, runtime, tmp_path)
    procs.start_ready("-m", "daemons.display")

    class Shown(App):
        def __init__(self):
            super().__init__("toaster", runtime, apps)
            self.receipts = []

        def on_shown(self, receipt: dict) -> None:
            self.receipts.append(receipt)

    toaster = Shown()
    toaster.node.start()
    try:
        toaster.wait(lambda: toaster.has_display, 10.0, "the shell's state")
        toaster.come_forward()
        toaster.take_display("hello")
        toaster.card("hello", "Hello", "seen?")
        toaster.wait(lambda: [r for r in toaster.receipts if r["shown"] and r["id"] == "hello"], 10.0,
                     "the receipt of the card")
        receipt = next(r for r in toaster.receipts if r["shown"])
        assert receipt["frame"] >= 1 and receipt["mono_ns"] > 0 and receipt["app"] == "toaster"
    finally:
        toaster.node.close()


@pytest.mark.slow
def test_an_apps_photo_waits_its_turn_while_the_assistant_holds_the_camera(procs, runtime, tmp_path):
    """Issue 30: the capture handshake was written twice and the copies differed. assistantd waited while its
    claim was queued; the SDK returned "queued" as if the camera were its, and the app's photo was then refused
    by camerad. Both now follow shellclient.handshake: a queued capture waits its turn, then the LED."""
    import threading

    from bus.node import Node

    apps = installed(procs, tmp_path, "taker", TAKER)
    system = System(procs, runtime, tmp_path)
    system.watcher.wait_state(running, "boot")
    holding, done = threading.Event(), threading.Event()

    def assistant() -> None:  # a transient holder above the app, on a thread of its own with its own node
        with Node("assistantd", runtime) as node:
            node.start()
            node.request("shell.focus.request", resource="camera", kind="transient", cls="assistant",
                         reason="what is this", timeout=10)
            holding.set()
            while not done.wait(0.05):
                node.run_once(0.05)
            node.request("shell.release.request", resource="camera", timeout=10)

    holder = threading.Thread(target=assistant)
    holder.start()
    taker = App("taker", runtime, apps)
    taker.node.start()
    try:
        assert holding.wait(20)
        taker.node.after(0.5, done.set)  # the assistant is done with it while the app waits
        answer = taker.focus("camera", "transient", "photo")
        assert answer["status"] == "granted"
        assert taker.notices.capture(0, "camera")["status"] == "granted"
        taker.wait(lambda: taker.shell["focus"]["camera"]["owner"] == "taker", 20, "the shell's state saying so")
    finally:
        done.set()
        holder.join(20)
        taker.node.close()


@pytest.mark.slow
def test_an_app_in_front_takes_the_display_again_once_an_alert_that_took_it_for_good_is_gone(
        procs, runtime, tmp_path):
    """A board boot ended its checks with the camera app in front and no display held: the wearer would have
    looked at an empty panel. An exclusive claim above an app takes the display from it for good (it leaves the
    stack); once nobody holds it, the app in front takes it again."""
    apps = installed(procs, tmp_path, "toaster", TOASTER)
    system = System(procs, runtime, tmp_path)
    system.watcher.wait_state(running, "boot")
    alert = system.app("powerd", heartbeat=None)  # a system_alert role (focus.toml), as powerd's own
    app = App("toaster", runtime, apps)
    app.node.start()
    try:
        app.wait(lambda: app.has_display, 10.0, "the shell's state")
        app.come_forward()
        app.take_display("now playing")
        app.wait(lambda: app.shell["focus"]["display"]["owner"] == "toaster", 10.0, "the display held")
        assert alert.ask("shell.focus.request", resource="display", kind="exclusive", cls="system_alert",
                         reason="battery critical")["status"] == "granted"
        app.wait(lambda: app.shell["focus"]["display"]["stack"] and all(
            c["owner"] != "toaster" for c in app.shell["focus"]["display"]["stack"]), 10.0, "lost for good")
        alert.ask("shell.release.request", resource="display")
        app.wait(lambda: app.shell["focus"]["display"]["owner"] == "toaster" and app.foreground, 20.0,
                 "the app in front holding the display again")
    finally:
        app.node.close()
