"""The way onto the lanes (bus.access): a pass for one process where only the broker can put a socket,
sealed lanes everywhere else, and nodes that follow the broker from one to the other."""

from __future__ import annotations

import os
import subprocess
import sys

import msgpack
import pytest
import zmq

from bus import access, keys
from bus.envelope import encode
from bus.errors import BusTimeout
from bus.topics import TOPICS
from tests.bus.test_pubsub import collect
from tests.bus.test_security import reported, security_reports
from tests.conftest import DEADLINE_S, REPO, wait_for

TICK = {"n": 1, "text": "x"}
as_root = pytest.mark.skipif(os.getuid() != 0, reason="gives files to another user")


def test_a_pass_is_good_for_one_identity_key_user_and_process_only():
    key = access.lane_key(zmq.curve_keypair()[1])
    public = zmq.curve_keypair()[0]
    one = access.pass_for(key, "shell", public, 1000, 42)
    assert access.same(one, access.pass_for(key, "shell", public, 1000, 42))
    others = [access.pass_for(key, "camerad", public, 1000, 42), access.pass_for(key, "shell", public, 1001, 42),
              access.pass_for(key, "shell", public, 1000, 43),
              access.pass_for(key, "shell", zmq.curve_keypair()[0], 1000, 42),
              access.pass_for(access.lane_key(zmq.curve_keypair()[1]), "shell", public, 1000, 42)]
    assert not any(access.same(one, other) for other in others)


def test_the_peer_of_an_ipc_connection_is_read_from_its_address():
    assert access.peer("localhost:1000:100:4242") == (1000, 4242)
    for address in ("127.0.0.1:5555", "localhost:a:b:c", "", "localhost:1:2"):
        assert access.peer(address) is None


def test_a_directory_is_safe_only_if_nobody_else_can_put_a_socket_in_it(tmp_path):
    base = tmp_path / "run"
    bus = base / "bus"
    bus.mkdir(parents=True)
    base.chmod(0o700)
    bus.chmod(0o750)
    me = os.getuid()
    assert access.unsafe(bus, me) is None
    bus.chmod(0o770)
    assert "may be written by others" in access.unsafe(bus, me)
    bus.chmod(0o750)
    base.chmod(0o770)  # the board's shared directory: group members could rename bus/ away...
    assert f"{base} may be written by others" in access.unsafe(bus, me)
    base.chmod(0o1770)  # ...unless it is sticky
    assert access.unsafe(bus, me) is None
    assert "No such file" in access.unsafe(base / "missing", me)


@as_root
def test_a_directory_or_link_of_another_user_on_the_way_is_not_safe(tmp_path):
    base = tmp_path / "run"
    (base / "bus").mkdir(parents=True)
    os.chown(base, 12345, -1)
    assert f"{base} belongs to uid 12345" in access.unsafe(base / "bus", 0)
    assert access.unsafe(base / "bus", 12345) is None  # the broker's user's own
    os.chown(base, 0, -1)
    (tmp_path / "link").symlink_to(base)
    assert access.unsafe(tmp_path / "link" / "bus", 0) is None
    os.lchown(tmp_path / "link", 12345, -1)  # whoever owns a link may point it elsewhere
    assert "belongs to uid 12345" in access.unsafe(tmp_path / "link" / "bus", 0)


def test_a_lane_admission_takes_only_the_answer_to_its_own_latest_question_and_asks_again_after_a_bad_one(runtime):
    pair = keys.KeyPair("demo", *zmq.curve_keypair(), runtime.dir)
    admission = access.LaneAdmission("demo", runtime, lambda: (pair, b"x" * 40))
    assert admission.due is None and admission.enter is None
    admission.ask()
    first = msgpack.unpackb(admission.question(0.0))
    assert first[1] == "lanes" and admission.due == access.ASK_AGAIN_S
    assert msgpack.unpackb(admission.question(1.0))[0] == first[0]  # asked again: the same question
    admission.refused()  # a new question: an answer to the old one is out of date
    assert not admission.take(first[0], {"sealed": True, "uid": 0}) and admission.enter is None
    current = msgpack.unpackb(admission.question(2.0))[0]
    assert not admission.take(current, {"sealed": "yes"}) and "malformed" in admission.error
    assert admission.due > 2.0 and admission.enter is None  # asked again later, in case the broker mends
    current = msgpack.unpackb(admission.question(admission.due))[0]
    assert admission.take(current, {"sealed": True, "uid": 0}) and admission.error is None and admission.due is None
    sock = zmq.Context.instance().socket(zmq.PUB)
    admission.enter(sock)
    assert sock.getsockopt(zmq.MECHANISM) == zmq.CURVE
    sock.close(0)


