"""Who may say what on the bus: keys the broker refuses, publishes it drops and reports, restricted topics
only for the identity the shell granted, and headers that lie about their sender."""

from __future__ import annotations

import json
import os

import zmq

from bus import access, keys
from bus.envelope import channel, encode
from bus.errors import BusTimeout
from bus.topics import TOPICS
from tests.bus.test_pubsub import collect
from tests.conftest import DEADLINE_S, wait_for

FRAME = {"id": 1, "slot": 0, "gen": 2, "width": 4, "height": 4, "format": "rgb", "mono_ns": 1, "owner": "viewer",
         "ring": 1}


def app_node(nodes, runtime, name: str, **kwargs):
    """A node with an app's key, minted as appd mints them (the node's own checks off: the broker's are tested)."""
    keys.generate(keys.app_keys_dir(runtime), [name])
    return nodes(name, key=keys.app_keys_dir(runtime) / f"{name}.key_secret", **kwargs)


def security_reports(node):
    return collect(node, "bus.security")


def reported(reports, identity, topic):
    return [r.payload for r in reports if r.payload["identity"] == identity and r.payload["topic"] == topic]


def test_a_process_without_a_known_key_cannot_connect(broker, runtime, nodes):
    listener = nodes("listener")
    ticks = collect(listener, "demo.tick")
    reports = security_reports(listener)
    listener.start()
    ctx = zmq.Context()
    try:
        plain = ctx.socket(zmq.PUB)  # no security at all
        stranger = ctx.socket(zmq.PUB)  # CURVE, but a key the broker never saw
        public, secret = zmq.curve_keypair()
        keys.as_client(stranger, keys.KeyPair("stranger", public, secret, runtime.dir), keys.broker_public(runtime))
        forger = ctx.socket(zmq.PUB)  # the lanes' PLAIN (bus.access), a known name and a made-up pass
        forger.plain_username, forger.plain_password = b"shell", b"0" * 64
        intruders = (plain, stranger, forger)
        for sock in intruders:
            sock.connect(runtime.publish_endpoint("reliable"))
        latch = ctx.socket(zmq.DEALER)  # and the unknown key on the latch, where passes are handed out
        keys.as_client(latch, keys.KeyPair("stranger", public, secret, runtime.dir), keys.broker_public(runtime))
        latch.connect(runtime.latch_endpoint)
        latch.send_multipart([b"", access.request(1)])
        seq = iter(range(1, 10**6))
        wait_for(lambda: [s.send_multipart(encode(TOPICS["demo.tick"], "demo", 1, next(seq), {"n": 1, "text": "x"}))
                          for s in intruders] and {r["reason"] for r in reported(reports, "?", "<connect>")}
                 >= {"unknown key", "wrong pass"},
                 what="the refusals of the unknown key and of the forged pass", poll=listener.run_once)
        assert ticks == []  # nothing any of them sent reached anyone
        assert latch.poll(0) == 0  # and nobody told the stranger how to enter
        for sock in (*intruders, latch):
            sock.close(0)
    finally:
        ctx.term()
    # A node with a key the broker does not hold never becomes ready, and says where it looked.
    keys.generate(runtime.dir / "elsewhere", ["lost"])
    orphan = nodes("lost", key=runtime.dir / "elsewhere" / "lost.key_secret")
    orphan.subscribe("demo.tick", lambda m: None)
    try:
        orphan.start(timeout=1.0)
        raise AssertionError("a node with an unknown key became ready")
    except BusTimeout:
        pass


