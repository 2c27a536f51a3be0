"""A stand-in for the vosk package in the assistant's tests: Vosk's models are downloads, and tests
download nothing. It keeps Vosk's API (Model, KaldiRecognizer, AcceptWaveform, FinalResult) and
"recognizes" the words written in the model directory's words.txt once it has been fed at least
half a second of loud audio, so a test shows the mic's blocks really reached the engine."""

import json
from pathlib import Path

import numpy as np


def SetLogLevel(level):
    pass


class Model:
    def __init__(self, path):
        self.words = (Path(path) / "words.txt").read_text().strip()


class KaldiRecognizer:
    def __init__(self, model, rate):
        self.model, self.rate, self.loud = model, rate, 0

    def AcceptWaveform(self, data):
        pcm = np.frombuffer(data, np.int16).astype(np.float32)
        if len(pcm) and np.sqrt(np.mean(pcm * pcm)) > 1000:
            self.loud += len(pcm)
        return False

    def FinalResult(self):
        return json.dumps({"text": self.model.words if self.loud >= self.rate // 2 else ""})
