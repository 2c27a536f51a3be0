"""Benchmark: the latency the wearer feels, end to end through the real processes (sim backends).

    python bench/feel.py [--trials 50] [--capture-trials 50]

Starts `lens up` as it ships (S1, the policies of policies/) on a fresh runtime directory and, as the
developer's tools do, drives the simulated hardware over the bus. Each figure is p50/p99 over --trials,
next to one hop through the broker measured before each trial (this process publishing to itself):

- touch to frame: a swipe (the home launcher opens or moves) or a double tap (it closes), from the
  finger's last event (input.gesture's mono_ns field: when the simulated finger lifted, which is when
  the gesture is complete) to the first composited frame that shows home's new card (display.frame
  names the requests it answers), and its parts: inputd (the lift to its input.gesture sent), the app
  (to its card's request sent), displayd (to the frame composited: the sim panel writes a PNG first). A single tap is recognised only once the double tap's window has passed: that wait is the
  gesture set's, and is printed apart;
- said to card: "what time is it" as text (assistant.say.request, as `lens say` sends it), from the
  request's sending to the first frame showing the assistant's card;
- spoken to card: the temple held and a request spoken into the sim mic (espeak-ng, as `lens mic say
  --hold` does): every phrasing of the offline intents answered on a card (the time, the batteries), in
  each --spoken-voices voice at each --spoken-speeds speed, in turn; from the end of the speech (the last
  voiced sample of the mic's blocks, which carry the time each was captured) to the first frame showing
  the assistant's words ("Thinking…", what it heard) and to the first frame showing its answer; how many
  were heard as their command is printed;
- battery pulled to the swap card: from the pull's request (the sim's stand-in for the kernel's uevent)
  to the first frame with the swap alert, dimmed (display.state's brightness below the wearer's);
- on G1 (--profile g1), said to the first spoken sample: the same request to audiod's audio.state saying
  the answer's speech plays (its first sample leaves within one 20 ms block);
- capture button to the first recorded frame: from the recognised long press of the capture button to
  the first camera.frame of the recording the camera app starts, and the LED confirmed lit (led.state)
  before it, checked for every trial.

Timestamps are each publisher's monotonic clock at publish (one machine, one clock).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.system import wait_until  # noqa: E402
from bus import keys  # noqa: E402
from bus.node import Node  # noqa: E402
from bus.runtime import Runtime  # noqa: E402
from policies.loader import load  # noqa: E402
from policies.rules import MODELS  # noqa: E402

SPOKEN = ("time", "battery")  # the offline intents whose answer is a card (the others act: a photo, the music)
TARGETS_MS = {"touch to frame": ("p99", 50), "said to card": ("p50", 150), "battery pulled to swap card": ("p99", 100),
              "spoken to answer card": ("p50", 500)}


class Done(Exception):
    """The G1 run has measured all it can (there is no panel)."""


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.99 + 0.5) - 1)]


class Feel:
    def __init__(self, node: Node):
        self.node = node
        self.log: list = []
        self.latest: dict = {}  # topic -> the last message heard: what the waits between trials look at
        self.hops: list[float] = []  # one hop before each trial: the same spell of the machine as the trials
        self.parts: dict[str, list[float]] = {"  of which inputd, lift to gesture sent": [],
                                              "  of which the app, to its card's request": [],
                                              "  of which displayd, request to frame": []}
        for topic in ("input.gesture", "display.card.request", "display.frame", "display.state", "shell.state",
                      "power.state", "led.state", "camera.frame", "camera.state", "bench.ping", "appd.state",
                      "audio.state", "audio.played", "audio.mic", "assistant.answer", "assistant.state"):
            node.subscribe(topic, self.heard)

    def heard(self, msg) -> None:
        self.log.append((time.monotonic_ns(), msg))
        self.latest[msg.topic] = msg

    def since(self, mark: int, topic: str, source: str | None = None) -> list:
        return [m for _, m in self.log[mark:] if m.topic == topic and (source is None or m.source == source)]

    def first(self, mark: int, what: str, pick, timeout: float = 10.0):
        found = []
        wait_until(self.node, lambda: found or found.extend(x for x in [pick(mark)] if x) or found, timeout, what)
        return found[0]

    def frame_answering(self, mark: int, source: str, after_ns: int, what: str):
        """The first frame that shows a card ``source`` asked for after ``after_ns``."""
        def pick(mark):
            asked = {f"{source}:{m.payload['cid']}" for m in self.since(mark, "display.card.request", source)
                     if m.mono_ns >= after_ns}
            return next((f for f in self.since(mark, "display.frame") if asked & set(f.payload.get("answers") or [])),
                        None)
        return self.first(mark, what, pick)

    # --- the figures -----------------------------------------------------------------------
    def hop(self) -> None:
        """One hop through the broker: this process publishes and hears its own message."""
        mark = len(self.log)
        self.node.publish("bench.ping", seq=len(self.hops), t_ns=0)
        got = self.first(mark, "ping", lambda mark: next(((t, m) for t, m in self.log[mark:]
                                                         if m.topic == "bench.ping"), None))
        self.hops.append((got[0] - got[1].mono_ns) / 1e6)

    def trials(self, n: int, before=lambda: None):
        """``n`` trials, each after ``before()`` and one hop through the broker: (which, its mark in the log,
        when it starts)."""
        for i in range(n):
            before()
            self.hop()
            yield i, len(self.log), time.monotonic_ns()

    def touch(self, n: int) -> list[float]:
        out = []
        for i, mark, _ in self.trials(n):
            gesture = ("swipe_forward", "double_tap")[i % 2]  # the launcher opens, then closes
            self.node.request("input.sim.request", gesture=gesture)
            recognised = self.first(mark, gesture, lambda mark: next(
                (m for m in self.since(mark, "input.gesture") if m.payload["gesture"] == gesture), None))
            frame = self.frame_answering(mark, "home", recognised.mono_ns, f"home's frame after {gesture}")
            out.append((frame.payload["mono_ns"] - recognised.payload["mono_ns"]) / 1e6)
            request = next(m for m in self.since(mark, "display.card.request", "home")
                           if f"home:{m.payload['cid']}" in frame.payload["answers"])
            recognising, app, display = self.parts.values()
            recognising.append((recognised.mono_ns - recognised.payload["mono_ns"]) / 1e6)
            app.append((request.mono_ns - recognised.mono_ns) / 1e6)
            display.append((frame.payload["mono_ns"] - request.mono_ns) / 1e6)
        return out

    def said(self, n: int) -> list[float]:
        out = []
        for _, mark, t0 in self.trials(n):
            self.node.request("assistant.say.request", text="what time is it")
            frame = self.frame_answering(mark, "assistantd", t0, "the assistant's card")
            out.append((frame.payload["mono_ns"] - t0) / 1e6)
        return out

    def heard_spoken(self, n: int, voices: list[str], speeds: list[int]) -> tuple[list[float], list[float], int]:
        """(to the first card, to the answer card, how many heard as their command) over ``n`` spoken requests:
        the offline intents answered on a card (SPOKEN), each in every voice at every speed, in turn."""
        from daemons.assistant.intents import phrasings

        said = [(phrase, action) for action in SPOKEN for phrase in phrasings()[action]]
        turns = [(phrase, action, voice, wpm) for voice in voices for wpm in speeds for phrase, action in said]
        first, answered, right = [], [], 0
        for trial, mark, _ in self.trials(n, before=self.assistant_idle):
            phrase, action, voice, wpm = turns[trial % len(turns)]
            self.node.request("input.sim.request", gesture="long_press")  # the temple held
            self.node.request("audio.sim.mic.request", text=phrase, voice=voice, wpm=wpm, when="capture")
            answer = self.first(mark, "the spoken request's answer",
                                lambda mark: next(iter(self.since(mark, "assistant.answer", "assistantd")), None), 30)
            right += answer.payload["action"] == action
            ended = self.speech_end(mark)
            shown = self.frame_answering(mark, "assistantd", ended, "the assistant's first card")
            first.append((shown.payload["mono_ns"] - ended) / 1e6)

            def answer_frame(mark):
                titles = {f"assistantd:{m.payload['cid']}": m.payload["title"]
                          for m in self.since(mark, "display.card.request", "assistantd") if m.mono_ns >= ended}
                return next((f for f in self.since(mark, "display.frame") if any(
                    titles.get(a) == "Assistant" for a in f.payload.get("answers") or [])), None)
            answered.append((self.first(mark, "the answer card", answer_frame).payload["mono_ns"] - ended) / 1e6)
        return first, answered, right

    def speech_end(self, mark: int) -> int:
        """When the last voiced sample of the mic's blocks since ``mark`` was captured (each block's mono_ns is
        its last sample's capture)."""
        import numpy as np

        from daemons.audio.simspeech import voiced_end  # bench/voice.py's measure

        blocks = [(m.payload["mono_ns"], m.payload["rate"], np.frombuffer(m.payload["pcm"], np.int16))
                  for m in self.since(mark, "audio.mic", "audiod")]
        if not blocks:
            raise SystemExit("bench: no mic block reached the bench (it needs the developer's key)")
        loudest = max(int(np.abs(pcm.astype(np.int32)).max()) for _, _, pcm in blocks)
        for mono_ns, rate, pcm in reversed(blocks):
            end = voiced_end(pcm, loudest)
            if end is not None:
                return mono_ns - int((len(pcm) - end) * 1e9 / rate)
        raise SystemExit("bench: nothing was heard in the mic's blocks")

    def assistant_idle(self) -> None:
        """The last session over and the mic closed: each spoken request starts as a wearer's would."""
        def idle(mark):
            phase, mic = self.latest.get("assistant.state"), self.latest.get("audio.state")
            return (phase is None or phase.payload["phase"] == "idle") and (mic is None or not mic.payload["mic"]["on"])
        self.first(0, "the assistant idle", idle, 30)

    def spoken(self, n: int) -> list[float]:
        """G1: from the request to audiod's word that the answer's speech plays (the mixer has it; its first
        sample leaves within one block, policies/hardware.toml [audio] block_s)."""
        out = []
        for _, mark, t0 in self.trials(n):
            self.node.request("assistant.say.request", text="what time is it")
            playing = self.first(mark, "the answer spoken", lambda mark: next(
                (m for m in self.since(mark, "audio.state", "audiod") if any(
                    s["kind"] == "speech" and s["status"] == "playing" for s in m.payload["streams"])), None))
            out.append((playing.mono_ns - t0) / 1e6)
            self.first(mark, "the answer said", lambda mark: next(
                (m for m in self.since(mark, "audio.played", "audiod") if m.payload["status"] != "replaced"), None),
                30)
        return out

    def battery(self, n: int) -> list[float]:
        out = []
        for _, mark, t0 in self.trials(n):
            self.node.request("power.sim.request", action="pull", battery="left")

            def swap_frame(mark):
                for i, (_, m) in enumerate(self.log[mark:]):
                    if m.topic == "display.frame" and "alert" in m.payload["layers"]:
                        # displayd says its state right after the frame it rendered
                        state = next((s for _, s in self.log[mark + i:] if s.topic == "display.state"), None)
                        if state is not None and state.payload["alert"] and "swap" in state.payload["alert"].lower():
                            return m, state
                return None
            frame, state = self.first(mark, "the swap card", swap_frame)
            if not state.payload["brightness"] < state.payload["user_level"]:
                raise SystemExit(f"bench: the swap card was not dimmed: {state.payload}")
            out.append((frame.payload["mono_ns"] - t0) / 1e6)
            mark = len(self.log)
            self.node.request("power.sim.request", action="insert", battery="left")
            self.first(mark, "the swap card gone", lambda mark: next(
                (m for m in self.since(mark, "display.frame") if "alert" not in m.payload["layers"]), None))
        return out

    def capture(self, n: int) -> list[float]:
        out = []
        for _, mark, _ in self.trials(n, before=self.led_off):
            self.node.request("input.sim.request", gesture="button_long")
            pressed = self.first(mark, "the long press", lambda mark: next(
                (m for m in self.since(mark, "input.gesture") if m.payload["gesture"] == "button_long"), None))
            frame = self.first(mark, "a recorded frame", lambda mark: next(
                (m for m in self.since(mark, "camera.frame", "camerad") if m.mono_ns >= pressed.mono_ns
                 and any(s.payload["mode"] == "video" for s in self.since(mark, "camera.state", "camerad"))), None))
            lit = [m for m in self.since(mark, "led.state", "ledd") if m.payload["lit"]]
            if not lit or lit[0].mono_ns > frame.payload["mono_ns"]:
                raise SystemExit("bench: a frame was recorded before the LED was confirmed lit")
            out.append((frame.payload["mono_ns"] - pressed.payload["mono_ns"]) / 1e6)
            mark = len(self.log)
            self.node.request("input.sim.request", gesture="button_long")  # stop
            self.first(mark, "the recording stopped", lambda mark: next(
                (m for m in self.since(mark, "camera.state", "camerad") if m.payload["mode"] != "video"), None), 20)
        return out

    def led_off(self) -> None:
        """The LED's hold after a capture ends: the next trial starts from a dark LED, as a wearer's would."""
        def dark(mark):
            state = self.latest.get("led.state")
            return state is not None and not state.payload["lit"]
        self.first(0, "the LED dark", dark, 30)

    def single_tap_wait_ms(self) -> float:
        return load().hardware.input.double_s * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--capture-trials", type=int, default=50, help="each waits for the LED's hold (3 s)")
    parser.add_argument("--spoken-trials", type=int, default=50, help="each waits for the answer card's time up")
    parser.add_argument("--spoken-voices", default="en-us+f3,en-us+m3", help="espeak-ng voices, in turn")
    parser.add_argument("--spoken-speeds", default="140,200", help="words per minute, in turn")
    parser.add_argument("--profile", default="s1", choices=MODELS,
                        help="g1: the display-less model, where only the spoken answer is measured")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="lf-", dir="/tmp")
    env = dict(os.environ, LENS_RUNTIME_DIR=f"{directory}/run", LENS_STATE_DIR=f"{directory}/state",
               PYTHONUNBUFFERED="1")
    os.makedirs(f"{directory}/run", mode=0o700)
    keys.ensure_development_keys(Runtime.resolve(f"{directory}/run"))
    launcher = subprocess.Popen([sys.executable, "-m", "cli.main", "up", "--profile", args.profile], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with Node("bench", f"{directory}/run", publish_any=True) as node:
            feel = Feel(node)
            node.start(timeout=60)
            wait_until(node, lambda: any(m.topic == "shell.state" and m.payload["state"] == "active"
                                         and m.payload["foreground"] == "home" and not m.payload["degraded"]
                                         for _, m in feel.log[-20:]), 60, "home in front")
            figures = {}
            if args.profile == "g1":
                figures["said to first spoken sample (G1)"] = feel.spoken(args.trials)
                figures["one broker hop"] = hops = feel.hops
                raise Done
            wait_until(node, lambda: any(m.topic == "display.frame" and "card" in m.payload["layers"]
                                         for _, m in feel.log), 30, "home's card")
            figures["touch to frame"] = feel.touch(args.trials)
            figures.update(feel.parts)
            figures["said to card"] = feel.said(args.trials)
            first, answered, heard_right = feel.heard_spoken(args.spoken_trials, args.spoken_voices.split(","),
                                                             [int(w) for w in args.spoken_speeds.split(",")])
            figures["spoken to first card (the words)"], figures["spoken to answer card"] = first, answered
            figures["battery pulled to swap card"] = feel.battery(args.trials)
            figures["capture button to recorded frame"] = feel.capture(args.capture_trials)
            figures["one broker hop"] = hops = feel.hops
    except Done:
        pass
    finally:
        launcher.send_signal(signal.SIGINT)
        try:
            launcher.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)

    hop50, _ = percentiles(hops)
    print(f"what the wearer waits for, {args.profile.upper()}, lens up as shipped, {os.cpu_count()} cores; p50/p99 over trials")
    print(f"{'':34}{'trials':>7}{'p50 ms':>9}{'p99 ms':>9}{'p50 hops':>10}  target")
    for name, values in figures.items():
        p50, p99 = percentiles(values)
        target = TARGETS_MS.get(name)
        verdict = ""
        if target:
            which, limit = target
            verdict = f"{which} < {limit} ms: {'met' if (p50 if which == 'p50' else p99) < limit else 'NOT met'}"
        print(f"{name:34}{len(values):7d}{p50:9.2f}{p99:9.2f}{p50 / hop50:10.1f}  {verdict}")
    if args.profile == "g1":
        return 0
    print(f"a single tap is recognised {feel.single_tap_wait_ms():.0f} ms after the finger lifts (the double tap's "
          f"window, policies/hardware.toml [input] double_s), before any of the above")
    from daemons.audio.simspeech import VOICED

    print(f"spoken: {', '.join(SPOKEN)} phrasings, voices {args.spoken_voices} at {args.spoken_speeds} words a minute "
          f"in turn; heard as their command in {heard_right} of {len(figures['spoken to answer card'])} trials; "
          f"end of speech from the mic's blocks (the last sample over {VOICED:g} of the loudest)")
    print("LED confirmed lit before the first recorded frame: every trial")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
