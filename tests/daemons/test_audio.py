"""audiod over the real bus: the mic only with the LED lit, and the speaker under the focus rules."""

from __future__ import annotations

import copy
import wave

import numpy as np
import pytest

from bus.errors import RequestFailed
from bus.audit import AuditLog
from tests.system import FAST, System, running

CHANGES = copy.deepcopy(FAST)
CHANGES["focus.toml"]["roles"] = {"+phone": "call"}  # a test app allowed to claim the call class


@pytest.fixture
def audio(procs, runtime, tmp_path):
    made = System(procs, runtime, tmp_path, CHANGES)
    made.audiod = procs.start_ready("-m", "daemons.audio")
    made.watcher.wait_state(running, "boot")
    return made


def streams(app, **match) -> list[dict]:
    state = app.latest.get("audio.state") or {"streams": []}
    return [s for s in state["streams"] if all(s.get(k) == v for k, v in match.items())]


@pytest.mark.slow
def test_the_mic_opens_only_for_a_grant_with_the_led_lit_and_closes_on_an_led_fault(audio):
    app = audio.app("voiceapp")
    with pytest.raises(RequestFailed, match="has not granted voiceapp mic capture"):
        app.ask("audio.mic.request", on=True)
    app.take_camera(resource="mic")
    assert app.ask("audio.mic.request", on=True) == {"on": True, "rate": 16000}
    blocks = app.wait(lambda: len(app.notices("audio.mic")) >= 10 and app.notices("audio.mic"), "mic blocks")
    assert [b["seq"] for b in blocks] == list(range(1, len(blocks) + 1)), "no gap in the sequence"
    assert len(blocks[0]["pcm"]) == 2 * 320, "20 ms of 16 kHz int16"
    cmd = app.latest["privacy.indicator"]["cmd"]
    lit = next(i for i, m in enumerate(app.log) if m.topic == "led.state" and m.payload["lit"]
               and m.payload["cmd"] == cmd)
    first = next(i for i, m in enumerate(app.log) if m.topic == "audio.mic")
    assert lit < first, "a mic block went out before the LED confirmed"

    other = audio.app("eavesdropper")
    with pytest.raises(RequestFailed, match="not granted"):
        other.ask("audio.mic.request", on=True)

    app.ask("led.sim.request", fault="LED driver error")
    state = app.wait(lambda: not app.latest["audio.state"]["mic"]["on"] and app.latest["audio.state"], "mic closed")
    assert "not granted" in state["mic"]["why"] or "fault" in state["mic"]["why"]
    audit = AuditLog(audio.state_dir / "privacy-audit.jsonl")
    session = app.wait(lambda: [s for s in audit.sessions() if s["blocks"]], "the block count in the audit log")[0]
    assert session["resource"] == "mic" and session["blocks"] >= 10 and "LED driver error" in session["why_ended"]
    count = len(app.notices("audio.mic"))
    with pytest.raises(RequestFailed):
        app.ask("audio.mic.request", on=True)
    app.wait(lambda: app.latest["audio.state"]["mic"]["on"] is False, "still closed")
    assert len(app.notices("audio.mic")) == count


