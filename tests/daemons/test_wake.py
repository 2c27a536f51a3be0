"""The wake-phrase spotter (waked): the only ear on the mic while nobody captures it, granted by the shell,
audited, marked, and run only where the policy allows it; on the phrase the capture LED is lit before a
word of the request is heard."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from bus import keys
from bus.envelope import Message
from bus.node import Node
from daemons.audio import simspeech
from manager.launcher import runnable
from manager.processes import PROCESSES
from bus.development import DEVELOPMENT_ENV
from shell.daemon import AUDIT_FILE
from tests.conftest import REPO, tuned_policies
from tests.daemons.test_assistant import CHANGES, assistant_system
from tests.system import HEARTBEAT_S, App

pytest.importorskip("pocketsphinx")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def wake_changes(listen: str) -> dict:
    changes = copy.deepcopy(CHANGES)
    changes["assistant.toml"]["wake"] = {"listen": listen}
    return changes


def wake_system(procs, runtime, tmp_path, listen: str):
    system = assistant_system(procs, runtime, tmp_path, changes=wake_changes(listen))
    keys.generate(keys.keys_dir(runtime), ["waked"])  # its own identity, as `lens up` makes one per row
    return system


def audit(system) -> list[dict]:
    path = system.state_dir / AUDIT_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def index(log, what: str, condition) -> int:
    found = [i for i, m in enumerate(log) if condition(m)]
    assert found, f"no {what} on the bus"
    return found[0]


class Published:
    """What the spotter's code publishes, without a bus: the node a test hands to Waked."""

    name = "waked"

    def __init__(self):
        self.sent: list[tuple[str, dict]] = []

    def subscribe(self, topic, handler) -> None:
        pass

    def publish(self, topic: str, **payload) -> None:
        self.sent.append((topic, payload))


def block(source: str, topic: str, **payload) -> Message:
    return Message(topic, source, 1, 1, 1, 1, payload, b"", sender=source)


@needs_espeak
def test_the_spotter_publishes_the_wake_and_holds_no_audio_after_it():
    from daemons.wake.__main__ import Waked
    from daemons.wake.spotter import WakeSpotter

    node = Published()
    waked = Waked(node, WakeSpotter("hey lens"))
    pcm = np.concatenate([np.zeros(8000, np.int16), simspeech.speak("hey lens", 16000), np.zeros(8000, np.int16)])
    for seq, at in enumerate(range(0, len(pcm), 320)):
        waked.on_block(block("audiod", "audio.wake.mic", owner="waked", seq=seq, rate=16000,
                             mono_ns=time.monotonic_ns(), pcm=pcm[at:at + 320].tobytes()))
        if node.sent:
            break
    assert [topic for topic, _ in node.sent] == ["assistant.wake"], "the phrase was not heard"
    assert set(node.sent[0][1]) == {"seq", "mono_ns"}, "nothing of the audio or the words goes out"
    assert waked.spotter.held_s == 0 and not waked.spotter.window.any(), "audio kept after the detection"
    # Blocks for another listener are not heard at all (blocks from anyone but audiod never reach it: the node).
    waked.on_block(block("audiod", "audio.wake.mic", owner="other", seq=1, rate=16000, mono_ns=1,
                         pcm=pcm[:320].tobytes()))
    assert waked.spotter.held_s == 0
    waked.on_block(block("audiod", "audio.wake.mic", owner="waked", seq=1, rate=16000, mono_ns=1,
                         pcm=(pcm[:320] + 1000).tobytes()))
    assert waked.spotter.held_s > 0
    waked.on_capture(block("shell", "privacy.capture", grants=["assistantd:mic"], cmd=1, fault=None, listening=None))
    assert waked.spotter.held_s == 0 and not waked.spotter.window.any(), "kept after it stopped being the listener"


@needs_espeak
def test_over_steady_noise_the_spotter_needs_to_be_surer_and_still_hears_the_phrase():
    """In pink noise every sound scored closer to the phrase: other talk woke the glasses 7 times a minute at
    the quiet room's threshold (bench/voice.py --wake). A window whose noise floor is high is judged by the
    stricter keyword search; the phrase itself is still heard over it."""
    from bench.voice import pink_noise
    from daemons.audio.backends import quiet_room
    from daemons.wake.spotter import WakeSpotter

    spotter = WakeSpotter("hey lens")
    room = np.resize(quiet_room(16000), 16000 * 3)
    said = np.concatenate([np.zeros(8000, np.int16), simspeech.speak("hey lens", 16000), np.zeros(8000, np.int16)])
    noisy = simspeech.with_noise(said, pink_noise(16000 * 5), 10.0)
    for pcm, judged in ((room, "quiet"), (said + room[:len(said)], "quiet"), (noisy, "noisy")):
        spotter.clear()
        heard = sum(spotter.feed(pcm[at:at + 320].tobytes()) for at in range(0, len(pcm), 320))
        assert spotter.decoder.current_search() == judged
        assert heard == (pcm is not room), f"the phrase {'missed' if heard == 0 else 'heard'} ({judged})"