def test_a_forgotten_key_is_refused_by_both_lookups_from_then_on(tmp_path):
    keys.generate(tmp_path, ["app1", "app2"])
    directory = keys.Directory(tmp_path)
    directory.reload()
    public = keys.load_public(tmp_path / "app1.key")
    assert directory.identity(public) == "app1" and directory.public("app1") == public
    keys.forget(tmp_path, "app1")
    # The CURVE handshake's lookup (by key) as well as the pass's (by name): it once answered from memory.
    assert directory.identity(public) is None and directory.public("app1") is None
    assert directory.public("app2") is not None


def mechanism(node) -> int:
    return node._lanes["reliable"].sub.getsockopt(zmq.MECHANISM)


def test_lanes_are_entered_with_a_pass_where_only_the_broker_can_write(broker, runtime, nodes):
    listener = nodes("listener")
    stats = collect(listener, "bus.broker.stats")
    ticks = collect(listener, "demo.tick")
    listener.start()
    keys.generate(keys.keys_dir(runtime), ["demo"])  # a key of its own, not the developer's
    demo = nodes("demo").start()
    assert mechanism(listener) == mechanism(demo) == zmq.PLAIN
    wait_for(lambda: stats, what="the broker's stats", poll=listener.run_once)
    assert stats[-1].payload["sealed"] is False
    demo.publish("demo.tick", **TICK)
    wait_for(lambda: ticks, what="a tick over the unsealed lane", poll=listener.run_once)
    assert ticks[0].sender == "demo"  # the broker still knows who sent it: the pass was demo's


def test_a_pass_is_refused_from_any_other_process_and_after_its_key_is_forgotten(broker, runtime, nodes):
    listener = nodes("listener")
    beats = []
    listener.subscribe("node.heartbeat", lambda m: beats.append(m) if m.sender == "borrower" else None)
    reports = security_reports(listener)
    listener.start()
    keys.generate(keys.app_keys_dir(runtime), ["borrower"])
    pair = keys.load_pair(keys.app_keys_dir(runtime) / "borrower.key_secret")
    ctx = zmq.Context()
    mine = ctx.socket(zmq.PUB)
    access.authenticate(mine, runtime, pair)
    stolen = mine.getsockopt(zmq.PLAIN_PASSWORD)

    def refusals() -> int:  # counted per peer (uid, pid) the kernel names
        counts: dict = {}
        for r in reported(reports, "?", "<connect>"):
            if r["reason"] == "wrong pass":
                counts[r["uid"], r["pid"]] = max(counts.get((r["uid"], r["pid"]), 0), r["count"])
        return sum(counts.values())
    try:
        # Another process with the same name and pass: the kernel says it is another pid.
        thief = subprocess.Popen([sys.executable, "-c", THIEF, runtime.publish_endpoint("reliable"), stolen],
                                 stdin=subprocess.PIPE, cwd=REPO)
        try:
            wait_for(refusals, what="the refusal of a pass shown by another process", poll=listener.run_once)
        finally:
            thief.communicate(b"", timeout=DEADLINE_S)
        mine.connect(runtime.publish_endpoint("reliable"))
        seq = iter(range(1, 10**6))
        wait_for(lambda: mine.send_multipart(encode(TOPICS["node.heartbeat"], "borrower", 1, next(seq), {
            "node": "borrower", "pid": os.getpid(), "incarnation": 1})) or beats,
                 what="the same pass from its own process", poll=listener.run_once)
        assert {m.payload["pid"] for m in beats} == {os.getpid()}  # none of the thief's
        # Forgotten: the broker lets no new connection in with it.
        keys.forget(keys.app_keys_dir(runtime), "borrower")
        before = refusals()
        late = ctx.socket(zmq.PUB)
        late.plain_username, late.plain_password = b"borrower", stolen
        late.connect(runtime.publish_endpoint("reliable"))
        wait_for(lambda: refusals() > before, what="the refusal of a forgotten key's pass", poll=listener.run_once)
        late.close(0)
    finally:
        mine.close(0)
        ctx.term()
    assert thief.returncode == 0


THIEF = """
import sys, time, zmq
from bus.envelope import encode
from bus.topics import TOPICS
sock = zmq.Context().socket(zmq.PUB)
sock.plain_username, sock.plain_password = b"borrower", sys.argv[2].encode()
sock.connect(sys.argv[1])
for n in range(1, 300):  # until the test has seen the refusal, at most 3 s
    sock.send_multipart(encode(TOPICS["node.heartbeat"], "borrower", 1, n, {"node": "borrower", "pid": 1,
                                                                           "incarnation": 1}))
    time.sleep(0.01)
sys.stdin.read()
sock.close(0)
"""


