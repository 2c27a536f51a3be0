"""Speech-to-text behind one interface: ``feed(pcm, rate)`` each mic block, ``final()`` for the text;
``ended`` turns true when the engine itself heard the wearer stop speaking (sooner than audiod's VAD).

- ``SphinxStt`` (the default): pocketsphinx, whose wheel ships its US English
  acoustic model, dictionary and language model, so it works offline with
  nothing downloaded. Commands are recognized against a JSGF grammar made
  from the intent table (``intents.jsgf``); what falls outside it (the
  grammar search ends off its final state, or the phones heard disagree
  with the command's) is decoded free-form with the language model when an
  LLM is there to answer it, else refused as not understood.
- ``TextStt`` (development, tests): the words come from `lens say`; the
  mic still opens (LED and all) so the flow is the product's, but its
  blocks are not listened to.
- ``VoskStt``: offline recognition with Vosk on the mic's blocks, from a
  model directory the user installed. Nothing is downloaded: without the
  ``vosk`` package or the directory the assistant refuses to start and says which.

Both forget everything on ``reset()``: no audio outlives the question.
"""

from __future__ import annotations

import array
import bisect
import json
import logging
import math
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)


VOICED_FRAMES = 10  # of 20 ms: the span whose mean level tells speech over steady noise


class SttError(RuntimeError):
    """The engine cannot be used as configured."""


class TextStt:
    name = "text"
    listens = False
    endpoints = False
    ended = unclear = False  # the text arrives from `lens say`, not from the blocks

    def feed(self, pcm: bytes, rate: int) -> None:
        pass

    def final(self) -> str:
        return ""

    def reset(self) -> None:
        pass


class VoskStt:
    name = "vosk"
    listens = True
    endpoints = False  # audiod's energy detector says when the words are complete
    ended = unclear = False

    def __init__(self, model_dir: str, rate: int = 16000):
        if not model_dir or not Path(model_dir).is_dir():
            raise SttError(f"stt = vosk needs vosk_model_dir to name an installed model directory (got {model_dir!r})")
        try:
            import vosk
        except ImportError:
            raise SttError("stt = vosk needs the vosk package (pip install vosk)") from None
        vosk.SetLogLevel(-1)
        self.vosk, self.model, self.rate = vosk, vosk.Model(model_dir), rate
        self.recognizer = None

    def feed(self, pcm: bytes, rate: int) -> None:
        if self.recognizer is None or rate != self.rate:
            self.rate = rate
            self.recognizer = self.vosk.KaldiRecognizer(self.model, rate)
        self.recognizer.AcceptWaveform(pcm)

    def final(self) -> str:
        if self.recognizer is None:
            return ""
        text = json.loads(self.recognizer.FinalResult()).get("text", "")
        self.recognizer = None
        return text

    def reset(self) -> None:
        self.recognizer = None  # its buffers go with it