@pytest.mark.slow
def test_music_ducks_under_the_assistant_is_held_through_a_call_and_comes_back(audio, runtime):
    music = audio.app("musicapp")
    music.ask("shell.foreground.request", app="musicapp")
    music.ask("shell.focus.request", resource="audio_out", kind="exclusive", cls="foreground", reason="music")
    assert music.ask("audio.play.request", id="song", sound="music", loop=True)["length_s"] == pytest.approx(4.0)
    music.wait(lambda: streams(music, id="song", status="playing"), "music playing")

    assistant = audio.app("assistantd")
    assistant.ask("shell.focus.request", resource="audio_out", kind="transient_may_duck", cls="assistant",
                  reason="answer")
    music.wait(lambda: streams(music, id="song", status="ducked"), "music ducked")
    assistant.node.publish("audio.speak", text="It is ten past three", app="assistantd", interrupt=False,
                           id="answer")
    assistant.wait(lambda: streams(assistant, id="answer", owner="assistantd", status="playing"),
                   "the answer playing over the music")
    done = assistant.wait(lambda: assistant.notices("audio.played", id="answer"), "the answer spoken")[0]
    assert done["status"] == "finished"
    assistant.ask("shell.release.request", resource="audio_out")
    music.wait(lambda: streams(music, id="song", status="playing"), "music back at full level")

    phone = audio.app("phone")
    phone.ask("shell.focus.request", resource="audio_out", kind="transient", cls="call", reason="incoming call")
    music.wait(lambda: streams(music, id="song", status="held"), "music held through the call")
    phone.ask("shell.release.request", resource="audio_out")
    music.wait(lambda: streams(music, id="song", status="playing"), "music resumed after the call")

    music.close()  # node.bye: its music stops with it
    audio.watcher.wait(lambda: audio.watcher.notices("audio.played", owner="musicapp", status="owner gone"),
                       "music stopped with its app")
    with wave.open(str(runtime.path("audio-out.wav")), "rb") as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
    assert wav.getframerate() == 24000 and len(pcm) > 24000 and np.abs(pcm).max() > 3000, "the speaker heard it"


@pytest.mark.slow
def test_a_bad_sound_is_refused_with_why_and_nothing_plays(audio):
    app = audio.app("noisy")
    with pytest.raises(RequestFailed, match="unknown sound 'trumpet'"):
        app.ask("audio.play.request", id="x", sound="trumpet")
    with pytest.raises(RequestFailed, match="volume 3.0 is outside 0..1"):
        app.ask("audio.play.request", id="x", sound="chime", volume=3.0)
    for start in (-1.0, 600.0):  # before its start, past its end
        with pytest.raises(RequestFailed, match=rf"start_s {start} is outside the sound's"):
            app.ask("audio.play.request", id="x", sound="chime", start_s=start)
    app.ask("audio.play.request", id="x", sound="chime")
    assert app.wait(lambda: app.notices("audio.played", owner="noisy", id="x"), "chime played")[0]["status"] \
        == "finished"
    app.wait(lambda: not streams(app), "the speaker idle again")


ALSA_NULL = """
pcm.lensnull {
    type null
    hint { show on description "lensos tests: ALSA's null device" }
}
pcm.!default lensnull
"""


def null_device_env(tmp_path) -> dict:
    """ALSA reads $XDG_CONFIG_HOME/alsa/asoundrc: a machine without a sound card gets a null device."""
    (tmp_path / "xdg" / "alsa").mkdir(parents=True)
    (tmp_path / "xdg" / "alsa" / "asoundrc").write_text(ALSA_NULL)
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}


@pytest.mark.slow
def test_the_real_backend_plays_and_records_through_portaudio_on_alsas_null_device(procs, runtime, tmp_path):
    env = null_device_env(tmp_path)
    probe = procs.start("-c", "import sounddevice as sd; sd.check_output_settings(samplerate=24000, channels=1); "
                              "sd.check_input_settings(samplerate=16000, channels=1, dtype='int16')",
                        env=procs.env(**env))
    if probe.wait(60) != 0:
        pytest.skip(f"PortAudio cannot open ALSA's null device here: {probe.stderr.read().strip()[-300:]}")
    made = System(procs, runtime, tmp_path, CHANGES)
    procs.start_ready("-m", "daemons.audio", "--backend", "real", env_extra=env)
    app = made.app("realapp")
    app.wait(lambda: (app.latest.get("audio.state") or {}).get("backend") == "real", "audiod on PortAudio")
    app.ask("audio.play.request", id="c", sound="chime")
    played = app.wait(lambda: app.notices("audio.played", id="c"), "the chime played to the end by PortAudio")
    assert played[0]["status"] == "finished"
    app.take_camera(resource="mic")
    app.ask("audio.mic.request", on=True)
    blocks = app.wait(lambda: len(app.notices("audio.mic")) >= 5 and app.notices("audio.mic"), "PortAudio mic blocks")
    assert all(len(b["pcm"]) == 640 for b in blocks)
    app.ask("audio.mic.request", on=False)
    app.wait(lambda: not app.latest["audio.state"]["mic"]["on"], "mic closed")
