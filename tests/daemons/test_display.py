"""displayd: the scene's rules, the framebuffer against a file, and the daemon over the real bus."""

from __future__ import annotations

import io
import signal
import time

import numpy as np
import pytest
from PIL import Image

from bus.errors import RequestFailed
from bus.node import Node
from daemons.display.panels import FbPanel, PanelError, png
from daemons.display.render import Painter, compose
from daemons.display.scene import CardError, Scene
from tests.conftest import DEADLINE_S, tuned_policies, wait_for
from tests.system import System

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def claim(owner, kind="exclusive", cls="foreground"):
    return {"owner": owner, "kind": kind, "class": cls, "reason": "test", "ducked": False}


def scene_with(*stack) -> Scene:
    scene = Scene(cards_per_app=3)
    scene.shell = {"state": "active", "brightness": 1.0, "degraded": [], "foreground": None, "display_on": True,
                   "focus": {"display": {"owner": stack[0]["owner"] if stack else None, "stack": list(stack)}}}
    return scene


def test_the_exclusive_holder_fills_the_view_and_a_transient_one_is_a_toast_over_it():
    scene = scene_with(claim("notes", "transient"), claim("maps"))
    scene.post("maps", {"id": "route", "title": "Turn left"}, 0.0)
    scene.post("notes", {"id": "n1", "title": "Message from Ana"}, 0.0)
    scene.post("music", {"id": "now", "title": "Playing"}, 0.0)
    view = scene.view(1.0, time.time())
    assert view.card.title == "Turn left" and view.toast.title == "Message from Ana"
    assert view.layers == ["hud", "card", "toast"]
    assert not view.shows("music")  # kept, not shown: music has no display focus
    # The toast stays while its claim does, however long (the assistant listening, then answering): the
    # panel shows what the shell's focus says. It used to go after a fixed 4 s, leaving the claim's holder
    # in `lens status` over a panel that showed the card below.
    assert scene.next_deadline(1.0) is None
    scene.expire(100.0)
    assert scene.view(100.0, time.time()).toast.title == "Message from Ana"
    scene.shell["focus"]["display"] = {"owner": "maps", "stack": [claim("maps")]}
    scene.expire(100.0)
    assert scene.view(100.0, time.time()).toast is None
    scene.shell["focus"]["display"] = {"owner": "notes", "stack": [claim("notes", "transient"), claim("maps")]}
    assert scene.view(100.0, time.time()).toast is None, "it went with its claim, not to come back with the next"
    scene.post("notes", {"id": "n2", "title": "Timer", "ttl_s": 2.0}, 100.0)  # a toast that says how long
    assert scene.next_deadline(100.0) == pytest.approx(102.0)
    scene.expire(102.0)
    assert scene.view(102.0, time.time()).toast is None


def test_a_system_alert_claim_and_the_systems_own_alerts_go_on_top():
    scene = scene_with(claim("shell", "transient", "system_alert"), claim("maps"))
    scene.post("shell", {"id": "a", "title": "Call from Ana"}, 0.0)
    scene.post("maps", {"id": "route", "title": "Turn left"}, 0.0)
    view = scene.view(0.0, time.time())
    assert view.alert[0] == "Call from Ana" and view.alert_app == "shell" and view.card.title == "Turn left"
    scene.led = {"lit": False, "fault": "read back dark"}
    assert "read back dark" in scene.view(0.0, time.time()).alert[1]  # the LED's fault outranks any app
    scene.led = {"lit": False, "fault": None}
    scene.shell.update(state="battery_swap", swapping=True)  # the state and its property, as the shell says both
    scene.power = {"batteries": [], "bridge": {"time_s": 125.0}}
    # powerd's number, as `lens status` and the live view show it: no countdown of its own, which ran on
    # while the bridge was not draining (a battery still in) and jumped back at each reading.
    assert scene.view(15.4, time.time()).alert[1].startswith("Insert a charged battery. 2:05 left")
    assert scene.next_deadline(15.4) is None


