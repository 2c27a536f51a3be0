"""audiod: the bone-conduction speaker, mixed under the focus rules, and the mic, only with a lit LED.

Speaker: every sound, utterance and piece of music is a stream of its
owner's, mixed by ``mixer.Mixer``. What the shell says about audio_out sets
each owner's level: the holder plays, a ducked owner keeps the ducking level,
a suspended one is held in place (it resumes where it was), and anyone else
waits for the speaker to be free. The device is open only while a stream can
be heard.

Mic: opened for the one owner the shell granted mic capture, and only while
ledd confirms the LED lit for that grant (``shellclient.capture``). That is checked
before the device opens and again before every block goes out: the moment
it fails, the mic closes. Blocks go out as ``audio.mic`` with sequence
numbers; an energy detector publishes speech start and end.

While nobody captures it, the mic is the wake-phrase spotter's alone, and only
while the shell names it the listener (``privacy.capture`` listening): the device
is open without the LED, its blocks go out as ``audio.wake.mic``, which the
broker hands to that one identity (permission ``listen``). The moment the
shell names nobody (a capture was asked for, the glasses shut down, the
spotter left), the blocks stop; none taken before is kept for the capture.

Bounded against any app: an owner has at most ``MAX_STREAMS`` sounds in the
mixer (a play beyond is refused, with why) and ``MAX_WAITING_SPEECH``
utterances waiting for the voice (more are dropped, counted and told as
``failed``); an utterance is cut at ``MAX_SPOKEN_CHARS``. Liveness comes from
the work: the device threads dying, or an open speaker or mic that stops
delivering blocks for ``STALL_S``, ends the process (``service.fatal``) so
its supervisor restarts it, instead of a loop that heartbeats over a dead
speaker. What plays is kept across a crash (``playing``).

Past 400 lines: the speaker and the mic are one device, one loop and one
capture gate; their parts already live beside it (mixer, backends, vad,
sounds, playing), and what is left here is how they meet the bus.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from bus import service
from shellclient.capture import CaptureGate
from shellclient.departures import Departures
from bus.envelope import Message
from bus.kept import Kept
from bus.runtime import state_dir
from bus.topics import TOPICS
from bus.errors import RequestRefused
from bus.node import Node
from bus.wakeup import Wakeup
from daemons.audio.backends import AudioError, PortAudio, SimAudio
from daemons.audio import simspeech
from daemons.audio.mixer import Mixer, Stream
from daemons.audio import playing
from daemons.audio.sounds import SoundError, load as load_sound, voice as make_voice
from daemons.audio.vad import Vad
from manager.processes import by_module
from policies.checker import PolicyError
from policies.loader import load
from policies.settings import Section

ROW = by_module("daemons.audio")  # its name and command line, from its row of the process table

log = logging.getLogger(ROW.name)

MIC_QUEUE_S = 2.0  # mic blocks kept while the loop is busy; older ones are dropped (and counted) beyond this
SPEAKS_FOR_OTHERS = ("displayd", "shell")  # their audio.speak is heard under the focus of the app they name
MAX_STREAMS = 8  # sounds one owner may have in the mixer at once (a chime, music, an answer, ...)
MAX_WAITING_SPEECH = 4  # utterances of one owner waiting for the voice; beyond, dropped (and told)
MAX_SPOKEN_CHARS = 1000  # about a minute of speech; a longer text is cut
MAX_LISTED = 32  # streams audio.state lists (it must stay within the table's size for it)
STALL_S = 10.0  # an open speaker or mic that delivers no block for this long has stopped working
WORK_CHECK_S = 2.0


class Audiod:
    def __init__(self, node: Node, device, voice, numbers: Section, duck_level: float,
                 kept: playing.Playing | None = None):
        self.node, self.device, self.voice, self.numbers = node, device, voice, numbers
        self.kept = kept  # the sounds playing, kept across a crash (daemons.audio.playing)
        self.rate, self.duck_level = numbers.out_rate, duck_level
        self.mixer = Mixer(self.rate, numbers.ramp_s, numbers.volume)
        self.audio_out = {"owner": None, "stack": []}
        self.wakeup = Wakeup()
        self.synth = ThreadPoolExecutor(1, thread_name_prefix="voice")
        self.spoken: deque[tuple[str, str, Future, int]] = deque()  # (owner, id, synthesis, trace), as asked
        # Mic blocks from the device thread, numbered there, so a block lost to a stalled loop leaves a gap.
        self.chunks: deque[tuple[int, np.ndarray, int]] = deque(maxlen=max(1, int(MIC_QUEUE_S / numbers.block_s)))
        self.mic_owner: str | None = None
        self.mic_trace = 0  # the trace of the request that opened the mic (bus.tracing)
        self.for_capture: list[np.ndarray] = []  # sim: speech to play once the mic opens for a capture
        self.listener: str | None = None  # who hears the open mic while nobody captures it (the shell's word)
        # The listener's next block, gathered from the device's: it goes out at the table's rate (4 a second,
        # as often as the spotter decodes), not as 50 messages a second that each woke audiod, the broker and
        # the spotter (most of an idle lens up's wake-ups, measured by bench/system.py)
        self.listened: list[np.ndarray] = []
        self.listened_n = 0  # samples in it (read by the device thread)
        self.wake_samples = max(1, round(numbers.mic_rate / TOPICS["audio.wake.mic"].rate_hz))
        self.mic_why, self.mic_seq, self.mic_blocks, self.mic_dropped = "nobody asked", 0, 0, 0
        self.sessions: dict[str, str] = {}  # mic owner -> the shell's audit session
        self.vad: Vad | None = None
        self.quiet = True  # the mixer had nothing audible after its last block (device may close)
        self.fault: str | None = None
        self.reported: dict | None = None
        self.dropped = 0  # utterances dropped over MAX_WAITING_SPEECH
        self.progress: dict[str, tuple[int, float]] = {}  # speaker/mic -> (blocks so far, when they last moved)
        self.work_timer = None  # armed only while a device is open: a closed one has no blocks to miss
        self.gate = CaptureGate(node, "mic", self.enforce)
        Departures(node, self.on_gone)
        node.watch(self.wakeup.fileno(), self.on_wakeup)  # the device threads' news
        node.subscribe("shell.state", self.on_shell)
        node.subscribe("shell.capture.notice", self.on_notice)
        node.subscribe("audio.speak", self.on_speak)
        node.serve("audio.play.request", self.on_play)
        node.serve("audio.stop.request", self.on_stop)
        node.serve("audio.mic.request", self.on_mic)
        if isinstance(device, SimAudio):
            node.serve("audio.sim.mic.request", self.on_sim_mic)

    # --- the speaker -------------------------------------------------------------------
    def on_shell(self, msg: Message) -> None:
        self.audio_out = msg.payload["focus"].get("audio_out") or {"owner": None, "stack": []}
        for owner in {s["owner"] for s in self.mixer.snapshot()}:
            self.mixer.level(owner, *self.level_for(owner))
        self.play()

    def on_gone(self, owner: str) -> None:
        """A process that stopped or died is not heard any more; its mic closes."""
        if self.mixer.stop(owner, why="owner gone"):
            self.play()
        if owner == self.mic_owner:
            self.mic_stop(f"{owner} is gone")

    def level_for(self, owner: str) -> tuple[float, bool]:
        """(target gain, hold) for an owner's streams under the speaker's focus stack."""
        stack = self.audio_out["stack"]
        if not stack or stack[0]["owner"] == owner:
            return 1.0, False
        claim = next((c for c in stack if c["owner"] == owner), None)
        if claim is not None and claim["ducked"]:
            return self.duck_level, False
        return 0.0, True  # suspended, or waiting for whoever holds the speaker

    def on_speak(self, msg: Message) -> None:
        p = msg.payload
        owner = p["app"] if msg.source in SPEAKS_FOR_OTHERS else msg.source
        if p["interrupt"]:
            self.mixer.stop(owner, why="interrupted")
        if sum(1 for o, *_ in self.spoken if o == owner) >= MAX_WAITING_SPEECH:
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:  # 1, 2, 4, 8...: a flood is logged, not every message
                log.warning("%s speaks faster than it can be said: %d utterances dropped", owner, self.dropped)
            self.node.publish("audio.played", owner=owner, id=p.get("id") or "speech", status="failed")
            return
        self.spoken.append((owner, p.get("id") or "speech",
                            self.synth.submit(self.voice.synthesize, p["text"][:MAX_SPOKEN_CHARS], self.rate),
                            msg.trace))
        self.spoken[-1][2].add_done_callback(lambda _f: self.wakeup.wake())

    def on_play(self, msg: Message) -> dict:
        p = msg.payload
        try:
            pcm = load_sound(p["sound"], self.rate)
        except SoundError as exc:
            raise RequestRefused(str(exc)) from None
        volume = p.get("volume")
        if volume is not None and not 0.0 <= volume <= 1.0:
            raise RequestRefused(f"volume {volume} is outside 0..1")
        length, start = len(pcm) / self.rate, p.get("start_s") or 0.0
        if not 0.0 <= start < length:
            raise RequestRefused(f"start_s {start} is outside the sound's {length:.1f} s")
        pcm = pcm[int(start * self.rate):]
        kind = "music" if p.get("loop") else "sound"
        playing = [s for s in self.mixer.snapshot() if s["owner"] == msg.source  # the one it replaces aside
                   and not (s["id"] == p["id"] and s["status"] != "ending")]
        if len(playing) >= MAX_STREAMS:
            raise RequestRefused(f"{msg.source} already has {len(playing)} sounds playing (at most {MAX_STREAMS}); "
                                 "stop one or wait for audio.played")
        self.add(Stream(msg.source, p["id"], pcm, kind, bool(p.get("loop")), 1.0 if volume is None else volume,
                        sound=p["sound"], start_s=start))
        return {"length_s": length}

    def on_stop(self, msg: Message) -> dict:
        stopped = self.mixer.stop(msg.source, msg.payload.get("id"))
        self.play()
        return {"stopped": stopped}

    def add(self, stream: Stream) -> None:
        stream.target, stream.hold = self.level_for(stream.owner)
        self.mixer.add(stream)
        self.play()

    def play(self) -> None:
        """Open the speaker while anything can be heard or is still ramping; publish what changed."""
        if self.mixer.busy and not self.mixer.quiet:
            self.quiet = False
            try:
                self.device.start_output(self.render)
                self.fault = None
                self.watch_work()
            except AudioError as exc:
                self.fault = str(exc)
                log.error("%s", exc)
                self.mixer.drop_all("failed")
                self.wakeup.wake()
        self.keep()
        self.publish_state()

    def keep(self) -> None:
        if self.kept is not None:
            self.kept.keep(self.mixer, self.rate)

    def restore(self) -> None:
        if self.kept is not None:
            self.kept.restore(self.rate, self.add, self.node.publish)
            self.play()

    def render(self, frames: int) -> np.ndarray:
        """In the device's thread: the next block; the daemon hears of ends and of silence."""
        try:
            block = self.mixer.render(frames)
        except Exception:  # noqa: BLE001 - PortAudio would only stop calling: the speaker would be dead for good
            service.fatal("the speaker's mixer failed")
        quiet = self.mixer.quiet
        if self.mixer.finished or quiet != self.quiet:
            self.quiet = quiet
            self.wakeup.wake()
        return block

    # --- the mic ---------------------------------------------------------------------------
    def on_notice(self, msg: Message) -> None:
        p = msg.payload
        if p["resource"] == "mic" and p["status"] == "granted":
            self.sessions[p["owner"]] = p["session"]

    def on_sim_mic(self, msg: Message) -> dict:
        p, rate = msg.payload, self.numbers.mic_rate
        try:
            if p.get("wav"):
                pcm = simspeech.load_wav(p["wav"], rate)
            elif p.get("text"):
                pcm = simspeech.speak(p["text"], rate, p.get("voice") or simspeech.VOICE,
                                      p.get("wpm") or simspeech.WORDS_PER_MINUTE)
            else:
                raise RequestRefused("say what: text or wav")
        except SoundError as exc:
            raise RequestRefused(str(exc)) from None
        if p.get("when") == "capture" and self.mic_owner is None:  # for the request, not the spotter's ear
            self.for_capture.append(pcm)
            return {"length_s": round(len(pcm) / rate, 3), "open": False}
        return {"length_s": round(self.device.speak_into(pcm), 3), "open": self.device.input is not None}

    def on_mic(self, msg: Message) -> dict:
        owner, on = msg.source, msg.payload["on"]
        if not on:
            if owner == self.mic_owner:
                self.mic_stop("closed by its owner")
            return {"on": False, "rate": self.numbers.mic_rate}
        refusal = self.gate.refusal(owner) or (self.mic_owner not in (None, owner) and f"{self.mic_owner} has the mic")
        if refusal:
            raise RequestRefused(refusal)
        if self.mic_owner is None:
            self.listener = None  # the capture takes the mic over: not one more block for the spotter
            self.drop_taken()
            n = self.numbers
            self.vad = Vad(n.vad_threshold_db, n.vad_margin_db, n.vad_start_s, n.vad_hang_s)
            self.mic_seq, self.mic_blocks = 0, 0
            try:
                self.device.start_input(self.on_block)
            except AudioError as exc:
                raise RequestRefused(f"the microphone failed: {exc}") from None
            self.watch_work()
            self.mic_owner, self.mic_why = owner, f"open for {owner}"
            log.info("mic open for %s", owner)
            while self.for_capture:  # the simulated speech that waited for a capture (lens mic say --hold)
                self.device.speak_into(self.for_capture.pop(0))
        self.mic_trace = msg.trace  # the blocks are hops of the work that asked for them (bus.tracing)
        self.publish_state()
        return {"on": True, "rate": self.numbers.mic_rate}

    def on_block(self, pcm: np.ndarray, mono_ns: int) -> None:
        """In the device's thread: number and queue the block; the daemon checks and publishes it. A capture's
        block wakes the loop at once; the listener's only once a quarter second of them is here, as they go out
        (the loop woken 50 times a second for nothing to send was half of audiod's idle wake-ups)."""
        self.mic_seq += 1
        if len(self.chunks) == self.chunks.maxlen:
            self.mic_dropped += 1
        self.chunks.append((self.mic_seq, pcm, mono_ns))
        # What is queued and what the loop has gathered: no count of its own that could drift from the loop's
        if self.mic_owner is not None or len(self.chunks) * len(pcm) + self.listened_n >= self.wake_samples:
            self.wakeup.wake()

    def enforce(self) -> None:
        if self.mic_owner is not None:
            refusal = self.gate.refusal(self.mic_owner)
            if refusal:
                self.mic_stop(refusal)
        self.listen()

    def listen(self) -> None:
        """Open the mic for the listener the shell names while nobody captures it; close it when it names none."""
        listener = self.gate.capture.get("listening") or None
        if self.mic_owner is not None or listener == self.listener:
            return
        self.drop_taken()  # blocks taken for someone else are nobody's now
        if listener is None:
            self.device.stop_input()
            log.info("the wake-phrase spotter stopped listening")
        else:
            try:
                self.device.start_input(self.on_block)
            except AudioError as exc:
                log.error("the mic failed, so nobody listens for the wake phrase: %s", exc)
                return
            self.watch_work()
            log.info("mic open for %s, listening for the wake phrase (no LED: nothing is kept)", listener)
        self.listener = listener
        self.publish_state()

    def publish_blocks(self) -> None:
        with self.node.tracing(self.mic_trace if self.mic_owner is not None else 0):
            self._publish_blocks()

    def _publish_blocks(self) -> None:
        for _ in range(len(self.chunks)):  # those here now: a device that floods must not starve the loop
            if not self.chunks:  # a refusal below stopped the mic and cleared the rest
                return
            seq, pcm, mono_ns = self.chunks.popleft()
            if self.mic_owner is None:
                self.publish_listened(seq, pcm, mono_ns)
                continue
            refusal = self.gate.refusal(self.mic_owner)  # before every block, not only when told
            if refusal:
                self.mic_stop(refusal)
                continue
            self.mic_blocks += 1
            rate = self.numbers.mic_rate
            self.node.publish("audio.mic", owner=self.mic_owner, seq=seq, rate=rate, mono_ns=mono_ns,
                              pcm=pcm.tobytes())
            change = self.vad.feed(pcm, len(pcm) / rate)
            if change is not None:
                self.node.publish("audio.vad", owner=self.mic_owner, speech=change, seq=seq,
                                  level_db=round(self.vad.level, 1))

    def publish_listened(self, seq: int, pcm: np.ndarray, mono_ns: int) -> None:
        """A block while nobody captures: the listener's, if the shell still names it (checked before every
        block, as a capture's grant is); otherwise the mic closed after it was taken, and it goes nowhere."""
        if self.listener is None or self.gate.capture.get("listening") != self.listener:
            self.forget_listened()
            return
        self.listened.append(pcm)
        self.listened_n += len(pcm)
        if self.listened_n < self.wake_samples:
            return
        gathered = np.concatenate(self.listened)
        self.forget_listened()
        self.node.publish("audio.wake.mic", owner=self.listener, seq=seq, rate=self.numbers.mic_rate,
                          mono_ns=mono_ns, pcm=gathered.tobytes())

    def forget_listened(self) -> None:
        self.listened.clear()
        self.listened_n = 0

    def drop_taken(self) -> None:
        """Every block taken from the device and not yet out, queued or gathered for the spotter: the mic
        changed hands, and whoever they were taken for may not have them now."""
        self.chunks.clear()
        self.forget_listened()

    def mic_stop(self, why: str) -> None:
        self.device.stop_input()
        self.drop_taken()  # taken before the stop but not yet out: nobody may have them now
        owner, self.mic_owner, self.mic_why = self.mic_owner, None, why
        if owner is not None:
            log.info("mic for %s closed: %s (%d blocks)", owner, why, self.mic_blocks)
            self.node.publish("audio.session", owner=owner, session=self.sessions.pop(owner, None),
                              blocks=self.mic_blocks, seconds=round(self.mic_blocks * self.numbers.block_s, 3))
        self.publish_state()
        self.listen()  # back to the spotter, if the shell names it again

    # --- the loop's side of the device threads ------------------------------------------------
    def watch_work(self) -> None:
        """Check the work every WORK_CHECK_S from now on, while a device is open (check_work stops it)."""
        if self.work_timer is None:
            self.work_timer = self.node.every(WORK_CHECK_S, self.check_work)

    def check_work(self) -> None:
        """Liveness from the work: an open speaker or mic whose blocks stopped coming ends the process."""
        if self.device.output is None and self.device.input is None:  # both closed: nothing is due
            if self.work_timer is not None:
                self.work_timer.cancel()
                self.work_timer = None
            self.progress.clear()
            return
        now = time.monotonic()
        for what, running, count in (("speaker", self.device.output is not None, self.mixer.rendered),
                                     ("mic", self.device.input is not None, self.mic_seq)):
            last = self.progress.get(what)
            if not running or last is None or last[0] != count:
                self.progress[what] = (count, now)
            elif now - last[1] > STALL_S:
                service.fatal(f"the {what} stopped: no block for {now - last[1]:.1f} s")

    def on_wakeup(self) -> None:
        self.wakeup.drain()
        self.publish_blocks()
        while self.spoken and self.spoken[0][2].done():
            owner, id, job, trace = self.spoken.popleft()
            with self.node.tracing(trace):  # the speech that says a traced answer: its start and its end
                try:
                    self.add(Stream(owner, id, job.result(), "speech", trace=trace))
                except SoundError as exc:
                    log.error("cannot say that: %s", exc)
                    self.node.publish("audio.played", owner=owner, id=id, status="failed")
                self.publish_state()
        finished = self.mixer.take_finished()
        for stream, status in finished:
            with self.node.tracing(stream.trace):
                self.node.publish("audio.played", owner=stream.owner, id=stream.id, status=status)
        if finished:
            self.keep()
        if self.quiet and self.mixer.quiet:
            self.device.stop_output()
        self.publish_state()

    def publish_state(self) -> None:
        mic = {"on": self.mic_owner is not None, "owner": self.mic_owner, "listener": self.listener,
               "rate": self.numbers.mic_rate,
               "why": self.mic_why, "speech": bool(self.vad and self.vad.speaking and self.mic_owner)}
        streams = [{k: s[k] for k in ("owner", "id", "kind", "status", "loop")}
                   for s in self.mixer.snapshot()[:MAX_LISTED]]
        state = {"backend": self.device.name, "voice": self.voice.name, "rate": self.rate, "streams": streams,
                 "mic": mic, "xruns": self.device.xruns + self.mic_dropped, "fault": self.fault}
        if state != self.reported:
            self.reported = state
            self.node.publish("audio.state", **state)

    def close(self) -> None:
        self.mic_stop("audiod stopped")
        self.device.close()  # its threads are joined: nothing wakes us after this
        self.synth.shutdown(wait=False, cancel_futures=True)
        self.wakeup.close()


