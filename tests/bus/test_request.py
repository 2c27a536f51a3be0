"""Request/reply over the bus: round trip across processes, refusals, timeouts, and sniffability."""

import pytest

from bus.errors import PayloadError, RequestFailed, RequestRefused, RequestTimeout
from tests.conftest import DEADLINE_S, read_json_lines, wait_line


def test_round_trip_with_a_server_in_another_process(broker, procs, nodes):
    procs.start_ready("-m", "bus.demo")
    client = nodes("client")
    assert client.request("demo.echo.request", text="hello", timeout=DEADLINE_S) == {"text": "HELLO", "n": 1}
    assert client.request("demo.echo.request", text="again", timeout=DEADLINE_S)["n"] == 2


def test_lens_bus_call_prints_the_reply(broker, procs):
    procs.start_ready("-m", "bus.demo")
    result = procs.run_lens("bus", "call", "demo.echo.request", "text=glasses", "--json", "--timeout", str(DEADLINE_S))
    assert result.returncode == 0, result.stderr
    assert read_json_lines(result.stdout) == [{"text": "GLASSES", "n": 1}]


def test_no_server_gives_a_clear_timeout_error(broker, nodes):
    client = nodes("client")
    with pytest.raises(RequestTimeout, match="no reply to demo.echo.request from demo within 0.3 s"):
        client.request("demo.echo.request", text="anyone?", timeout=0.3)


def test_a_refusal_and_a_server_bug_both_reach_the_caller(broker, nodes):
    server = nodes("demo")
    answers = iter([RequestRefused("not now"), ZeroDivisionError("oops")])

    def handler(msg):
        raise next(answers)

    server.serve("demo.echo.request", handler)
    server.start()
    client = nodes("client")
    client.start()
    replies = []
    for _ in range(2):
        client.request_async("demo.echo.request", lambda result, error: replies.append(error),
                              text="x", timeout=DEADLINE_S)
    while len(replies) < 2:
        server.run_once(0.01)
        client.run_once(0.01)
    assert isinstance(replies[0], RequestFailed) and "refused by demo: not now" in str(replies[0])
    assert "internal error in demo: ZeroDivisionError: oops" in str(replies[1])
    assert server.handler_errors == 1


def test_request_async_times_out_exactly_once(broker, nodes):
    client = nodes("client")
    client.start()
    outcomes = []
    client.request_async("demo.echo.request", lambda r, e: outcomes.append(e), text="x", timeout=0.2)
    while not outcomes:
        client.run_once(0.05)
    client.run_once(0.3)
    assert len(outcomes) == 1 and isinstance(outcomes[0], RequestTimeout)


def test_a_request_that_does_not_match_the_table_fails_before_sending(broker, nodes):
    client = nodes("client")
    with pytest.raises(PayloadError, match="field 'text' must be str"):
        client.request("demo.echo.request", text=5, timeout=1)


def test_requests_and_replies_are_sniffable(broker, procs, nodes):
    procs.start_ready("-m", "bus.demo")
    sniffer = procs.lens("bus", "sniff", "demo.echo", "--json", "--count", "2", "--timeout", str(DEADLINE_S))
    wait_line(sniffer.stderr, "listening")
    client = nodes("client")
    client.request("demo.echo.request", text="seen", timeout=DEADLINE_S)
    out = sniffer.stdout.read()
    request, reply = read_json_lines(out)
    assert request["topic"] == "demo.echo.request" and request["payload"]["text"] == "seen"
    assert reply["topic"] == "demo.echo.reply" and reply["payload"]["to"] == "client"
    assert reply["payload"]["cid"] == request["payload"]["cid"]


def test_only_the_owner_named_in_the_table_may_publish_a_topic(runtime, nodes):
    from bus.errors import NotOwner, UnknownTopic

    intruder = nodes("not-demo")
    with pytest.raises(NotOwner, match="demo.tick is published by demo, not by not-demo"):
        intruder.publish("demo.tick", n=1, text="x")
    with pytest.raises(UnknownTopic, match="unknown topic 'demo.tock'"):
        intruder.publish("demo.tock", n=1)
    intruder.publish("demo.echo.request", cid=1, text="anyone may ask")  # requests are open to all
    nodes("demo").publish("demo.tick", n=1, text="the owner may")
