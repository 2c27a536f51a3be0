"""assistantd: the offline grammar, the LLM client against a real loopback server, and whole sessions
over the real bus (S1 card, G1 speech, the wake phrase, a call taking the mic, an LLM tool call)."""

from __future__ import annotations

import copy
import json
import wave

import numpy as np

import pytest

from bus.tracing import Tracing
from daemons.assistant.actions import ACTIONS, tools
from daemons.assistant.intents import INTENTS, jsgf, parse, strip_wake
from daemons.assistant.llm import ChatClient, LlmError
from tests.daemons.llm_server import LlmServer, sse, text_chunks, tool_chunks
from tests.conftest import REPO
from tests.system import FAST, System, running


@pytest.mark.parametrize("said, action, args", [
    ("What time is it?", "time", {}),
    ("how's my battery", "battery", {}),
    ("Take a photo.", "photo", {}),
    ("start recording", "record_start", {}),
    ("stop the recording", "record_stop", {}),
    ("What is this?", "identify", {}),
    ("how much is this", "identify", {}),
    ("play some music", "music_play", {}),
    ("pause the music", "music_pause", {}),
    ("translate thank you to french", "translate", {"phrase": "thank you", "language": "french"}),
    ("how do you say where is the station in german", "translate",
     {"phrase": "where is the station", "language": "german"}),
    ("read my notifications", "notifications", {}),
    ("brightness 40 percent", "brightness", {"percent": "40"}),
    ("a bit brighter please", "brightness", {"direction": "brighter"}),
    ("forget that", "forget", {}),
    ("sing me a song", "unknown", {}),
])
def test_the_offline_grammar(said, action, args):
    intent = parse(said)
    assert (intent.action, intent.args) == (action, args)
    assert action == "unknown" or action in ACTIONS


def test_the_wake_phrase_is_taken_off_the_front_and_only_there():
    assert strip_wake("Hey Lens, what time is it?", "hey lens") == "what time is it"
    assert strip_wake("hey lens", "hey lens") == ""
    assert strip_wake("hey lensman", "hey lens") is None
    assert strip_wake("what time is it, hey lens", "hey lens") is None


def test_every_action_has_its_words_and_every_intent_its_action():
    """One table (actions.ACTIONS): the offline grammar's rows are its rows, in its order, and an action the
    wearer has no words for (the recognizer would never hear it) fails here."""
    assert [row.action for row in INTENTS] == list(ACTIONS)
    for name, action in ACTIONS.items():
        assert action.said.patterns and action.said.phrasings, f"{name}: no words for it"
        assert [parse(phrase).action for phrase in action.said.phrasings] == [name] * len(action.said.phrasings)
    rules = [line for line in jsgf().splitlines() if line.startswith("<")]
    assert [rule.split(">")[0][1:] for rule in rules] == list(ACTIONS)  # the recognizer's grammar: a rule each


def test_every_action_is_a_tool_with_an_object_schema():
    names = [t["function"]["name"] for t in tools()]
    assert names == list(ACTIONS)
    assert all(t["function"]["parameters"]["type"] == "object" for t in tools())


@pytest.fixture
def llm():
    server = LlmServer()
    yield server
    server.close()


def test_the_client_streams_text_and_tool_calls_and_sends_the_key(llm):
    client = ChatClient(llm.url, "qwen-plus", "sk-test", timeout_s=5)
    llm.script = [("text/event-stream", sse(*tool_chunks("photo", {}))),
                  ("text/event-stream", sse(*text_chunks("Photo taken, it looks sunny.")))]
    first = client.chat([{"role": "user", "content": "take a photo"}], tools())
    assert [(c.id, c.name, c.arguments) for c in first.tool_calls] == [("call_1", "photo", {})]
    seen = []
    second = client.chat([{"role": "user", "content": "x"}], tools(), on_text=seen.append)
    assert second.content == "Photo taken, it looks sunny." and seen[-1] == second.content and len(seen) == 3
    request = llm.requests[0]
    assert request["model"] == "qwen-plus" and request["stream"] is True
    assert {t["function"]["name"] for t in request["tools"]} == set(ACTIONS)
    assert llm.headers[0]["Authorization"] == "Bearer sk-test"


def test_a_server_that_ignores_stream_is_understood(llm):
    body = {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c9", "type": "function", "function": {"name": "translate",
                                                       "arguments": json.dumps({"phrase": "hello"})}}]}}]}
    llm.script = [("application/json", json.dumps(body).encode())]
    reply = ChatClient(llm.url, "m", None, 5).chat([], [])
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [("translate", {"phrase": "hello"})]


