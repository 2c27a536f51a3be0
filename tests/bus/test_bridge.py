"""The bus over TCP (`lens bus bridge`): CURVE both ways, a wrong key refused, only the allow-lists cross."""

from __future__ import annotations

import json
import subprocess

import zmq

from bus import keys
from bus.bridge import RemoteBus, within
from tests.bus.test_pubsub import collect
from tests.conftest import DEADLINE_S, wait_for

EVENT = {"event": "removed", "battery": "left", "percent": 50.0}


def bridge(procs, runtime) -> tuple[subprocess.Popen, dict]:
    """A bridge listening on a free port, with the key of a peer called laptop among its peers."""
    keys.generate(keys.keys_dir(runtime) / "peers", ["laptop"])
    child = procs.lens("bus", "bridge", "--listen", "tcp://127.0.0.1:*", "--json", stdout=subprocess.PIPE,
                       text=True)
    return child, json.loads(child.stdout.readline())


def peer(runtime, info, prefixes, name="laptop") -> RemoteBus:
    pair = keys.load_pair(keys.keys_dir(runtime) / "peers" / f"{name}.key_secret")
    return RemoteBus(info["address"], pair, info["public_key"].encode(), prefixes)


def test_what_a_peer_asks_for_is_narrowed_to_the_allow_list():
    allowed = ["power", "shell.state"]
    assert within([""], allowed) == ["power", "shell.state"]
    assert within(["power.event", "camera", "shell"], allowed) == ["power.event", "shell.state"]


def test_only_allowed_topics_go_out_and_a_wrong_key_gets_nothing(broker, procs, runtime, nodes):
    _, info = bridge(procs, runtime)
    laptop = peer(runtime, info, [""])
    public, secret = zmq.curve_keypair()
    stranger = RemoteBus(info["address"], keys.KeyPair("stranger", public, secret, runtime.dir),
                         info["public_key"].encode(), [""])
    powerd, demo = nodes("powerd").start(), nodes("demo").start()
    seen, strangers = [], []
    try:
        def publish_and_listen(seconds):
            powerd.publish("power.event", **EVENT)
            demo.publish("demo.tick", n=1, text="not for the phone")
            powerd.run_once(seconds / 4)
            demo.run_once(seconds / 4)
            seen.extend(laptop.poll(seconds / 4))
            strangers.extend(stranger.poll(seconds / 4))

        wait_for(lambda: sum(m.topic == "power.event" for m in seen) >= 3, what="power events at the laptop",
                 poll=publish_and_listen)
        assert laptop.welcome and "power" in laptop.welcome and "demo" not in " ".join(laptop.welcome)
        assert not [m for m in seen if m.topic.startswith("demo")]
        assert seen[-1].sender == "powerd" or seen[-1].source == "powerd"
        assert (stranger.welcome, strangers) == (None, [])  # refused at the handshake: not one message
    finally:
        laptop.close()
        stranger.close()


def test_a_peer_publishes_only_what_may_come_in_and_its_requests_are_answered(broker, procs, runtime, nodes):
    _, info = bridge(procs, runtime)
    listener = nodes("listener")
    phone, power = collect(listener, "phone.notification"), collect(listener, "power.event")
    listener.start()
    inputd = nodes("inputd")
    inputd.serve("input.sim.request", lambda msg: {"events": len(msg.payload["gesture"])})
    inputd.start()
    laptop = peer(runtime, info, ["power"])
    try:
        def run(seconds):
            laptop.poll(seconds / 3)
            listener.run_once(seconds / 3)
            inputd.run_once(seconds / 3)

        wait_for(lambda: laptop.welcome is not None, what="the welcome", poll=run)
        laptop.publish("power.event", **EVENT)  # not in the in list: refused, told why
        laptop.publish("phone.notification", id="1", source="chat", title="hello", body=None)
        laptop.publish("input.sim.request", token=b"t1", gesture="tap")
        wait_for(lambda: phone and laptop.refusals and b"t1" in laptop.replies, what="all three", poll=run)
        assert phone[0].payload["title"] == "hello" and phone[0].source == "bridge"
        assert laptop.refusals[0][0] == "power.event" and "may not come in" in laptop.refusals[0][1]
        assert laptop.replies[b"t1"] == ({"events": 3}, "")
        assert power == []
    finally:
        laptop.close()