def test_an_app_that_publishes_what_is_not_its_own_has_no_effect_and_is_reported(broker, runtime, nodes):
    listener = nodes("listener")
    watched = collect(listener, "privacy")
    notices = collect(listener, "shell.focus.notice")
    power = collect(listener, "power.state")
    reports = security_reports(listener)
    listener.start()
    evil = app_node(nodes, runtime, "evil", publish_any=True).start()
    evil.publish("privacy.indicator", on=False, cmd=99, reason="nothing to see")
    evil.publish("shell.focus.notice", owner="evil", resource="camera", status="granted", reason="trust me")
    evil.publish("power.state", batteries=[], bridge={}, percent=100.0, present=[True, True], load_w=0.0,
                 backend="sim")
    evil.publish("node.heartbeat", node="evil", pid=1, incarnation=1, period_s=None)  # its to say: passes
    wait_for(lambda: all(reported(reports, "evil", t) for t in ("privacy.indicator", "shell.focus.notice",
                                                                  "power.state")),
             what="a report for each", poll=listener.run_once)
    assert reported(reports, "evil", "privacy.indicator")[0]["reason"] == "published by shell only"
    assert (watched, notices, power) == ([], [], [])
    # The same message from the shell's key goes through: it is the sender that is refused, not the topic.
    shell = nodes("shell", key=keys.own_pair(runtime, keys.DEVELOPER).path, publish_any=True).start()
    shell.publish("privacy.indicator", on=False, cmd=1, reason="idle")
    wait_for(lambda: watched, what="the shell's indicator", poll=listener.run_once)
    assert [m.source for m in watched] == ["shell"]


def test_camera_frames_reach_only_the_app_the_shell_granted_capture(broker, runtime, nodes):
    viewer = app_node(nodes, runtime, "viewer")
    nosy = app_node(nodes, runtime, "nosy")
    seen, peeked, everything = collect(viewer, "camera.frame"), collect(nosy, "camera"), collect(nosy, "")
    for node in (viewer, nosy):
        node.start()
    camerad = nodes("camerad").start()
    shell = nodes("shell")  # the developer's key, speaking as the shell
    reports = security_reports(shell)
    shell.start()

    def run_all(seconds):
        for node in (viewer, nosy, camerad, shell):
            node.run_once(seconds / 4)

    def frames_until(condition, what):
        wait_for(lambda: camerad.publish("camera.frame", **FRAME) or condition(), what=what, poll=run_all)

    shell.publish("privacy.capture", grants=["viewer:camera"], cmd=1, fault=None)
    frames_until(lambda: seen, "a frame for the granted app")
    # nosy subscribed to "camera" and to everything, yet it never gets one, and asking for the viewer's
    # channel by name is refused and reported.
    raw = nosy._lanes["stream"].sub
    raw.setsockopt(zmq.SUBSCRIBE, channel(b"viewer", b"camera.frame"))
    frames_until(lambda: len(seen) >= 5 and reported(reports, "nosy", "\x00viewer\x00camera.frame"),
                 "more frames, and the refusal")
    assert [m for m in peeked + everything if m.topic == "camera.frame"] == []
    # The shell withdraws the grant: no more frames, from the next message on.
    shell.publish("privacy.capture", grants=[], cmd=2, fault=None)
    probe = collect(viewer, "privacy.capture")
    wait_for(lambda: probe and probe[-1].payload["grants"] == [], what="the withdrawal", poll=run_all)
    count = len(seen)
    camerad.publish("camera.frame", **FRAME)
    marker = collect(viewer, "camera.state")
    camerad.publish("camera.state", mode="off", owner=None, fps=0.0, frames=0, ring=0, width=0, height=0,
                    backend="sim", paused=False, recording=None, why="test")
    wait_for(lambda: marker, what="a message sent after the last frame", poll=run_all)
    assert len(seen) == count


def test_a_header_that_lies_about_its_sender_is_dropped_by_every_subscriber(broker, runtime, nodes):
    listener = nodes("listener")
    beats = collect(listener, "node.heartbeat")
    listener.start()
    keys.generate(keys.app_keys_dir(runtime), ["liar"])
    ctx = zmq.Context()
    liar = ctx.socket(zmq.PUB)  # the liar's own key, and a header that says "shell"
    access.authenticate(liar, runtime, keys.load_pair(keys.app_keys_dir(runtime) / "liar.key_secret"))
    liar.connect(runtime.publish_endpoint("reliable"))
    honest = app_node(nodes, runtime, "honest").start()
    seq = iter(range(1, 10**6))
    try:
        wait_for(lambda: (liar.send_multipart(encode(TOPICS["node.heartbeat"], "shell", 1, next(seq),
                                                     {"node": "shell", "pid": 1, "incarnation": 1})),
                          honest.publish("node.heartbeat", node="honest", pid=2, incarnation=2, period_s=None))
                 and any(m.source == "honest" for m in beats) and listener.intake.forged,
                 what="the honest beat and the forged one", poll=listener.run_once)
    finally:
        liar.close(0)
        ctx.term()
    assert {m.source for m in beats} == {"honest"}
    assert "claims to be 'shell' but is 'liar'" in listener.intake.counters["node.heartbeat"].last_error


