"""The speaker and the microphone: PortAudio through sounddevice (real), or WAV files (sim).

Both backends have the same shape. ``start_output(render)`` has the device
pull blocks from the mixer in its own thread until ``stop_output``;
``start_input(on_chunk)`` hands int16 mic blocks and their CLOCK_MONOTONIC
time to ``on_chunk``, in the device's thread, until ``stop_input``. The
devices are open only while something plays or the mic is granted: an idle
pair of glasses keeps neither awake.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import wave
from collections import deque
from pathlib import Path
from typing import Callable

import numpy as np

from daemons.audio.sounds import SoundError, decode_wav

log = logging.getLogger("audiod")

Render = Callable[[int], np.ndarray]
OnChunk = Callable[[np.ndarray, int], None]


class AudioError(RuntimeError):
    """A device that cannot be opened or failed while running."""


def to_int16(block: np.ndarray) -> np.ndarray:
    return (np.clip(block, -1.0, 1.0) * 32767.0).astype(np.int16)


class PortAudio:
    """The board's codec through PortAudio (ALSA underneath): callbacks in PortAudio's thread."""

    name = "real"

    def __init__(self, out_rate: int, mic_rate: int, block_s: float, out_device: str, in_device: str):
        try:
            import sounddevice
        except OSError as exc:  # sounddevice raises OSError when libportaudio2 is missing
            raise AudioError(f"PortAudio is not available: {exc} (Debian: apt-get install libportaudio2)") from None
        self.sd = sounddevice
        self.out_rate, self.mic_rate, self.block_s = out_rate, mic_rate, block_s
        self.out_device, self.in_device = out_device or None, in_device or None
        self.output = self.input = None
        self.xruns = 0  # blocks PortAudio reported late (underflow out, overflow in)
        try:
            self.sd.check_output_settings(device=self.out_device, samplerate=out_rate, channels=1, dtype="float32")
        except Exception as exc:  # sounddevice raises PortAudioError or ValueError for a missing device
            raise AudioError(f"cannot play to {out_device or 'the default device'} at {out_rate} Hz: {exc}") from None

    def start_output(self, render: Render) -> None:
        if self.output is not None:
            return

        def callback(outdata, frames, _time, status) -> None:
            if status.output_underflow:
                self.xruns += 1
            outdata[:, 0] = render(frames)

        self.output = self._open(self.sd.OutputStream, self.out_device, self.out_rate, callback, "play to")

    def start_input(self, on_chunk: OnChunk) -> None:
        if self.input is not None:
            return

        def callback(indata, _frames, _time, status) -> None:
            if status.input_overflow:
                self.xruns += 1
            on_chunk(indata[:, 0].copy(), time.monotonic_ns())

        self.input = self._open(self.sd.InputStream, self.in_device, self.mic_rate, callback, "record from",
                                dtype="int16")

    def _open(self, kind, device, rate: int, callback, what: str, dtype: str = "float32"):
        try:
            stream = kind(samplerate=rate, blocksize=int(rate * self.block_s), device=device, channels=1,
                          dtype=dtype, callback=callback)
            stream.start()
        except Exception as exc:
            raise AudioError(f"cannot {what} {device or 'the default device'}: {exc}") from None
        return stream

    def stop_output(self) -> None:
        self.output = self._close(self.output)

    def stop_input(self) -> None:
        self.input = self._close(self.input)

    @staticmethod
    def _close(stream) -> None:
        if stream is not None:
            try:  # abort, not stop: nothing queued is worth waiting for (silence out, unwanted blocks in),
                stream.abort()  # and draining ALSA's null device was seen to hang
                stream.close()
            except Exception as exc:  # a device that vanished must not take the daemon with it
                log.warning("closing an audio stream: %s", exc)
        return None

    def close(self) -> None:
        self.stop_output()
        self.stop_input()


class _Paced(threading.Thread):
    """A thread that calls ``step`` once per block, at the pace a sound card's clock would."""

    def __init__(self, block_s: float, step: Callable[[], None], name: str):
        super().__init__(name=name, daemon=True)
        self.block_s, self.step = block_s, step
        self.halt = threading.Event()

    def run(self) -> None:
        due = time.monotonic()
        while not self.halt.is_set():
            self.step()
            due += self.block_s
            delay = due - time.monotonic()
            if delay < -1.0:  # the machine stalled: a card would have underrun once, not played catch-up
                due = time.monotonic()
            self.halt.wait(max(0.0, delay))

    def stop(self) -> None:
        self.halt.set()
        if self is not threading.current_thread():
            self.join(timeout=5)


