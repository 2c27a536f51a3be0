"""Request/reply over the bus: round trip across processes, refusals, timeouts, and sniffability."""

import pytest

from bus import keys
from bus.errors import PayloadError, RequestFailed, RequestRefused, RequestTimeout
from tests.conftest import DEADLINE_S, read_json_lines, wait_for, wait_line


def test_round_trip_with_a_server_in_another_process(broker, procs, nodes):
    procs.start_ready("-m", "bustools.demo")
    client = nodes("client")
    assert client.request("demo.echo.request", text="hello", timeout=DEADLINE_S) == {"text": "HELLO", "n": 1}
    assert client.request("demo.echo.request", text="again", timeout=DEADLINE_S)["n"] == 2


def test_lens_bus_call_prints_the_reply(broker, procs):
    procs.start_ready("-m", "bustools.demo")
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
    procs.start_ready("-m", "bustools.demo")
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


def test_asking_for_focus_alone_does_not_change_a_nodes_pace(broker, nodes, runtime):
    # Only the shell's answer names a pace (shell.core.beat_for): the transport keeps no policy of its own.
    keys.generate(keys.app_keys_dir(runtime), ["app"])
    watcher = nodes("watcher")
    beats = []
    watcher.subscribe("node.heartbeat", lambda m: beats.append(m.payload) if m.source == "app" else None)
    watcher.start()
    app = nodes("app", heartbeat=2.0, key=keys.app_keys_dir(runtime) / "app.key_secret")
    app.start()
    wait_for(lambda: beats, DEADLINE_S, "the first beat", poll=watcher.run_once)
    answered = []
    app.request_async("shell.focus.request", lambda result, error: answered.append(error), timeout=0.5,
                      resource="display", kind="exclusive", cls="foreground", reason="test")
    wait_for(lambda: answered, DEADLINE_S, "the request timing out (nobody answers)",
             poll=lambda t: (app.run_once(min(t, 0.05)), watcher.run_once(0)))
    assert app.heartbeat == 2.0 and all(beat["period_s"] == 2.0 for beat in beats)


@pytest.mark.parametrize("own_key", [True, False], ids=["own key", "developer's key"])
def test_a_node_keeps_the_pace_the_shell_names_and_says_so_at_once_either_way(broker, nodes, runtime, own_key):
    # A stand-in shell (the developer's key may answer as anyone) that names a pace while the mic is held. A
    # node on the shared developer's key follows it as one with a key of its own does.
    shell = nodes("shell")
    shell.serve("shell.focus.request", lambda m: {"status": "granted", "reason": "free", "beat_s": 0.3})
    shell.serve("shell.release.request", lambda m: {"held": True, "beat_s": None})
    beats = []
    shell.subscribe("node.heartbeat", lambda m: beats.append(m.payload["period_s"]) if m.source == "eye" else None)
    shell.start()
    if own_key:
        keys.generate(keys.app_keys_dir(runtime), ["eye"])
    eye = nodes("eye", heartbeat=30.0, **({"key": keys.app_keys_dir(runtime) / "eye.key_secret"} if own_key else {}))
    eye.start()

    def both(t):
        eye.run_once(0)
        shell.run_once(min(t, 0.05))
    wait_for(lambda: beats == [30.0], DEADLINE_S, "the first beat", poll=both)
    done = []
    eye.request_async("shell.focus.request", lambda r, e: done.append(r), timeout=DEADLINE_S, resource="mic",
                      kind="exclusive", cls="foreground", reason="listen")
    wait_for(lambda: done and beats[-1] == 0.3, DEADLINE_S, "a beat at the named pace, at once", poll=both)
    eye.request_async("shell.release.request", lambda r, e: done.append(r), timeout=DEADLINE_S, resource="mic")
    # Slower again, and said at once: a shell still counting on 0.3 s would take the 30 s gap for a hang.
    wait_for(lambda: len(done) == 2 and beats[-1] == 30.0, DEADLINE_S, "a beat at its own pace, at once",
             poll=both)
    assert eye.heartbeat == 30.0
    eye._follow_pace({"beat_s": 0.0})  # a pace that would never let the loop sleep is not taken
    assert eye.heartbeat == 30.0


def test_a_pace_named_in_an_answer_that_came_too_late_is_kept_all_the_same(broker, nodes, runtime):
    """The shell granted and counts on the pace it named, whether or not the asker still waited: a capture
    granted after the asker's timeout, with the asker still on its own slow pace, was taken for a hang."""
    shell = nodes("shell")
    shell.serve("shell.focus.request", lambda m: {"status": "granted", "reason": "free", "beat_s": 0.3})
    shell.start()
    eye = nodes("eye", heartbeat=30.0)
    eye.start()
    errors = []
    eye.request_async("shell.focus.request", lambda r, e: errors.append(e), timeout=0.2, resource="mic",
                      kind="exclusive", cls="foreground", reason="listen")
    # The shell does not run until the asker has given up: its answer comes late, whatever the machine's load.
    wait_for(lambda: errors, DEADLINE_S, "the asker's timeout", poll=lambda t: eye.run_once(min(t, 0.05)))
    assert isinstance(errors[0], RequestTimeout) and eye.heartbeat == 30.0

    def both(t):
        eye.run_once(0)
        shell.run_once(min(t, 0.05))
    wait_for(lambda: eye.heartbeat == 0.3, DEADLINE_S, "the late answer's pace", poll=both)


def test_a_census_makes_every_process_beat_now_but_not_more_than_once(broker, nodes, monkeypatch):
    import bus.pace

    monkeypatch.setattr(bus.pace, "CENSUS_MIN_S", 60.0)  # a whole burst falls inside the window
    watcher = nodes("shell")  # the census is the shell's to call
    beats, echoes = [], []
    watcher.subscribe("node.heartbeat", lambda m: beats.append(m.payload) if m.source == "demo" else None)
    watcher.subscribe("demo.status", echoes.append)
    watcher.start()
    daemon = nodes("demo", heartbeat=600.0)  # its own next beat is ten minutes away
    markers = []
    daemon.subscribe("shell.saved", markers.append)
    daemon.start()
    wait_for(lambda: beats, DEADLINE_S, "the beat on announce", poll=watcher.run_once)
    # Its announce was a moment ago, yet the census is answered: at boot the shell asks because it may
    # have missed exactly that beat (sent before its subscription was live).
    for _ in range(5):
        watcher.publish("node.census", reason="test")
    watcher.publish("shell.saved", path="after the burst", foreground=None)  # same publisher, same lane: last
    wait_for(lambda: markers, DEADLINE_S, "the burst handled", poll=daemon.run_once)
    daemon.publish("demo.status", uptime_s=0.0, ticks=0, started_wall=0.0)  # after any beat it sent
    wait_for(lambda: echoes, DEADLINE_S, "the daemon's marker", poll=watcher.run_once)
    assert len(beats) == 2  # the announce, and one answer to five censuses