class SphinxStt:
    """pocketsphinx on the mic's blocks. Its endpointer finds the end of the wearer's speech as the blocks
    come; the speech (with a little before its start) is then decoded whole. Decoding block by block was
    worse: its running cepstral mean starts from a guess, and the first second's words came out wrong ("what
    time is it" heard as "forget that" over a quiet room); a whole utterance is normalized by its own mean.

    A command must also be what was said, not the grammar's nearest guess: a grammar forces any speech onto
    one of its sentences. So the same speech is decoded a second time as free phones (a phone loop, the
    usual garbage model) and the command's pronunciation is compared with them: past ``max_disagreement``
    (phone edits per phone of the command) it is refused, and the wearer is told it was not understood.
    A false action is worse than "I didn't catch that".

    Over steady noise (a fan, traffic) its endpointer hears speech in the noise itself and never the end: the
    session ran to its listen timeout. So the level of each 20 ms frame is also kept, and where the noise floor
    (the quietest tenth of the frames so far) is over NOISY_FLOOR_DB, the speech has ended once the mean level
    of the last NOISY_END_S is within NOISE_MARGIN_DB of that floor.

    Over such a floor the decoders hear the speech through WebRTC's noise suppression (``webrtc-noise-gain``,
    the audio processing Home Assistant's voice satellites use, as a wheel for x86-64 and arm64), a fresh
    suppressor over each decode's audio, whose half second before the speech teaches it the noise. Over
    bench/voice.py's sets, decoded whole: with pink noise at 10 dB SNR, 137 of 156 commands heard right
    where 106 were (the grammar's last words lost in the noise; the phones too far from a command heard
    right), non-commands taken for one 12 of 100 against 13; at 20 dB, 148 against 145, 10 against 18.
    Not over a quiet floor: there it cost commands (116 of 156 against 141), the suppressor taking part of
    the speech for noise. speexdsp's suppressor, also tried, lost half the commands.

    A command is also heard at its first pause: once the level has been back near the floor for PAUSE_S (a fifth
    of a second, where the endpointer waits 0.45-0.5 s in all, its VAD's hangover and its window), the speech so
    far is decoded, and if it is a whole command the phones agree with closely (``max_early_disagreement``),
    that is the answer, a quarter of a second sooner. Anything else (no command yet, one heard less surely) is
    listened to until the end as before, so a pause inside a sentence cuts nothing: it costs one decode more.
    Not with an LLM to ask (``free_form``): a question may begin as a command does ("what time is it ... in
    Tokyo"), and a hesitation after its first words would answer the command instead. The stricter bar keeps a
    command heard in part of other speech at its pause from becoming an action the whole would not have been
    (chosen when every edit counted 1: over bench/voice.py's quiet set, every non-command taken for a command was
    0.75-0.9 apart, and 94 of 150 commands heard right within 0.7; PHONE_KINDS below since). What a pause's
    decode found is not lost when it is not taken: if the end's decode finds the same command, the closer of the
    two distances is held to the end's bar."""

    name = "pocketsphinx"
    listens = True
    endpoints = True  # it finds the end of speech itself: audiod's energy detector is not needed
    RATE = 16000  # the models' rate, and the mic's (policies/hardware.toml)
    PRE_ROLL_S = 0.5  # kept before speech is detected: the endpointer decides a little after the onset
    MAX_UTTERANCE_S = 15.0  # of speech decoded at once: beyond it the words so far are taken
    FILLERS = {"SIL", "+SPN+", "+NSN+"}
    NOISY_FLOOR_DB = -45.0  # dBFS: a quiet room is far under it (the sim's at -60), pink noise at 10 dB SNR -27
    NOISE_MARGIN_DB = 3.0
    NOISY_END_S = 0.5
    VOICED_DB = 6.0  # a fifth of a second this far over the floor was speech
    PAUSE_S = 0.2  # back near the floor this long: a command may be complete (bench/voice.py chose it)
    QUIET_MARGIN_DB = 6.0  # "near the floor" in a quiet room, where the floor is far under speech
    SUPPRESSION = 3  # WebRTC's noise suppression level (0-4): 4 heard 134 of the 156 commands above, 2 heard 132

    def __init__(self, grammar: str, free_form: bool = False, end_window_s: float = 0.3,
                 max_disagreement: float = 0.8, max_early_disagreement: float = 0.7):
        try:
            import pocketsphinx
        except ImportError:
            raise SttError("stt = pocketsphinx needs the pocketsphinx package (pip install pocketsphinx)") from None
        self.ps, self.end_window_s, self.max_disagreement = pocketsphinx, end_window_s, max_disagreement
        self.max_early_disagreement = max_early_disagreement
        quiet = {"logfn": os.devnull, "samprate": self.RATE}
        model = Path(pocketsphinx.__file__).parent / "model" / "en-us"
        try:
            # A dictionary of the grammar's words only (the phone loop needs none), not the 135,000 of the
            # whole: the two decoders take 11 MiB of the process where they took 51 (USS, measured), and hear
            # exactly as before (bench/voice.py). One decoder with both searches was no smaller than that and
            # heard 2 of 39 commands fewer in noise.
            with _words_of(grammar, model / "cmudict-en-us.dict") as dictionary:
                self.grammar = pocketsphinx.Decoder(lm=None, dict=dictionary, **quiet)
                self.phones = pocketsphinx.Decoder(lm=None, dict=dictionary, **quiet)
            self.grammar.add_jsgf_string("commands", grammar)
            self.grammar.activate_search("commands")
            self.fsg = self.grammar.get_fsg("commands")
            self.phones.add_allphone_file("phones", str(model / "en-us-phone.lm.bin"))
            self.phones.activate_search("phones")
            # Free-form words only matter to an LLM: without one, the language model's 0.6 s and memory are spared.
            self.free = pocketsphinx.Decoder(**quiet) if free_form else None
        except (RuntimeError, ValueError, OSError) as exc:
            raise SttError(f"pocketsphinx could not load its model or the grammar: {exc}") from None
        self.unclear = False
        self.reset()

    def feed(self, pcm: bytes, rate: int) -> None:
        if rate != self.RATE:
            raise SttError(f"pocketsphinx needs {self.RATE} Hz from the mic, not {rate} (policies/hardware.toml mic_rate)")
        if not self.started:
            self.reset()
            self.started, self.unclear = True, False
            self.endpointer = self.ps.Endpointer(window=self.end_window_s, sample_rate=self.RATE)
        if self.ended:
            return  # the words are complete; final() takes them
        self.audio += pcm
        self.pending += pcm
        size = self.endpointer.frame_bytes
        paused = self.paused  # a block may complete no frame
        while len(self.pending) >= size:
            frame, self.pending = self.pending[:size], self.pending[size:]
            was = self.endpointer.in_speech
            self.endpointer.process(frame)
            if not was and self.endpointer.in_speech:
                self.speaking = True
            quiet, paused = self._by_level(frame)
            if was and not self.endpointer.in_speech or self.speaking and quiet:
                self.ended = True
        if not self.speaking:
            self.audio = self.audio[-int(self.PRE_ROLL_S * self.RATE) * 2:]
        elif len(self.audio) >= self.MAX_UTTERANCE_S * self.RATE * 2:
            self.ended = True
        elif not self.ended and paused and not self.paused and self.free is None:
            # "" when it is none (yet), or not as surely as at the end: listened to until the end.
            words, apart = self._judge(self._heard(self.audio, self._noisy()))
            if apart is not None:
                self.nearest[words] = min(apart, self.nearest.get(words, apart))
            self.early = words if apart is not None and apart <= self.max_early_disagreement else ""
            self.ended = bool(self.early)
        self.paused = paused  # one decode a pause

    def _by_level(self, frame: bytes) -> tuple[bool, bool]:
        """(ended, paused): was there speech over a noisy floor, and has the level been back at that floor for
        NOISY_END_S (the end the endpointer misses in noise)? And was there speech, back near the floor for
        PAUSE_S (a command may be complete)? Noise alone is no speech: the wearer may not have begun."""
        # Without numpy, which assistantd does not load for anything else: 50 frames a second of 320 samples.
        samples = array.array("h", frame)
        level = 10 * math.log10(max(sum(x * x for x in samples) / len(samples), 1.0) / 32768 ** 2)
        self.levels.append(level)
        bisect.insort(self.ranked, level)  # kept in order, so the floor is one look-up a frame
        tail = int(self.NOISY_END_S * self.RATE * 2 / len(frame))
        pause = int(self.PAUSE_S * self.RATE * 2 / len(frame))
        if len(self.levels) >= VOICED_FRAMES:
            self.loudest = max(self.loudest, sum(self.levels[-VOICED_FRAMES:]) / VOICED_FRAMES)
        floor = self._floor()
        if self.loudest <= floor + self.VOICED_DB:
            return False, False
        noisy = self._noisy()
        margin = self.NOISE_MARGIN_DB if noisy else self.QUIET_MARGIN_DB
        paused = len(self.levels) >= 2 * pause and sum(self.levels[-pause:]) / pause < floor + margin
        ended = noisy and len(self.levels) >= 2 * tail and sum(self.levels[-tail:]) / tail < floor + margin
        return ended, paused

    def _floor(self) -> float:
        """The noise floor: the quietest tenth of the frames so far (dBFS)."""
        return self.ranked[len(self.ranked) // 10]

    def _noisy(self) -> bool:
        return bool(self.ranked) and self._floor() > self.NOISY_FLOOR_DB

    def _heard(self, audio: bytes, noisy: bool) -> bytes:
        """The audio as the decoders get it: through the noise suppressor over a noisy floor (above)."""
        if not noisy:
            return audio
        from webrtc_noise_gain import AudioProcessor  # loaded once noise is heard: 3 MiB a quiet room never costs

        suppressor = AudioProcessor(0, self.SUPPRESSION)  # no gain: the decoders normalize levels themselves
        step = self.RATE // 100 * 2  # its 10 ms of 16-bit samples
        return b"".join(suppressor.Process10ms(audio[at:at + step]).audio
                        for at in range(0, len(audio) - step + 1, step))

    @staticmethod
    def _decode(decoder, audio: bytes) -> str:
        decoder.start_utt()
        decoder.process_raw(audio, False, True)
        decoder.end_utt()
        said = decoder.hyp()
        return said.hypstr if said is not None else ""

    def disagreement(self, words: str, audio: bytes) -> float:
        """Phone edits per phone between the command's pronunciation and the free phones heard (a phone heard
        as another of its kind counts SAME_KIND of an edit: PHONE_KINDS)."""
        expected = [p for word in words.split() for p in (self.grammar.lookup_word(word) or "").split()]
        heard = [p for p in self._decode(self.phones, audio).split() if p not in self.FILLERS]
        return edits(expected, heard, PHONE_KINDS) / max(len(expected), 1)

    def _judge(self, audio: bytes) -> tuple[str, float | None]:
        """The grammar's sentence for ``audio``, and how far the phones heard are from it in phone edits a phone;
        None when the search ended off the grammar's final state (a partial path: no command)."""
        words = self._decode(self.grammar, audio)
        return words, self.disagreement(words, audio) if words and self.fsg.accept(words) else None

    def final(self) -> str:
        """The command the grammar heard; or, when the speech was none of them, the free-form words (for the
        LLM), else "" with ``unclear`` set if there was speech at all."""
        audio, speaking, early, noisy, nearest = self.audio, self.speaking, self.early, self._noisy(), self.nearest
        self.reset()
        if early or not speaking:
            return early
        audio = self._heard(audio, noisy)
        words, apart = self._judge(audio)
        if apart is not None:
            # The same command decoded at a pause of this utterance may have had its phones closer: the phone
            # loop's count moves with the silence or noise around the words, and two decodes that agree on the
            # command, one of them within the bar, are believed (bench/voice.py: 6 more commands heard in quiet,
            # 3 in noise, no non-command or other command more).
            apart = min(apart, nearest.get(words, apart))
            if apart <= self.max_disagreement:
                return words
        # Why, without the words (the journal is no place for what the wearer said): an unclear answer in a test
        # or in the field is told from a cut or a wrong utterance by its length and these.
        log.info("speech of %.2f s was no command: %s", len(audio) / 2 / self.RATE,
                 "the grammar found no sentence" if apart is None else
                 f"{apart:.2f} phone edits per phone (more than {self.max_disagreement:g})")
        if self.free is not None:
            words = self._decode(self.free, audio)
            if words:
                return words
        self.unclear = True
        return ""

    def reset(self) -> None:
        """Nothing of an utterance kept (``unclear``, what final() found, stays for its reader)."""
        self.started = self.ended = self.speaking = self.paused = False
        self.early = ""  # the command heard at a pause
        self.nearest: dict[str, float] = {}  # each command decoded at a pause: its phones' least disagreement
        self.audio = self.pending = b""  # since shortly before the speech began; in memory only
        self.levels, self.ranked = [], []  # each frame's level (dBFS) since the start, and the same in order
        self.loudest = -120.0  # the loudest fifth of a second so far (dBFS)
        self.endpointer = None


@contextmanager
def _words_of(grammar: str, whole: Path) -> Iterator[str]:
    """A path to a dictionary of the grammar's words (every pronunciation the whole one has for each), held
    in memory (memfd: nothing written to a disk, where a read-only unit could not), for the decoder to read
    once at its start."""
    body = grammar.split(";", 2)[-1]  # past the header's two statements: rules of words and <names>
    words = set(re.findall(r"[a-z']+", re.sub(r"<[^>]*>", " ", body.lower())))
    # "word phones" or "word(2) phones" for a second pronunciation
    entries = [(line.split(" ", 1)[0].split("(", 1)[0], line) for line in whole.read_text().splitlines(True)]
    lines = [line for word, line in entries if word in words]
    missing = words - {word for word, _ in entries}
    if missing:
        raise ValueError(f"words the dictionary lacks: {', '.join(sorted(missing))}")
    fd = os.memfd_create("grammar.dict")
    try:
        os.write(fd, "".join(lines).encode())
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def edits(a: list[str], b: list[str], alike: dict[str, str] | None = None) -> float:
    """The fewest insertions, deletions and substitutions that make ``a`` into ``b`` (Levenshtein); with
    ``alike`` (each item's kind), a substitution by an item of the same kind costs SAME_KIND, not 1."""
    row: list[float] = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[:], i
        for j, y in enumerate(b, 1):
            swap = 0 if x == y else SAME_KIND if alike and alike.get(x, x) == alike.get(y, y) else 1
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + swap)
    return row[-1]


