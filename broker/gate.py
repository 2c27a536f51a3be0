"""Who may say what, and who may hear what: the broker's permission checks.

Identities are proven to the broker's ZAP handler (broker.zap): a CURVE key on the
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
  A grant the shell withdraws stops the copies at the very next message. The mic
  while nobody captures it (``audio.wake.mic``, permission ``listen``) goes the same
  way to the one listener ``privacy.capture`` names: the wake-phrase spotter.
- **Readers.** A topic the table gives ``readers`` goes the same way to them
  and the developer: a request (a card, what the wearer said) to its server, a
  reply to the one who asked (its ``to``), a recording's paths to the shell and
  the one recording. What an app asked or was answered is nobody else's to
  read. A subscription to such a topic by its name is never applied, and
  reported when the subscriber could not read it anyway.
- **Confined.** An identity of ``CONFINED`` in the table (the wake-phrase
  spotter) publishes its own topics and a node's signs of life, nothing else:
  no request, no topic anyone else may say.
- **Askers.** A request the table gives ``askers`` is theirs and the
  developer's tools' to send: the shell's word to appd, and (none at all) the
  requests that drive the simulation: no app moves the simulated battery, LED
  or touchpad, or starts and stops another's process.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Callable

import msgpack

from bus.envelope import ACK, BY_WIRE, CHANNEL, PERSONAL
from bus.keys import BROKER, DEVELOPER
from bus.topics import ANY_NODE, CONFINED, LIFE_SIGNS, LIMIT_BURST_S, TOPICS, Kind, Topic

log = logging.getLogger(__name__)

_DEVELOPER = DEVELOPER.encode()
_BROKER = BROKER.encode()
MAX_BUCKETS = 4096
REPORT_EVERY_S = 1.0
MAX_REPORT_KEYS = 1024
# The empty prefix, applied as is, would match personal channels: it is applied as every first letter instead.
_EVERYTHING = sorted({name.encode()[:1] for name in TOPICS})


# Each refusal's kind, from its reason's first words (the rest names sizes, rates and sockets): bus.refusals
# and `lens security` count by these.
KINDS = (("unknown key", "unknown key"), ("wrong pass", "wrong pass"), ("no key", "no key"),
         ("no handshake", "silent connection"), ("a broken handshake", "broken handshake"),
         ("shed:", "connections shed"), ("published by", "not its topic"), ("unknown topic", "unknown topic"),
         ("over ", "over its rate"), ("the developer's tools only", "developer only"), ("asked by", "not its asker"),
         ("subscribed to", "eavesdropping"), ("not a two-frame", "malformed"), ("names none", "malformed"),
         ("too many kinds", "other"))
MAX_WHO = 64  # senders bus.refusals names one by one (the most refused); the rest are added up


def kind_of(reason: str) -> str:
    if reason[:1].isdigit() and "bytes, the table allows" in reason:
        return "too big"
    return next((kind for start, kind in KINDS if reason.startswith(start)), "other")


class Gate:
    def __init__(self, report, summarize=lambda summary: None):
        self._report = report  # report(identity, topic, reason, uid, pid, count): publishes bus.security
        self._summarize = summarize  # summarize(summary()): publishes bus.refusals
        self.grants: dict[str, tuple[bytes, ...]] = {}  # permission -> identities the shell granted it to
        self.refused: dict[tuple, int] = defaultdict(int)  # (identity, topic, reason, uid, pid) -> count
        self._reported: dict[tuple, tuple[float, int]] = {}
        self.held = False  # refusals the once-a-second rule held back: the broker's next flush says them
        self.kinds: dict[str, int] = defaultdict(int)
        self.who: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # who -> kind -> count
        self._changed, self._summarized_at = False, -REPORT_EVERY_S
        self._buckets: dict[tuple[bytes, bytes], tuple[float, float]] = {}  # (sender, topic) -> (tokens, when)

    # --- publishing -----------------------------------------------------------------
    def why_not(self, identity: bytes, topic: bytes) -> str | None:
        """None when ``identity`` may publish ``topic``, else the reason (the broker caches the answer)."""
        spec = BY_WIRE.get(topic)
        if spec is None:
            return "unknown topic"
        who = identity.decode()
        if who in (DEVELOPER, BROKER):
            return None
        if spec.askers is not None and who not in spec.askers:
            return f"asked by {' and '.join(spec.askers)} only" if spec.askers else "the developer's tools only"
        if who in CONFINED and spec.owner != who and spec.name not in LIFE_SIGNS:
            return f"published by {'others' if spec.owner == ANY_NODE else spec.owner} only: {who} may say " \
                   "nothing but its own topics (bus.topics.CONFINED)"
        if spec.owner in (ANY_NODE, who) or spec.kind is Kind.REQUEST:
            return None
        return f"published by {spec.owner} only"

    def refuse(self, identity: bytes | None, topic: bytes, reason: str, uid: int | None = None,
               pid: int | None = None) -> None:
        """Count a refusal of ``identity`` (None: no key yet), from the peer the kernel names (uid, pid)."""
        who = identity.decode(errors="replace") if identity else "?"
        name = topic[:64].decode(errors="replace")
        key = (who, name, reason, uid, pid)
        if key not in self.refused and len(self.refused) >= MAX_REPORT_KEYS:
            key = ("?", "<other>", "too many kinds of refusal", None, None)
        self.refused[key] += 1
        kind = kind_of(key[2])
        self.kinds[kind] += 1
        # A key names itself; a process without one is known by its uid (its pid changes with every attempt).
        by = who if who != "?" else ("?" if uid is None else f"uid {uid}")
        if by in self.who or len(self.who) < MAX_REPORT_KEYS:
            self.who[by][kind] += 1
        self._changed = True
        if not self.flush(only=key) or not self._summary_due(time.monotonic()):
            self.held = True

    def summary(self) -> dict:
        """bus.refusals: counts by kind and by who (the most refused MAX_WHO; 'others' adds up the rest)."""
        totals = sorted(((sum(kinds.values()), who) for who, kinds in self.who.items()), reverse=True)
        who = {name: {"count": count, "kinds": dict(self.who[name])} for count, name in totals[:MAX_WHO]}
        if len(totals) > MAX_WHO:
            who["others"] = {"count": sum(count for count, _ in totals[MAX_WHO:]), "kinds": {}}
        return {"total": sum(self.kinds.values()), "kinds": dict(self.kinds), "who": who}

    def _summary_due(self, now: float) -> bool:
        """Publish the summary if it changed and a second has passed; whether nothing is left to publish."""
        if not self._changed:
            return True
        if now - self._summarized_at < REPORT_EVERY_S:
            return False
        self._changed, self._summarized_at = False, now
        self._summarize(self.summary())
        return True

    def flush(self, only: tuple | None = None) -> bool:
        """Report refusals not reported yet, at most once a second per (identity, topic, reason, uid, pid);
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
            log.warning("refused %s from %s (uid %s pid %s): %s (%d so far)", key[1], key[0], key[3], key[4], key[2],
                        count)
            self._report(*key, count)
        if only is None:
            done = self._summary_due(now) and done
            self.held = not done
        return done

    def limited(self, identity: bytes, spec: Topic) -> bool:
        """Whether what ``identity`` sends of ``spec`` is held to the topic's rate (bus.topics limit_hz): a
        topic others than its owner may publish, from anyone but the developer and the broker."""
        if identity in (_DEVELOPER, _BROKER) or spec.owner == identity.decode():
            return False
        return spec.owner == ANY_NODE or spec.kind is Kind.REQUEST

    def admit(self, identity: bytes, spec: Topic, now: float) -> bool:
        """One more message of ``spec`` from ``identity`` within its rate (a token bucket per sender and topic)."""
        key = (identity, spec.wire)
        burst = spec.limit_hz * LIMIT_BURST_S
        tokens, last = self._buckets.get(key) or (burst, now)
        tokens = min(burst, tokens + (now - last) * spec.limit_hz)
        if len(self._buckets) >= MAX_BUCKETS and key not in self._buckets:
            self._buckets.clear()  # senders are the broker's keys: a full table is a restart's worth of them
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True

    # --- restricted topics ---------------------------------------------------------------
    def readers(self, permission: str) -> tuple[bytes, ...]:
        return self.grants.get(permission, ()) + (_DEVELOPER,)

    def audience(self, spec: Topic, body: bytes) -> tuple[bytes, ...] | None:
        """Who reads this message of a personal topic: the granted, or the table's readers (a field's value
        for "@field"), and the developer; None when it names nobody."""
        if spec.permission:
            return self.readers(spec.permission)
        readers, payload = [], None
        for reader in spec.readers:
            if reader[:1] != "@":
                readers.append(reader.encode())
                continue
            if payload is None:
                try:
                    payload = msgpack.unpackb(body)[6]
                    payload.get
                except (ValueError, TypeError, LookupError, AttributeError, msgpack.UnpackException):
                    return None
            name = payload.get(reader[1:])
            if type(name) is str and name:
                readers.append(name.encode())
        if not readers:
            return None
        return tuple(dict.fromkeys([*readers, _DEVELOPER]))

    def on_capture(self, payload: dict) -> None:
        """privacy.capture from the shell: 'owner:resource' grants, the only way to hear a restricted topic."""
        grants: dict[str, list[bytes]] = defaultdict(list)
        for grant in payload.get("grants") or ():
            owner, _, resource = str(grant).rpartition(":")
            if owner:
                grants[resource].append(owner.encode())
        listening = payload.get("listening")
        if isinstance(listening, str) and listening:  # the mic while nobody captures: its one listener's
            grants["listen"].append(listening.encode())
        self.grants = {permission: tuple(owners) for permission, owners in grants.items()}

    # --- subscribing -------------------------------------------------------------------
    def subscriptions(self, identity: bytes | None, prefix: bytes,
                      peer: Callable[[], tuple] = lambda: ()) -> list[bytes]:
        """What to apply for a pipe of ``identity`` subscribing to ``prefix`` (None: the broker's own pipe);
        ``peer()``: the (uid, pid) a refusal names."""
        if prefix[:1] in (CHANNEL, ACK):  # a personal channel, or a lane's marker (bus.lane): one's own only
            own = identity is None or prefix.startswith(prefix[:1] + identity + CHANNEL)
            if not own:
                self.refuse(identity, prefix, "subscribed to another's personal channel", *peer())
            return [prefix] if own else []
        topic = BY_WIRE.get(prefix.partition(CHANNEL)[0])
        if topic is not None and topic.wire in PERSONAL and identity is not None:
            # Never sent under its name: the subscription reaches nothing, and says someone looked.
            if not self._may_read(identity, topic):
                self.refuse(identity, prefix, f"subscribed to {topic.name}, which is not its to read", *peer())
            return []
        return [prefix] if prefix else list(_EVERYTHING)

    @staticmethod
    def _may_read(identity: bytes, topic: Topic) -> bool:
        """Whether ``identity`` could be one of the topic's readers (a field's, or a grant's, it may be)."""
        if identity == _DEVELOPER or topic.permission:
            return True
        return any(reader[:1] == "@" or reader.encode() == identity for reader in topic.readers)
