"""The hostile-app suite's attacks on the whole running glasses (`lens up`: every daemon, appd and its apps),
from an installed app's own key: the music app's, as appd minted it (no camera and no mic in its manifest),
turned hostile. Issue 27's findings, each against the real processes it once got through to: what the wearer
says, is told and is sent is read by no other app; the assistant captures nothing on the app's behalf; the
simulation is not the app's to drive; a flood of notifications is held to its rate and takes nothing down.

With tests/hostile/test_broker.py (no key, idle connections, oversized messages, forged headers, against the
broker), test_bridge_peer.py (a paired peer) and test_fuzz_requests.py (every request an app may send,
fuzzed), this is the suite `make hostile` runs; the board's boot test runs its own attacks under the image's systemd (tests/board)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import msgpack
import pytest

from bus import keys
from bus.errors import RequestTimeout
from bus.node import Node
from bus.topics import LIMIT_BURST_S, TOPICS
from tests.conftest import DEADLINE_S, children_of, drain_lines, wait_for, wait_line

# In what the wearer says and is sent: in nothing the hostile app hears. Letters in it: a bare "4321" was found
# "leaked" in display.frame, whose mono_ns can hold any four digits (CI, red; the board check learnt it first)
SECRET = "QZX4321"
FLOOD = 3000  # notifications, each as big as the table lets one be (issue 27 sent 3000 x 60 KB)


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:", 1)[1].split()[0]) / 1024


@pytest.mark.slow
def test_a_hostile_app_on_the_running_glasses_reads_nothing_captures_nothing_and_downs_nothing(procs, runtime,
                                                                                                tmp_path):
    up = procs.lens("up", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_line(up.stdout, "processes ready in", timeout=60)
    before = sorted(children_of(up.pid))
    wearer = Node("watcher", runtime, publish_any=True)  # the developer's key: the wearer's tools read everything
    procs.cleanups.append(wearer.close)
    seen = []
    for prefix in ("bus.security", "notifications.state", "assistant", "shell.apps"):
        wearer.subscribe(prefix, seen.append)
    wearer.start(timeout=DEADLINE_S)

    def apps() -> dict:
        latest = [m.payload for m in seen if m.topic == "shell.apps"]
        return latest[-1]["apps"] if latest else {}
    wait_for(lambda: "music" in apps(), what="the music app installed", poll=wearer.run_once)
    secret = tmp_path / "music.key_secret"  # its key, minted as appd mints one when it starts the app
    secret.write_bytes(keys.mint(keys.app_keys_dir(runtime), "music"))
    spy = Node("music", runtime, key=secret)
    procs.cleanups.append(spy.close)
    spied = []  # everything the broker lets it hear, asked for as a hostile client would
    spy.subscribe("", spied.append, from_anyone=True)
    spy.start(timeout=DEADLINE_S)
    both = lambda remaining: [n.run_once(0.01) for n in (wearer, spy)]  # noqa: E731

    # 1. What the wearer is sent and says, and is told: none of it reaches the app.
    sent = procs.run_lens("notify", "--from", "bank", f"Your PIN is {SECRET}", f"PIN {SECRET}, do not share")
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: any(m.topic == "notifications.state" and SECRET in (m.payload["latest"] or "")
                         for m in seen), what="the notification held by the notifications app", poll=both)
    said = procs.run_lens("say", f"hey lens, remind me that my bank pin is {SECRET}")
    assert said.returncode == 0, said.stderr
    told = procs.run_lens("say", "what time is it")
    assert told.returncode == 0 and told.stdout.startswith("It is "), told.stdout
    # A tick after all of it: whatever the broker sent the spy before, it has by the time this comes.
    wearer.publish("demo.tick", n=1, text="after the wearer's words")
    wait_for(lambda: any(m.topic == "demo.tick" for m in spied), what="the spy's tick", poll=both)
    leaked = [m.topic for m in spied if SECRET.lower() in json.dumps(m.payload, default=repr).lower()]  # heard as said
    assert leaked == [], f"the app read the wearer's words on {sorted(set(leaked))}"
    private = {"phone.notification", "notifications.state", "display.state", "assistant.say.request",
               "assistant.answer", "display.card.request", "display.card.reply", "audio.speak", "audio.mic"}
    assert private.isdisjoint(m.topic for m in spied), sorted(private & {m.topic for m in spied})

    # 2. The assistant as its deputy: asking is allowed, capturing on its behalf is not.
    answers = []
    spy.subscribe("assistant.answer", answers.append)  # its own answers are its to read (asker)

    def idle() -> bool:
        phases = [m.payload["phase"] for m in seen if m.topic == "assistant.state"]
        return bool(phases) and phases[-1] == "idle"
    for n, (topic, fields) in enumerate((("assistant.say.request", {"text": "take a photo"}),
                                         ("assistant.say.request", {"text": "start recording"}),
                                         ("assistant.listen.request", {"template": "{heard}"})), 1):
        wait_for(idle, what="the assistant idle", poll=both)  # busy, it would refuse the asking itself
        spy.request(topic, timeout=DEADLINE_S, **fields)
        wait_for(lambda: len(answers) >= n, what="the assistant's answer to the app", poll=both)
    statuses = [(a.payload["status"], a.payload["text"]) for a in answers]
    assert all(status == "refused" for status, _ in statuses), statuses
    log = procs.run_lens("privacy", "log", "--json")
    captures = [json.loads(line) for line in log.stdout.splitlines() if line.strip()]
    assert captures and not [c for c in captures if "music" in (c["owner"], c["behalf"])], captures

    # 3. The simulation is the developer's tools' alone: the LED is not the app's to break.
    with pytest.raises(RequestTimeout):
        spy.request("led.sim.request", fault="broken by an app", timeout=1.0)
    wait_for(lambda: any(m.topic == "bus.security" and m.payload["identity"] == "music"
                         and m.payload["topic"] == "led.sim.request" for m in seen),
             what="the sim request refused and reported", poll=both)

    # 4. A flood of the biggest notifications the table allows: held to the rate, counted, nothing down.
    zygotes = [pid for appd in children_of(up.pid, "apphost.appd") for pid in children_of(appd, "apphost.zygote")]
    notifications = next(pid for parent in zygotes for pid in children_of(parent, "apps/notifications"))
    grown_from = rss_mib(notifications)
    spec = TOPICS["phone.notification"]
    body = "x" * (spec.max_size - 512)
    assert len(msgpack.packb({"id": "0", "source": "music", "title": "flood", "body": body})) < spec.max_size
    for n in range(FLOOD):
        spy.publish("phone.notification", id=str(n), source="music", title="flood", body=body)
        if n % 50 == 0:
            both(0)

    def dropped() -> int:
        return max([m.payload["count"] for m in seen if m.topic == "bus.security"
                    and m.payload["identity"] == "music" and m.payload["topic"] == "phone.notification"], default=0)
    wait_for(lambda: dropped() >= FLOOD - spec.limit_hz * (LIMIT_BURST_S + 60), what="the flood counted at the broker",
             poll=both, timeout=DEADLINE_S * 3)
    status = json.loads(procs.run_lens("status", "--json").stdout)
    assert status["shell.state"]["degraded"] == [], status["shell.state"]
    assert sorted(children_of(up.pid)) == before, "a process died or was restarted"
    assert rss_mib(notifications) < grown_from + 64, (grown_from, rss_mib(notifications))
    # The speaker still speaks and the assistant still answers the wearer.
    again = procs.run_lens("say", "what time is it")
    assert again.returncode == 0 and again.stdout.startswith("It is "), again.stdout
    audio = json.loads(procs.run_lens("status", "--json").stdout).get("audio.state") or {}
    assert not audio.get("fault"), audio

    spy.close()
    up.send_signal(signal.SIGINT)
    out = drain_lines(up.stdout)
    up.wait(DEADLINE_S)
    assert "Traceback" not in out, out[-4000:]
