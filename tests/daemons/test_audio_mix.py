"""audiod's pieces in one process: the mixer's numbers (levels, ramps, no clipping), sounds, the voice, the VAD."""

from __future__ import annotations

import shutil
import wave

import numpy as np
import pytest

from daemons.audio.mixer import CEILING, Mixer, Stream
from daemons.audio.sounds import EspeakVoice, SoundError, ToneVoice, decode_wav, load, resample
from daemons.audio.vad import Vad, level_db

RATE = 8000
BLOCK = 160  # 20 ms
RAMP_S = 0.02  # 160 samples for a full swing


def const(level: float, seconds: float = 2.0) -> np.ndarray:
    return np.full(int(RATE * seconds), level, np.float32)


def run(mixer: Mixer, blocks: int) -> np.ndarray:
    return np.concatenate([mixer.render(BLOCK) for _ in range(blocks)])


def test_a_stream_fades_in_along_the_ramp_then_plays_at_its_level():
    mixer = Mixer(RATE, RAMP_S)
    mixer.add(Stream("app", "a", const(0.5)))
    out = run(mixer, 3)
    ramp = out[:160]
    assert ramp[0] == 0.0 and np.all(np.diff(ramp) > 0), "fades in monotonically from silence"
    assert np.max(np.abs(np.diff(out))) <= 0.5 / 160 + 1e-6, "no step bigger than one ramp increment: no click"
    assert np.allclose(out[160:], 0.5)


def test_ducking_lowers_to_the_level_without_a_click_and_coming_back_restores_it():
    mixer = Mixer(RATE, RAMP_S)
    mixer.add(Stream("music", "m", const(0.4, 5), loop=True))
    run(mixer, 2)
    mixer.level("music", 0.3, hold=False)
    ducked = run(mixer, 3)
    assert np.max(np.abs(np.diff(ducked))) <= 0.4 / 160 + 1e-6
    assert ducked[-1] == pytest.approx(0.4 * 0.3, rel=1e-4), "ducking lowers, it does not mute"
    mixer.level("music", 1.0, hold=False)
    back = run(mixer, 3)
    assert back[-1] == pytest.approx(0.4, rel=1e-4)


def test_a_held_stream_stops_advancing_once_silent_and_resumes_where_it_was():
    pcm = np.arange(RATE * 2, dtype=np.float32) / (RATE * 4)  # a ramp signal: its value tells the position
    mixer = Mixer(RATE, RAMP_S)
    mixer.add(Stream("music", "m", pcm))
    run(mixer, 5)
    mixer.level("music", 0.0, hold=True)
    run(mixer, 2)  # fades out within one ramp
    stream = mixer.streams[0]
    held_at = stream.pos
    assert mixer.quiet and stream.status == "held"
    silent = run(mixer, 20)
    assert not silent.any() and stream.pos == held_at, "nothing skipped while it could not be heard"
    mixer.level("music", 1.0, hold=False)
    resumed = run(mixer, 3)
    assert resumed[-1] == pytest.approx(pcm[held_at + 3 * BLOCK - 1], rel=1e-4)


