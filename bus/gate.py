"""Who may say what, and who may hear what: the broker's permission checks.

Identities are proven to the broker's ZAP handler (bus.zap): a CURVE key on the
latch, and on the lanes a pass bound to that key and to the uid and pid the kernel
reports (bus.access), or CURVE there too where the lanes are sealed. So what is
checked here is never a name a message claims for itself.

- **Publishing.** A topic's owner in the table publishes it; anyone may send a
  REQUEST (its owner decides whether to serve it) or a topic owned by
  ``ANY_NODE``; the developer's identity may publish anything. Anything else
  is dropped at the broker, counted, logged and reported on
  ``bus.security``, and the sender gets no effect.
- **Restricted topics** (a ``permission`` in the table: camera frames, mic
  audio) reach only the identities the shell granted that capture
  (``privacy.capture``) and the developer. The broker sends them on personal
  channels, ``\\0<identity>\\0<topic>``, and lets a pipe subscribe only to its
  own identity's channel, so no prefix, not even the empty one, reaches another's.
  A grant the shell withdraws stops the copies at the very next message.
- **Replies** go the same way to the one who asked (the reply's ``to``) and
  the developer: what displayd showed an app, or what a server answered it, is
  nobody else's to read.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

import msgpack

from bus.envelope import ACK, BY_WIRE, CHANNEL
from bus.keys import BROKER, DEVELOPER
from bus.topics import ANY_NODE, TOPICS, Kind

log = logging.getLogger(__name__)

_DEVELOPER = DEVELOPER.encode()
REPORT_EVERY_S = 1.0
MAX_REPORT_KEYS = 1024
# The empty prefix, applied as is, would match personal channels: it is applied as every first letter instead.
_EVERYTHING = sorted({name.encode()[:1] for name in TOPICS})


class Gate:
    def __init__(self, report):
        self._report = report  # report(identity, topic, reason, count): publishes bus.security
        self.grants: dict[str, tuple[bytes, ...]] = {}  # permission -> identities the shell granted it to
        self.refused: dict[tuple[str, str, str], int] = defaultdict(int)
        self._reported: dict[tuple[str, str, str], tuple[float, int]] = {}
        self.held = False  # refusals the once-a-second rule held back: the broker's next flush says them

    # --- publishing -----------------------------------------------------------------
    def why_not(self, identity: bytes, topic: bytes) -> str | None:
        """None when ``identity`` may publish ``topic``, else the reason (the broker caches the answer)."""
        spec = BY_WIRE.get(topic)
        if spec is None:
            return "unknown topic"
        who = identity.decode()
        if who in (DEVELOPER, BROKER) or spec.owner in (ANY_NODE, who) or spec.kind is Kind.REQUEST:
            return None
        return f"published by {spec.owner} only"

    def refuse(self, identity: bytes | None, topic: bytes, reason: str) -> None:
        who = identity.decode(errors="replace") if identity else "?"
        name = topic[:64].decode(errors="replace")
        key = (who, name, reason)
        if key not in self.refused and len(self.refused) >= MAX_REPORT_KEYS:
            key = ("?", "<other>", "too many kinds of refusal")
        self.refused[key] += 1
        if not self.flush(only=key):
            self.held = True

    def flush(self, only: tuple[str, str, str] | None = None) -> bool:
        """Report refusals not reported yet, at most once a second per (identity, topic, reason);
        whether all of them (or ``only``'s) are reported now."""
        now, done = time.monotonic(), True
        for key in [only] if only else list(self.refused):
            count = self.refused[key]
            last_at, last_count = self._reported.get(key, (-REPORT_EVERY_S, 0))
            if count == last_count:
                continue
            if now - last_at < REPORT_EVERY_S:
                done = False
                continue
            self._reported[key] = (now, count)
            log.warning("refused %s from %s: %s (%d so far)", key[1], key[0], key[2], count)
            self._report(*key, count)
        if only is None:
            self.held = not done
        return done

    # --- restricted topics ---------------------------------------------------------------
    def readers(self, permission: str) -> tuple[bytes, ...]:
        return self.grants.get(permission, ()) + (_DEVELOPER,)

    @staticmethod
    def addressee(body: bytes) -> tuple[bytes, ...] | None:
        """Who reads a reply: the asker it names, and the developer; None when it names nobody."""
        try:
            to = msgpack.unpackb(body)[6]["to"]
        except (ValueError, TypeError, LookupError, msgpack.UnpackException):
            return None
        if type(to) is not str or not to:
            return None
        return (_DEVELOPER,) if to == DEVELOPER else (to.encode(), _DEVELOPER)

    def on_capture(self, payload: dict) -> None:
        """privacy.capture from the shell: 'owner:resource' grants, the only way to hear a restricted topic."""
        grants: dict[str, list[bytes]] = defaultdict(list)
        for grant in payload.get("grants") or ():
            owner, _, resource = str(grant).rpartition(":")
            if owner:
                grants[resource].append(owner.encode())
        self.grants = {permission: tuple(owners) for permission, owners in grants.items()}

    # --- subscribing -------------------------------------------------------------------
    def subscriptions(self, identity: bytes | None, prefix: bytes) -> list[bytes]:
        """What to apply for a pipe of ``identity`` subscribing to ``prefix`` (None: the broker's own pipe)."""
        if prefix[:1] in (CHANNEL, ACK):  # a personal channel, or a lane's marker (bus.lane): one's own only
            own = identity is None or prefix.startswith(prefix[:1] + identity + CHANNEL)
            if not own:
                self.refuse(identity, prefix, "subscribed to another's personal channel")
            return [prefix] if own else []
        return [prefix] if prefix else list(_EVERYTHING)
