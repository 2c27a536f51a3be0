"""Card receipts (daemons.display.receipts): an app is told when its card came into view and when it left."""

import time

from bus.tracing import Tracing
from daemons.display.receipts import Receipts
from tests.daemons.test_display import claim, scene_with


def test_a_receipt_when_a_card_comes_into_view_again_when_it_changes_and_when_it_is_covered():
    scene = scene_with(claim("maps"))
    receipts = Receipts()
    scene.post("maps", {"id": "route", "title": "Turn left"}, 0.0)
    scene.post("music", {"id": "now", "title": "Playing"}, 0.0)  # kept: music has no display
    assert receipts.after_frame(scene.view(1.0, time.time()), scene) == [
        {"app": "maps", "id": "route", "shown": True, "why": "shown"}]
    assert receipts.after_frame(scene.view(1.0, time.time()), scene) == [], "the same card: no news"
    scene.post("maps", {"id": "route", "title": "Turn right"}, 1.0)  # replaced: the new one is seen
    assert [r["shown"] for r in receipts.after_frame(scene.view(1.0, time.time()), scene)] == [True]
    scene.shell["focus"]["display"] = {"owner": "music", "stack": [claim("music"), claim("maps")]}
    told = receipts.after_frame(scene.view(2.0, time.time()), scene)
    assert {"app": "maps", "id": "route", "shown": False, "why": "the display went to another app"} in told
    assert {"app": "music", "id": "now", "shown": True, "why": "shown"} in told
    scene.clear("music", "now")  # taken down by its app: no receipt for it
    assert [r for r in receipts.after_frame(scene.view(3.0, time.time()), scene) if r["app"] == "music"] == []


class Spoken(Tracing):
    """What displayd says on a G1, without a bus."""

    trace = 0

    def __init__(self):
        self.said = []

    def subscribe(self, *args, **kwargs) -> None:
        pass

    serve = subscribe

    def publish(self, topic: str, **payload) -> None:
        if topic == "audio.speak":
            self.said.append(payload["text"])


def test_on_a_g1_a_capture_the_system_stopped_is_said_once():
    """Issue 28, line 1: the wearer is told, on a G1 too, where there is no HUD to show it on."""
    from daemons.display.__main__ import Displayd
    from daemons.display.panels import NonePanel
    from daemons.display.scene import Scene

    node = Spoken()
    displayd = Displayd(node, NonePanel(), None, Scene(3), (0, 0), 0)
    displayd.scene.shell = {"state": "active", "brightness": 1.0, "degraded": [], "foreground": None,
                            "display_on": True, "focus": {}, "privacy": {"ended": {"resource": "camera",
                                                                                   "why": "the disk is full"}}}
    view = displayd.scene.view(1.0, time.time())
    displayd.speak(view)
    displayd.speak(view)
    assert node.said == ["Camera stopped: the disk is full."], "said once"
