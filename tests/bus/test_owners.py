"""The table's owner column, held by every node: a handler hears an owned topic from its owner only.

The broker already refuses every publish of an owned topic by anyone but its owner (broker.gate), with
one exception by design: the developer's key may say anything as anyone (a replay, `lens bus pub`). That
is the way past the broker these tests take: a node named "intruder" on the developer's key. The node's
rule is the second line behind the broker's (a gate with a bug, a development machine), and the one that
lets handlers stop checking ``msg.source`` themselves.
"""

from __future__ import annotations

import logging

from bus.errors import BusError
from tests.conftest import DEADLINE_S, wait_for

INDICATOR = {"on": True, "reason": "test"}


def turns(*nodes):
    def poll(remaining):
        for node in nodes:
            node.run_once(min(remaining, 0.05) / len(nodes))
    return poll


def test_an_owned_topic_from_another_reaches_only_the_subscriptions_that_take_anyones_and_is_counted(
        broker, nodes, caplog):
    listener = nodes("listener")
    handled, watched, notes = [], [], []
    listener.subscribe("privacy.indicator", handled.append)
    listener.subscribe("privacy.indicator", watched.append, from_anyone=True)  # a tool watching everything
    listener.subscribe("phone.notification", notes.append)  # anyone's to publish
    intruder = nodes("intruder", publish_any=True)  # the developer's key: the broker lets it speak as anyone
    shell = nodes("shell")
    for node in (listener, intruder, shell):
        node.start()
    caplog.set_level(logging.WARNING, logger="bus.intake")

    intruder.publish("privacy.indicator", cmd=99, **INDICATOR)
    intruder.publish("phone.notification", id="1", source="phone", title="hello")
    shell.publish("privacy.indicator", cmd=100, **INDICATOR)
    wait_for(lambda: len(watched) == 2 and notes, DEADLINE_S, "both indicators and the notification",
             poll=turns(listener, intruder, shell))

    assert sorted((m.source, m.payload["cmd"]) for m in watched) == [("intruder", 99), ("shell", 100)]
    assert [(m.source, m.payload["cmd"]) for m in handled] == [("shell", 100)]
    assert [m.source for m in notes] == ["intruder"]
    stats = listener.stats()
    assert stats["topics"]["privacy.indicator"]["not_owner"] == 1 and stats["totals"]["not_owner"] == 1
    said = [r.getMessage() for r in caplog.records if "privacy.indicator" in r.getMessage()]
    assert len(said) == 1 and "'intruder'" in said[0] and "owner is 'shell'" in said[0]


def test_a_reply_from_anyone_but_the_requests_server_is_not_taken_for_the_answer(broker, nodes):
    asker = nodes("asker")
    intruder = nodes("intruder", publish_any=True)
    server = nodes("demo")
    server.serve("demo.echo.request", lambda msg: {"text": msg.payload["text"].upper(), "n": 1})
    for node in (asker, intruder, server):
        node.start()
    answers = []
    cid = asker.request_async("demo.echo.request", lambda result, error: answers.append((result, error)),
                              timeout=DEADLINE_S, text="hi")
    wait_for(lambda: asker.ready, DEADLINE_S, "the asker's reply subscription live", poll=asker.run_once)
    # The forged answer first, while the server has not yet read the request.
    intruder.publish("demo.echo.reply", to="asker", cid=cid, ok=True, result={"text": "forged", "n": 0})
    wait_for(lambda: asker.intake.totals()["not_owner"] == 1, DEADLINE_S, "the forged reply dropped",
             poll=turns(asker, intruder))
    assert answers == []
    wait_for(lambda: answers, DEADLINE_S, "the server's answer", poll=turns(asker, server))
    result, error = answers[0]
    assert error is None and result == {"text": "HI", "n": 1}


def test_a_request_is_served_whoever_asks(broker, nodes):
    """Requests are the exception: their owner serves them, and anyone asks."""
    server, asker = nodes("demo"), nodes("stranger")
    server.serve("demo.echo.request", lambda msg: {"text": msg.source, "n": 1})
    for node in (server, asker):
        node.start()
    answers = []
    asker.request_async("demo.echo.request", lambda result, error: answers.append((result, error)),
                        timeout=DEADLINE_S, text="x")
    wait_for(lambda: answers, DEADLINE_S, "the answer", poll=turns(asker, server))
    assert answers == [({"text": "stranger", "n": 1}, None)]
    assert not isinstance(answers[0][1], BusError) and server.intake.totals()["not_owner"] == 0


def test_a_subscription_to_an_event_does_not_hear_the_questions_named_under_it(broker, nodes):
    """subscribe("demo") is demo's events; demo.echo.request under it is someone's question to demo, whose
    payload a handler of events cannot read (assistantd's audio.mic handler failed on audio.mic.request)."""
    listener, asker, server = nodes("listener"), nodes("stranger"), nodes("demo")
    heard, everything = [], []
    listener.subscribe("demo", heard.append)
    listener.subscribe("demo", everything.append, from_anyone=True)
    server.serve("demo.echo.request", lambda msg: {"text": "ok", "n": 1})
    for node in (listener, asker, server):
        node.start()
    answers = []
    asker.request_async("demo.echo.request", lambda result, error: answers.append(result),
                        timeout=DEADLINE_S, text="x")
    wait_for(lambda: answers and {"demo.echo.request", "demo.echo.reply"} <= {m.topic for m in everything},
             DEADLINE_S, "the answer, and the question and answer seen by the tool", poll=turns(asker, server, listener))
    server.publish("demo.tick", n=1, text="t")
    wait_for(lambda: heard, DEADLINE_S, "demo's event", poll=turns(server, listener))
    assert [m.topic for m in heard] == ["demo.tick"] and listener.handler_errors == 0
