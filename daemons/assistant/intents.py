"""The offline grammar: what the wearer said, as an action name and its arguments.

Its rows are the action table's (``actions.ACTIONS``, each action with what
the wearer says for it), in that table's order: the patterns that mean it
(tried in order, the first match wins, its named groups become the
arguments) and the phrasings a wearer says for it. The phrasings are what
the speech recognizer listens for (``jsgf()`` makes its grammar from them,
so a new action is heard without other changes), and what the tests and
the accuracy bench speak; each must parse to its own row. Works with no
network and no model: the assistant always has this to fall back on.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from daemons.assistant.actions import ACTIONS


class IntentRow(NamedTuple):
    action: str
    patterns: list[str]
    phrasings: list[str]


INTENTS: list[IntentRow] = [IntentRow(a.name, *a.said) for a in ACTIONS.values()]
_COMPILED = [(row.action, [re.compile(p) for p in row.patterns]) for row in INTENTS]

# Spoken numbers as the patterns want them: "fifty percent" is heard, "50 percent" is matched.
_UNITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                       "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i > 1}
_NUMBER = re.compile(r"\b(?:(?P<tens>%s)(?: (?P<unit>%s))?|(?P<small>%s)|(?P<hundred>one hundred|a hundred))\b" % (
    "|".join(_TENS), "|".join(list(_UNITS)[1:10]), "|".join(_UNITS)))


def _digits(match: re.Match) -> str:
    if match["hundred"]:
        return "100"
    if match["small"]:
        return str(_UNITS[match["small"]])
    return str(_TENS[match["tens"]] + (_UNITS[match["unit"]] if match["unit"] else 0))


def numbers_as_digits(text: str) -> str:
    return _NUMBER.sub(_digits, text)


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
    matched = numbers_as_digits(said)
    for name, patterns in _COMPILED:
        for pattern in patterns:
            match = pattern.search(matched)
            if match:
                args = {k: v for k, v in match.groupdict().items() if v is not None}
                return Intent(name, args, said)
    return Intent("unknown", {}, said)


def phrasings(rows: list[IntentRow] | None = None) -> dict[str, list[str]]:
    """Each action's phrasings, normalized as the recognizer spells its words."""
    return {row.action: [normalize(p) for p in row.phrasings] for row in (INTENTS if rows is None else rows)}


def jsgf(rows: list[IntentRow] | None = None) -> str:
    """The recognizer's command grammar (JSGF), one rule per row of the table: what it listens for."""
    table = phrasings(rows)
    lines = ["#JSGF V1.0;", "grammar lens;",
             "public <command> = " + " | ".join(f"<{action}>" for action in table) + ";"]
    lines += [f"<{action}> = " + " | ".join(said) + ";" for action, said in table.items() if said]
    return "\n".join(lines) + "\n"


def vocabulary(rows: list[IntentRow] | None = None) -> set[str]:
    return {word for said in phrasings(rows).values() for phrase in said for word in phrase.split()}