def test_two_loud_streams_are_limited_below_full_scale_and_the_limiter_recovers():
    mixer = Mixer(RATE, RAMP_S, volume=1.0)
    t = np.arange(RATE * 3) / RATE
    loud = (0.9 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    mixer.add(Stream("a", "1", loud))
    mixer.add(Stream("b", "2", loud.copy()))
    out = run(mixer, 50)
    assert np.max(np.abs(out)) <= CEILING, "no sample reaches full scale"
    assert np.max(np.abs(out[-BLOCK:])) >= 0.95 * CEILING, "limited, not attenuated more than it needs"
    mixer.stop("b")
    after = run(mixer, 60)
    assert np.max(np.abs(after[-BLOCK:])) == pytest.approx(0.9, rel=0.02), "the limiter lets go once it can"


def test_stop_fades_out_and_reports_why_and_an_ended_stream_reports_finished():
    mixer = Mixer(RATE, RAMP_S)
    mixer.add(Stream("app", "long", const(0.5)))
    mixer.add(Stream("app", "short", const(0.2, 0.03)))  # ends on its own in block 2
    run(mixer, 2)
    assert mixer.stop("app", "long") == 1
    tail = run(mixer, 3)
    assert tail[-1] == 0.0 and np.max(np.abs(np.diff(tail))) <= 0.5 / 160 + 1e-6
    done = {(s.id, why) for s, why in mixer.take_finished()}
    assert done == {("long", "stopped"), ("short", "finished")}
    assert not mixer.busy and mixer.quiet


def test_the_same_id_replaces_the_stream_before_it():
    mixer = Mixer(RATE, RAMP_S)
    mixer.add(Stream("app", "x", const(0.5)))
    run(mixer, 2)
    mixer.add(Stream("app", "x", const(0.1)))
    run(mixer, 3)
    assert [(s.id, why) for s, why in mixer.take_finished()] == [("x", "replaced")]
    assert len(mixer.streams) == 1 and mixer.render(BLOCK)[-1] == pytest.approx(0.1)


def test_a_stream_that_ends_before_the_one_it_replaced_is_removed_without_comparing_their_sound():
    # A chime replaced by another chime fades out; the new one, shorter than the fade, ends first. Taking it
    # out of the list compared it with the old one field by field, numpy arrays and all: the speaker's
    # thread died of the ValueError.
    mixer = Mixer(RATE, 1.0)
    mixer.add(Stream("app", "chime", const(0.5, 2.0)))
    run(mixer, 60)  # faded in: its fade-out takes as long
    mixer.add(Stream("app", "chime", const(0.1, 0.01)))
    run(mixer, 2)
    assert [(s.id, why) for s, why in mixer.take_finished()] == [("chime", "finished")]
    assert [s.ending for s in mixer.streams] == ["replaced"]


def test_wav_files_decode_to_mono_at_the_speakers_rate(tmp_path):
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(np.tile(np.array([16384, 0], np.int16), 16000).tobytes())  # 1 s, left at half scale
    pcm = load(str(path), 8000)
    assert len(pcm) == 8000 and pcm.mean() == pytest.approx(0.25, rel=1e-3)
    (tmp_path / "bad.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(SoundError, match="not a readable PCM WAV"):
        load(str(tmp_path / "bad.wav"), 8000)
    with pytest.raises(SoundError, match="unknown sound 'trumpet'"):
        load("trumpet", 8000)
    assert len(resample(np.ones(100, np.float32), 100, 300)) == 300
    chime = load("chime", 8000)
    assert 0.3 < np.max(np.abs(chime)) <= 0.5 and abs(chime[0]) < 1e-3 and abs(chime[-1]) < 1e-3


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (make install adds it)")
def test_espeak_speaks_offline_and_the_tone_voice_stands_in_without_it():
    speech = EspeakVoice("en-us", 170).synthesize("take a photo", 16000)
    seconds = len(speech) / 16000
    assert 0.4 < seconds < 3.0 and level_db(speech) > -30
    tones = ToneVoice().synthesize("three short words", 16000)
    assert len(tones) > 0 and np.max(np.abs(tones)) <= 0.3 + 1e-6
    with pytest.raises(SoundError):
        decode_wav(b"not a wav", 16000)


def test_vad_finds_speech_in_a_quiet_room_and_its_end_after_the_hang():
    rng = np.random.default_rng(1)
    vad = Vad(threshold_db=-45, margin_db=12, start_s=0.1, hang_s=0.3)
    block = 320  # 20 ms at 16 kHz
    quiet = lambda: rng.normal(0, 30, block).astype(np.int16)  # noqa: E731 (-60 dBFS)
    loud = lambda: (rng.normal(0, 3000, block)).astype(np.int16)  # noqa: E731 (-20 dBFS)
    verdicts = [vad.feed(quiet(), 0.02) for _ in range(50)]
    assert not any(v is not None for v in verdicts), "no speech in hiss"
    verdicts = [vad.feed(loud(), 0.02) for _ in range(10)]
    assert verdicts.index(True) == 4, "speech starts after start_s (5 blocks of 20 ms)"
    verdicts = [vad.feed(quiet(), 0.02) for _ in range(30)]
    assert verdicts.index(False) == 14, "and ends after hang_s of quiet (15 blocks)"