def quiet_room(samples: int, rms: float = 30.0) -> np.ndarray:
    """A second of hiss, about -60 dBFS: a hash of each sample's index, uniform, scaled to ``rms``.
    Not numpy.random, whose import brings the secrets module and OpenSSL's libcrypto (3.4 MiB, and 0.5
    more of numpy.random's own) to audiod for noise that only has to be quiet and not silent; the same every run, as a seeded generator was."""
    x = np.arange(samples, dtype=np.uint32) * np.uint32(2654435761)  # Knuth's multiplicative hash
    x ^= x >> np.uint32(15)
    x *= np.uint32(2246822519)
    x ^= x >> np.uint32(13)
    uniform = x / 2.0**32 - 0.5  # variance 1/12
    return (uniform * (rms * 12 ** 0.5)).astype(np.int16)


class SimAudio:
    """The speaker is a WAV file growing in real time; the mic plays a WAV file (or a quiet room) in a loop,
    and over it whatever was spoken into it (``speak_into``: `lens mic say`), once, while it is open."""

    name = "sim"

    def __init__(self, out_rate: int, mic_rate: int, block_s: float, out_path: Path, mic_wav: str):
        self.out_rate, self.mic_rate, self.block_s = out_rate, mic_rate, block_s
        self.out_path = out_path
        self.mic = self._mic_source(mic_wav, mic_rate)
        self.output: _Paced | None = None
        self.input: _Paced | None = None
        self.wav: wave.Wave_write | None = None
        self.xruns = 0
        self.spoken: deque[np.ndarray] = deque()  # speech waiting to be heard, in the mic's thread's order
        self._open_wav()

    @staticmethod
    def _mic_source(path: str, rate: int) -> np.ndarray:
        if path:
            try:
                return (decode_wav(Path(path), rate) * 32767).astype(np.int16)
            except SoundError as exc:
                raise AudioError(f"sim mic {path}: {exc}") from None
        return quiet_room(rate)

    def _open_wav(self) -> None:
        """A fresh file per run; its header is patched after every block, so it is always a valid WAV."""
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        self.out_path.unlink(missing_ok=True)
        self.file = open(self.out_path, "wb", opener=lambda path, flags: os.open(path, flags, 0o600))
        self.wav = wave.open(self.file, "wb")  # not world-readable: it is what the wearer heard
        self.wav.setnchannels(1)
        self.wav.setsampwidth(2)
        self.wav.setframerate(self.out_rate)

    def start_output(self, render: Render) -> None:
        if self.output is not None:
            return
        frames = int(self.out_rate * self.block_s)
        self.output = _Paced(self.block_s, lambda: self.wav.writeframes(to_int16(render(frames)).tobytes()),
                             "sim-speaker")
        self.output.start()

    def start_input(self, on_chunk: OnChunk) -> None:
        if self.input is not None:
            return
        frames, position = int(self.mic_rate * self.block_s), [0]

        def step() -> None:
            start = position[0] % len(self.mic)
            chunk = np.take(self.mic, range(start, start + frames), mode="wrap")
            position[0] += frames
            on_chunk(self._over(chunk), time.monotonic_ns())

        self.input = _Paced(self.block_s, step, "sim-mic")
        self.input.start()

    def speak_into(self, pcm: np.ndarray, pad_s: float = 0.3) -> float:
        """Queue speech (int16 at the mic's rate) after a short pause; heard once, while the mic is open.
        Returns its length in seconds."""
        pad = np.zeros(int(pad_s * self.mic_rate), np.int16)
        self.spoken.append(np.concatenate([pad, pcm, pad]))  # deque: appended here, popped in the mic's thread
        return len(pcm) / self.mic_rate

    def _over(self, chunk: np.ndarray) -> np.ndarray:
        """The next part of what was spoken, mixed over the room's chunk."""
        out, at = chunk.astype(np.int32), 0
        while at < len(out) and self.spoken:
            head = self.spoken[0]
            take = min(len(out) - at, len(head))
            out[at:at + take] += head[:take]
            at += take
            if take == len(head):
                self.spoken.popleft()
            else:
                self.spoken[0] = head[take:]
        return np.clip(out, -32768, 32767).astype(np.int16)

    def stop_output(self) -> None:
        if self.output is not None:
            self.output.stop()
            self.output = None

    def stop_input(self) -> None:
        if self.input is not None:
            self.input.stop()
            self.input = None

    def close(self) -> None:
        self.stop_output()
        self.stop_input()
        if self.wav is not None:
            self.wav.close()
            self.file.close()
            self.wav = None
            self.out_path.unlink(missing_ok=True)  # the runtime directory is left as it was found