@pytest.mark.parametrize("script, error", [
    ([("stall", 3.0)], "made no progress for 0.5 s"),
    ([("text/event-stream", b"data: {not json}\n\n")], "malformed reply: not JSON"),
    ([("application/json", b'{"choices": []}')], "malformed reply: no choices"),
    ([("text/event-stream", sse(*text_chunks("cut off")[:2], done=False))], "stream ended before the answer"),
    ([("application/json", b'{"error": {"message": "quota exceeded"}}')], "quota exceeded"),
    ([("status", 500)], "answered 500"),
])
def test_every_failure_is_an_llm_error_with_the_reason(llm, script, error):
    llm.script = list(script)
    with pytest.raises(LlmError, match=error):
        ChatClient(llm.url, "m", None, timeout_s=0.5).chat([{"role": "user", "content": "hi"}], [])


def test_an_unreachable_endpoint_is_an_llm_error():
    with pytest.raises(LlmError, match="unreachable"):
        ChatClient("http://127.0.0.1:9/v1", "m", None, 1.0).chat([], [])


# --- a session's steps against a node that answers nothing by itself -----------------------------------
class HeldNode(Tracing):
    """The bus as the assistant sees it, with every reply held until the test gives it: the order in which
    replies, notices and new requests arrive is the test's to choose."""
    name = "assistantd"
    trace = 0

    def __init__(self):
        self.asked: list[tuple[str, dict, object]] = []

    def request_async(self, topic, callback, timeout, **fields):
        self.asked.append((topic, fields, callback))

    def after(self, seconds, call):
        return type("Timer", (), {"cancel": lambda self: None})()

    def publish(self, *args, **fields):
        pass

    subscribe = serve = watch = unwatch = publish


def test_a_session_cancelled_before_the_grant_arrives_gives_the_mic_back_first():
    from bus.envelope import Message
    from daemons.assistant.__main__ import Assistantd
    from daemons.assistant.stt import TextStt
    from policies.loader import load
    node = HeldNode()
    assistant = Assistantd(node, load(REPO / "policies", "g1"), TextStt(), None)
    try:
        assistant.begin("say", "what time is it")
        topic, fields, _ = node.asked[-1]
        assert (topic, fields["resource"]) == ("shell.focus.request", "mic")
        # The shell granted it (the LED was still lit) and said so; its reply is not in yet when the
        # wearer asks something else, which cancels this session.
        notice = {"owner": "assistantd", "resource": "mic", "status": "granted", "reason": "LED confirmed lit",
                  "session": "a1"}
        assistant.on_notice(Message("shell.capture.notice", "shell", 1, 1, 0, 0, notice, b""))
        assistant.begin("say", "sing me a song")
        released = []
        while node.asked[-1][0] == "shell.release.request":  # the cancelled session lets go, one by one
            released.append(node.asked[-1][1]["resource"])
            node.asked[-1][2]({"released": True}, None)
        assert "mic" in released, "the mic was kept"
        topic, fields, _ = node.asked[-1]
        assert (topic, fields["resource"]) == ("shell.focus.request", "mic"), "the next session asks afresh"
        assert fields["reason"] == f"assistant session {assistant.session_id}"
    finally:
        assistant.runner.close()


def test_only_the_app_handed_the_action_answers_it_and_only_for_its_session():
    from bus.envelope import Message
    from bus.errors import RequestRefused
    from daemons.assistant.__main__ import Assistantd
    from daemons.assistant.stt import TextStt
    from policies.loader import load
    assistant = Assistantd(HeldNode(), load(REPO / "policies", "s1"), TextStt(), None)
    try:
        def told(source, session="s1"):
            return assistant.on_told(Message("assistant.told.request", source, 1, 1, 0, 0,
                                             {"cid": 1, "session": session, "text": "Cola. ¥3.50."}, b""))
        with pytest.raises(RequestRefused, match="no session s1 waits for an answer from lens"):
            told("lens")  # nothing handed over
        assistant.awaiting = ("s1", "lens")
        with pytest.raises(RequestRefused, match="from music"):
            told("music")
        with pytest.raises(RequestRefused, match="no session s0"):
            told("lens", "s0")
        assert assistant.told is None
        assert told("lens") == {} and (assistant.told, assistant.answered_by) == ("Cola. ¥3.50.", "lens")
    finally:
        assistant.runner.close()


