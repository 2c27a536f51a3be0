"""The one table of what the assistant can do, for the offline intents and the LLM's tools alike.

Each row is an action: its description and parameters (what the LLM is
shown as a tool), a step generator (``steps``) that does it on the bus
and returns the sentence to answer with, and what the wearer says for it
(``Said``: the offline grammar's patterns and phrasings, which
daemons.assistant.intents parses with and makes the recognizer's grammar
from). An action cannot be without its words, nor words without their
action. Actions that belong to an app
(music, the lens, notifications) are handed to that app as an
``assistant.action`` event; the app answers with what it told the wearer
(``assistant.told.request``), and that is the session's answer.
"""

from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Callable, Generator, NamedTuple

from bus.errors import BusError
from daemons.assistant.steps import Ask, StepTimeout, Until

APP_START_S = 10.0  # an app asked for by voice has this long to come up
APP_ANSWER_S = 30.0  # and this long to answer what it was handed (a look, an online shop's answer)

PHRASEBOOK = Path(__file__).with_name("phrasebook.toml")


class Unavailable(Exception):
    """A resource the session needs was refused; the message is said to the wearer."""


class Said(NamedTuple):
    """What the wearer says for an action: the offline grammar's row (daemons.assistant.intents)."""
    patterns: list[str]  # on the normalized words, tried in the table's order; named groups become arguments
    phrasings: list[str]  # what a wearer says: the recognizer's grammar, and what the tests and bench speak


class Action(NamedTuple):
    name: str
    doc: str
    run: Callable[..., Generator]  # run(assistant, **args) -> answer text
    said: Said
    params: dict = {}  # JSON Schema properties (read, never written)
    required: tuple[str, ...] = ()
    app: str | None = None  # handed to this app instead of done here
    starts: bool = True  # the app is started for it when it is not running
    needs: tuple[str, ...] = ()  # the capture the app does for it: an asker without that permission is refused

    def tool(self) -> dict:
        return {"type": "function", "function": {
            "name": self.name, "description": self.doc,
            "parameters": {"type": "object", "properties": self.params, "required": list(self.required)}}}


def tell_time(a) -> Generator:
    return time.strftime("It is %H:%M on %A, %B ") + str(time.localtime().tm_mday) + "."
    yield  # a generator, like every action


def battery(a) -> Generator:
    power = a.latest.get("power.state")
    if power is None:
        return "I don't know the battery level yet."
    parts = [f"{b['name'].split('-')[-1]} {round(b['percent'])} percent" if b["present"]
             else f"{b['name'].split('-')[-1]} removed" for b in power["batteries"]]
    return f"Battery: {', '.join(parts)}."
    yield


def photo(a) -> Generator:
    yield from a.take("camera")
    try:
        result = yield Ask("camera.control.request", {"mode": "photo"})
    finally:
        yield from a.give_back("camera")
    return f"Photo saved as {Path(result['path']).name}."


def record_start(a) -> Generator:
    yield from a.take("camera")
    try:
        yield Ask("camera.control.request", {"mode": "video"})
    except BusError:
        yield from a.give_back("camera")
        raise
    a.recording, a.recording_for = True, a.behalf  # the camera stays with the assistant until "stop recording"
    return "Recording."


def record_stop(a) -> Generator:
    if not a.recording:
        return "I'm not recording."
    if a.behalf is not None and a.recording_for != a.behalf:
        return "That recording is not yours to stop."  # only the wearer, or whoever started it
    try:
        yield Ask("camera.control.request", {"mode": "off"})
    finally:
        a.recording = False
        yield from a.give_back("camera")
    return "Recording stopped and saved."


def translate(a, phrase: str, language: str = "spanish") -> Generator:
    book = tomllib.loads(PHRASEBOOK.read_text(encoding="utf-8"))
    language = language.lower()
    if language not in book:
        return f"I can translate into {', '.join(sorted(book))} offline."
    said = phrase.lower().strip(" .?!")
    if said not in book[language]:
        return f"I don't know '{phrase}' in {language.title()} offline."
    translated = book[language][said]
    return f"In {language.title()}: {translated}" + ("" if translated[-1:] in ".?!" else ".")
    yield


def brightness(a, percent: int | None = None, direction: str | None = None) -> Generator:
    level = (a.latest.get("display.state") or {}).get("user_level", 1.0)
    if percent is not None:
        level = int(percent) / 100
    elif direction in ("brighter", "up"):
        level += 0.2
    elif direction in ("dimmer", "darker", "down"):
        level -= 0.2
    result = yield Ask("display.brightness.request", {"level": min(1.0, max(0.1, level))})
    return f"Brightness {round(result['level'] * 100)} percent."


def forget(a) -> Generator:
    a.forget()
    return "Forgotten."
    yield