def test_a_reply_reaches_the_app_that_asked_and_nobody_else(broker, runtime, nodes):
    displayd = nodes("displayd")
    displayd.serve("display.snapshot.request", lambda msg: {"png": b"what the wearer sees", "width": 1,
                                                             "height": 1, "frames": 1})
    asker = app_node(nodes, runtime, "asker")
    nosy = app_node(nodes, runtime, "nosy")
    overheard = []
    for prefix in ("display", "display.snapshot.reply", "node", ""):
        nosy.subscribe(prefix, overheard.append)
    for node in (displayd, asker, nosy):
        node.start()
    answers = []
    asker.request_async("display.snapshot.request", lambda result, error: answers.append((result, error)),
                        timeout=DEADLINE_S)
    wait_for(lambda: answers, what="the answer", poll=lambda t: [n.run_once(t / 3) for n in (displayd, asker, nosy)])
    assert answers[0][1] is None and answers[0][0]["png"] == b"what the wearer sees"
    # Anything sent to nosy after the reply has reached it by the time this does (one publisher, in order).
    displayd.publish("node.heartbeat", node="displayd", pid=os.getpid(), incarnation=1, period_s=None)
    wait_for(lambda: any(m.topic == "node.heartbeat" for m in overheard), what="a later message",
             poll=lambda t: [n.run_once(t / 2) for n in (displayd, nosy)])
    assert [m for m in overheard if m.topic.endswith(".reply")] == []


def test_a_state_with_readers_is_latched_for_them_alone(broker, runtime, nodes):
    """notifications.state names the latest notification: the HUD and the home screen read it, no other app,
    neither live nor in the snapshot a node gets when it starts (issue 27: what the wearer was shown)."""
    notifications = app_node(nodes, runtime, "notifications")
    live_home, live_nosy = nodes("displayd"), app_node(nodes, runtime, "nosy")
    heard = {"home": [], "nosy": []}
    live_home.subscribe("notifications", heard["home"].append)
    for prefix in ("notifications", ""):
        live_nosy.subscribe(prefix, heard["nosy"].append)
    for node in (notifications, live_home, live_nosy):
        node.start()
    notifications.publish("notifications.state", count=1, unread=1, latest="Bank: your PIN is 4321")
    wait_for(lambda: heard["home"], what="the HUD hearing it live",
             poll=lambda t: [n.run_once(t / 3) for n in (notifications, live_home, live_nosy)])
    late = {"home": [], "nosy": []}
    late_home, late_nosy = app_node(nodes, runtime, "home"), app_node(nodes, runtime, "nosy2")
    late_home.subscribe("notifications.state", late["home"].append)
    for prefix in ("notifications.state", "node.heartbeat"):
        late_nosy.subscribe(prefix, late["nosy"].append)
    late_home.start()  # start() returns once the latched snapshot is delivered
    late_nosy.start()
    wait_for(lambda: late["home"], what="the snapshot", poll=lambda t: late_home.run_once(t))
    assert late["home"][0].payload["latest"] == "Bank: your PIN is 4321" and late["home"][0].latched
    late_nosy.publish("node.heartbeat", node="nosy2", pid=os.getpid(), incarnation=1, period_s=None)
    wait_for(lambda: any(m.topic == "node.heartbeat" for m in late["nosy"]), what="a later message",
             poll=lambda t: late_nosy.run_once(t))
    assert [m for m in late["nosy"] + heard["nosy"] if m.topic == "notifications.state"] == []