def test_the_hud_mirrors_capture_batteries_and_missing_daemons():
    scene = scene_with()
    scene.shell["degraded"] = ["inputd"]
    scene.power = {"batteries": [{"side": "left", "present": True, "percent": 81.6, "charging": True},
                                 {"side": "right", "present": False, "percent": 0.0}], "bridge": {}}
    scene.led = {"lit": True, "fault": None}
    scene.capture = {"grants": ["camera-app:camera", "camera-app:mic"], "fault": None}
    clock, batteries, capture, notice, unread, listening = scene.view(0.0, 0.0).hud
    assert batteries == ("L 82%+", "R --") and capture == "camera + mic" and notice == "Running without inputd"
    assert unread is None and not listening
    assert scene.view(0.0, 0.0).hud != scene.view(0.0, 61.0).hud  # the clock moved on
    scene.notifications = {"count": 3, "unread": 2, "latest": "Messages: hi"}
    assert scene.view(0.0, 0.0).hud[4] == "2 new"
    painter = Painter(320, 240, FONT)
    quiet, told = painter.hud(*scene.view(0.0, 0.0).hud[:4]), painter.hud(*scene.view(0.0, 0.0).hud)
    assert not np.array_equal(quiet.pixels, told.pixels), "the count is drawn"


def test_the_hud_marks_listening_for_the_wake_phrase_apart_from_capture():
    scene = scene_with()
    painter = Painter(320, 240, FONT)
    idle = painter.hud(*scene.view(0.0, 0.0).hud)
    scene.capture = {"grants": [], "fault": None, "listening": "waked"}  # the shell's word: the spotter hears
    hud = scene.view(0.0, 0.0).hud
    assert hud[2] is None and hud[5], "listening is its own mark, not a capture"
    listening = painter.hud(*hud)
    rgb = listening.pixels[..., :3].reshape(-1, 3).astype(int)
    assert not np.array_equal(idle.pixels, listening.pixels), "the mark is drawn"
    assert ((rgb[:, 1] > 200) & (rgb[:, 0] < 120)).any(), "in green"
    assert not ((rgb[:, 0] > 200) & (rgb[:, 1] < 100)).any(), "nothing red: it is not the capture mark"
    scene.led = {"lit": True, "fault": None}  # a capture: its mark alone
    scene.capture = {"grants": ["assistantd:mic"], "fault": None, "listening": None}
    assert scene.view(0.0, 0.0).hud[2] == "mic" and not scene.view(0.0, 0.0).hud[5]


def test_cards_are_checked_and_bounded_and_leave_with_their_app():
    scene = scene_with(claim("maps"))
    for bad, why in (({"id": "x", "title": ""}, "title"), ({"id": "x", "title": "t", "icon": "rocket"}, "icon"),
                     ({"id": "x", "title": "t", "progress": 1.5}, "progress"),
                     ({"id": "x", "title": "t", "items": ["a"], "selected": 3}, "selected")):
        with pytest.raises(CardError, match=why):
            scene.post("maps", bad, 0.0)
    for i in range(5):
        scene.post("maps", {"id": f"c{i}", "title": f"card {i}"}, 0.0)
    assert len(scene.cards["maps"]) == 3 and scene.newest("maps").title == "card 4"
    assert scene.drop_app("maps") and scene.view(0.0, 0.0).card is None


