"""The music and translate apps over the real bus, driven by gestures and `lens say`."""

from __future__ import annotations

import pytest

from tests.system import FAST, System


def start(procs, runtime, tmp_path, *modules: str):
    changes = {**FAST, "system.toml": {**FAST["system.toml"], "apps": {"boot": []}},
               "focus.toml": {**FAST["focus.toml"], "roles": {"+chimer": "notification"}}}  # a chime's class
    system = System(procs, runtime, tmp_path, changes)
    for module in ("daemons.input", "daemons.display", "daemons.audio", "daemons.assistant", "apphost.appd",
                   *modules):
        procs.start_ready("-m", module)
    user = system.watcher
    for prefix in ("music.state", "audio.state", "assistant.answer", "display.card.request", "shell.apps"):
        user.node.subscribe(prefix, user._keep)
    return system, user


def song(user) -> dict:
    return next((s for s in (user.latest.get("audio.state") or {}).get("streams", [])
                 if s["owner"] == "music" and s["id"].startswith("song")), {})


def say(procs, text: str) -> str:
    done = procs.run_lens("say", text)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.slow
def test_music_plays_pauses_resumes_skips_ducks_and_keeps_playing_behind_another_app(procs, runtime, tmp_path):
    system, user = start(procs, runtime, tmp_path)
    assert procs.run_lens("app", "start", "music").returncode == 0
    music = lambda: user.latest.get("music.state") or {}  # noqa: E731
    user.wait(lambda: music().get("count") == 3, "the three demo tracks")
    user.ask("input.sim.request", gesture="tap")
    user.wait(lambda: music()["playing"] and song(user).get("status") == "playing", "the first track playing")
    user.ask("input.sim.request", gesture="swipe_forward")
    user.wait(lambda: music()["index"] == 1 and music()["playing"], "the second track playing")

    told = say(procs, "pause the music")
    paused = user.wait(lambda: not music()["playing"] and music(), "paused by voice")
    assert told.startswith(f"❚❚ {paused['title']}."), "`lens say` prints the card the wearer sees"
    user.wait(lambda: not song(user), "the song faded out and gone from the speaker")
    assert say(procs, "pause the music") == "The music is not playing."
    assert say(procs, "play music").startswith(f"▶ {paused['title']}.")
    user.wait(lambda: music()["playing"] and song(user).get("status") == "playing", "resumed by voice")
    resumed = music()
    assert resumed["index"] == paused["index"] and resumed["position_s"] >= paused["position_s"] > 0
    say(procs, "next song")
    user.wait(lambda: music()["index"] == 2 and music()["playing"], "skipped by voice")

    # A sound that may duck others: the music goes down under it and comes back.
    chime = system.app("chimer")
    chime.ask("shell.focus.request", resource="audio_out", kind="transient_may_duck", cls="notification",
              reason="chime")
    user.wait(lambda: song(user).get("status") == "ducked", "the music ducked")
    chime.ask("shell.release.request", resource="audio_out")
    user.wait(lambda: song(user).get("status") == "playing", "the music back up")

    # Another app in front: the music plays on in the background.
    assert procs.run_lens("app", "start", "translate").returncode == 0
    user.wait_state(lambda s: s["foreground"] == "translate", "translate in front")
    assert music()["playing"] and song(user).get("status") in ("playing", "ducked")
    assert user.latest["shell.state"]["focus"]["audio_out"]["owner"] == "music"


@pytest.mark.slow
def test_translate_listens_through_the_assistant_and_shows_the_phrase_in_the_chosen_language(procs, runtime,
                                                                                            tmp_path):
    system, user = start(procs, runtime, tmp_path)
    assert procs.run_lens("app", "start", "translate").returncode == 0
    user.ask("input.sim.request", gesture="swipe_forward")  # spanish -> french
    user.wait(lambda: any(m.source == "translate" and m.payload["title"] == "Into French" for m in user.log
                          if m.topic == "display.card.request"), "French chosen")
    user.ask("input.sim.request", gesture="tap")
    user.wait(lambda: (user.latest.get("assistant.state") or {}).get("phase") == "listening"
              or user.notices("shell.capture.notice", owner="assistantd", status="granted"), "the assistant listening")
    from bus.errors import RequestFailed
    with pytest.raises(RequestFailed, match="the template must say where what is heard goes"):
        user.ask("assistant.listen.request", template="translate this")  # no {heard}: refused, nothing starts
    say(procs, "thank you")
    answer = user.wait(lambda: next((m.payload for m in user.log if m.topic == "assistant.answer"), None),
                       "the answer")
    assert answer["action"] == "translate" and answer["text"] == "In French: merci."
    user.wait(lambda: any(m.source == "translate" and m.payload["body"] == "In French: merci." for m in user.log
                          if m.topic == "display.card.request"), "the translation on the app's card")
    # The mic was the assistant's, under the LED, and given back.
    user.wait_state(lambda s: s["focus"]["mic"]["owner"] is None, "the mic given back")
    assert user.notices("shell.capture.notice", owner="assistantd", resource="mic", status="granted")