def test_a_snapshot_of_a_state_with_readers_is_no_gap_and_no_second_delivery(broker, runtime, nodes):
    """A state with readers comes live on the reader's personal channel, counted, and in a snapshot from the
    broker's cache without a count (each time the node subscribes anew). The cached one was checked against
    the snapshot before it: 94 messages heard live read as lost (bench/feel.py's display.state), and a value
    already heard live was handed to the handlers again."""
    notifications = app_node(nodes, runtime, "notifications")
    reader = nodes("displayd")
    heard = []
    reader.subscribe("notifications.state", heard.append)
    notifications.start()
    notifications.publish("notifications.state", count=1, unread=1, latest=None)
    notifications.flush()
    reader.start()  # the first value from the snapshot
    wait_for(lambda: heard, what="the snapshot", poll=reader.run_once)
    for count in (2, 3, 4):
        notifications.publish("notifications.state", count=count, unread=count, latest=None)
    wait_for(lambda: heard[-1].payload["count"] == 4, what="the live values",
             poll=lambda t: [n.run_once(t / 2) for n in (notifications, reader)])
    for prefix in ("node.heartbeat", "power.state"):  # each a new snapshot, holding count 4 again
        reader.subscribe(prefix, lambda msg: None)
        wait_for(lambda: reader.ready, what="the lane confirmed again, the snapshot delivered",
                 poll=lambda t: [n.run_once(t / 2) for n in (notifications, reader)])
    notifications.publish("notifications.state", count=5, unread=5, latest=None)
    wait_for(lambda: heard[-1].payload["count"] == 5, what="a later value",
             poll=lambda t: [n.run_once(t / 2) for n in (notifications, reader)])
    assert [m.payload["count"] for m in heard] == [1, 2, 3, 4, 5]
    counters = reader.intake.counters["notifications.state"]
    assert counters.drops == 0 and counters.duplicates == 2


def test_lens_keys_generate_writes_a_pair_per_process_secret_to_its_owner_and_refuses_a_bad_name(procs, tmp_path):
    import stat

    from manager.processes import PROCESSES

    directory = tmp_path / "keys"
    first = procs.run_lens("keys", "generate", str(directory), "--developer", "--json")
    assert first.returncode == 0, first.stderr
    written = json.loads(first.stdout)["written"]
    assert written == [p.name for p in PROCESSES] + [keys.BRIDGE, keys.DEVELOPER]
    for name in written:
        assert stat.S_IMODE((directory / f"{name}.key_secret").stat().st_mode) == 0o600
        assert stat.S_IMODE((directory / f"{name}.key").stat().st_mode) == 0o644
        assert keys.load_pair(directory / f"{name}.key_secret").public == keys.load_public(directory / f"{name}.key")
    before = (directory / "shell.key").read_bytes()
    again = procs.run_lens("keys", "generate", str(directory), "shell", "--json")
    assert json.loads(again.stdout) == {"written": [], "kept": ["shell"]}  # an existing key is kept
    assert (directory / "shell.key").read_bytes() == before
    bad = procs.run_lens("keys", "generate", str(directory), "ok-name", "Not/A-Name")
    assert bad.returncode == 2 and "'Not/A-Name': not a key name" in bad.stderr
    assert not (directory / "ok-name.key").exists()  # nothing written when one name is wrong


def test_the_broker_says_once_when_the_last_connection_of_a_key_goes(broker, runtime, nodes):
    watcher = nodes("watcher")
    departed, stats = collect(watcher, "bus.departed"), collect(watcher, "bus.broker.stats")
    watcher.start()
    first = app_node(nodes, runtime, "visitor")
    first.subscribe("camera.state", lambda msg: None)  # a second lane: two connections of its own
    first.start()
    second = nodes("visitor", key=keys.app_keys_dir(runtime) / "visitor.key_secret").start()
    first.close()
    second.close()
    wait_for(lambda: departed, what="bus.departed", poll=watcher.run_once)
    seen = len(stats)
    wait_for(lambda: len(stats) >= seen + 2, what="two more broker stats", poll=watcher.run_once)
    # Three connections went, one at a time: one word, when the last of them did.
    assert [m.payload for m in departed] == [{"identity": "visitor"}] and departed[0].source == "broker"


def spotter_node(nodes, runtime):
    """A node with the wake-phrase spotter's own provisioned key (as `lens keys generate` writes the table's)."""
    keys.generate(keys.keys_dir(runtime), ["waked"])
    return nodes("waked", key=keys.keys_dir(runtime) / "waked.key_secret", publish_any=True)