def encoded(size: tuple[int, int], kind: str = "JPEG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (60, 90, 120)).save(out, kind)
    return out.getvalue()


def test_a_cards_picture_is_a_small_png_or_jpeg_read_whole_and_its_outline_lies_over_it():
    scene = scene_with(claim("lens"))
    small = encoded((240, 180))
    card = scene.post("lens", {"id": "c", "title": "t", "image": small, "outline": [10, 20, 200, 20, 200, 170]}, 0.0)
    assert card.image.shape == (180, 240, 3) and card.outline == ((10, 20), (200, 20), (200, 170))
    for bad, why in ((encoded((640, 480)), "at most 320x240"), (b"GIF89a" + bytes(40), "not a PNG or JPEG"),
                     (small[: len(small) // 2], "cannot be decoded"), (encoded((40, 40), "GIF"), "not a PNG")):
        with pytest.raises(CardError, match=why):
            scene.post("lens", {"id": "c", "title": "t", "image": bad}, 0.0)
    for outline, why in (([1, 2, 3, 4], "3..16 points"), ([1, 2, 3, 4, 5], "pairs"),
                         ([0, 0, 10, 0, 10, float("nan")], "within"), ([0, 0, 10, 0, 10, 2000], "within")):
        with pytest.raises(CardError, match=why):
            scene.post("lens", {"id": "c", "title": "t", "image": small, "outline": outline}, 0.0)
    with pytest.raises(CardError, match="has none"):
        scene.post("lens", {"id": "c", "title": "t", "outline": [0, 0, 1, 0, 1, 1]}, 0.0)
    kept = scene.export()["cards"][0]  # what the camera saw is not written to disk: the card comes back without
    assert "image" not in kept and "outline" not in kept


def test_compose_blends_in_order_and_dims():
    painter = Painter(320, 240, FONT)
    hud = painter.hud("12:34", ["L 50%"], None, None)
    frame = compose([hud], 320, 240)
    assert hud.bottom < 240 and hud.y + hud.pixels.shape[0] <= hud.bottom
    assert frame[: hud.bottom].max() > 200 and frame[hud.bottom:].max() == 0
    dim = compose([hud], 320, 240, brightness=0.25)
    assert 40 < dim.max() <= 64


@pytest.mark.parametrize("fast", [True, False])
def test_a_frame_written_as_png_reads_back_the_same_in_pillow(fast):
    frame = np.random.default_rng(7).integers(0, 256, (37, 53, 3), dtype=np.uint8)  # odd sizes, every value
    image = Image.open(io.BytesIO(png(frame, fast=fast)))
    image.load()  # decodes and checks every chunk's CRC
    assert image.mode == "RGB" and image.size == (53, 37)
    assert np.array_equal(np.asarray(image), frame)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png(frame[::-1, ::2])))), frame[::-1, ::2])