def open_device(kind: str, numbers: Section, runtime_path) -> object:
    args = (numbers.out_rate, numbers.mic_rate, numbers.block_s)
    if kind == "real":
        return PortAudio(*args, numbers.out_device, numbers.in_device)
    return SimAudio(*args, runtime_path("audio-out.wav"), numbers.sim_mic_wav)


def main(argv: list[str] | None = None) -> int:
    args = service.arguments(ROW.module, __doc__, backends=ROW.backends,
                             state_dir="the sounds playing, kept across a restart").parse_args(argv)
    with service.exits_on(ROW.name, PolicyError):
        policy = load(args.policy_dir, args.model)
        numbers = policy.hardware.audio
        try:
            voice = make_voice(numbers.voice, numbers.voice_name, numbers.words_per_minute)
        except SoundError as exc:  # a glasses that beeps its words beats one that cannot make a sound
            log.warning("%s; speaking in tones instead", exc)
            voice = make_voice("tones", "", 0)
    with service.node(ROW.name, args) as node:
        with service.exits_on(ROW.name, AudioError):
            device = open_device(args.backend, numbers, node.runtime.path)
        kept = playing.Playing(Kept(state_dir(args.state_dir, node.runtime.dir), ROW.name, playing.KEPT))
        audiod = Audiod(node, device, voice, numbers, policy.focus.ducking.level, kept)
        node.start()
        audiod.restore()  # after the start: the speaker's focus is known, so each is heard as it should be
        audiod.publish_state()
        node.run()
        audiod.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
