"""A lane reads two frames a message without asking between them; a count gone wrong is refused whole."""

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
