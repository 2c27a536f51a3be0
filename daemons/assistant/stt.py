"""Speech-to-text behind one interface: ``feed(pcm, rate)`` each mic block, ``final()`` for the text;
``ended`` turns true when the engine itself heard the wearer stop speaking (sooner than audiod's VAD).

- ``SphinxStt`` (the default): pocketsphinx, whose wheel ships its US English
  acoustic model, dictionary and language model, so it works offline with
  nothing downloaded. Commands are recognized against a JSGF grammar made
  from the intent table (``intents.jsgf``); what falls outside it (the
  grammar search ends off its final state) is decoded free-form with the
  language model, when an LLM is there to answer it.
- ``TextStt`` (development, tests): the words come from `lens say`; the
  mic still opens (LED and all) so the flow is the product's, but its
  blocks are not listened to.
- ``VoskStt``: offline recognition with Vosk on the mic's blocks, from a
  model directory the user installed. Nothing is downloaded: without the
  ``vosk`` package or the directory the assistant refuses to start and says which.

Both forget everything on ``reset()``: no audio outlives the question.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class SttError(RuntimeError):
    """The engine cannot be used as configured."""


class TextStt:
    name = "text"
    listens = False
    ended = False  # the text arrives from `lens say`, not from the blocks

    def feed(self, pcm: bytes, rate: int) -> None:
        pass

    def final(self) -> str:
        return ""

    def reset(self) -> None:
        pass


class VoskStt:
    name = "vosk"
    listens = True
    ended = False

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
    name = "pocketsphinx"
    listens = True
    RATE = 16000  # the models' rate, and the mic's (policies/hardware.toml)

    def __init__(self, grammar: str, free_form: bool = False, end_window_s: float = 0.3):
        try:
            import pocketsphinx
        except ImportError:
            raise SttError("stt = pocketsphinx needs the pocketsphinx package (pip install pocketsphinx)") from None
        self.ps, self.end_window_s = pocketsphinx, end_window_s
        quiet = {"logfn": os.devnull}
        try:
            self.grammar = pocketsphinx.Decoder(lm=None, samprate=self.RATE, **quiet)
            self.grammar.add_jsgf_string("commands", grammar)
            self.grammar.activate_search("commands")
            # Free-form words only matter to an LLM: without one, the language model's 0.6 s and memory are spared.
            self.free = pocketsphinx.Decoder(samprate=self.RATE, **quiet) if free_form else None
        except (RuntimeError, ValueError) as exc:
            raise SttError(f"pocketsphinx could not load its model or the grammar: {exc}") from None
        self.started, self.ended, self.heard = False, False, ""
        self.pending = b""
        self.endpointer = None

    def feed(self, pcm: bytes, rate: int) -> None:
        if rate != self.RATE:
            raise SttError(f"pocketsphinx needs {self.RATE} Hz from the mic, not {rate} (policies/hardware.toml mic_rate)")
        if not self.started:
            self.started, self.ended, self.pending = True, False, b""
            self.endpointer = self.ps.Endpointer(window=self.end_window_s, sample_rate=self.RATE)
            for decoder in self.decoders:
                decoder.start_utt()
        for decoder in self.decoders:
            decoder.process_raw(pcm, False, False)
        self.pending += pcm
        size = self.endpointer.frame_bytes
        while len(self.pending) >= size:
            frame, self.pending = self.pending[:size], self.pending[size:]
            was = self.endpointer.in_speech
            self.endpointer.process(frame)
            if was and not self.endpointer.in_speech:
                self.ended = True

    @property
    def decoders(self):
        return [d for d in (self.grammar, self.free) if d is not None]

    def final(self) -> str:
        """The command the grammar heard; or, when the speech was none of them, the free-form words."""
        if not self.started:
            return ""
        for decoder in self.decoders:
            decoder.end_utt()
        said = self.grammar.hyp()
        # Off the grammar's final state the search gives a partial path: that was no command.
        text = said.hypstr if said is not None and self.grammar.get_fsg().accept(said.hypstr) else ""
        if not text and self.free is not None and self.free.hyp() is not None:
            text = self.free.hyp().hypstr
        self.reset()
        return text

    def reset(self) -> None:
        if self.started:
            for decoder in self.decoders:
                try:
                    decoder.end_utt()
                except RuntimeError:
                    pass  # ended already by final()
        self.started, self.ended, self.pending, self.endpointer = False, False, b"", None  # no audio kept


def open_stt(kind: str, model_dir: str = "", free_form: bool = False):
    if kind == "vosk":
        return VoskStt(model_dir)
    if kind == "pocketsphinx":
        from daemons.assistant.intents import jsgf
        return SphinxStt(jsgf(), free_form=free_form)
    return TextStt()
