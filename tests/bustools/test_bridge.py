"""The bus over TCP (`lens bus bridge`): CURVE both ways, a wrong key refused, only the allow-lists cross."""

from __future__ import annotations

import json
import subprocess

import zmq

from bus import keys
from bustools.bridge import RemoteBus, within
from tests.bus.test_pubsub import collect
from tests.conftest import DEADLINE_S, tuned_policies, wait_for

EVENT = {"event": "removed", "battery": "left", "percent": 50.0}


def bridge(procs, runtime, policy_dir=None) -> tuple[subprocess.Popen, dict]:
    """A bridge listening on a free port, with the key of a peer called laptop among its peers."""
    keys.generate(keys.keys_dir(runtime) / "peers", ["laptop"])
    child = procs.lens("bus", "bridge", "--listen", "tcp://127.0.0.1:*", "--json",
                       *(["--policy-dir", str(policy_dir)] if policy_dir else []), stdout=subprocess.PIPE, text=True)
    return child, json.loads(child.stdout.readline())


def echo_in(tmp_path):
    """Policies whose bridge also lets in a request (the demo's echo: served by whoever plays the demo)."""
    return tuned_policies(tmp_path, {"privacy.toml": {"bridge": {"in": ["phone.notification",
                                                                        "demo.echo.request"]}}})


def echo(msg):
    return {"text": msg.payload["text"], "n": 1}


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


def test_a_peer_publishes_only_what_may_come_in_and_its_requests_are_answered(broker, procs, runtime, nodes,
                                                                             tmp_path):
    _, info = bridge(procs, runtime, echo_in(tmp_path))
    listener = nodes("listener")
    phone, power = collect(listener, "phone.notification"), collect(listener, "power.event")
    listener.start()
    demo = nodes("demo")
    demo.serve("demo.echo.request", echo)
    demo.start()
    laptop = peer(runtime, info, ["power"])
    try:
        def run(seconds):
            laptop.poll(seconds / 3)
            listener.run_once(seconds / 3)
            demo.run_once(seconds / 3)

        wait_for(lambda: laptop.welcome is not None, what="the welcome", poll=run)
        laptop.publish("power.event", **EVENT)  # not in the in list: refused, told why
        laptop.publish("phone.notification", id="1", source="chat", title="hello", body=None)
        laptop.publish("demo.echo.request", token=b"t1", text="hi")
        wait_for(lambda: phone and laptop.refusals and b"t1" in laptop.replies, what="all three", poll=run)
        # Published under the bridge's own key: the broker's verified sender is the bridge, not the developer.
        assert phone[0].payload["title"] == "hello" and phone[0].source == phone[0].sender == "bridge"
        assert (keys.keys_dir(runtime) / "bridge.key_secret").exists()
        assert laptop.refusals[0][0] == "power.event" and "may not come in" in laptop.refusals[0][1]
        assert laptop.replies[b"t1"] == ({"text": "hi", "n": 1}, "")
        assert power == []
    finally:
        laptop.close()