def test_the_wake_phrase_spotter_may_say_that_it_heard_the_phrase_and_nothing_else(broker, runtime, nodes):
    listener = nodes("listener")
    heard = collect(listener, "assistant")
    spoken, told, notes = collect(listener, "audio.speak"), collect(listener, "privacy"), collect(listener, "phone")
    reports = security_reports(listener)
    listener.start()
    waked = spotter_node(nodes, runtime).start()
    # What an ear with a leak would try: words to speak, a notification, the assistant's own topic, the
    # shell's, a request to show a card, and a topic anyone else may say.
    waked.publish("audio.speak", text="hey lens what time is it", app="waked", interrupt=False, id=None)
    waked.publish("phone.notification", id="1", source="waked", title="heard", body="what time is it")
    waked.publish("assistant.asked", session="s1")
    waked.publish("privacy.capture", grants=["waked:mic"], cmd=1, fault=None, listening="waked")
    waked.publish("display.card.request", cid=7, id="x", title="what time is it")
    refused = ("audio.speak", "phone.notification", "assistant.asked", "privacy.capture", "display.card.request")
    wait_for(lambda: all(reported(reports, "waked", t) for t in refused), what="a report for each",
             poll=listener.run_once)
    assert all("waked may say nothing but its own topics" in reported(reports, "waked", t)[0]["reason"]
               for t in refused)
    waked.publish("assistant.wake", seq=3, mono_ns=1)  # its own: goes through
    wait_for(lambda: heard, what="the wake phrase heard", poll=listener.run_once)
    assert [(m.topic, m.source) for m in heard] == [("assistant.wake", "waked")]
    assert (spoken, told, notes) == ([], [], [])


def test_the_mic_while_nobody_captures_reaches_only_the_listener_the_shell_names(broker, runtime, nodes):
    waked = spotter_node(nodes, runtime)
    nosy = app_node(nodes, runtime, "nosy")
    blocks, peeked, everything = collect(waked, "audio.wake.mic"), collect(nosy, "audio"), collect(nosy, "")
    for node in (waked, nosy):
        node.start()
    audiod = nodes("audiod").start()  # the developer's key, speaking as audiod
    shell = nodes("shell").start()
    block = {"owner": "waked", "seq": 1, "rate": 16000, "mono_ns": 1, "pcm": b"\0" * 640}

    def run_all(seconds):
        for node in (waked, nosy, audiod, shell):
            node.run_once(seconds / 4)

    shell.publish("privacy.capture", grants=[], cmd=1, fault=None, listening="waked")
    wait_for(lambda: audiod.publish("audio.wake.mic", **block) or blocks, what="a block for the listener",
             poll=run_all)
    shell.publish("privacy.capture", grants=["nosy:mic"], cmd=2, fault=None, listening=None)  # a capture now
    probe = collect(waked, "privacy.capture")
    wait_for(lambda: probe and probe[-1].payload["listening"] is None, what="the withdrawal", poll=run_all)
    count = len(blocks)
    audiod.publish("audio.wake.mic", **block)
    marker = collect(waked, "audio.state")
    audiod.publish("audio.state", backend="sim", voice="tones", rate=16000, streams=[], mic={}, xruns=0, fault=None)
    wait_for(lambda: marker, what="a message sent after the last block", poll=run_all)
    assert len(blocks) == count, "a block reached the spotter after the shell named no listener"
    assert [m for m in peeked + everything if m.topic == "audio.wake.mic"] == [], "another heard the idle mic"


def test_a_product_images_broker_knows_no_developer_traffic(procs, runtime, nodes):
    """Bench and demo topics are not the product's (bus.development): a broker started as a product image's
    unit (LENS_IMAGE, no LENS_DEVELOPMENT) refuses them as unknown, while a developer's tool that knows them
    still publishes them."""
    procs.start_ready("-m", "broker", env_extra={"LENS_IMAGE": "1", "LENS_DEVELOPMENT": "0"})
    listener = nodes("listener")
    demo, beats = collect(listener, "demo"), collect(listener, "node.heartbeat")
    listener.start()
    tool = nodes("demo").start()
    tool.publish("demo.tick", n=1, text="a developer's traffic")
    tool.publish("node.heartbeat", node="demo", pid=os.getpid(), incarnation=1, period_s=None)  # after it
    wait_for(lambda: [m for m in beats if m.source == "demo"], what="the tool's beat after its tick",
             poll=listener.run_once)
    assert demo == []