def test_a_spotter_behind_the_mic_catches_up_without_decoding_and_hears_again_once_level():
    """Where the CPU cannot decode as fast as the mic speaks (the image under TCG), decoding every stale hop
    grew the backlog without end and starved the loop's watchdog pings: systemd killed waked five times in
    CI's boot. Stale blocks now only fill the window; the first fresh one decodes it."""
    from daemons.wake.__main__ import BEHIND_S, Waked
    from daemons.wake.spotter import WakeSpotter

    spotter = WakeSpotter("hey lens")
    decoded = []
    spotter._heard = lambda audio: decoded.append(len(audio)) or False
    waked = Waked(Published(), spotter)
    stale = time.monotonic_ns() - int(2 * BEHIND_S * 1e9)
    for seq in range(100):  # 2 s of audio, eight hops' worth, all of it queued long ago
        waked.on_block(block("audiod", "audio.wake.mic", owner="waked", seq=seq, rate=16000, mono_ns=stale,
                             pcm=np.ones(320, np.int16).tobytes()))
    assert decoded == [] and waked.skipped == 100
    assert spotter.held_s == 1.5, "the stale audio still fills the window: the phrase may span the catch-up"
    waked.on_block(block("audiod", "audio.wake.mic", owner="waked", seq=100, rate=16000,
                         mono_ns=time.monotonic_ns(), pcm=np.ones(320, np.int16).tobytes()))
    assert decoded == [24000], "level with the mic again, the whole window is decoded at once"


@needs_espeak
@pytest.mark.slow
def test_the_wake_phrase_lights_the_led_before_a_word_of_the_request_is_heard(procs, runtime, tmp_path):
    system = wake_system(procs, runtime, tmp_path, "on")
    user = system.watcher
    user.node.subscribe("assistant", user._keep)
    procs.start_ready("-m", "daemons.wake")
    user.wait(lambda: (user.latest.get("privacy.capture") or {}).get("listening") == "waked", "the shell's grant")
    user.wait(lambda: user.latest["audio.state"]["mic"]["listener"] == "waked"
              and not user.latest["audio.state"]["mic"]["on"], "audiod hearing for the spotter alone")
    assert not user.latest["led.state"]["lit"], "listening is no capture: the LED stays off"
    assert user.wait_state(lambda s: s["privacy"]["listening"] == "waked", "listening in shell.state")
    assert [r for r in audit(system) if r["event"] == "start" and r["resource"] == "listen" and r["owner"] == "waked"]
    # The idle mic goes to the spotter a quarter second at a time (its hop), not one message per device block:
    # 50 a second woke audiod, the broker and the spotter 370 times a second between them (bench/system.py)
    blocks = user.wait(lambda: [m.payload for m in user.log if m.topic == "audio.wake.mic"][:3] if sum(
        m.topic == "audio.wake.mic" for m in user.log) >= 3 else None, "the spotter's blocks")
    assert all(0.25 <= len(b["pcm"]) / 2 / b["rate"] < 0.25 + 0.05 for b in blocks), [len(b["pcm"]) for b in blocks]
    answer = {"status": "never woken", "action": None}
    for attempt in range(4):
        mark = len(user.log)
        user.ask("audio.sim.mic.request", text="hey lens")
        # Not heard, the wearer says it again. The spotter decodes its window from scratch every quarter second,
        # and where the phrase falls against those decodes matters: offline, 1-2 of 16 offsets of the same
        # speech go unheard (bench/voice.py --wake measures the ear); this test is about the LED's order.
        try:
            user.wait(lambda: any(m.topic == "assistant.wake" for m in user.log[mark:])
                      or user.latest["audio.state"]["mic"]["owner"] == "assistantd", "the phrase heard", timeout=15)
        except AssertionError:
            continue
        # The request once the mic is the assistant's: what is said before (while the LED comes on) is nobody's,
        # by design, and under load the sim mic's pause after the phrase can be shorter than that handover.
        user.wait(lambda: user.latest["audio.state"]["mic"]["owner"] == "assistantd", "the mic, the assistant's")
        user.ask("audio.sim.mic.request", text="what time is it")
        answer = user.wait(lambda: [m.payload for m in user.log[mark:] if m.topic == "assistant.answer"],
                           "the answer to the spoken request")[0]
        if answer["status"] != "unheard":
            break
        # Twice in CI, under load, the request came back "didn't catch that" (the phones 1.00 apart, over the
        # 0.9 allowed; offline the same speech decodes right at each of 149 leads, cause not found): this test
        # is about the LED's order, recognition is bench/voice.py's. As a wearer would: the phrase, again.
        user.wait(lambda: user.latest["assistant.state"]["phase"] == "idle"
                  and (user.latest.get("privacy.capture") or {}).get("listening") == "waked", "listening again")
    assert (answer["status"], answer["action"]) == ("answered", "time"), answer
    log = user.log[mark:]
    woke = index(log, "assistant.wake", lambda m: m.topic == "assistant.wake" and m.source == "waked")
    deaf = index(log, "listening withdrawn", lambda m: m.topic == "privacy.capture" and not m.payload["listening"])
    cmd = next(m.payload["cmd"] for m in log if m.topic == "privacy.indicator" and m.payload["on"])
    lit = index(log, "the LED lit", lambda m: m.topic == "led.state" and m.payload["lit"] and m.payload["cmd"] == cmd)
    opened = index(log, "the mic opened", lambda m: m.topic == "audio.state" and m.payload["mic"]["on"])
    heard = index(log, "the request heard", lambda m: m.topic == "assistant.state" and m.payload["phase"] == "thinking")
    assert woke < lit < opened < heard, "the LED was not lit from the phrase on, before the request was heard"
    assert woke < deaf < opened, "the spotter still heard the mic when the assistant's capture began"
    # audiod says the mic is the assistant's only after it stopped the spotter's blocks (one lane: in order);
    # none follow until the shell names the spotter again.
    back = next((i for i in range(opened, len(log)) if log[i].topic == "privacy.capture"
                 and log[i].payload["listening"]), len(log))
    assert [m for m in log[opened:back] if m.topic == "audio.wake.mic"] == [], "idle audio during the capture"
    # The session over, the spotter listens again; the privacy log has the listening span, ended by the capture.
    user.wait(lambda: user.latest["assistant.state"]["phase"] == "idle"
              and (user.latest.get("privacy.capture") or {}).get("listening") == "waked", "listening again")
    ended = [r for r in audit(system) if r["event"] == "end" and r["resource"] == "listen"]
    assert ended and "assistantd" in ended[0]["why"] and ended[0]["seconds"] > 0
    shown = procs.run_lens("privacy", "log").stdout  # the wearer's view of it: listening time, nothing kept
    assert [line for line in shown.splitlines() if "waked" in line and " listen " in line
            and "nothing kept" in line and "assistantd" in line], shown
    # The temple held while the spotter has the mic: `lens mic say --hold`'s speech waits for the capture
    # (it went into the spotter's ear before the handover and the assistant heard "didn't catch that").
    out = procs.run_lens("mic", "say", "--hold", "what", "time", "is", "it")
    assert out.returncode == 0 and out.stdout.startswith("It is "), out.stdout