def test_lens_bus_sniff_remote_prints_the_glasses_messages_and_refuses_without_the_right_key(
        broker, procs, runtime, nodes):
    _, info = bridge(procs, runtime)
    laptop_key = str(keys.keys_dir(runtime) / "peers" / "laptop.key_secret")
    sniff = procs.lens("bus", "sniff", "power.event", "--remote", info["address"], "--key", laptop_key,
                       f"--server-key={info['public_key']}", "--json", "--count", "1", "--timeout", str(DEADLINE_S),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    powerd = nodes("powerd").start()
    wait_for(lambda: powerd.publish("power.event", **EVENT) or sniff.poll() is not None, what="the remote sniff",
             poll=powerd.run_once)
    out, err = sniff.communicate(timeout=DEADLINE_S)
    assert sniff.returncode == 0, err
    assert json.loads(out.splitlines()[0])["payload"] == EVENT
    keys.generate(runtime.dir / "other", ["intruder"])
    refused = procs.run_lens("bus", "sniff", "--remote", info["address"], "--key",
                             str(runtime.dir / "other" / "intruder.key_secret"), "--server-key", info["key_file"],
                             "--timeout", "3")
    assert refused.returncode == 1 and "no answer" in refused.stderr


def test_bridge_connect_republishes_the_glasses_on_a_laptops_bus_and_carries_back_what_may_go_in(
        broker, procs, runtime, nodes, tmp_path):
    from bus.node import Node
    from bus.runtime import Runtime

    _, info = bridge(procs, runtime)
    laptop_runtime = Runtime.resolve(tmp_path / "laptop")
    env = procs.env(LENS_RUNTIME_DIR=str(laptop_runtime.dir))
    procs.start("-m", "bus.broker", env=env)
    relay = procs.lens("bus", "bridge", "--connect", info["address"], "--key",
                       str(keys.keys_dir(runtime) / "peers" / "laptop.key_secret"),
                       f"--server-key={info['public_key']}", "--send", "input.sim.request", "phone", "--json",
                       env=env, stdout=subprocess.PIPE, text=True)
    assert "power" in json.loads(relay.stdout.readline())["sees"]

    glasses_inputd = nodes("inputd")
    glasses_inputd.serve("input.sim.request", lambda msg: {"events": len(msg.payload["gesture"])})
    powerd, demo, listener = nodes("powerd").start(), nodes("demo").start(), nodes("listener")
    phone = collect(listener, "phone.notification")
    for node in (glasses_inputd, listener):
        node.start()
    laptop = Node("laptop-viewer", laptop_runtime)
    events, demos = collect(laptop, "power.event"), collect(laptop, "demo")
    laptop.start(timeout=DEADLINE_S)
    try:
        def run_all(seconds):
            powerd.publish("power.event", **EVENT)
            demo.publish("demo.tick", n=1, text="stays on the glasses")
            for node in (powerd, demo, glasses_inputd, listener, laptop):
                node.run_once(seconds / 5)

        wait_for(lambda: len(events) >= 3, what="the glasses' power events on the laptop's bus", poll=run_all)
        assert events[0].source == "powerd" and events[0].payload == EVENT and demos == []
        # Here -> glasses: a request is answered by the glasses' inputd, to the asker here alone.
        answers = []
        laptop.request_async("input.sim.request", lambda result, error: answers.append((result, error)),
                             timeout=DEADLINE_S, gesture="tap")
        laptop.publish("phone.notification", id="7", source="chat", title="from the laptop", body=None)
        wait_for(lambda: answers and phone, what="the answer and the notification", poll=run_all)
        assert answers[0] == ({"events": 3}, None)
        assert phone[0].payload["title"] == "from the laptop" and phone[0].source == "bridge"
    finally:
        laptop.close()
    relay.send_signal(2)
    out, _ = relay.communicate(timeout=DEADLINE_S)
    assert relay.returncode == 0
    stats = json.loads(out.splitlines()[-1])
    assert stats["republished"] >= 3 and stats["sent"] == 2 and "powerd" in stats["sources"]