@pytest.mark.parametrize("bpp", [32, 16])
def test_framebuffer_file_shows_and_reads_back_frames(tmp_path, bpp):
    fb = tmp_path / "fb0"
    fb.write_bytes(bytes(64 * 48 * bpp // 8))
    panel = FbPanel(str(fb), 64, 48, bpp)
    frame = np.zeros((48, 64, 3), dtype=np.uint8)
    frame[10:20, 5:30] = (200, 100, 40)
    panel.show(frame)
    back = panel.snapshot()
    assert np.abs(back.astype(int) - frame).max() <= 8  # RGB565 keeps 5-6 bits a channel
    raw = np.frombuffer(fb.read_bytes(), dtype=np.uint8)
    assert raw.any() and (bpp == 16 or tuple(raw[(10 * 64 + 5) * 4: (10 * 64 + 5) * 4 + 3]) == (40, 100, 200))
    panel.close()
    with pytest.raises(PanelError, match="needs"):
        FbPanel(str(fb), 640, 480, bpp)


def snapshot(node) -> np.ndarray:
    reply = node.request("display.snapshot.request", timeout=DEADLINE_S)
    return np.asarray(Image.open(io.BytesIO(reply["png"])).convert("RGB")), reply["frames"]


@pytest.mark.slow
def test_displayd_shows_the_focused_apps_card_and_clears_it_when_the_app_goes(procs, runtime, tmp_path):
    policies = tuned_policies(tmp_path, {"system.toml": {"boot": {"required": ["displayd"], "deadline_s": 3.0}},
                                         "focus.toml": {"liveness": {"heartbeat_timeout_s": 5.0}}})
    procs.use_env(LENS_POLICY_DIR=str(policies))
    procs.start_broker()
    procs.start_ready("-m", "shell")
    procs.start_ready("-m", "daemons.display")
    states, frames_seen, asked = [], [], []
    with Node("watcher", runtime) as watcher, Node("maps", runtime, heartbeat=0.3) as maps:
        watcher.subscribe("display.state", lambda m: states.append(m.payload))
        watcher.subscribe("display.frame", frames_seen.append)
        watcher.subscribe("display.card.request", asked.append)  # the developer's key reads every request
        receipts = []
        maps.subscribe("display.shown", receipts.append)
        watcher.start()
        maps.start()
        wait_for(lambda: states and states[-1]["layers"] == ["hud"], DEADLINE_S, "the HUD", poll=watcher.run_once)
        before, _ = snapshot(watcher)
        kept = maps.request("display.card.request", id="route", title="Turn left", body="in 200 m onto Main St",
                            icon="navigation", items=["Main St", "Oak Ave"], selected=0)
        assert kept["shown"] is False and "display" in kept["why"]  # no focus yet: kept, and told why
        assert maps.request("shell.foreground.request", app="maps")["previous"] is None
        assert maps.request("shell.focus.request", resource="display", kind="exclusive", cls="foreground",
                            reason="navigation")["status"] == "granted"
        wait_for(lambda: "card" in states[-1]["layers"], DEADLINE_S, "the card shown", poll=watcher.run_once)
        after, frames = snapshot(watcher)
        hud_rows = 60
        assert before[hud_rows:].max() == 0 and after[hud_rows:].max() > 200  # the card's text is there
        assert before[:hud_rows].max() > 200  # and the HUD was there before it
        # The frame says which request it answers: the kept card's, by the first frame that showed it.
        kept_cid = f"maps:{asked[0].payload['cid']}"
        showing = wait_for(lambda: [f for f in frames_seen if "card" in f.payload["layers"]], DEADLINE_S,
                           "the frame showing it (frames ride the stream lane, display.state the reliable one)",
                           poll=watcher.run_once)[0]
        assert kept_cid in showing.payload["answers"]
        assert not any(kept_cid in (f.payload["answers"] or []) for f in frames_seen if f is not showing)
        # and maps itself gets a receipt: the frame that showed its card, and when (issue 32)
        receipt = wait_for(lambda: [m.payload for m in receipts if m.payload["shown"]], DEADLINE_S, "the receipt",
                           poll=maps.run_once)[0]
        assert (receipt["id"], receipt["frame"], receipt["mono_ns"]) == ("route", showing.payload["n"],
                                                                         showing.payload["mono_ns"])

        assert maps.request("display.clear.request", id="nothing-like-this")["cleared"] == 0
        _, frames_again = snapshot(watcher)
        assert frames_again == frames  # nothing changed, nothing rendered
        maps.request("display.card.request", id="route", title="Turn right", body="in 50 m")
        newer = wait_for(lambda: [m for m in asked if m.payload["title"] == "Turn right"], DEADLINE_S,
                         "the request heard", poll=watcher.run_once)[0]
        wait_for(lambda: [f for f in frames_seen if f"maps:{newer.payload['cid']}" in f.payload["answers"]],
                 DEADLINE_S, "the frame answering it", poll=watcher.run_once)

        with pytest.raises(Exception, match="icon"):
            maps.request("display.card.request", id="bad", title="x", icon="rocket")
    # maps closed (node.bye): its content goes at once, not at the heartbeat timeout
    with Node("watcher2", runtime) as watcher:
        watcher.subscribe("display.state", lambda m: states.append(m.payload))
        watcher.start()
        wait_for(lambda: states[-1]["layers"] == ["hud"], DEADLINE_S, "the card cleared", poll=watcher.run_once)
        cleared, _ = snapshot(watcher)
        assert cleared[hud_rows:].max() == 0


@pytest.mark.slow
def test_displayd_real_backend_draws_into_a_framebuffer_file(procs, runtime, tmp_path):
    fb = tmp_path / "fb0"
    fb.write_bytes(bytes(640 * 480 * 2))
    policies = tuned_policies(tmp_path, {"hardware.toml": {"display": {"fb_device": str(fb), "fb_bits_per_pixel": 16}}})
    procs.start_broker()
    procs.start_ready("-m", "daemons.display", "--backend", "real", "--policy-dir", str(policies))
    with Node("watcher", runtime) as watcher:
        watcher.start()
        wait_for(lambda: np.frombuffer(fb.read_bytes(), dtype=np.uint16).reshape(480, 640)[:60].any(), DEADLINE_S,
                 "the HUD in the framebuffer")
        shot, _ = snapshot(watcher)
        assert shot.shape == (480, 640, 3) and shot[:60].max() > 150  # read back from the file itself


@pytest.mark.slow
def test_g1_speaks_the_foreground_apps_card_and_alerts(procs, runtime, tmp_path):
    procs.start_broker()
    procs.start_ready("-m", "shell", "--model", "g1")
    procs.start_ready("-m", "daemons.display", "--model", "g1")
    spoken = []
    with Node("watcher", runtime) as watcher, Node("lens-app", runtime, heartbeat=0.3) as app:
        watcher.subscribe("audio.speak", lambda m: spoken.append((m.source, m.payload)))
        watcher.start()
        app.start()
        app.request("shell.foreground.request", app="lens-app")
        reply = app.request("display.card.request", id="price", title="Oat milk", body="2.49 euro")
        assert reply == {"shown": True, "why": "spoken"}
        wait_for(lambda: spoken, DEADLINE_S, "speech", poll=watcher.run_once)
        assert spoken[0] == ("displayd", {"text": "Oat milk. 2.49 euro.", "app": "lens-app", "interrupt": False})
        with pytest.raises(Exception, match="no display"):
            watcher.request("display.snapshot.request")


@pytest.mark.slow
def test_the_hud_names_a_missing_daemon_and_says_why_capture_is_off_and_that_a_battery_is_out(procs, runtime,
                                                                                             tmp_path):
    policies = tuned_policies(tmp_path, {"system.toml": {"boot": {"required": ["displayd", "inputd"],
                                                                  "deadline_s": 1.0}}})
    procs.use_env(LENS_POLICY_DIR=str(policies))
    procs.start_broker()
    for module in ("shell", "daemons.display", "daemons.led", "daemons.power"):
        procs.start_ready("-m", module)
    states = []
    with Node("watcher", runtime) as watcher:
        watcher.subscribe("display.state", lambda m: states.append(m.payload))
        watcher.start()

        def shown(condition, what):
            wait_for(lambda: states and condition(states[-1]), DEADLINE_S, what, poll=watcher.run_once)
            return states[-1]

        shown(lambda s: s["notice"] == "Running without inputd", "the missing daemon named on the HUD")
        assert watcher.request("power.sim.request", action="pull", battery="left")["present"] == [False, True]
        swap = shown(lambda s: (s["alert"] or "").startswith("Swap battery"), "the swap card")
        assert " left on the internal battery" in swap["alert"] and swap["brightness"] == pytest.approx(0.2)
        watcher.request("power.sim.request", action="insert", battery="left")
        shown(lambda s: s["alert"] is None and s["brightness"] == 1.0, "the swap card gone, full brightness")
        watcher.request("led.sim.request", fault="driver error")
        fault = shown(lambda s: (s["alert"] or "").startswith("Camera and mic off"), "the LED fault explained")
        assert "driver error" in fault["alert"]
        watcher.request("led.sim.request", fault=None)
        shown(lambda s: s["alert"] is None, "the alert gone once the LED works")


@pytest.mark.fault
@pytest.mark.slow
def test_the_wearers_brightness_scales_the_states_and_survives_a_restart(procs, runtime, tmp_path):
    system = System(procs, runtime, tmp_path)
    displayd = procs.start_ready("-m", "daemons.display")
    app = system.app("dimmer")
    app.node.subscribe("display.state", app._keep)
    with pytest.raises(RequestFailed, match="outside 0.1..1"):
        app.ask("display.brightness.request", level=0.0)
    assert app.ask("display.brightness.request", level=0.5) == {"level": 0.5}
    full = app.wait_state(lambda s: s["brightness"] > 0 and s, "the shell's brightness")["brightness"]
    app.wait(lambda: (app.latest.get("display.state") or {}).get("brightness") == pytest.approx(0.5 * full, abs=1e-3),
             "half of what the state allows")
    procs.stop(displayd, signal.SIGKILL)
    before = len(app.log)
    procs.start_ready("-m", "daemons.display")
    fresh = app.wait(lambda: [m.payload for m in app.log[before:] if m.topic == "display.state"],
                     "the restarted displayd's state")
    assert all(p["user_level"] == 0.5 for p in fresh), "the restart forgot the wearer's brightness"
