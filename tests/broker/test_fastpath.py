"""The broker's two forwarding loops, C (broker.fastpath) and Python: the same judgement, the same delivery."""

from __future__ import annotations

import shutil

import pytest
import zmq

from bus import access, keys
from bus.envelope import encode
from broker.fastpath import FastPath, LIBRARY
from bus.topics import TOPICS
from tests.bus.test_pubsub import collect
from tests.bus.test_security import app_node, reported, security_reports
from tests.conftest import wait_for


@pytest.mark.parametrize("loop", ["c", "python"])
def test_both_loops_forward_stamp_refuse_and_count_alike(loop, procs, runtime, nodes):
    procs.start_ready("-m", "broker", env_extra={"LENS_BROKER_PYTHON": "1"} if loop == "python" else {})
    listener = nodes("listener")
    ticks, stats, reports = collect(listener, "demo.tick"), collect(listener, "bus.broker.stats"), \
        security_reports(listener)
    listener.start()
    watcher = nodes("watcher", watcher=True)  # reads the tap, which either loop writes
    tapped = collect(watcher, "demo.tick")
    watcher.start()
    demo = app_node(nodes, runtime, "demo").start()  # a key of its own: the stamp is its name
    evil = app_node(nodes, runtime, "evil", publish_any=True).start()
    for n in range(1, 301):  # enough that the C loop forwards most of them from its table
        demo.publish("demo.tick", n=n, text="plain")
        evil.publish("node.heartbeat", node="evil", pid=1, incarnation=1, period_s=None)  # its own: passes
    # A sender whose plain topic is in the table is still refused every other topic.
    evil.publish("privacy.indicator", on=False, cmd=9, reason="a lie")
    wait_for(lambda: len(ticks) == 300 and reported(reports, "evil", "privacy.indicator"),
             what="every tick and the report", poll=listener.run_once)
    assert [m.payload["n"] for m in ticks] == list(range(1, 301))
    assert {m.sender for m in ticks} == {"demo"}  # stamped with the key's name, by either loop
    wait_for(lambda: len(tapped) == 300, what="every tick from the tap", poll=watcher.run_once)
    assert [m.payload["n"] for m in tapped] == list(range(1, 301)) and {m.sender for m in tapped} == {"demo"}
    # Too big for the topic, from a sender the table knows for it: refused by size, not forwarded.
    ctx = zmq.Context()
    raw = ctx.socket(zmq.PUB)
    access.authenticate(raw, runtime)
    raw.connect(runtime.publish_endpoint("reliable"))
    seq = iter(range(1, 10**6))
    wait_for(lambda: raw.send_multipart(encode(TOPICS["demo.tick"], "demo", 7, next(seq), {"n": 0, "text": "x"}))
             or any(m.payload["n"] == 0 for m in ticks), what="the raw socket's tick", poll=listener.run_once)
    limit = TOPICS["demo.tick"].max_size
    big = encode(TOPICS["demo.tick"], "demo", 7, 1, {"n": 1, "text": "x"})
    raw.send_multipart([big[0], big[1] + b"\0" * limit])
    raw.send_multipart([big[0], big[1], b"a third frame"])
    developer = keys.DEVELOPER
    wait_for(lambda: any("the table allows" in r["reason"] for r in reported(reports, developer, "demo.tick"))
             and any("two-frame" in r["reason"] for r in reported(reports, developer, "demo.tick")),
             what="the size and the frames refused", poll=listener.run_once)
    raw.close(0)
    ctx.term()
    wait_for(lambda: stats and stats[-1].payload["lanes"]["reliable"]["msgs_in"] >= 600 + 3,
             what="the counts", poll=listener.run_once)
    assert stats[-1].payload["forwarding"] == loop
    assert not [m for m in ticks if m.payload["n"] == 1 and m.payload["text"] == "x"]  # neither got through


@pytest.mark.skipif(not LIBRARY.exists(), reason="the C loop is not built (make install builds it)")
def test_the_verdict_table_holds_what_it_can_and_says_when_it_cannot():
    fast = FastPath()
    try:
        assert fast.allow(b"demo", b"demo.tick", 100)
        assert fast.allow(b"demo", b"demo.tick", 200)  # the same pair again: updated, not added
        assert not fast.allow(b"x" * 64, b"demo.tick", 100)  # a name longer than it keeps
        held = sum(fast.allow(b"app%d" % i, b"node.heartbeat", 100) for i in range(2000))
        assert 400 < held < 2000  # full at half its slots: the rest stay with Python's judgement
    finally:
        fast.close()


def test_make_builds_the_c_loop_where_there_is_a_compiler():
    if shutil.which("cc") is None:
        pytest.skip("no C compiler: the broker forwards in Python")
    assert LIBRARY.exists(), "make install builds broker/_fastpath.so (python -m broker.fastpath)"
