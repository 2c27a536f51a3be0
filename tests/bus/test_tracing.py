"""Traces: a trace id rides with the work across processes without any handler passing it (bus.tracing)."""

import pytest

from bus.envelope import Message, decode, encode
from bus.errors import MalformedMessage
from bus.topics import TOPICS
from bus.tracing import new_trace
from tests.conftest import DEADLINE_S, wait_for

TICK = TOPICS["demo.tick"]


def test_a_trace_is_an_eighth_item_only_when_there_is_one_and_a_bad_one_is_refused():
    plain = encode(TICK, "demo", 1, 1, {"n": 1, "text": "a"})
    traced = encode(TICK, "demo", 1, 1, {"n": 1, "text": "a"}, 12345)
    assert plain[1][:1] == b"\x97" and traced[1][:1] == b"\x98"
    assert decode(plain).trace == 0 and decode(traced).trace == 12345
    assert len(traced[1]) - len(plain[1]) <= 9
    import msgpack
    for bad in (0, -1, 2 ** 63, "t", None):
        item = msgpack.unpackb(plain[1])
        body = msgpack.packb([*item, bad])
        with pytest.raises(MalformedMessage, match="bad trace"):
            decode([plain[0], body])
    assert {new_trace() for _ in range(100)}.isdisjoint({0})


def test_what_a_handler_publishes_asks_and_answers_is_a_hop_of_its_messages_trace(broker, nodes):
    """The demo server's handler publishes, arms a one-shot timer and a periodic one, and answers; the
    client asks under a trace. Every hop but the periodic timer's and the untraced ask's carries it."""
    server, client, watcher = nodes("demo"), nodes("client"), nodes("watcher")
    timers = []

    def echo(msg: Message) -> dict:
        server.publish("demo.tick", n=1, text="in the handler")
        server.after(0.01, lambda: server.publish("demo.tick", n=2, text="a timer it armed"))
        if not timers:
            timers.append(server.every(0.05, lambda: server.publish("demo.tick", n=3, text="periodic")))
        return {"text": msg.payload["text"].upper(), "n": 1}

    server.serve("demo.echo.request", echo)
    server.start()
    seen: list[Message] = []
    watcher.subscribe("demo.tick", seen.append)
    watcher.start()
    client.start()
    answers = []
    trace = new_trace()
    with client.tracing(trace):
        client.request_async("demo.echo.request", lambda result, error: answers.append(client.trace),
                             text="x", timeout=DEADLINE_S)
    assert client.trace == 0, "the trace ends with the block"

    def pump():
        for node in (server, client, watcher):
            node.run_once(0.01)
        return {m.payload["n"] for m in seen} >= {1, 2, 3} and answers

    wait_for(pump, DEADLINE_S, "the handler's hops")
    by_n = {}
    for m in seen:
        by_n.setdefault(m.payload["n"], m.trace)
    assert by_n[1] == trace and by_n[2] == trace, "a hop lost the trace"
    assert by_n[3] == 0, "a periodic timer's beats are nobody's hop"
    assert answers == [trace], "the answer's callback runs in the question's trace"
    assert server.trace == 0 and client.trace == 0
    # Asked outside any trace (demo.echo.request starts none): no hop is traced.
    seen.clear()
    client.request_async("demo.echo.request", lambda result, error: answers.append(client.trace),
                         text="y", timeout=DEADLINE_S)
    wait_for(lambda: pump() and len(answers) == 2 and any(m.payload["n"] == 1 for m in seen), DEADLINE_S,
             "the untraced round")
    assert answers[1] == 0 and all(m.trace == 0 for m in seen)


def test_a_topic_that_starts_work_starts_a_trace_when_published_outside_one(broker, nodes):
    phone, watcher = nodes("phone", publish_any=False), nodes("watcher")
    seen: list[Message] = []
    watcher.subscribe("phone.notification", seen.append)
    watcher.start()
    phone.start()
    for i in range(2):
        phone.publish("phone.notification", id=str(i), source="test", title="hello")
    wait_for(lambda: watcher.run_once(0.01) or len(seen) == 2, DEADLINE_S, "two notifications")
    assert TOPICS["phone.notification"].starts_trace
    assert all(m.trace for m in seen) and seen[0].trace != seen[1].trace, "each is a root of its own"
    with phone.tracing(77):
        phone.publish("phone.notification", id="2", source="test", title="inside")
    wait_for(lambda: watcher.run_once(0.01) or len(seen) == 3, DEADLINE_S, "the third")
    assert seen[2].trace == 77, "inside a trace it is a hop of that one, not a new root"