# --- whole sessions over the real bus -------------------------------------------------------------------
CHANGES = copy.deepcopy(FAST)
CHANGES["focus.toml"]["roles"] = {"+phone": "call"}
CHANGES["assistant.toml"] = {"answer": {"card_s": 1.0}, "llm": {"timeout_s": 3.0}}


def assistant_system(procs, runtime, tmp_path, model="s1", llm_url=None, changes=CHANGES):
    procs.use_env(LENS_MODEL=model)
    made = System(procs, runtime, tmp_path, changes)
    for module in ("daemons.audio", "daemons.display", "daemons.input"):
        procs.start_ready("-m", module)
    procs.start_ready("-m", "daemons.assistant", env_extra={"LENS_LLM_ENDPOINT": llm_url} if llm_url else None)
    made.watcher.wait_state(running, "boot")
    for prefix in ("assistant", "display.state", "input.gesture"):
        made.watcher.node.subscribe(prefix, made.watcher._keep)
    return made


def say(app, text: str) -> dict:
    session = app.ask("assistant.say.request", text=text)["session"]
    return app.wait(lambda: app.notices("assistant.answer", session=session), f"the answer to {text!r}")[0]


@pytest.mark.slow
def test_s1_a_spoken_request_becomes_an_action_and_a_card_with_the_mic_behind_the_led(procs, runtime, tmp_path):
    system = assistant_system(procs, runtime, tmp_path)
    user = system.watcher
    answer = say(user, "take a photo")
    assert answer["status"] == "answered" and answer["action"] == "photo" and answer["text"].startswith("Photo saved")
    cmd = [m.payload["cmd"] for m in user.log if m.topic == "privacy.indicator" and m.payload["on"]][0]
    lit = next(i for i, m in enumerate(user.log) if m.topic == "led.state" and m.payload["lit"]
               and m.payload["cmd"] == cmd)
    opened = next(i for i, m in enumerate(user.log) if m.topic == "audio.state" and m.payload["mic"]["on"])
    assert lit < opened, "the mic opened before the LED was confirmed"
    user.wait(lambda: "toast" in user.latest["display.state"]["layers"], "the answer card on the display")
    user.wait(lambda: not user.latest["audio.state"]["mic"]["on"] and user.latest["assistant.state"]["phase"] == "idle"
              and not user.latest["shell.state"]["focus"]["mic"]["owner"], "the mic closed and given back")
    assert say(user, "translate thank you to german")["text"] == "In German: danke."
    assert say(user, "start recording")["text"] == "Recording."
    user.wait(lambda: user.latest["camera.state"]["mode"] == "video", "recording for the assistant")
    user.wait(lambda: len(user.notices("camera.frame", owner="assistantd")) >= 5, "frames recorded")
    assert say(user, "stop recording")["text"] == "Recording stopped and saved."
    segment = user.wait(lambda: user.notices("camera.segment", owner="assistantd"), "the recording saved")[0]
    assert segment["frames"] >= 5
    user.wait(lambda: not user.latest["shell.state"]["focus"]["camera"]["owner"], "the camera given back")
    out = procs.lens("say", "--json", "what", "time", "is", "it")
    printed, _ = out.communicate(timeout=60)
    assert out.returncode == 0 and json.loads(printed)["text"].startswith("It is "), printed
    hurried = procs.run_lens("say", "--timeout", "0.001", "what", "time", "is", "it")
    assert hurried.returncode == 1 and "timed out after 0.001 s waiting for the assistant's answer" in hurried.stdout
    assert say(user, "sing me a song")["text"] == "Sorry, I can't help with that offline."


