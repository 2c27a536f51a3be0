"""Requests and replies: a node's calls waiting for their answers, and the requests it serves."""

from __future__ import annotations

import logging
from typing import Callable

from bus.envelope import Message
from bus.errors import BusError, RequestFailed, RequestRefused, RequestTimeout
from bus.slotted import Slotted
from bus.timers import Timer
from bus.topics import TOPICS, Kind, from_owner, lookup

log = logging.getLogger(__name__)


class Call(Slotted):
    __slots__ = ("topic", "reply", "callback", "timer")

    def __init__(self, topic: str):
        self.topic = topic
        self.reply: Message | None = None
        self.callback: Callable[[dict | None, BusError | None], None] | None = None
        self.timer: Timer | None = None


class Calls:
    """Request and reply (a part of bus.node.Node, which holds the state)."""


    def _prepare_call(self, topic: str) -> tuple[int, Call]:
        spec = lookup(topic)
        if spec.kind is not Kind.REQUEST:
            raise BusError(f"{topic} is a {spec.kind.value} topic, not a request")
        if spec.reply_topic not in self._reply_topics:
            self._reply_topics.add(spec.reply_topic)
            self._listen(spec.reply_topic)
        cid = next(self._cids)
        call = self._calls[cid] = Call(topic)
        return cid, call

    def _on_reply(self, msg: Message) -> None:
        if msg.payload["to"] != self.name:
            return
        if not from_owner(msg.topic, msg.source):  # a reply comes from the request's server, its owner
            self.intake.not_from_owner(msg, TOPICS[msg.topic].owner)
            return
        if isinstance(msg.payload.get("result"), dict):
            # Even a late answer (its call timed out here): the shell counts on the pace it named from now on.
            self._follow_pace(msg.payload["result"])
        call = self._calls.get(msg.payload["cid"])
        if call is None or call.topic != msg.topic[: -len(".reply")] + ".request":
            return  # a late answer to a request that timed out
        call.reply = msg
        if call.callback is not None:
            del self._calls[msg.payload["cid"]]
            call.timer.cancel()
            try:
                result, error = result_of(msg), None
            except RequestFailed as exc:
                result, error = None, exc
            with self.tracing(msg.trace):  # the answer continues the question's trace
                self._call_handler(call.callback, result, error)

    def _expire(self, cid: int, timeout: float) -> None:
        call = self._calls.pop(cid, None)
        if call is not None:
            error = RequestTimeout(f"no reply to {call.topic} from {lookup(call.topic).owner} within {timeout:g} s")
            self._call_handler(call.callback, None, error)

    def _on_request(self, msg: Message) -> None:
        spec = TOPICS[msg.topic]
        cid = msg.payload["cid"]
        try:
            result = self._servers[msg.topic](msg) or {}
            self.publish(spec.reply_topic, to=msg.source, cid=cid, ok=True, result=result)
        except RequestRefused as exc:
            self.publish(spec.reply_topic, to=msg.source, cid=cid, ok=False, error=str(exc) or "refused")
        except Exception as exc:  # a bug in the server must still answer the caller
            self.handler_errors += 1
            log.exception("%s: handler for %s failed", self.name, msg.topic)
            self.publish(spec.reply_topic, to=msg.source, cid=cid, ok=False,
                         error=f"internal error in {self.name}: {type(exc).__name__}: {exc}")


def result_of(reply: Message) -> dict:
    payload = reply.payload
    if not payload["ok"]:
        owner = reply.source
        raise RequestFailed(f"{reply.topic[:-len('.reply')]}.request refused by {owner}: {payload['error']}")
    return payload.get("result") or {}
