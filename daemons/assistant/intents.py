"""The offline grammar: what the wearer said, as an action name and its arguments.

Each row is an action of ``actions.ACTIONS`` and the patterns that mean it,
tried in order; the first match wins and its named groups become the
arguments. Works with no network and no model: the assistant always has
this to fall back on.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_GRAMMAR: list[tuple[str, list[str]]] = [
    ("forget", [r"\b(forget (that|it|everything)|clear (the |our )?(conversation|context|history))\b"]),
    ("record_stop", [r"\bstop (the )?(recording|video)\b", r"\bend (the )?(recording|video)\b"]),
    ("record_start", [r"\b(start|begin) (a |the )?(recording|video)\b", r"\brecord (a |some )?video\b",
                      r"^record\b"]),
    ("photo", [r"\b(take|snap|grab) (a |the )?(photo|picture|pic|shot)\b", r"^(photo|picture)\b"]),
    ("battery", [r"\bbatter(y|ies)\b", r"\bhow much (charge|power)\b", r"\bcharge left\b"]),
    ("time", [r"\bwhat time\b", r"\bthe time\b", r"^time\b", r"\bwhat('s| is) the date\b"]),
    ("music_pause", [r"\b(pause|stop) (the |my )?music\b", r"^(pause|stop)$"]),
    ("music_play", [r"\b(play|resume|start) (some |the |my )?music\b", r"^(play|resume)$"]),
    ("music_next", [r"\b(next|skip)( this| the)?( song| track)?$", r"\bskip (this |the )?(song|track)\b"]),
    ("translate", [r"\btranslate (?P<phrase>.+?)(?: (?:in)?to (?P<language>[a-z]+))?$",
                   r"\bhow do (you|i) say (?P<phrase>.+?) in (?P<language>[a-z]+)$"]),
    ("notifications", [r"\b(read|show|any|my|new) (my |new )?(notifications?|messages)\b",
                       r"^notifications?$"]),
    ("brightness", [r"\bbrightness (to |at )?(?P<percent>\d{1,3})( ?%| percent)?\b",
                    r"\b(?P<direction>brighter|dimmer|darker)\b",
                    r"\b(turn|make) (the )?(display|screen|brightness) (?P<direction>up|down)\b"]),
    ("identify", [r"\bwhat('s| is) (this|that)\b", r"\bhow much (is|does|for) (this|that|it)\b",
                  r"\bwhat am i (looking at|seeing)\b", r"\b(identify|price) (this|that)\b"]),
]
_COMPILED = [(name, [re.compile(p) for p in patterns]) for name, patterns in _GRAMMAR]


class Intent(NamedTuple):
    action: str  # a row of actions.ACTIONS, or "unknown"
    args: dict = {}  # read, never written: one shared empty default is safe
    text: str = ""


def normalize(text: str) -> str:
    """Lower case, no punctuation but apostrophes and %, single spaces: how the patterns are written."""
    text = re.sub(r"[^\w'% ]+", " ", text.lower())
    return re.sub(r"\s+", " ", text).strip()


def strip_wake(text: str, wake_phrase: str) -> str | None:
    """What follows the wake phrase, or None when the text does not start with it."""
    said, wake = normalize(text), normalize(wake_phrase)
    if not wake or not (said == wake or said.startswith(wake + " ")):
        return None
    return said[len(wake):].strip()


def parse(text: str) -> Intent:
    said = normalize(text)
    for name, patterns in _COMPILED:
        for pattern in patterns:
            match = pattern.search(said)
            if match:
                args = {k: v for k, v in match.groupdict().items() if v is not None}
                return Intent(name, args, said)
    return Intent("unknown", {}, said)
