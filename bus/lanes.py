"""A node's lanes and who it is on them: its keys, its way in (bus.access), its subscriptions by lane, and
the topics it may publish (the table's owner column)."""

from __future__ import annotations

from bus import keys
from bus.errors import NotOwner, UnknownTopic
from bus.lane import Lane
from bus.topics import ANY_NODE, LANES, LATCHED, TOPICS, Kind, Topic, lookup, matches

_LATCHED = frozenset(LATCHED)


def lanes_for(prefix: str) -> set[str]:
    """The lanes carrying any topic under ``prefix``; UnknownTopic when the table has none."""
    if not prefix:
        return set(LANES)
    lanes = {t.lane for t in TOPICS.values() if matches(prefix, t.name)}
    if not lanes:
        raise UnknownTopic(f"no topic in bus/topics.py matches the prefix {prefix!r}")
    return lanes


class Lanes:
    """A node's lanes and identity (a part of bus.node.Node, which holds the state)."""


    def _admit(self, topic: str) -> Topic:
        """The row for a topic this node may publish (remembered), or UnknownTopic / NotOwner."""
        spec = lookup(topic)
        if spec.kind is not Kind.REQUEST:  # anyone may ask; the owner answers
            self._check_owner(topic)
        self._may_publish[topic] = spec
        return spec

    def _check_owner(self, topic: str) -> None:
        owner = TOPICS[topic].owner
        if owner not in (ANY_NODE, self.name) and not self.publish_any:
            raise NotOwner(f"{topic} is published by {owner}, not by {self.name} (bus/topics.py)")

    def _listen(self, prefix: str) -> None:
        for lane_name in sorted(lanes_for(prefix)):
            self._lane(lane_name).add_prefix(prefix)
        if prefix not in self._snapshot_prefixes and any(matches(prefix, t) for t in _LATCHED):
            self._snapshot_prefixes.add(prefix)
            self._ensure_latch()
            self._snapshot_waiting = True  # requested once the reliable lane is confirmed

    def _lane(self, name: str) -> Lane:
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = Lane(self._ctx, name, self.identity, watcher=self.watcher)
            self._poller = None
            if self._admission.enter is not None:
                lane.connect(self.runtime, self._admission.enter)
            else:
                self._admission.ask()
                self._ensure_latch()
        return lane

    def _rebuild_lanes(self) -> None:
        """The broker refused a lane's handshake: build every lane anew, with its subscriptions, to connect
        once the broker says how to enter now (bus.access); the outbox keeps what waits to be sent."""
        self._admission.refused()
        old_lanes, self._lanes = self._lanes, {}
        for name, old in old_lanes.items():
            self._send_again(old)
            old.close()
            lane = self._lane(name)
            lane.tapped = old.tapped
            for prefix in sorted(old.prefixes):
                lane.add_prefix(prefix)

    def _keys(self) -> tuple[keys.KeyPair, bytes]:
        """This node's key pair and the broker's public key, read once."""
        if self._key is None:
            self._key = (keys.own_pair(self.runtime, self.name, self._key_path), keys.broker_public(self.runtime))
        return self._key

    @property
    def key_pair(self) -> keys.KeyPair:
        return self._keys()[0]

    @property
    def broker_key(self) -> bytes:
        """The broker's public key, as this node checks the broker with it."""
        return self._keys()[1]

    @property
    def identity(self) -> str:
        """The name the broker knows this node by (its key's), which subscribers trust over self.name."""
        return self._keys()[0].identity