def test_what_a_peer_sends_is_checked_like_any_message_and_a_bad_one_loses_nothing(broker, procs, runtime, nodes,
                                                                                  tmp_path):
    """A payload's keys are the topic's fields, never the call's arguments; frames of the wrong shape are
    refused and told; the bridge goes on serving; the simulated hardware and the assistant stay out by default."""
    import msgpack

    _, info = bridge(procs, runtime, echo_in(tmp_path))
    demo = nodes("demo")
    asked = []
    demo.serve("demo.echo.request", lambda msg: asked.append(msg) or echo(msg))
    demo.start()
    laptop = peer(runtime, info, ["power"])
    try:
        def run(seconds):
            laptop.poll(seconds / 2)
            demo.run_once(seconds / 2)

        wait_for(lambda: laptop.welcome is not None, what="the welcome", poll=run)
        raw = laptop.sock.send_multipart
        raw([b"PUB", b"demo.echo.request", msgpack.packb({"text": "x", "timeout": 1e9}), b"a"])
        raw([b"PUB", b"demo.echo.request", msgpack.packb({"text": "x", "cid": 7}), b"b"])
        raw([b"PUB", b"demo.echo.request", msgpack.packb({"text": 5}), b"c"])
        raw([b"PUB", b"demo.echo.request", msgpack.packb(["text"]), b"d"])
        raw([b"PUB", b"demo.echo.request"])  # a frame missing
        raw([b"HELLO"])
        raw([b"PUB", b"\xff\xfe", msgpack.packb({}), b"e"])
        raw([b"WHAT"])
        laptop.publish("demo.echo.request", token=b"ok", text="still here")
        wait_for(lambda: b"ok" in laptop.replies and len(laptop.refusals) >= 8, what="eight refusals and the answer",
                 poll=run)
        whys = [why for _, why in laptop.refusals]
        assert "unknown field(s) timeout" in whys[0] and "'cid' is the bridge's" in whys[1]
        assert "text" in whys[2] and "map of field names" in whys[3]
        assert "2 frames; PUB has 3 to 4" in whys[4] and "1 frames; HELLO has 2" in whys[5], whys
        assert "malformed" in whys[6] and "unknown message b'WHAT'" in whys[7], whys
        assert [m.payload for m in asked] == [{"cid": asked[0].payload["cid"], "text": "still here"}]
        assert laptop.replies[b"ok"] == ({"text": "still here", "n": 1}, "")
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

    _, info = bridge(procs, runtime, echo_in(tmp_path))
    laptop_runtime = Runtime.resolve(tmp_path / "laptop")
    env = procs.env(LENS_RUNTIME_DIR=str(laptop_runtime.dir))
    # Up before the relay starts: a relay with no broker to join says so and exits (under load the relay came
    # first, and its first line never came).
    procs.start_ready("-m", "broker", env_extra={"LENS_RUNTIME_DIR": str(laptop_runtime.dir)})
    relay = procs.lens("bus", "bridge", "--connect", info["address"], "--key",
                       str(keys.keys_dir(runtime) / "peers" / "laptop.key_secret"),
                       f"--server-key={info['public_key']}", "--send", "demo.echo.request", "phone", "--json",
                       env=env, stdout=subprocess.PIPE, text=True)
    assert "power" in json.loads(relay.stdout.readline())["sees"]

    demo, listener = nodes("demo"), nodes("listener")
    demo.serve("demo.echo.request", echo)
    powerd = nodes("powerd").start()
    phone = collect(listener, "phone.notification")
    for node in (demo, listener):
        node.start()
    laptop = Node("laptop-viewer", laptop_runtime)
    events, demos = collect(laptop, "power.event"), collect(laptop, "demo")
    laptop.start(timeout=DEADLINE_S)
    try:
        def run_all(seconds):
            powerd.publish("power.event", **EVENT)
            demo.publish("demo.tick", n=1, text="stays on the glasses")
            for node in (powerd, demo, listener, laptop):
                node.run_once(seconds / 5)

        wait_for(lambda: len(events) >= 3, what="the glasses' power events on the laptop's bus", poll=run_all)
        assert events[0].source == "powerd" and events[0].payload == EVENT and demos == []
        # Here -> glasses: a request is answered by the glasses' demo, to the asker here alone.
        answers = []
        laptop.request_async("demo.echo.request", lambda result, error: answers.append((result, error)),
                             timeout=DEADLINE_S, text="from afar")
        laptop.publish("phone.notification", id="7", source="chat", title="from the laptop", body=None)
        wait_for(lambda: answers and phone, what="the answer and the notification", poll=run_all)
        assert answers[0] == ({"text": "from afar", "n": 1}, None)
        assert phone[0].payload["title"] == "from the laptop" and phone[0].source == "bridge"
    finally:
        laptop.close()
    relay.send_signal(2)
    out, _ = relay.communicate(timeout=DEADLINE_S)
    assert relay.returncode == 0
    stats = json.loads(out.splitlines()[-1])
    assert stats["republished"] >= 3 and stats["sent"] == 2 and "powerd" in stats["sources"]