def handed_over(a, action: str, **args) -> Generator:
    """An app's action: started first when it is not running (pausing what is not playing starts nothing),
    then published for it; the app shows or says the answer itself and tells us what it was."""
    app, needs = ACTIONS[action].app, ACTIONS[action].needs
    refused = [permission for permission in needs if not a.may(permission)]
    if refused:  # the app would capture with its own permission for an asker without it
        raise Unavailable(f"{a.behalf} may not use the {' or '.join(refused)}, so {app} is not asked to")
    if not a.alive(app):
        if not ACTIONS[action].starts:
            return f"The {app} app is not running."
        try:
            yield Ask("shell.app.request", {"app": app, "action": "start"})
            yield Until(lambda: a.alive(app), APP_START_S, f"the {app} app to start")
        except (BusError, StepTimeout) as exc:
            return f"The {app} app cannot start: {exc}."
    if "display" in a.holding:
        yield from a.give_back("display")  # the app shows its answer itself, with nothing of ours over it
    a.awaiting, a.told = (a.session_id, app), None
    try:
        a.node.publish("assistant.action", session=a.session_id, action=action, args=args, app=app)
        return (yield Until(lambda: a.told, APP_ANSWER_S, f"the {app} app's answer"))
    except StepTimeout:
        return f"The {app} app did not answer."
    finally:
        a.awaiting = None


def _app_action(name: str, app: str, doc: str, said: Said, starts: bool = True, needs: tuple[str, ...] = (),
                **params) -> Action:
    return Action(name, doc, lambda a, **args: handed_over(a, name, **args), said, params, app=app, starts=starts,
                  needs=needs)


# The one table: what the assistant can do, and what the wearer says for it. Its order is the grammar's:
# the first row whose pattern matches is the intent (so "stop the recording" before "record", "pause the
# music" before "play").
ACTIONS: dict[str, Action] = {a.name: a for a in [
    Action("forget", "Forget the conversation so far.", forget, Said(
        [r"\b(forget (that|it|everything)|clear (the |our )?(conversation|context|history))\b"],
        ["forget that", "forget everything", "clear the conversation"])),
    Action("record_stop", "Stop the video recording the assistant started.", record_stop, Said(
        [r"\bstop (the )?(recording|video)\b", r"\bend (the )?(recording|video)\b"],
        ["stop recording", "stop the video", "end the recording"])),
    Action("record_start", "Start recording video with the glasses' camera.", record_start, Said(
        [r"\b(start|begin) (a |the )?(recording|video)\b", r"\brecord (a |some )?video\b", r"^record\b"],
        ["start recording", "record a video", "begin a video"])),
    Action("photo", "Take a photo with the glasses' camera.", photo, Said(
        [r"\b(take|snap|grab) (a |the )?(photo|picture|pic|shot)\b", r"^(photo|picture)\b"],
        ["take a photo", "take a picture", "snap a picture"])),
    Action("battery", "Tell the charge of both swappable batteries.", battery, Said(
        [r"\bbatter(y|ies)\b", r"\bhow much (charge|power)\b", r"\bcharge left\b"],
        ["how much battery is left", "battery level", "how much charge is left"])),
    Action("time", "Tell the current time and date.", tell_time, Said(
        [r"\bwhat time\b", r"\bthe time\b", r"^time\b", r"\bwhat('s| is) the date\b"],
        ["what time is it", "tell me the time", "what is the date"])),
    _app_action("music_pause", "music", "Pause the music.", Said(
        [r"\b(pause|stop) (the |my )?music\b", r"^(pause|stop)$"],
        ["pause the music", "stop the music", "pause"]), starts=False),
    _app_action("music_play", "music", "Play or resume music.", Said(
        [r"\b(play|resume|start) (some |the |my )?music\b", r"^(play|resume)$"],
        ["play some music", "resume the music", "play my music"])),
    _app_action("music_next", "music", "Skip to the next song.", Said(
        [r"\b(next|skip)( this| the)?( song| track)?$", r"\bskip (this |the )?(song|track)\b"],
        ["next song", "skip this song", "next track"])),
    Action("translate", "Translate a short phrase (offline phrasebook: spanish, french, german, chinese).",
           translate, Said(
               [r"\btranslate (?P<phrase>.+?)(?: (?:in)?to (?P<language>[a-z]+))?$",
                r"\bhow do (you|i) say (?P<phrase>.+?) in (?P<language>[a-z]+)$"],
               ["translate thank you to spanish", "translate good morning to french",
                "how do you say hello in german"]),
           {"phrase": {"type": "string"}, "language": {"type": "string"}}, ("phrase",)),
    _app_action("notifications", "notifications", "Read the wearer's notifications.", Said(
        [r"\b(read|show|any|my|new) (my |new )?(notifications?|messages)\b", r"^notifications?$"],
        ["read my notifications", "any new messages", "show my notifications"])),
    Action("brightness", "Set the display brightness (percent), or make it brighter or dimmer.", brightness, Said(
        [r"\bbrightness (to |at )?(?P<percent>\d{1,3})( ?%| percent)?\b",
         r"\b(?P<direction>brighter|dimmer|darker)\b",
         r"\b(turn|make) (the )?(display|screen|brightness) (?P<direction>up|down)\b"],
        ["set brightness to fifty percent", "make it brighter", "turn the screen down"]),
           {"percent": {"type": "integer", "minimum": 10, "maximum": 100},
            "direction": {"type": "string", "enum": ["brighter", "dimmer"]}}),
    _app_action("identify", "lens", "Identify the item the wearer is looking at and tell its price.", Said(
        [r"\bwhat('s| is) (this|that)\b", r"\bhow much (is|does|for) (this|that|it)\b",
         r"\bwhat am i (looking at|seeing)\b", r"\b(identify|price) (this|that)\b"],
        ["what is this", "what am i looking at", "how much is this"]), needs=("camera",)),
]}


def tools() -> list[dict]:
    return [action.tool() for action in ACTIONS.values()]