@pytest.mark.slow
def test_with_the_policy_off_no_spotter_runs_and_the_mic_is_not_read(procs, runtime, tmp_path):
    system = wake_system(procs, runtime, tmp_path, "off")
    user = system.watcher
    for policy_says, development in (("off", "1"), ("development", None)):  # a product image: no `lens up`
        directory = tuned_policies(tmp_path / policy_says, wake_changes(policy_says))
        env = procs.env(LENS_POLICY_DIR=str(directory))
        env.pop(DEVELOPMENT_ENV, None)
        if development:
            env[DEVELOPMENT_ENV] = development
        started = subprocess.run([sys.executable, "-m", "daemons.wake"], cwd=REPO, env=env, capture_output=True,
                                 text=True, timeout=60)
        assert started.returncode == 2 and "[wake] listen" in started.stderr, started.stderr
        condition = subprocess.run([sys.executable, "-m", "manager.condition", "waked"], cwd=REPO, env=env,
                                   capture_output=True, text=True, timeout=60)
        assert condition.returncode == 1 and "turns it off" in condition.stderr, condition.stderr
    # Even a process with the spotter's own key on the bus is never named the listener: the shell decides.
    system.apps.append(App(Node("waked", runtime, heartbeat=HEARTBEAT_S,
                                key=keys.keys_dir(runtime) / "waked.key_secret")))
    user.wait_state(lambda s: "waked" in s["nodes"], "the spotter's heartbeat heard")
    user.wait(lambda: "led.state" in user.latest and "audio.state" in user.latest, "the LED and audiod")
    assert user.latest["privacy.capture"].get("listening") is None
    assert user.latest["shell.state"]["privacy"]["listening"] is None
    assert not user.latest["audio.state"]["mic"]["on"] and user.latest["audio.state"]["mic"]["listener"] is None
    assert [m for m in user.log if m.topic == "audio.wake.mic"] == [], "the mic was read with the policy off"
    assert not [r for r in audit(system) if r.get("resource") == "listen"]


def test_lens_up_runs_the_spotter_only_where_the_policy_lets_it(tmp_path, monkeypatch):
    monkeypatch.setenv(DEVELOPMENT_ENV, "1")
    for listen, runs in (("development", True), ("on", True), ("off", False)):
        monkeypatch.setenv("LENS_POLICY_DIR", str(tuned_policies(tmp_path / listen, wake_changes(listen))))
        assert ("waked" in [p.name for p in runnable(list(PROCESSES))]) is runs, listen
    monkeypatch.delenv(DEVELOPMENT_ENV)  # systemd: never development, so the shipped policy keeps it off
    monkeypatch.setenv("LENS_POLICY_DIR", str(tuned_policies(tmp_path / "shipped", {})))
    assert "waked" not in [p.name for p in runnable(list(PROCESSES))]
    assert os.environ.get(DEVELOPMENT_ENV) is None
