"""The boot check of attacks on the running bus (issue 27's hostile suite, tests/hostile, here under the board's
real systemd and its sandboxes), each refused and reported, the broker standing:
- hostile: idle keyless connections, an unknown key, a forged header, an app publishing another's topic,
  an app reading the wearer's secrets or capturing through the assistant, an app's flood of notifications,
  an app driving the simulation, a 10 MB message, every request an app may send fuzzed."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from checklib import Bus, RUNTIME, journal, lensos_units, main_pid, report, show, wait

# In a notification and a request of the wearer's: in nothing an app hears (attack 5). Letters in it: a bare
# "4321" was found "leaked" in bus.broker.stats, whose counters and floats can hold any four digits (CI, red)
SECRET = "QZX4321"
FUZZ_PER_TOPIC = 6  # payloads of each request an app may send (the laptop suite sends 24; TCG is slow)
NOTIFICATIONS = 600  # from an app, six times the topic's burst: the rest refused at the broker (attack 6)
# Idle unix connections with no ZeroMQ greeting, as fast as one process makes them (each connect bounded:
# a full listen backlog would block it), 4,000 of them (the broker sheds what is over its caps), then held
# idle; progress on stdout every 500. `lensos.flood=N` on the kernel line makes it N, to look at a bigger one.
FLOOD = int(next((arg.split("=", 1)[1] for arg in open("/proc/cmdline").read().split()
                  if arg.startswith("lensos.flood=")), 4000))
ATTACK = str(Path(__file__).with_name("idle_flood.py"))  # the attacker, as the laptop's suite runs it


def check_hostile() -> None:
    import zmq
    from bus import keys
    from bus.envelope import encode
    from bus.runtime import Runtime
    from bus.topics import TOPICS
    runtime = Runtime.resolve(RUNTIME)
    broker_pid = main_pid("lensos-broker.service")
    listener = Bus("demo.tick", "bus.security", "privacy.indicator", "node.heartbeat", "assistant.state",
                   "phone.notification")
    talker = Bus(name="demo")
    ctx = zmq.Context()
    secrets = tempfile.mkdtemp()
    results = {}
    attacker = None
    try:
        # 1. idle connections without a key (no ZeroMQ greeting), thousands, while valid traffic flows. From a
        # process of its own, as an attacker would be: the broker sheds the newest connections of the process
        # that holds the most, which must be the attacker's, not this check's nodes (in one process, the first
        # run of this check waited out its 40 min). Each connect is bounded: a full backlog blocks it.
        restarts_before = {u: show(u, "NRestarts")["NRestarts"] for u in lensos_units()}
        attack_at = time.monotonic()
        attacker = subprocess.Popen([sys.executable, ATTACK, str(FLOOD), *map(str, (
            runtime.socket_path(name) for name in runtime.socket_names()))], stdout=subprocess.PIPE, text=True)
        opened = [0]

        def count():  # its progress, read aside: a stalled attacker must not stall the check
            for line in attacker.stdout:
                opened[0] = int(line.split()[1])
        threading.Thread(target=count, daemon=True).start()
        wait(lambda: opened[0] >= FLOOD * 3 // 4 or attacker.poll() is not None, 120 * max(1, FLOOD // 4000))
        sent = [0]

        def flowing():
            sent[0] += 1
            talker.node.publish("demo.tick", n=sent[0], text="during the attack")
            talker.node.run_once(0.02)
            return len([m for m in listener.seen if m[1] == "demo.tick"]) >= 20
        flowed = listener.pump(flowing, 60)
        try:
            late = Bus("demo.tick")  # a process that starts during the attack gets on the bus
            late.close()
            late_node = True
        except Exception as exc:  # noqa: BLE001 (reported, not raised: the other attacks still run)
            late_node = repr(exc)
        attacker.kill()
        attacker.wait(30)
        results["idle"] = {"opened": opened[0], "ticks": bool(flowed), "late_node": late_node}
        # 2. a key the broker never saw
        stranger = ctx.socket(zmq.PUB)
        public, secret = zmq.curve_keypair()
        keys.as_client(stranger, keys.KeyPair("stranger", public, secret, runtime.dir), keys.broker_public(runtime))
        stranger.connect(runtime.publish_endpoint("reliable"))
        seq = iter(range(1, 10**6))
        refused = listener.pump(lambda: stranger.send_multipart(encode(
            TOPICS["demo.tick"], "demo", 1, next(seq), {"n": -1, "text": "stranger"})) or any(
            m[1] == "bus.security" and m[2]["identity"] == "?" and m[2]["topic"] == "<connect>"
            for m in listener.seen), 30)
        results["unknown_key"] = {"reported": bool(refused),
                                  "delivered": any(m[2].get("text") == "stranger" for m in listener.seen)}
        stranger.close(0)
        # 3. an app's own key (minted as appd mints them), and a header that says it is the shell
        liar_key = Path(secrets, "liar.key_secret")
        with open(os.open(liar_key, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(keys.mint(keys.app_keys_dir(runtime), "liar"))
        from bus import access
        liar = ctx.socket(zmq.PUB)
        access.authenticate(liar, runtime, keys.load_pair(liar_key))
        liar.connect(runtime.publish_endpoint("reliable"))
        listener.pump(lambda: liar.send_multipart(encode(TOPICS["node.heartbeat"], "shell", 1, next(seq), {
            "node": "shell", "pid": 1, "incarnation": 1})) or listener.node.intake.forged, 30)
        results["forged_header"] = {"dropped": listener.node.intake.forged,
                                    "delivered": any(m[1] == "node.heartbeat" and m[2]["pid"] == 1
                                                     for m in listener.seen)}
        liar.close(0)
        # 4. an app publishing what is not its own (the shell's word to the LED)
        evil = Bus(name="liar", key=liar_key)
        evil.node.publish_any = True
        listener.pump(lambda: evil.node.publish("privacy.indicator", on=False, cmd=99, reason="nothing to see")
                      or any(m[1] == "bus.security" and m[2]["identity"] == "liar"
                             and m[2]["topic"] == "privacy.indicator" for m in listener.seen), 30)
        evil.close()
        results["not_its_topic"] = {
            "reported": [m[2]["reason"] for m in listener.seen if m[1] == "bus.security"
                         and m[2]["identity"] == "liar"][:3],
            "delivered": any(m[1] == "privacy.indicator" and m[3] != "shell" for m in listener.seen)}
        # 5. what the wearer is sent and asks, read by an app's own key subscribed to everything; and the
        # assistant as its deputy: the app (no manifest, so no permission) asks for a photo
        results["deputy"] = deputy(listener, talker, liar_key)
        # 6. a flood of notifications from that app: held to the topic's rate at the broker, every one delivered
        # or counted as refused
        flood = Bus(name="liar", key=liar_key)
        for n in range(NOTIFICATIONS):
            flood.node.publish("phone.notification", id=str(n), source="liar", title="flood", body="x" * 1000)
            if n % 50 == 0:
                flood.node.run_once(0)
        try:
            flood.node.flush(60)
        except Exception:  # noqa: BLE001 (what was counted is reported; the other attacks still run)
            pass

        def refused() -> int:
            return max([m[2]["count"] for m in listener.seen if m[1] == "bus.security" and m[2]["identity"] == "liar"
                        and m[2]["topic"] == "phone.notification"], default=0)

        def delivered() -> int:
            return sum(1 for m in listener.seen if m[1] == "phone.notification" and m[3] == "liar")
        listener.pump(lambda: refused() + delivered() >= NOTIFICATIONS, 90)
        flood.close()
        results["flood"] = {"sent": NOTIFICATIONS, "refused": refused(), "delivered": delivered()}
        # 7. the simulation is the developer's tools' alone: an app asking to break the LED is refused, reported
        sim = Bus(name="liar", key=liar_key)
        outcome = sim.ask("led.sim.request", fault="broken by an app", timeout=5)
        sim.close()
        results["sim"] = {"answer": outcome if isinstance(outcome, str) else "answered", "reported": listener.pump(
            lambda: next((m[2]["reason"] for m in listener.seen if m[1] == "bus.security"
                          and m[2]["identity"] == "liar" and m[2]["topic"] == "led.sim.request"), None), 30)}
        # 8. a 10 MB message with the app's own pass: its connection dropped by the broker, reported with its pid
        big = ctx.socket(zmq.PUB)
        big.setsockopt(zmq.LINGER, 0)
        access.authenticate(big, runtime, keys.load_pair(liar_key))
        big.connect(runtime.publish_endpoint("reliable"))
        mark, last = time.monotonic(), [0.0]

        def sent_and_dropped():  # sent every 2 s: a PUB drops what it sends before its connection is up
            if time.monotonic() - last[0] > 2:
                last[0] = time.monotonic()
                big.send_multipart([b"phone.notification", b"x" * 10_000_000])
            return next((m[2] for m in listener.seen if m[0] >= mark and m[1] == "bus.security"
                         and m[2]["reason"].startswith("dropped: ") and m[2]["pid"] == os.getpid()), None)
        dropped = listener.pump(sent_and_dropped, 60)
        big.close(0)
        results["oversized"] = {"reported": dropped["reason"] if dropped else None}
        # 9. every request an app may send, fuzzed (tests/hostile/test_fuzz_requests.py, smaller): each answered
        # (refused or done), none gone silent as a handler that raised would be, and every server still there
        results["fuzz"] = fuzz(liar_key)
        # Who else systemd restarted meanwhile, and why (a watchdog starved by the attack, under TCG?)
        restarted = [u for u in lensos_units() if show(u, "NRestarts")["NRestarts"] != restarts_before[u]]
        # the first death's words, not the last restart's: what the attack did, not what followed from it
        results["restarted"] = {u: [line for line in journal(u, attack_at - 1, lines=400) if any(
                                    w in line for w in ("atchdog", "signal", "exited", "Error", "rror:", "imed out"))][:10]
                                for u in restarted}
        broker_same = main_pid("lensos-broker.service") == broker_pid
        if not broker_same:  # why, in systemd's words and the broker's own
            results["broker"] = {**show("lensos-broker.service", "Result", "NRestarts", "ActiveState"),
                                 "log": journal("lensos-broker.service", attack_at - 1)[-12:]}
        report("hostile", ok=results["idle"]["opened"] >= FLOOD * 3 // 4 and results["idle"]["ticks"]
               and results["idle"]["late_node"] is True
               and results["unknown_key"]["reported"] and not results["unknown_key"]["delivered"]
               and results["forged_header"]["dropped"] > 0 and not results["forged_header"]["delivered"]
               and bool(results["not_its_topic"]["reported"]) and not results["not_its_topic"]["delivered"]
               and results["deputy"]["leaked"] == [] and results["deputy"]["heard_after"]
               and results["deputy"]["asked"] == "ok" and results["deputy"]["answer"] == "refused"
               and results["flood"]["refused"] > 0 and results["sim"]["answer"] != "answered"
               and results["sim"]["reported"] == "the developer's tools only" and bool(results["oversized"]["reported"])
               and results["fuzz"]["answered"] == results["fuzz"]["sent"] > 0 and results["fuzz"]["silent"] == []
               and results["fuzz"]["displayd_answers"]
               and results["flood"]["refused"] + results["flood"]["delivered"] == NOTIFICATIONS
               and broker_same, broker_not_restarted=broker_same, **results)
    finally:
        if attacker is not None and attacker.poll() is None:
            attacker.kill()
        ctx.destroy(linger=0)  # term() waits for sockets an exception left open: the check hung there
        talker.close()
        listener.close()


def fuzz_value(rng, spec: str):
    """A value of the table's type that a handler may not expect (the laptop suite's generator, in brief: the
    image has no tests/ to import it from)."""
    if spec.endswith("?"):
        return None if rng.random() < 0.3 else fuzz_value(rng, spec[:-1])
    if spec.startswith("list"):
        item = spec[5:-1] if spec.startswith("list[") else "str"
        return [fuzz_value(rng, item) for _ in range(rng.choice([0, 1, 3, 200]))]
    return {"str": lambda: rng.choice(["", "x", "x" * 2000, "\x00\x01", "../../../etc/passwd", "hey lens", "-1"]),
            "int": lambda: rng.choice([0, 1, -1, 2**31, -2**62, 2**62]),
            "float": lambda: rng.choice([0.0, -1.0, 0.5, 1e308, -1e308, float("nan"), float("inf")]),
            "bool": lambda: rng.random() < 0.5, "bytes": lambda: rng.randbytes(rng.choice([0, 1, 100])),
            "dict": lambda: rng.choice([{}, {"a": 1}]), "any": lambda: rng.choice([None, 1, "x", [1], {}])}[spec]()


def fuzz(key: Path) -> dict:
    """Attack 9 of check_hostile: FUZZ_PER_TOPIC payloads of every request an app may send, from its key."""
    import random
    from bus.topics import TOPICS, Kind
    from manager.processes import PROCESSES
    running = {p.name for p in PROCESSES}
    topics = [t for t in TOPICS.values() if t.kind is Kind.REQUEST and t.owner in running and t.askers is None]
    rng, answers, sent = random.Random(20261207), [], 0
    app = Bus(name="liar", key=key)
    try:
        for topic in topics:
            for _ in range(FUZZ_PER_TOPIC):
                payload = {name: fuzz_value(rng, spec) for name, spec in topic.fields.items()}
                try:
                    topic.validate({**payload, "cid": 1})
                except Exception:  # noqa: BLE001 (too big for the table: the broker's refusal, not this attack's)
                    continue
                try:
                    app.node.request_async(topic.name, lambda result, error, name=topic.name: answers.append(
                        (name, error)), timeout=60, **payload)
                except Exception:  # noqa: BLE001 (too big once encoded: the table refuses it before it is sent)
                    continue
                sent += 1
                app.node.run_once(0.01)
        app.pump(lambda: len(answers) >= sent, 180)
        silent = sorted({name for name, error in answers if error is not None and "no reply" in str(error)})
        after = app.ask("display.clear.request", id="nothing", timeout=60)
        return {"topics": len(topics), "sent": sent, "answered": len(answers), "silent": silent,
                "displayd_answers": not isinstance(after, str)}
    finally:
        app.close()


def deputy(listener: Bus, talker: Bus, key: Path) -> dict:
    """Attack 5 of check_hostile: what an app's own key, subscribed to everything it may, hears of a secret
    the wearer is sent and asks; and the assistant's answer when that app asks it for a photo."""
    spy = Bus(name="liar", key=key)
    heard = []
    spy.node.subscribe("", lambda msg: heard.append((msg.topic, repr(msg.payload))), from_anyone=True)
    spy.node.subscribe("assistant.answer", lambda msg: heard.append(("its answer", msg.payload["status"])))
    try:
        spy.pump(lambda: False, 2)  # its subscriptions live (start() waited for them; the loop takes them in)
        talker.node.publish("phone.notification", id="pin", source="bank", title=f"PIN {SECRET}", body=SECRET)
        asked = listener.ask("assistant.say.request", text=f"remind me that my pin is {SECRET}", timeout=60)
        session = asked.get("session") if isinstance(asked, dict) else None
        # The wearer's session over: its idle state, after one that named it (an idle state read before the
        # session began would let the app's question be refused as "busy", not for what it asks)
        listener.pump(lambda: any(m[1] == "assistant.state" and m[2]["session"] == session for m in listener.seen)
                      and [m for m in listener.seen if m[1] == "assistant.state"][-1][2]["phase"] == "idle", 90)
        answer = "refused: not asked"
        for _ in range(5):  # busy with something else at that moment (the HUD's own): asked again
            answer = spy.ask("assistant.say.request", text="take a photo", timeout=60)
            if not (isinstance(answer, str) and "busy" in answer):
                break
            spy.pump(lambda: False, 5)
        status = None if isinstance(answer, str) else \
            spy.pump(lambda: next((s for t, s in heard if t == "its answer"), None), 90)
        talker.node.publish("demo.tick", n=-2, text="after the secrets")
        after = spy.pump(lambda: any(t == "demo.tick" for t, _ in heard), 60)
        return {"leaked": sorted({t for t, text in heard if SECRET in text}), "heard_after": bool(after),
                "wearer_asked": asked if isinstance(asked, str) else "ok",
                "asked": answer if isinstance(answer, str) else "ok", "answer": status}
    finally:
        spy.close()
