"""A gap warning means a lost message, whatever kind of topic it is on: replies to several askers and
restricted topics (which the broker sends each reader on its own channel), probes across a broker
restart, and topics a node stopped and started hearing. Each lost message is counted once."""

from __future__ import annotations

import logging
import signal

import pytest

import bus.loop
from bus.lane import recv_frames
from bus.topics import TOPICS
from tests.bus.test_pubsub import collect
from tests.bus.test_security import FRAME, app_node
from tests.conftest import wait_for


def drops(node) -> dict[str, int]:
    return {topic: c.drops for topic, c in node.intake.counters.items() if c.drops}


def gap_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "gap of" in r.getMessage()]


def driver(*nodes):
    def run_all(seconds):
        for node in nodes:
            node.run_once(seconds / len(nodes))
    return run_all


def askers_and_a_server(nodes, runtime, names=("ann", "bob", "cy")):
    server = nodes("demo")
    count = iter(range(1, 10**6))
    server.serve("demo.echo.request", lambda m: {"text": m.payload["text"].upper(), "n": next(count)})
    askers = [app_node(nodes, runtime, name) for name in names]
    for node in (server, *askers):
        node.start()
    return server, askers


def ask_in_turn(askers, rounds: int, run_all) -> dict[str, list]:
    """Each asker asks ``rounds`` times, taking turns (one answer, or its timeout, before the next asks), so
    the server's replies alternate between them."""
    answers: dict[str, list] = {a.name: [] for a in askers}
    for i in range(rounds):
        for asker in askers:
            got = answers[asker.name]
            asker.request_async("demo.echo.request", lambda r, e, got=got: got.append((r, e)),
                                text=f"{asker.name} {i}", timeout=2.0)
            wait_for(lambda: len(got) == i + 1, what="the answer", poll=run_all)
    return answers


def test_replies_to_several_askers_report_no_gap_when_nothing_is_lost(broker, runtime, nodes, caplog):
    caplog.set_level(logging.WARNING)
    server, askers = askers_and_a_server(nodes, runtime)
    seqs = {a.name: [] for a in askers}
    for asker in askers:  # what each asker's replies carry as the server's sequence
        original = asker._on_reply
        asker._on_reply = lambda m, name=asker.name, original=original: (seqs[name].append(m.seq), original(m))
    answers = ask_in_turn(askers, 4, driver(server, *askers))
    assert all(error is None for got in answers.values() for _, error in got)
    # The server's sequence for the reply topic runs across all askers, so each sees jumps in it...
    assert all(max(s) - min(s) > len(s) - 1 for s in seqs.values())
    print("SEQS", seqs, [drops(n) for n in askers])
    # ...and none of them is a loss.
    for node in (server, *askers):
        assert drops(node) == {}, node.name
    assert gap_lines(caplog) == []


def test_one_reply_lost_on_the_way_to_one_asker_is_reported_once_and_only_there(broker, runtime, nodes, caplog,
                                                                                monkeypatch):
    caplog.set_level(logging.WARNING)
    server, askers = askers_and_a_server(nodes, runtime)
    ann = askers[0]
    reply_to_ann = b"\0" + ann.identity.encode() + b"\0demo.echo.reply"
    lost = []

    def lossy_recv(sock):
        """The broker's socket to ann loses its second reply, as a full pipe would."""
        frames = recv_frames(sock)
        if frames[0].startswith(reply_to_ann):
            lost.append(frames)
            if len(lost) == 2:
                return lossy_recv(sock)
        return frames
    monkeypatch.setattr(bus.loop, "recv_frames", lossy_recv)
    answers = ask_in_turn(askers, 4, driver(server, *askers))
    errors = [e for _, e in answers[ann.name] if e is not None]
    assert len(errors) == 1  # the lost reply's request timed out
    assert drops(ann) == {"demo.echo.reply": 1}
    for node in (server, *askers[1:]):
        assert drops(node) == {}, node.name
    [line] = gap_lines(caplog)
    assert "ann" in line and "gap of 1 " in line