# The kinds of ARPAbet phones (pocketsphinx's US English set). A vowel heard as another vowel, or a stop as
# another stop, is nearer the command than one heard as a stop. Chosen by replaying bench/voice.py's decodes
# (a scratch script; SAME_KIND 0.4-1.0, the bars 0.4-0.7 at a pause and 0.6-0.9 at the end): 0.7, with the bars
# 0.7 and 0.8 (were 0.7 and 0.9): of those that took no more wrong actions and heard no command fewer, the one
# that believed the most commands at their first pause. Then measured (bench/voice.py): intents right 96.2 %
# quiet, 90.4 % noise (95.5, 89.7 before), non-commands taken 16 and 13 of 100 (15, 15), and the end of speech
# to the words p50 273 and 301 ms (284, 404): more commands sure enough at their first pause.
PHONE_KINDS = {phone: kind for kind, phones in {
    "vowel": "AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW", "stop": "P B T D K G",
    "fricative": "F V TH DH S Z SH ZH HH", "affricate": "CH JH", "nasal": "M N NG", "approximant": "L R W Y",
}.items() for phone in phones.split()}
SAME_KIND = 0.7


def open_stt(kind: str, model_dir: str = "", free_form: bool = False):
    if kind == "vosk":
        return VoskStt(model_dir)
    if kind == "pocketsphinx":
        from daemons.assistant.intents import jsgf
        return SphinxStt(jsgf(), free_form=free_form)
    return TextStt()
