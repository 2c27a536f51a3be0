"""What of the bus is capture content, kept out of a recording unless asked for and accounted for.

Glasses see and hear bystanders: a recording made for debugging must not quietly become a video of
everyone around. So `lens bus record` (and its snapshot mode) keeps camera frames, mic audio and photos out
by default. What stays is every message's descriptor and timing (a frame's id, slot and owner; a mic
block's owner, seq, rate and time, its ``pcm`` emptied and its length kept in the header's ``withheld``),
so the timeline is whole and `lens bus check` judges it as before.

``--include-capture`` puts them in, and then:

- only for an identity that may see them: restricted topics (a ``permission`` in the table) reach only
  the developer and the identities the shell granted capture, and a recorder is never the latter;
- written into the privacy log, fsync'ed before the first content is kept, as the shell does for any
  capture: a session per resource (who, why, from when to when, what was taken), `lens privacy log`;
- and marked in the file: every file of the recording carries ``lensos.capture`` metadata, written first
  (a file cut short keeps it) and again at its end with the counts; `lens bus info` reads it and the
  content itself, and says whether a file holds capture content.

One table, ``CONTENT``: each recorded topic that can carry capture content, the resource it is of, and
the fields that carry it. The mic's bytes fields come from the topic table (a restricted topic's bytes);
the camera's pixels never ride the bus (they are in camerad's ring), so its content topics are the
images the recorder makes of them.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import NamedTuple

from bustools.bag import IMAGE_TOPIC, PHOTO_TOPIC
from bus.topics import TOPICS

METADATA = "lensos.capture"  # the mark every recorded file carries
MAX_PHOTO_BYTES = 32 * 1024 * 1024  # a photo bigger than this is not a camerad photo: counted, not read


class Content(NamedTuple):
    resource: str  # camera or mic: the permission, and the privacy log's resource
    what: str  # said to people
    fields: tuple[str, ...]  # the fields that carry it


# The resource a permission's content is of: the idle mic the wake-phrase spotter hears (audio.wake.mic,
# permission listen) is mic audio like any other once a recorder keeps it.
_RESOURCE_OF = {"listen": "mic"}


def _restricted_bytes() -> dict[str, Content]:
    """Every restricted topic's bytes fields (audio.mic's pcm): content the bus itself carries."""
    found = {}
    for name, spec in TOPICS.items():
        if spec.permission and any(f.base == "bytes" for f in spec.schema.fields):
            resource = _RESOURCE_OF.get(spec.permission, spec.permission)
            found[name] = Content(resource, "mic audio" if resource == "mic" else f"{resource} data",
                                  tuple(f.name for f in spec.schema.fields if f.base == "bytes"))
    return found


CONTENT: dict[str, Content] = {
    IMAGE_TOPIC: Content("camera", "camera frames", ("data",)),
    PHOTO_TOPIC: Content("camera", "photos", ("data",)),
    # A card's picture may be what the camera saw (the lens app's preview of the item it named): whoever
    # posts it, it is kept out as camera content is.
    "display.card.request": Content("camera", "card pictures", ("image",)),
    **_restricted_bytes(),
}
RESOURCES = tuple(sorted({c.resource for c in CONTENT.values()}))
WITHHELD_BY_DEFAULT = ", ".join(sorted({c.what for c in CONTENT.values()}))


def withhold(topic: str, payload: dict) -> tuple[dict, dict[str, int] | None]:
    """The payload without its capture content, and {field: bytes withheld} (None: nothing to withhold)."""
    content = CONTENT.get(topic)
    if content is None:
        return payload, None
    kept, withheld = dict(payload), {}
    for name in content.fields:
        value = kept.get(name)
        if isinstance(value, (bytes, str)) and value:
            withheld[name] = len(value)
            kept[name] = value[:0]
    return kept, withheld


def carries(topic: str, payload: dict) -> str | None:
    """The resource whose content this recorded message holds, or None (a descriptor, or withheld)."""
    content = CONTENT.get(topic)
    if content is None:
        return None
    return content.resource if any(payload.get(name) for name in content.fields) else None


def who_may_see(identity: str) -> str | None:
    """Why ``identity`` may not record capture content, or None. The broker's rule for restricted topics
    (broker.gate): the developer and whoever the shell granted that capture, which a recorder never is."""
    from bus.keys import DEVELOPER

    if identity == DEVELOPER:
        return None
    restricted = sorted(name for name, spec in TOPICS.items() if spec.permission)
    return (f"this recorder's identity is {identity!r}: only the developer's tools may see {', '.join(restricted)} "
            "(the broker sends them nobody else but the one the shell granted capture)")


class Consent:
    """Capture content in a recording, accounted for as any capture: a privacy log session per resource,
    opened (fsync'ed) before anything is kept, counted and closed when the recorder stops."""

    def __init__(self, identity: str, log_path: Path, why: str):
        from bus.audit import AuditLog  # the privacy log the shell writes too: `lens privacy log` reads it

        self.identity, self.why = identity, why
        self.log = AuditLog(log_path)
        self.sessions = {resource: uuid.uuid4().hex[:12] for resource in RESOURCES}
        self.counts = {"camera frames": 0, "photos": 0, "card pictures": 0, "mic blocks": 0}
        self.mic_s = 0.0
        self.started = time.monotonic()
        for resource, session in self.sessions.items():  # OSError here: refused before anything is kept
            self.log.append({"event": "start", "session": session, "owner": self.identity, "behalf": None,
                             "resource": resource, "reason": self.why, "wall": time.time()})

    def kept(self, topic: str, payload: dict) -> None:
        if topic == IMAGE_TOPIC:
            self.counts["camera frames"] += 1
        elif topic == PHOTO_TOPIC:
            self.counts["photos"] += 1
        elif carries(topic, payload) == "camera":
            self.counts["card pictures"] += 1
        elif carries(topic, payload) == "mic":
            self.counts["mic blocks"] += 1
            samples = sum(len(payload.get(f) or b"") for f in CONTENT[topic].fields) / 2  # int16 mono
            self.mic_s += samples / max(1, int(payload.get("rate") or 16000))

    def mark(self) -> dict[str, str]:
        return {"holds": ",".join(RESOURCES), "included": WITHHELD_BY_DEFAULT, "identity": self.identity,
                "privacy_sessions": ",".join(f"{r}:{s}" for r, s in self.sessions.items()),
                **{k.replace(" ", "_"): str(v) for k, v in self.counts.items()}}

    def close(self, why: str) -> None:
        now, seconds = time.time(), round(time.monotonic() - self.started, 3)
        frames = self.counts["camera frames"] + self.counts["photos"] + self.counts["card pictures"]
        taken = {"camera": {"frames": frames},
                 "mic": {"blocks": self.counts["mic blocks"], "audio_s": round(self.mic_s, 3)}}
        for resource, session in self.sessions.items():
            self.log.append({"event": "counted", "session": session, "owner": self.identity, **taken[resource],
                             "by": "recorder", "wall": now})
            self.log.append({"event": "end", "session": session, "owner": self.identity, "resource": resource,
                             "why": why, "wall": now, "seconds": seconds})


def private_mark() -> dict[str, str]:
    """The mark of a recording that keeps capture content out (the default)."""
    return {"holds": "", "withheld": WITHHELD_BY_DEFAULT}


def summary(metadata: dict[str, dict[str, str]], found: dict[str, int]) -> dict:
    """What `lens bus info` says of a file: the capture content found in it (by resource), and its mark."""
    mark = metadata.get(METADATA)
    holds = sorted(r for r, n in found.items() if n)
    marked = sorted(filter(None, (mark or {}).get("holds", "").split(",")))
    return {"holds": holds, "counts": found, "marked": marked if mark is not None else None,
            "identity": (mark or {}).get("identity"), "privacy_sessions": (mark or {}).get("privacy_sessions"),
            "unmarked_content": bool(set(holds) - set(marked)) if mark is not None else bool(holds)}