@pytest.mark.slow
def test_g1_the_answer_is_spoken_and_the_wake_phrase_wakes_the_glasses(procs, runtime, tmp_path):
    changes = copy.deepcopy(CHANGES)
    changes["system.toml"]["idle"] = {"dim_after_s": 1.0, "sleep_after_s": 1.0}
    system = assistant_system(procs, runtime, tmp_path, model="g1", changes=changes)
    user = system.watcher
    music = system.app("musicapp")
    music.ask("shell.foreground.request", app="musicapp")
    music.ask("shell.focus.request", resource="audio_out", kind="exclusive", cls="foreground", reason="music")
    music.ask("audio.play.request", id="song", sound="music", loop=True)
    user.wait_state(lambda s: s["state"] == "sleep", "asleep after the idle timeouts")
    answer = say(user, "Hey lens, what's my battery?")
    assert answer["action"] == "battery" and "percent" in answer["text"]
    assert user.notices("assistant.asked"), "the wake phrase was announced"
    user.wait(lambda: [m for m in user.log if m.topic == "shell.state" and m.payload["state"] != "sleep"
                       and any(n.topic == "assistant.asked" for n in user.log[:user.log.index(m)])], "awake")
    spoken = user.wait(lambda: user.notices("audio.played", owner="assistantd", id=answer["session"]),
                       "the answer spoken")[0]
    assert spoken["status"] == "finished"
    song = [[s["status"] for s in m.payload["streams"] if s["id"] == "song"] for m in user.log
            if m.topic == "audio.state"]
    assert ["ducked"] in song, "the music ducked under the answer"
    user.wait(lambda: [s for s in user.latest["audio.state"]["streams"] if s["id"] == "song"
                       and s["status"] == "playing"], "and came back")


@pytest.mark.slow
def test_a_request_without_the_wake_phrase_wakes_sleeping_or_dimmed_glasses(procs, runtime, tmp_path):
    # G1 has no display to claim, whose transient claim woke S1 by the way: asked while asleep, the mic
    # was refused ("the glasses are asleep") right after the wearer asked; and asked while dimmed, the
    # glasses stayed dimmed (idle).
    changes = copy.deepcopy(CHANGES)
    changes["system.toml"]["idle"] = {"dim_after_s": 1.0, "sleep_after_s": 1.0}
    system = assistant_system(procs, runtime, tmp_path, model="g1", changes=changes)
    user = system.watcher
    user.wait_state(lambda s: s["state"] == "sleep", "asleep after the idle timeouts")
    answer = say(user, "what time is it")
    assert answer["status"] == "answered" and answer["text"].startswith("It is "), answer
    mark = len(user.log)
    user.wait(lambda: [m for m in user.log[mark:] if m.topic == "shell.state" and m.payload["state"] == "idle"],
              "dimmed again after a while")
    mark = len(user.log)
    say(user, "what's my battery")
    user.wait(lambda: [m for m in user.log[mark:] if m.topic == "shell.state" and m.payload["state"] == "active"],
              "awake again for the question")


@pytest.mark.slow
def test_an_incoming_call_takes_the_mic_from_the_listening_assistant(procs, runtime, tmp_path):
    system = assistant_system(procs, runtime, tmp_path)
    user = system.watcher
    user.ask("input.sim.request", gesture="long_press")  # the temple, held: the assistant listens
    user.wait(lambda: (user.latest.get("audio.state") or {}).get("mic", {}).get("owner") == "assistantd",
              "the assistant listening")
    phone = system.app("phone")
    phone.ask("shell.focus.request", resource="mic", kind="exclusive", cls="call", reason="incoming call")
    phone.wait(lambda: phone.notices("shell.capture.notice", owner="phone", status="granted"), "the call has the mic")
    answer = user.wait(lambda: user.notices("assistant.answer"), "the session's end")[0]
    assert answer["status"] == "interrupted" and "mic" in answer["text"]
    user.wait(lambda: user.latest["assistant.state"]["phase"] == "idle", "the assistant idle")
    assert user.latest["shell.state"]["focus"]["mic"]["owner"] == "phone"
    assert phone.ask("audio.mic.request", on=True)["on"], "the call can open the mic"


