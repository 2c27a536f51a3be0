"""Speech-to-text behind one interface: ``feed(pcm, rate)`` each mic block, ``final()`` for the text.

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
from pathlib import Path


class SttError(RuntimeError):
    """The engine cannot be used as configured."""


class TextStt:
    name = "text"
    listens = False  # the text arrives from `lens say`, not from the blocks

    def feed(self, pcm: bytes, rate: int) -> None:
        pass

    def final(self) -> str:
        return ""

    def reset(self) -> None:
        pass


class VoskStt:
    name = "vosk"
    listens = True

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


def open_stt(kind: str, model_dir: str):
    return VoskStt(model_dir) if kind == "vosk" else TextStt()