def test_a_restricted_topic_granted_by_turns_reports_no_gap_for_what_went_to_others(broker, runtime, nodes, caplog):
    caplog.set_level(logging.WARNING)
    one, two = app_node(nodes, runtime, "one"), app_node(nodes, runtime, "two")
    seen = {"one": collect(one, "camera.frame"), "two": collect(two, "camera.frame")}
    camerad, shell = nodes("camerad"), nodes("shell")
    for node in (one, two, camerad, shell):
        node.start()
    run_all = driver(one, two, camerad, shell)

    def frames_for(name: str, total: int):
        """Frames one at a time (the stream lane drops when it must, and nothing may be lost here) until
        ``name`` has ``total`` of them; the grant changes as they go."""
        while len(seen[name]) < total:
            before = len(seen["one"]) + len(seen["two"])
            camerad.publish("camera.frame", **FRAME)
            wait_for(lambda: len(seen["one"]) + len(seen["two"]) > before, what="the frame", poll=run_all)

    shell.publish("privacy.capture", grants=["one:camera"], cmd=1, fault=None)
    frames_for("one", 3)
    shell.publish("privacy.capture", grants=["two:camera"], cmd=2, fault=None)
    frames_for("two", 3)
    shell.publish("privacy.capture", grants=["one:camera"], cmd=3, fault=None)
    frames_for("one", 6)
    seqs = [m.seq for m in seen["one"]]
    assert seqs != list(range(seqs[0], seqs[0] + len(seqs)))  # camerad's sequence jumped over two's frames
    assert drops(one) == drops(two) == {}
    assert gap_lines(caplog) == []


def test_a_topic_heard_again_after_unsubscribing_reports_no_gap(broker, nodes, caplog):
    caplog.set_level(logging.WARNING)
    publisher, listener = nodes("demo"), nodes("listener")
    ticks = []
    handler = ticks.append
    listener.subscribe("demo.tick", handler)
    marks = collect(listener, "demo.status")  # stays subscribed: tells when the broker has sent what went before
    for node in (publisher, listener):
        node.start()
    run_all = driver(publisher, listener)
    publisher.publish("demo.tick", n=1, text="heard")
    wait_for(lambda: ticks, what="the first tick", poll=run_all)
    listener.unsubscribe("demo.tick", handler)
    for n in (2, 3):
        publisher.publish("demo.tick", n=n, text="while nobody listens")
    publisher.publish("demo.status", uptime_s=1.0, ticks=3, started_wall=0.0)
    wait_for(lambda: any(m.payload["ticks"] == 3 for m in marks), what="the status after the ticks", poll=run_all)
    listener.subscribe("demo.tick", handler)
    wait_for(lambda: listener.ready, what="the subscription again", poll=run_all)
    publisher.publish("demo.tick", n=4, text="heard again")
    wait_for(lambda: len(ticks) >= 2, what="the tick after", poll=run_all)
    assert [m.payload["n"] for m in ticks] == [1, 4]
    assert drops(listener) == {}
    assert gap_lines(caplog) == []


@pytest.mark.fault
def test_no_node_reports_a_gap_in_probes_after_a_broker_restart(broker, procs, runtime, nodes, caplog):
    """Issue 28: "bus.probe: gap of 10" from every node after each broker restart. Probes sent while the
    broker is away are lost by design; and a node hears only its own."""
    caplog.set_level(logging.WARNING)
    one, two = app_node(nodes, runtime, "one"), app_node(nodes, runtime, "two")
    for node in (one, two):
        node.subscribe("demo.tick", lambda m: None)  # a stream lane too
        node.subscribe("demo.wave", lambda m: None)
        node.start()
    run_all = driver(one, two)
    procs.stop(broker, signal.SIGKILL)
    sent = {node.name: dict(node._seq) for node in (one, two)}
    wait_for(lambda: all(node._seq[topic] >= sent[node.name].get(topic, 0) + 5 for node in (one, two)
                         for topic in ("bus.probe", "bus.probe.stream")),
             what="probes into the void", poll=run_all)
    procs.start_broker()
    wait_for(lambda: one.ready and two.ready, what="both back", poll=run_all)
    for node in (one, two):
        assert drops(node) == {}, node.name
        assert node.intake.counters["bus.probe"].received > 0  # its own came back...
    assert gap_lines(caplog) == []
    assert TOPICS["bus.probe"].owner == "*"


def test_a_node_hears_only_its_own_probes(broker, runtime, nodes):
    one, two = app_node(nodes, runtime, "one"), app_node(nodes, runtime, "two")
    heard = {"one": [], "two": []}
    for node in (one, two):
        original = node._route

        def route(lane, msg, original=original, name=node.name):
            if msg.topic.startswith("bus.probe"):
                heard[name].append(msg.source)
            original(lane, msg)
        node._route = route
        node.subscribe("demo.wave", lambda m: None)  # both lanes
    one.start()
    # two probes its lanes while one's loop runs
    wait_for(lambda: all(lane.confirmed for lane in two._lanes.values()), what="two's lanes", poll=driver(one, two))
    assert set(heard["one"]) == {"one"} and set(heard["two"]) == {"two"}