@pytest.mark.slow
def test_the_llm_calls_a_tool_that_becomes_a_bus_action_and_a_dead_endpoint_falls_back(procs, runtime, tmp_path,
                                                                                       llm):
    llm.script = [("text/event-stream", sse(*tool_chunks("brightness", {"percent": 50}))),
                  ("text/event-stream", sse(*text_chunks("Done, the display is at half brightness.")))]
    system = assistant_system(procs, runtime, tmp_path, llm_url=llm.url)
    user = system.watcher
    answer = say(user, "it's too bright in here")
    assert (answer["source"], answer["action"], answer["text"]) == \
        ("llm", "brightness", "Done, the display is at half brightness.")
    user.wait(lambda: user.latest["display.state"]["user_level"] == 0.5, "the tool's action on the display")
    second = llm.requests[1]["messages"]
    assert second[-1] == {"role": "tool", "tool_call_id": "call_1", "content": "Brightness 50 percent."}
    user.wait(lambda: user.latest["assistant.state"]["turns"] == 1, "the turn kept in the conversation")
    llm.script = [("text/event-stream", sse(*text_chunks("You asked me to dim it.")))]
    assert say(user, "what did I just ask")["source"] == "llm"
    assert [m["role"] for m in llm.requests[2]["messages"]] == ["system", "user", "assistant", "user"], \
        "the conversation so far goes with the next question"
    assert user.ask("assistant.clear.request") == {"cleared": 2}
    llm.script = [("text/event-stream", sse(*text_chunks("Hello.")))]
    say(user, "hello")
    assert [m["role"] for m in llm.requests[3]["messages"]] == ["system", "user"], "cleared means forgotten"

    llm.script = [("stall", 10.0)]
    fallback = say(user, "what time is it")
    assert fallback["source"] == "offline" and fallback["text"].startswith("It is ")

    asked = len(llm.requests)
    for side in ("left", "right"):
        user.ask("power.sim.request", action="charge", battery=side, percent=10.0)
    user.wait_state(lambda s: s["state"] == "low_power" and not s["remote_calls"], "low power: no remote calls")
    offline = say(user, "what time is it")
    assert offline["source"] == "offline" and len(llm.requests) == asked, "no remote call in low power"


def speech_wav(path, rate=16000) -> str:
    """1 s of a quiet room, 1 s of 'speech' (loud noise), 3 s of quiet: what the sim mic loops."""
    rng = np.random.default_rng(3)
    pcm = np.concatenate([rng.normal(0, 30, rate), rng.normal(0, 4000, rate), rng.normal(0, 30, 3 * rate)])
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.astype(np.int16).tobytes())
    return str(path)


@pytest.mark.slow
def test_with_a_listening_engine_the_mics_blocks_become_the_words_and_the_vad_ends_them(procs, runtime, tmp_path):
    model = tmp_path / "vosk-model"
    model.mkdir()
    (model / "words.txt").write_text("take a photo")
    changes = copy.deepcopy(CHANGES)
    changes["assistant.toml"]["listen"] = {"stt": "vosk", "vosk_model_dir": str(model)}
    changes["hardware.toml"]["audio"] = {"sim_mic_wav": speech_wav(tmp_path / "speech.wav")}
    procs.use_env(PYTHONPATH=str(REPO / "tests" / "data" / "fake_vosk"))
    system = assistant_system(procs, runtime, tmp_path, changes=changes)
    user = system.watcher
    user.ask("input.sim.request", gesture="long_press")
    answer = user.wait(lambda: user.notices("assistant.answer"), "the answer", timeout=30)[0]
    assert answer["action"] == "photo" and answer["status"] == "answered", answer
    vad = [m.payload["speech"] for m in user.log if m.topic == "audio.vad"]
    assert vad[:2] == [True, False], "the detector found the speech and its end"
    assert user.latest["assistant.state"]["stt"] == "vosk"


def test_lens_say_without_an_assistant_says_so(procs, runtime):
    procs.start_broker()
    result = procs.run_lens("say", "hello")
    assert result.returncode == 2 and "no reply to assistant.say.request from assistantd" in result.stderr, \
        result.stderr


NO_PHONE = copy.deepcopy(CHANGES)
del NO_PHONE["focus.toml"]["roles"]  # the tests below need no phone


def ask_as(app, text: str | None = None) -> dict:
    """What an app gets from the assistant: say (text) or listen; the session's answer."""
    app.wait(lambda: app.latest["assistant.state"]["phase"] == "idle", "the assistant idle")
    if text is None:
        session = app.ask("assistant.listen.request", template="{heard}")["session"]
    else:
        session = app.ask("assistant.say.request", text=text)["session"]
    answer = app.wait(lambda: app.notices("assistant.answer", session=session), f"the answer to {text!r}")[0]
    app.wait(lambda: app.latest["assistant.state"]["phase"] == "idle", "the assistant idle again")
    return answer