def test_a_sealed_broker_serves_the_same_bus(procs, runtime, nodes):
    procs.use_env(**{access.SEALED_ENV: "1"})
    procs.start_broker()
    listener = nodes("listener")
    stats = collect(listener, "bus.broker.stats")
    ticks = collect(listener, "demo.tick")
    listener.start()
    keys.generate(keys.keys_dir(runtime), ["demo"])
    demo = nodes("demo").start()
    assert mechanism(listener) == mechanism(demo) == zmq.CURVE
    demo.publish("demo.tick", **TICK)
    wait_for(lambda: ticks and stats, what="a tick over the sealed lane, and the stats", poll=listener.run_once)
    assert stats[-1].payload["sealed"] is True and ticks[0].sender == "demo"


def test_a_broker_whose_sockets_others_could_replace_seals_the_lanes(procs, runtime, nodes):
    runtime.dir.chmod(0o770)  # a group may write here, and nothing is sticky
    procs.start_broker()
    node = nodes("listener").start()
    assert mechanism(node) == zmq.CURVE


def test_a_node_refuses_unsealed_lanes_once_others_could_replace_the_sockets(broker, runtime, nodes):
    runtime.socket_dir.chmod(0o770)
    node = nodes("listener")
    with pytest.raises(BusTimeout, match="not only it can put a socket"):
        node.start(timeout=2.0)
    assert not node._lanes["reliable"].connected
    runtime.socket_dir.chmod(0o750)  # mended: the node, still asking now and then, goes on
    node.start(timeout=DEADLINE_S)
    assert mechanism(node) == zmq.PLAIN


def test_running_nodes_follow_a_broker_restarted_sealed_and_back(procs, runtime, nodes):
    broker = procs.start_broker()
    listener = nodes("listener")
    ticks = collect(listener, "demo.tick")
    listener.start()
    demo = nodes("demo").start()
    for sealed, expected in (("1", zmq.CURVE), ("", zmq.PLAIN)):
        procs.stop(broker)
        procs.use_env(**{access.SEALED_ENV: sealed})
        broker = procs.start_broker()
        phase = f"sealed={sealed!r}"
        wait_for(lambda: demo.publish("demo.tick", n=1, text=phase) or (demo.run_once(0.01), [
            m for m in ticks if m.payload["text"] == phase])[1], what="a tick through the restarted broker",
            poll=listener.run_once)
        assert mechanism(listener) == mechanism(demo) == expected


@as_root
def test_the_broker_takes_back_a_socket_directory_someone_else_made(procs, runtime, nodes):
    planted = runtime.socket_dir
    planted.mkdir()
    (planted / "reliable.in").write_text("a fake broker's socket would be here")
    os.chown(planted, 12345, -1)
    procs.start_broker()
    assert planted.stat().st_uid == 0 and not (planted / "reliable.in").is_file()
    aside = [p for p in runtime.dir.iterdir() if p.name.startswith("bus.foreign-")]
    assert len(aside) == 1 and aside[0].stat().st_uid == 12345
    node = nodes("listener").start()
    assert mechanism(node) == zmq.PLAIN


def test_malformed_questions_on_the_latch_are_ignored_and_the_next_one_answered(broker, runtime):
    ctx = zmq.Context()
    latch = ctx.socket(zmq.DEALER)
    try:
        keys.as_client(latch, keys.own_pair(runtime, keys.DEVELOPER), keys.broker_public(runtime))
        latch.connect(runtime.latch_endpoint)
        for body in (b"\xc1", msgpack.packb([1]), msgpack.packb([1, 5]), msgpack.packb([1, "lanes", 3]),
                     msgpack.packb({"lanes": 1}), b""):
            latch.send_multipart([b"", body])
        latch.send_multipart([b"", b"one", b"frame", b"too many"])
        latch.send_multipart([b"", access.request(7)])
        assert latch.poll(DEADLINE_S * 1000), "no answer to the good question"
        reply_id, answer = msgpack.unpackb(latch.recv_multipart()[-1])
        assert reply_id == 7 and answer["sealed"] is False and len(answer["pass"]) == 64
        assert latch.poll(200) == 0  # nothing answered the malformed ones
        assert broker.poll() is None
    finally:
        latch.close(0)
        ctx.term()
