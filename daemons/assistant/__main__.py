"""assistantd: ask the glasses, and hear or see the answer.

A session: a trigger (a temple gesture from policy, the wake phrase, or
`lens say`) -> mic focus through the shell's privacy handshake (the LED is
lit before audiod opens the mic) -> the words (speech-to-text) -> the mic
closed and given back -> an action from the one table (``actions.ACTIONS``),
chosen by the offline grammar or by an OpenAI-compatible LLM calling the
same actions as tools -> the answer as a card (S1) or speech over ducked
audio (G1). Every resource a session takes is given back in a ``finally``:
a session that is interrupted (a call takes the mic, the LED fails, the
wearer asks something else) leaves nothing held.

Capture done on someone's behalf is theirs. Only the wearer (a gesture,
the wake phrase, the wearer's own voice, and the developer's tools acting
as the wearer) asks as the wearer; a request from an app or a bridge peer
is that asker's session: the shell checks the asker's permission for every
capture it takes (``behalf`` on the focus request) and the audit log names
it; an app's own words take no mic, and it cannot speak into, or cut short,
a session that is not its own.

Privacy: no audio is kept after the words are taken from it; the
conversation (text only, in memory) is forgotten on request or after
``context_s`` without a question, and never published.

Past 400 lines: one class, because a session's steps (converse, listen,
think, answer, take, give_back) are one generator's and share its state;
the bus handlers around it are a few lines each.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque

from bus import service
from bus.envelope import Message
from bus.errors import BusError, RequestRefused
from bus.keys import BRIDGE, DEVELOPER
from bus.node import Node
from daemons.assistant.actions import ACTIONS, Unavailable, tools
from daemons.assistant.intents import parse, strip_wake
from daemons.assistant.llm import ChatClient, LlmError
from shellclient import handshake
from shellclient.notices import Notices
from daemons.assistant.steps import Ask, Cancelled, Runner, Sleep, StepTimeout, Until, Work
from daemons.assistant.stt import SttError, open_stt
from policies.checker import PolicyError
from policies.loader import load
from policies.settings import Section
from manager.processes import by_module

ROW = by_module("daemons.assistant")  # its name and command line, from its row of the process table

log = logging.getLogger(ROW.name)

SYSTEM_PROMPT = ("You are the assistant of a pair of smart glasses. Answer in one or two short sentences: "
                 "they are shown on a tiny display or spoken through bone conduction. Use the tools to act.")
# The latched state the actions read (each from its owner only: bus.node).
STATE_TOPICS = ("shell.state", "power.state", "display.state", "camera.state", "shell.apps")
MAX_TURNS = 10  # of the conversation the LLM is shown again: the oldest are forgotten first
WEARER_TOOLS = ("webview",)  # the developer's live view, whose say box stands for the wearer's voice
UNCLEAR = "\0unclear"  # heard_final when there was speech but no command in it (and no LLM to ask)


class Assistantd:
    def __init__(self, node: Node, policy, stt, llm: ChatClient | None):
        self.node, self.stt, self.llm = node, stt, llm
        self.numbers = policy.assistant
        self.has_display = policy.has_display
        self.latest: dict[str, dict] = {}
        self.notices = Notices(keep=50)  # focus and capture notices to us, and what audiod played for us
        self.runner = Runner(node, on_wake=self.show_partial)
        self.task = None
        self.queued: tuple | None = None  # (session, trigger, text, template, behalf) waiting for the running one
        self.behalf: str | None = None  # whom the session is for: None for the wearer, else the asker
        self.template = "{heard}"  # an app's listen request puts what is heard into its own words
        self.session_id: str | None = None
        self.trigger: str | None = None
        self.phase, self.why = "idle", "waiting for a trigger"
        self.said: str | None = None  # `lens say` text for the listening session
        self.heard_final: str | None = None  # the engine's words once the wearer stopped speaking
        self.mic_seq = self.mic_missing = 0  # the last mic block's number; those not heard (audiod numbers from 1)
        self.partial: deque[str] = deque(maxlen=1)  # the LLM's streamed answer so far
        self.context: list[dict] = []
        self.context_at = 0.0
        self.recording = False
        self.recording_for: str | None = None  # whom the assistant's recording is for (None: the wearer)
        self.holding: set[str] = set()  # resources taken and not yet given back (losing one cancels)
        self.reported: dict | None = None
        self.awaiting: tuple[str, str] | None = None  # (session, app) whose answer an action waits for
        self.told: str | None = None  # what that app told the wearer
        self.answered_by: str | None = None  # the app that gave this session's answer (it showed it already)
        for topic in STATE_TOPICS:
            node.subscribe(topic, self.on_state)
        node.subscribe("shell.focus.notice", self.on_notice)
        node.subscribe("shell.capture.notice", self.on_notice)
        node.subscribe("input.gesture", self.on_gesture)
        node.subscribe("assistant.wake", self.on_wake)
        node.subscribe("audio.mic", self.on_mic)
        node.subscribe("audio.vad", self.on_mic)
        node.subscribe("audio.played", self.on_played)
        node.serve("assistant.say.request", self.on_say)
        node.serve("assistant.listen.request", self.on_listen)
        node.serve("assistant.clear.request", lambda msg: {"cleared": self.forget()})
        node.serve("assistant.told.request", self.on_told)

    # --- what others say ------------------------------------------------------------------
    def on_state(self, msg: Message) -> None:
        self.latest[msg.topic] = msg.payload
        self.runner.poll()

    def on_notice(self, msg: Message) -> None:
        p = msg.payload
        if p["owner"] != self.node.name:
            return
        self.notices.add(dict(p, topic=msg.topic))
        lost = p["status"] in ("lost", "suspended", "revoked") and p["resource"] in self.holding & {"mic", "camera"}
        if lost and self.task is not None and self.phase in ("listening", "thinking"):
            self.task.cancel(f"{p['resource']} {p['status']}: {p['reason']}")
        self.runner.poll()

    def on_gesture(self, msg: Message) -> None:
        if msg.payload["gesture"] not in self.numbers.trigger.gestures:
            return
        if self.phase == "listening":
            self.task.cancel("the wearer stopped it")
        else:  # idle, or still thinking or answering: the wearer asks anew (the answer on screen is cut short);
            # ignoring the temple for the seconds an answer stays up made a second question vanish unheard
            self.begin(msg.payload["gesture"], None)

    def on_wake(self, msg: Message) -> None:
        """The spotter heard the wake phrase: a session of the wearer's starts now, and its first step asks
        for the mic, so the LED is lit before a word of the request can be heard (the spotter hears no more)."""
        if self.phase == "idle" and self.queued is None:
            self.begin("wake_phrase", None)

    def on_mic(self, msg: Message) -> None:
        p = msg.payload
        if p["owner"] != self.node.name or self.phase != "listening":
            return
        if self.heard_final is not None:
            return  # the words are complete
        if msg.topic == "audio.mic":
            # Blocks audiod numbered and the bus did not bring (a gap in seq): words cut short are then no
            # mystery in the journal (take_words).
            if p["seq"] > self.mic_seq + 1:
                self.mic_missing += p["seq"] - self.mic_seq - 1
            self.mic_seq = p["seq"]
            self.stt.feed(p["pcm"], p["rate"])
            if self.stt.ended:  # the engine heard the wearer stop speaking
                self.take_words()
        elif not p["speech"] and self.stt.listens and not self.stt.endpoints:  # audiod's VAD: the words are complete
            self.take_words()

    def take_words(self) -> None:
        words = self.stt.final()
        if words or self.stt.unclear:  # a sound that was no speech at all: listen on
            self.heard_final = words or UNCLEAR
            if self.mic_missing:
                log.warning("%d mic blocks of the request never came", self.mic_missing)
            self.runner.poll()

    def on_played(self, msg: Message) -> None:
        if msg.payload["owner"] == self.node.name:
            self.notices.add(dict(msg.payload, topic=msg.topic))
            self.runner.poll()

    def asker(self, msg: Message) -> str | None:
        """Who a request is from: None for the wearer (the developer's tools, acting as the wearer), otherwise
        the asker (an app, a bridge peer), whose permissions bound what its session may capture."""
        apps = (self.latest.get("shell.apps") or {}).get("apps", {})
        if msg.source != BRIDGE and msg.source not in apps and (msg.sender == DEVELOPER or msg.source in WEARER_TOOLS):
            return None
        return msg.source

    def refuse_if_busy(self, behalf: str | None) -> None:
        """The wearer may always ask anew (the running session is cancelled); another asker may not cut a
        session short nor speak into it."""
        if behalf is not None and (self.task is not None or self.queued is not None):
            raise RequestRefused(f"the assistant is busy with {self.behalf or 'the wearer'}; ask again when "
                                 "assistant.state says idle")

    def on_say(self, msg: Message) -> dict:
        text, behalf = msg.payload["text"], self.asker(msg)
        self.refuse_if_busy(behalf)
        if self.phase == "listening" and self.said is None:
            self.said = text
            self.runner.poll()
            return {"session": self.session_id, "listening": True}
        rest = strip_wake(text, self.numbers.trigger.wake_phrase)
        if rest is not None:
            session = self.begin("wake_phrase" if behalf is None else f"app {behalf}", rest or None, behalf=behalf)
        else:
            session = self.begin("say" if behalf is None else f"app {behalf}", text, behalf=behalf)
        return {"session": session, "listening": self.phase == "listening"}

    def on_listen(self, msg: Message) -> dict:
        template = msg.payload["template"]
        if "{heard}" not in template:
            raise RequestRefused("the template must say where what is heard goes: {heard}")
        behalf = self.asker(msg)
        self.refuse_if_busy(behalf)
        return {"session": self.begin(f"app {msg.source}", None, template=template, behalf=behalf)}

    def on_told(self, msg: Message) -> dict:
        session = msg.payload["session"]
        if self.awaiting != (session, msg.source):
            raise RequestRefused(f"no session {session} waits for an answer from {msg.source}")
        self.told, self.answered_by = msg.payload["text"], msg.source
        self.runner.poll()
        return {}

    # --- a session ------------------------------------------------------------------------------
    def begin(self, trigger: str, text: str | None, session: str | None = None, template: str = "{heard}",
              behalf: str | None = None) -> str:
        """Start a session; one still running is cancelled first and this one starts when it has let go.
        The wearer asked: the glasses wake (before any request of the session: sleep refuses capture, and
        the app an action is handed to must find them awake too). An app's own session wakes nothing: an app
        in the background does not turn the wearer's display on by asking."""
        session = session or os.urandom(4).hex()
        if behalf is None:
            self.node.publish("assistant.asked", session=session)
        self.queued = (session, trigger, text, template, behalf)
        if self.task is not None:
            self.task.cancel("the wearer asked something else")
        else:
            self._start_queued()
        return session

    def _start_queued(self) -> None:
        (session, trigger, text, self.template, self.behalf), self.queued = self.queued, None
        self.session_id, self.trigger = session, trigger
        self.said, self.heard_final = text, None
        self.mic_seq = self.mic_missing = 0
        self.told = self.answered_by = None
        self.task = self.runner.start(self.converse(session), lambda result, error: self.ended(session, error))

    def ended(self, session: str, error: BaseException | None) -> None:
        if error is not None and not isinstance(error, Cancelled):
            log.error("session %s failed: %r", session, error)
        if session != self.session_id:
            return
        self.task, self.said, self.heard_final = None, None, None
        self.stt.reset()
        if self.queued is not None:
            self._start_queued()
        else:
            self.set_phase("idle", "waiting for a trigger")

    def converse(self, session: str):
        status, text, source, action = "answered", "", "offline", None
        try:
            if self.trigger == "wake_phrase" and self.said is None:
                # The phrase was heard and the request is still to come: the mic first, so the LED is lit from
                # the moment of the phrase (the spotter hears nothing from then on) before anything else.
                yield from self.take("mic")
            if self.has_display:
                yield from self.take("display")
            self.set_phase("listening", f"triggered by {self.trigger}")
            heard = yield from self.listen()
            if not heard:
                status, text = "unheard", "I didn't hear anything."
            elif heard == UNCLEAR:
                status, text = "unheard", "Sorry, I didn't catch that."
            else:
                heard = self.template.replace("{heard}", heard)
                self.set_phase("thinking", "working out the answer")
                yield from self.card("Thinking…", heard, progress=0.5)
                text, source, action = yield from self.think(heard)
        except Unavailable as exc:
            status, text = "refused", str(exc)
        except Cancelled as exc:
            status, text = "interrupted", f"Stopped: {exc}."
        except StepTimeout as exc:
            status, text = "refused", f"Sorry, that took too long ({exc})."
        except BusError as exc:
            status, text = "refused", f"Sorry, that didn't work: {exc}."
        try:
            self.node.publish("assistant.answer", session=session, text=text, source=source, action=action,
                              status=status, asker=self.behalf)
            if text and status != "interrupted" and not (source == "offline" and self.answered_by):
                self.set_phase("answering", status)
                yield from self.answer(session, text)
        except (Cancelled, BusError, StepTimeout) as exc:
            log.info("answer of %s cut short: %s", session, exc)
        finally:
            if "mic" in self.holding:  # taken on the wake phrase, and the session ended before it listened
                yield from self.give_back("mic")
            yield from self.give_back("display")

    def listen(self):
        """Mic focus, the LED, the mic open; the words; then the mic closed and given back, always."""
        if self.behalf is not None and self.said is not None:
            return self.said  # the asker's own words: nothing is heard, so no mic is opened for them
        if "mic" not in self.holding:  # not already taken on the wake phrase
            yield from self.take("mic")
        try:
            yield Ask("audio.mic.request", {"on": True})
            yield from self.card("Listening…", "", progress=0.2)
            if self.said is not None:
                return self.said
            timeout = self.numbers.listen.timeout_s
            words = yield Until(lambda: self.said or self.heard_final, timeout, "waiting for a request")
            return words
        except StepTimeout:
            return ""
        finally:
            self.stt.reset()
            try:
                yield Ask("audio.mic.request", {"on": False})
            except BusError:
                pass  # audiod closes it on its own once the grant is gone
            yield from self.give_back("mic")

    def think(self, heard: str):
        intent = parse(heard)
        if intent.action == "forget":
            return (yield from ACTIONS["forget"].run(self)), "offline", "forget"
        if self.llm is not None and self.remote_allowed:
            try:
                text, action = yield from self.ask_llm(heard)
                return text, "llm", action
            except LlmError as exc:
                log.warning("LLM unavailable, answering offline: %s", exc)
        if intent.action == "unknown":
            return "Sorry, I can't help with that offline.", "offline", None
        text = yield from ACTIONS[intent.action].run(self, **intent.args)
        return text, "offline", intent.action

    def ask_llm(self, heard: str):
        if time.monotonic() - self.context_at > self.numbers.answer.context_s:
            self.context = []
        # The wearer's conversation is the wearer's: an app's question is asked without it and not added to it.
        context = self.context if self.behalf is None else []
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, *context, {"role": "user", "content": heard}]
        last_action = None
        for _ in range(self.numbers.llm.max_rounds):
            reply = yield Work(lambda: self.llm.chat(messages, tools(), self.on_partial))
            if not reply.tool_calls:
                if self.behalf is None:
                    self.context = [*self.context, {"role": "user", "content": heard},
                                    {"role": "assistant", "content": reply.content}][-2 * MAX_TURNS:]
                    self.context_at = time.monotonic()
                return reply.content.strip(), last_action
            messages.append({"role": "assistant", "content": reply.content or None, "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                for c in reply.tool_calls]})
            for call in reply.tool_calls:
                action = ACTIONS.get(call.name)
                try:
                    if action is None:
                        raise ValueError(f"no tool named {call.name}")
                    result = yield from action.run(self, **call.arguments)
                    last_action = call.name
                except (TypeError, ValueError, BusError, Unavailable) as exc:
                    result = f"error: {exc}"
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result or "done"})
        raise LlmError(f"no answer after {self.numbers.llm.max_rounds} tool rounds")

    def answer(self, session: str, text: str):
        if self.has_display:
            if "display" not in self.holding:  # given to an app the LLM asked to act
                yield from self.take("display")
            yield from self.card("Assistant", text, progress=None)
            yield Sleep(self.numbers.answer.card_s)
            return
        yield from self.take("audio_out")  # G1: over the music, ducked
        try:
            mark = self.notices.mark()
            self.node.publish("audio.speak", text=text, app=self.node.name, interrupt=True, id=session)
            yield Until(lambda: self.notices.seen(mark, "audio.played", id=session), 10 + len(text) / 5, "the answer")
        finally:
            yield from self.give_back("audio_out")

    # --- resources ---------------------------------------------------------------------------------
    def take(self, resource: str):
        """Ask the shell; wait while queued; for mic and camera, wait for the LED-confirmed capture grant."""
        mark = self.notices.mark()
        kind = "transient_may_duck" if resource == "audio_out" else "transient"
        grant_s = self.numbers.listen.grant_timeout_s
        try:
            ask = {"resource": resource, "kind": kind, "cls": "assistant",
                   "reason": f"assistant session {self.session_id}" + (f" for {self.behalf}" if self.behalf else "")}
            if self.behalf is not None:
                ask["behalf"] = self.behalf  # the asker's capture: the shell checks its permission, the log names it
            reply = yield Ask("shell.focus.request", ask)
            if reply["status"] == "denied":
                raise Unavailable(f"I can't use the {resource.replace('_', ' ')} now: {reply['reason']}")
            for step in handshake.steps(reply["status"], resource, needed_now=True):
                if step == "focus":
                    yield Until(lambda: handshake.focus_granted(self.notices, mark, resource), grant_s,
                                f"{resource} focus")
                    continue
                try:
                    yield Until(lambda: self.capture_granted(mark, resource), grant_s, f"the {resource} grant")
                except StepTimeout:
                    raise Unavailable(f"The capture light could not be confirmed, so the {resource} stays off.") \
                        from None
        except Exception:
            # The request went out: whatever ends the session here (cancelled before the reply, refused,
            # timed out), the shell may have granted or queued it, and nothing may stay held.
            yield from self.give_back(resource)
            raise
        self.holding.add(resource)

    def capture_granted(self, mark: int, resource: str):
        notice = self.notices.capture(mark, resource)
        if notice and notice["status"] != "granted":
            raise Unavailable(f"The {resource} was refused: {notice['reason']}.")
        return notice

    def give_back(self, resource: str):
        if resource == "camera" and self.recording:
            return  # the assistant's recording keeps it until "stop recording"
        self.holding.discard(resource)
        try:
            yield Ask("shell.release.request", {"resource": resource})
        except BusError as exc:
            log.warning("releasing %s: %s", resource, exc)

    # --- showing -------------------------------------------------------------------------------------
    def card(self, title: str, body: str, progress: float | None):
        if not self.has_display:
            return
        fields = {"id": "assistant", "title": title, "body": body}
        if progress is not None:
            fields["progress"] = progress
        yield Ask("display.card.request", fields)

    def on_partial(self, text: str) -> None:
        """In the LLM's worker thread: keep the newest text; the loop shows it."""
        self.partial.append(text)
        self.runner.wakeup.wake()

    def show_partial(self) -> None:
        if self.partial and self.has_display and self.phase == "thinking":
            text = self.partial.popleft()
            self.node.request_async("display.card.request", lambda *_: None, id="assistant", title="Assistant",
                                    body=text, progress=0.8)

    # --- state ---------------------------------------------------------------------------------------
    @property
    def remote_allowed(self) -> bool:
        return (self.latest.get("shell.state") or {}).get("remote_calls", True)

    def may(self, permission: str) -> bool:
        """Whether whoever the session is for may use a permission (the wearer may use everything)."""
        if self.behalf is None:
            return True
        apps = (self.latest.get("shell.apps") or {}).get("apps", {})
        return permission in apps.get(self.behalf, {}).get("permissions", ())

    def alive(self, app: str | None) -> bool:
        return bool(app) and app in (self.latest.get("shell.state") or {}).get("nodes", {})

    def forget(self) -> int:
        turns, self.context = len(self.context) // 2, []
        self.publish_state()
        return turns

    def set_phase(self, phase: str, why: str) -> None:
        self.phase, self.why = phase, why
        self.publish_state()

    def publish_state(self) -> None:
        state = {"phase": self.phase, "session": self.session_id if self.phase != "idle" else None,
                 "trigger": self.trigger if self.phase != "idle" else None, "stt": self.stt.name,
                 "llm": self.llm.url if self.llm else None, "remote": bool(self.llm) and self.remote_allowed,
                 "turns": len(self.context) // 2, "why": self.why}
        if state != self.reported:
            self.reported = state
            self.node.publish("assistant.state", **state)


def open_llm(numbers: Section) -> ChatClient | None:
    endpoint = os.environ.get("LENS_LLM_ENDPOINT", numbers.endpoint)
    if not endpoint:
        return None
    key = os.environ.get(numbers.api_key_env) if numbers.api_key_env else None
    return ChatClient(endpoint, os.environ.get("LENS_LLM_MODEL", numbers.model), key, numbers.timeout_s)


def main(argv: list[str] | None = None) -> int:
    args = service.arguments(ROW.module, __doc__).parse_args(argv)
    with service.exits_on(ROW.name, PolicyError, SttError):
        policy = load(args.policy_dir, args.model)
        listen = policy.assistant.listen
        llm = open_llm(policy.assistant.llm)
        stt = open_stt(listen.stt, listen.vosk_model_dir, free_form=llm is not None)
    with service.node(ROW.name, args) as node:
        assistant = Assistantd(node, policy, stt, llm)
        node.start()
        assistant.publish_state()
        node.run()
        assistant.runner.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