@pytest.mark.slow
def test_an_app_cannot_capture_through_the_assistant_without_its_own_permission(procs, runtime, tmp_path):
    system = assistant_system(procs, runtime, tmp_path, changes=NO_PHONE)
    user = system.watcher
    for prefix in ("shell.apps", "app.permission"):
        user.node.subscribe(prefix, user._keep)
    user.wait(lambda: "music" in (user.latest.get("shell.apps") or {}).get("apps", {}), "the installed apps")
    music = system.app("music", own_key=True)  # installed, no camera and no mic in its manifest
    bridge = system.app("bridge")  # a paired peer's requests come in as the bridge's
    for asker in (music, bridge):
        asker.node.subscribe("assistant", asker._keep)
        asker.wait(lambda a=asker: "assistant.state" in a.latest, "the assistant's state")
        for said in ("hey lens, take a photo", "start recording", "what is this"):
            answer = ask_as(asker, said)
            assert answer["status"] == "refused", (asker.node.name, said, answer)
            assert asker.node.name in answer["text"] and "camera" in answer["text"], answer
        assert ask_as(asker)["status"] == "refused"  # listen: no mic for it either
        assert ask_as(asker, "what time is it")["text"].startswith("It is ")  # asking is not capturing
    # Nor may an app ask the shell itself in the name of one that may.
    disguised = music.ask("shell.focus.request", resource="camera", kind="transient", cls="background",
                          reason="x", behalf="camera")
    assert disguised["status"] == "denied" and "may ask only for itself" in disguised["reason"]
    # Nor may a key without a manifest that does not capture for others (a bridge peer, a stray key) ask in the
    # camera app's name: it would be granted, and credited as the camera app in the privacy log.
    stray = system.app("stray", own_key=True)
    for resource in ("camera", "mic"):
        posed = stray.ask("shell.focus.request", resource=resource, kind="transient", cls="background", reason="x",
                          behalf="camera")
        assert posed["status"] == "denied" and "does not capture for others" in posed["reason"], posed
    user.wait(lambda: user.notices("app.permission.denied", app="bridge", permission="mic"), "the last refusal")
    assert not user.notices("shell.capture.notice", status="granted"), "nothing was captured"
    assert not [m for m in user.log if m.topic == "audio.state" and m.payload["mic"]["on"]], "the mic opened"
    assert user.latest["camera.state"]["mode"] == "off"
    assert not [r for r in system.audit if r["event"] == "start"], system.audit
    denied = user.notices("app.permission.denied")
    assert {(d["app"], d["permission"]) for d in denied} >= {("music", "camera"), ("music", "mic")}
    # A permitted app's capture through the assistant is its own: credited to it in the audit log.
    camera_app = system.app("camera", own_key=True)
    camera_app.node.subscribe("assistant", camera_app._keep)
    camera_app.wait(lambda: "assistant.state" in camera_app.latest, "the assistant's state")
    answer = ask_as(camera_app, "take a photo")
    assert answer["status"] == "answered" and answer["text"].startswith("Photo saved"), answer
    started = [r for r in system.audit if r["event"] == "start"]
    assert [(r["owner"], r["behalf"], r["resource"]) for r in started] == [("assistantd", "camera", "camera")]
    shown = procs.run_lens("privacy", "log")
    assert shown.returncode == 0 and "camera (by assistantd)" in shown.stdout, shown.stdout
    # The wearer's recording is the wearer's to stop (or whoever started it), not any app's.
    user.wait(lambda: user.latest["assistant.state"]["phase"] == "idle", "the assistant idle")
    assert say(user, "start recording")["text"] == "Recording."
    user.wait(lambda: user.latest["assistant.state"]["phase"] == "idle", "the wearer's session over")
    assert ask_as(music, "stop recording")["text"] == "That recording is not yours to stop."
    assert user.latest["camera.state"]["mode"] == "video"
    assert say(user, "stop recording")["text"] == "Recording stopped and saved."


@pytest.mark.slow
def test_an_apps_question_carries_nothing_of_the_wearers_conversation(procs, runtime, tmp_path, llm):
    llm.script = [("text/event-stream", sse(*text_chunks("Noted."))),
                  ("text/event-stream", sse(*text_chunks("I don't know.")))]
    system = assistant_system(procs, runtime, tmp_path, llm_url=llm.url, changes=NO_PHONE)
    user = system.watcher
    assert say(user, "remember that my bank pin is 4321")["source"] == "llm"
    user.wait(lambda: user.latest["assistant.state"]["turns"] == 1, "the wearer's turn kept")
    music = system.app("music", own_key=True)
    music.node.subscribe("assistant", music._keep)
    music.wait(lambda: "assistant.state" in music.latest, "the assistant's state")
    assert ask_as(music, "what is the bank pin")["source"] == "llm"
    asked = llm.requests[1]["messages"]
    assert [m["role"] for m in asked] == ["system", "user"] and "4321" not in json.dumps(asked)
    assert user.latest["assistant.state"]["turns"] == 1, "nor is the app's question added to it"
