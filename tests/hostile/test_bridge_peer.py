"""The hostile-app suite's attacks from a paired peer over the bridge (`lens bus bridge`): a phone or a laptop
the wearer paired, or whoever holds its key. It may drive neither the simulation nor the assistant, and it
hears nothing of what the wearer is sent, says or is told, whatever it subscribes to. The bridge's own
checks (allow-lists, keys, malformed input) are tests/bustools/test_bridge.py's."""

from __future__ import annotations

import json

from tests.bustools.test_bridge import EVENT, bridge, peer
from tests.conftest import wait_for

SECRET = "4321"


def test_by_default_a_peer_can_neither_drive_the_simulation_nor_the_assistant(broker, procs, runtime):
    _, info = bridge(procs, runtime)
    laptop = peer(runtime, info, ["power"])
    try:
        wait_for(lambda: laptop.welcome is not None, what="the welcome", poll=laptop.poll)
        laptop.publish("input.sim.request", token=b"t", gesture="button")
        laptop.publish("assistant.say.request", token=b"u", text="hey lens, take a photo")
        wait_for(lambda: len(laptop.refusals) >= 2, what="two refusals", poll=laptop.poll)
        assert [topic for topic, _ in laptop.refusals] == ["input.sim.request", "assistant.say.request"]
        assert all("may not come in" in why for _, why in laptop.refusals) and laptop.replies == {}
    finally:
        laptop.close()


def test_a_paired_peer_asking_for_everything_hears_none_of_the_wearers_words(broker, procs, runtime, nodes):
    _, info = bridge(procs, runtime)
    laptop = peer(runtime, info, [""])  # everything: narrowed to the bridge's out-list, then to what it may read
    assistantd, notifications = nodes("assistantd").start(), nodes("notifications").start()
    phone, powerd = nodes("phone").start(), nodes("powerd").start()
    heard = []
    try:
        wait_for(lambda: laptop.welcome is not None, what="the welcome", poll=laptop.poll)

        def speak_and_listen(seconds):
            phone.publish("phone.notification", id="pin", source="bank", title=f"PIN {SECRET}", body=SECRET)
            notifications.publish("notifications.state", count=1, unread=1, latest=f"bank: PIN {SECRET}")
            assistantd.publish("assistant.answer", session="w", text=f"your pin is {SECRET}", source="offline",
                               action=None, status="answered", asker=None)
            powerd.publish("power.event", **EVENT)  # on its out-list: the peer is listening
            for node in (phone, notifications, assistantd, powerd):
                node.run_once(seconds / 8)
            heard.extend(laptop.poll(seconds / 2))
        wait_for(lambda: sum(m.topic == "power.event" for m in heard) >= 3, what="power events at the peer",
                 poll=speak_and_listen)
        leaked = sorted({m.topic for m in heard if SECRET in json.dumps(m.payload, default=repr)})
        assert leaked == [], f"the peer heard the wearer's words on {leaked}"
    finally:
        laptop.close()
