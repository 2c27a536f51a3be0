"""A lane reads two frames a message without asking between them; a count gone wrong is refused whole."""

import os

import msgpack
import zmq

from bus.envelope import stamp
from bus.intake import Intake
from bus.lane import recv_frames
from tests.bus.test_envelope import frames_for


def pair(tmp_path):
    ctx = zmq.Context()
    out, into = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    out.bind(f"ipc://{tmp_path}/pair")
    into.connect(f"ipc://{tmp_path}/pair")
    return ctx, out, into


def read(sock, timeout_ms=5000):
    assert sock.poll(timeout_ms), "nothing arrived"
    return recv_frames(sock)


def test_messages_of_a_wrong_frame_count_are_read_whole_and_refused(tmp_path):
    ctx, out, into = pair(tmp_path)
    try:
        good = [stamp(frames_for()[0], b"demo"), frames_for()[1]]
        later = [stamp(frames_for(seq=2)[0], b"demo"), frames_for(seq=2)[1]]
        out.send_multipart(good)
        out.send_multipart([b"demo.tick", b"not a body", b"third"])  # three frames, the second no body
        out.send_multipart(later)
        intake = Intake("test")
        assert read(into) == good
        wrong = read(into)
        assert wrong == [b"demo.tick", b"not a body", b"third"]
        assert intake.accept(wrong) is None and intake.totals()["malformed"] == 1
        assert read(into) == later  # the next one starts on its own first frame
        out.send(b"demo.tick")  # a lone frame, last in the queue
        assert read(into) == [b"demo.tick"]
        assert into.poll(0) == 0
    finally:
        ctx.destroy(0)


class SlowBroker:
    """A stand-in for the broker's reliable lane that forwards at once but applies subscriptions only when
    let: the order that once confirmed a lane whose new subscriptions the broker had not yet read."""

    def __init__(self, runtime):
        from bus import keys

        self.ctx = zmq.Context()
        self.xsub, self.xpub = self.ctx.socket(zmq.XSUB), self.ctx.socket(zmq.XPUB)
        self.latch = self.ctx.socket(zmq.ROUTER)  # where a node asks how to enter: sealed, here
        self.xpub.setsockopt(zmq.XPUB_MANUAL, 1)
        pair = keys.own_pair(runtime, keys.BROKER, fallback=False)
        runtime.make_socket_dir()
        for sock in (self.xsub, self.xpub, self.latch):
            sock.setsockopt(zmq.LINGER, 0)
            sock.curve_server, sock.curve_secretkey = True, pair.secret  # no ZAP: the frames' stamp is ours
        self.xsub.bind(runtime.publish_endpoint("reliable"))
        self.xpub.bind(runtime.subscribe_endpoint("reliable"))
        self.latch.bind(runtime.latch_endpoint)
        self.xsub.send(b"\x01")
        self.held: list[bytes] = []
        self.holding = False

    def turn(self) -> None:
        """Forward what waits, stamped as the developer's; read, and apply unless holding, subscriptions."""
        from bus.envelope import ACK

        while self.latch.poll(0):
            asker, _, body = self.latch.recv_multipart()
            reply = msgpack.packb([msgpack.unpackb(body)[0], {"sealed": True, "uid": os.getuid()}])
            self.latch.send_multipart([asker, b"", reply])
        while self.xsub.poll(0):
            topic, body = self.xsub.recv_multipart()
            self.xpub.send_multipart([stamp(topic, b"developer"), body])
        while self.xpub.poll(0):
            self.held.append(self.xpub.recv())
        while self.held and not self.holding:
            data = self.held.pop(0)
            self.xpub.setsockopt(zmq.SUBSCRIBE if data[0] else zmq.UNSUBSCRIBE, data[1:])
            if data[0] and data[1:2] == ACK:
                self.xpub.send_multipart([data[1:], b""])

    def close(self) -> None:
        self.ctx.destroy(0)


def test_a_lane_is_confirmed_only_once_the_broker_has_applied_its_new_subscriptions(runtime):
    from bus.node import Node
    from tests.conftest import wait_for

    broker = SlowBroker(runtime)
    node = Node("listener", runtime)
    try:
        node.subscribe("demo.tick", lambda msg: None)
        wait_for(lambda: node._lanes["reliable"].confirmed, what="the first confirmation",
                 poll=lambda t: (broker.turn(), node.run_once(min(t, 0.01))))
        broker.holding = True
        node.subscribe("demo.status", lambda msg: None)  # a new prefix: the lane must be confirmed again
        lane = node._lanes["reliable"]
        wait_for(lambda: lane.probed, what="the probe back through the old probe subscription",
                 poll=lambda t: (broker.turn(), node.run_once(min(t, 0.01))))
        assert not lane.confirmed and broker.held  # its subscriptions are still unread: not confirmed
        broker.holding = False
        wait_for(lambda: lane.confirmed, what="the confirmation once they are applied",
                 poll=lambda t: (broker.turn(), node.run_once(min(t, 0.01))))
    finally:
        node.close()
        broker.close()
