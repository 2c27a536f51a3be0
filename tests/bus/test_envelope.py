"""The wire format: round trip, every way a message can be malformed, and a fuzz of decode."""

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.envelope import WIRE_VERSION, channel, counted, decode, encode, stamp
from bus.errors import MalformedMessage, PayloadError
from bus.intake import MAX_UNKNOWN_NAMES, Intake
from bus.topics import TOPICS

TICK = TOPICS["demo.tick"]


def frames_for(payload=None, seq=1, source="demo", incarnation=7):
    return encode(TICK, source, incarnation, seq, payload or {"n": 1, "text": "a"})


def stamped(frames, sender="demo"):
    """As a subscriber gets them: the broker stamps the identity it verified on the topic frame."""
    return [stamp(frames[0], sender.encode()), frames[1]]


def test_round_trip_keeps_header_and_payload():
    msg = decode(frames_for({"n": 5, "text": "héllo"}, seq=9))
    assert (msg.topic, msg.source, msg.incarnation, msg.seq) == ("demo.tick", "demo", 7, 9)
    assert msg.payload == {"n": 5, "text": "héllo"}
    assert msg.mono_ns > 0 and msg.wall_ns > 0
    assert decode(msg.frames()) == msg


def test_encode_refuses_a_message_over_the_topic_size_limit():
    with pytest.raises(PayloadError, match="bytes, the table allows"):
        encode(TICK, "demo", 1, 1, {"n": 1, "text": "x" * (TICK.max_size + 1)})


def body(*items):
    return msgpack.packb(list(items))


GOOD = [WIRE_VERSION, "demo", 7, 1, 1, 1, {"n": 1, "text": "a"}]

MALFORMED = {
    "one frame": [b"demo.tick"],
    "four frames": [b"demo.tick", b"x", b"y", b"z"],
    "sender not ascii": [b"demo.tick", body(*GOOD), b"\xff"],
    "channel without a topic": [b"\x00developer", body(*GOOD), b"developer"],
    "topic not utf-8": [b"\xff\xfe", body(*GOOD)],
    "unknown topic": [b"no.such.topic", body(*GOOD)],
    "random bytes": [b"demo.tick", b"\xc1\xc1\xc1"],
    "truncated msgpack": [b"demo.tick", body(*GOOD)[:-3]],
    "not an array": [b"demo.tick", msgpack.packb({"a": 1})],
    "short array": [b"demo.tick", body(*GOOD[:5])],
    "wrong version": [b"demo.tick", body(99, *GOOD[1:])],
    "source not str": [b"demo.tick", body(GOOD[0], 5, *GOOD[2:])],
    "seq zero": [b"demo.tick", body(*GOOD[:3], 0, *GOOD[4:])],
    "timestamps wrong type": [b"demo.tick", body(*GOOD[:4], "now", *GOOD[5:])],
    "payload wrong type": [b"demo.tick", body(*GOOD[:6], {"n": "1", "text": "a"})],
    "payload missing field": [b"demo.tick", body(*GOOD[:6], {"n": 1})],
    "payload not a map": [b"demo.tick", body(*GOOD[:6], [1, 2])],
    "oversized": [b"demo.tick", b"\x00" * (TICK.max_size + 1)],
    "deep nesting": [b"demo.tick", b"\x91" * 100_000 + b"\x00"],
    "huge declared length": [b"demo.tick", b"\xdd\xff\xff\xff\xff"],
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_every_kind_of_malformed_message_is_refused_with_a_reason(kind):
    with pytest.raises(MalformedMessage) as info:
        decode(MALFORMED[kind])
    assert info.value.reason


def test_intake_counts_malformed_per_topic_and_keeps_going():
    intake = Intake("t")
    for frames in MALFORMED.values():
        assert intake.accept(frames) is None
    assert intake.accept(stamped(frames_for())) is not None
    assert intake.counters["no.such.topic"].malformed == 1
    assert intake.counters["<undecodable>"].malformed == 5
    assert intake.totals()["malformed"] == len(MALFORMED)
    assert intake.counters["demo.tick"].received == 1


def test_intake_tells_gaps_from_duplicates_and_restarts():
    intake = Intake("t")
    assert intake.accept(stamped(frames_for(seq=1)))
    assert intake.accept(stamped(frames_for(seq=4)))  # 2 and 3 were lost upstream
    assert intake.accept(stamped(frames_for(seq=4))) is None  # the same message twice
    assert intake.accept(stamped(frames_for(seq=1, incarnation=8)))  # the publisher restarted
    counters = intake.counters["demo.tick"]
    assert (counters.received, counters.drops, counters.duplicates) == (3, 2, 1)


def test_a_header_that_names_another_sender_than_its_key_is_dropped_as_forged():
    intake = Intake("t")
    assert intake.accept(stamped(frames_for(source="shell"), sender="music")) is None
    assert intake.forged == 1 and "claims to be 'shell' but is 'music'" in intake.counters["demo.tick"].last_error
    assert intake.accept(frames_for(source="demo")) is None  # not through the broker: no stamp, no trust
    assert intake.accept(stamped(frames_for(source="shell"), sender="developer")).source == "shell"  # the developer


def test_a_restricted_topic_on_a_personal_channel_is_that_topic():
    frames = encode(TOPICS["audio.mic"], "audiod", 1, 1, {"owner": "a", "seq": 1, "rate": 16000, "mono_ns": 1,
                                                          "pcm": b"ab"})
    msg = decode([stamp(channel(b"assistantd", frames[0]), b"audiod"), frames[1]])
    assert (msg.topic, msg.sender, msg.payload["pcm"]) == ("audio.mic", "audiod", b"ab")


def test_a_counted_personal_channel_round_trips_as_the_docstring_says():
    frames = encode(TOPICS["demo.echo.reply"], "demo", 5, 9, {"to": "ann", "cid": 3, "ok": False, "error": "no"})
    topic_frame = counted(b"ann", frames[0], b"demo", 12)
    assert topic_frame == b"\0ann\0demo.echo.reply\0demo\0" + b"12"  # as bus.envelope's docstring shows it
    for _ in range(2):  # read anew, then with the uncounted part remembered
        msg = decode([topic_frame, frames[1]])
        assert (msg.topic, msg.sender, msg.count, msg.source, msg.incarnation, msg.seq) == \
            ("demo.echo.reply", "demo", 12, "demo", 5, 9)
        assert msg.payload == {"to": "ann", "cid": 3, "ok": False, "error": "no"}
    assert decode(stamped(frames)).count == 0  # anywhere else there is no count
    for bad in (b"", b"0", b"-1", b"1x", b"\xd9\xa0", b"1" * 21):
        with pytest.raises(MalformedMessage, match="count is not a number"):
            decode([b"\0ann\0demo.echo.reply\0demo\0" + bad, frames[1]])


def test_intake_finds_gaps_on_a_personal_channel_by_the_broker_s_count():
    intake = Intake("t")
    reply = TOPICS["demo.echo.reply"]

    def arrives(seq, count, incarnation=5):
        frames = encode(reply, "demo", incarnation, seq, {"to": "ann", "cid": seq, "ok": False, "error": "no"})
        return intake.accept([counted(b"ann", frames[0], b"demo", count), frames[1]]) is not None
    # The publisher's sequence jumps (its replies to others), the channel's count does not: no gap.
    assert arrives(1, 1) and arrives(4, 2) and arrives(9, 3)
    assert intake.counters["demo.echo.reply"].drops == 0
    assert not arrives(9, 4)  # sent again (a publisher after a broker died): a duplicate, by its sequence
    assert arrives(12, 6)  # one sent on the channel never came: one lost (the duplicate's count is no gap)
    assert intake.counters["demo.echo.reply"].drops == 1
    assert arrives(13, 1)  # a new broker counts afresh: nothing to compare with
    assert arrives(14, 2) and intake.counters["demo.echo.reply"].as_dict()["drops"] == 1
    assert intake.counters["demo.echo.reply"].duplicates == 1


def test_a_value_from_the_broker_s_cache_is_checked_against_its_channel():
    """A personal topic's latched value comes live on the channel, counted, and from the cache without a count
    (bus.latch): the channel decides what is a duplicate, and the cache's tells no gap."""
    intake = Intake("t")
    state = TOPICS["notifications.state"]

    def body(seq, incarnation=5):
        return encode(state, "notifications", incarnation, seq, {"count": seq, "unread": 0})

    def live(seq, count, incarnation=5):
        frames = body(seq, incarnation)
        return intake.accept([counted(b"home", frames[0], b"notifications", count), frames[1]]) is not None

    def cached(seq, incarnation=5):
        frames = body(seq, incarnation)
        return intake.accept([stamp(frames[0], b"notifications"), frames[1]], cached=True) is not None
    assert cached(1) and live(2, 1)  # the first snapshot, then live: no count before it to compare with
    assert live(3, 2) and live(4, 3)
    assert not cached(4)  # a new snapshot holds what came live: no second delivery, no gap
    assert cached(5) and not live(5, 4)  # the cache read before its live copy came: that copy is the duplicate
    assert live(6, 5) and cached(7, incarnation=6)  # a restarted publisher's value is new
    counters = intake.counters["notifications.state"]
    assert (counters.drops, counters.duplicates, counters.received) == (0, 2, 7)


@pytest.mark.parametrize("topic_frame, reason", [
    (b"demo.tick\0de\0mo", "a NUL in the sender's stamp"),
    (b"demo.tick\0d\xe9mo", "sender is not ASCII"),
    (b"\0assistantd", "a personal channel without a topic"),
])
def test_a_bad_stamp_is_malformed(topic_frame, reason):
    with pytest.raises(MalformedMessage, match=reason):
        decode([topic_frame, frames_for()[1]])


def test_unknown_topic_names_are_bounded():
    intake = Intake("t")
    for i in range(MAX_UNKNOWN_NAMES * 3):
        intake.accept([f"junk.{i}".encode(), b"x"])
    assert len(intake.counters) <= MAX_UNKNOWN_NAMES + 1
    assert intake.totals()["malformed"] == MAX_UNKNOWN_NAMES * 3


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=0, max_size=4))
def test_decode_of_arbitrary_frames_only_ever_raises_malformed(frames):
    frames = [b"demo.tick", *frames[1:]] if frames and frames[0][:1] == b"d" else frames
    try:
        decode(frames)
    except MalformedMessage:
        pass


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=10) | st.binary(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(json_like, min_size=7, max_size=7), st.sampled_from(sorted(TOPICS)))
def test_decode_of_well_formed_msgpack_with_wrong_contents_only_ever_raises_malformed(items, topic):
    try:
        decode([topic.encode(), msgpack.packb(items)])
    except MalformedMessage:
        pass


def test_a_value_msgpack_cannot_carry_is_a_payload_error():
    with pytest.raises(PayloadError, match="cannot be encoded"):
        encode(TOPICS["bus.broker.stats"], "broker", 1, 1,
               {"uptime_s": 1.0, "lanes": {"x": 2**70}, "latched": 0, "pid": 1})


def test_topic_frames_are_remembered_within_a_bound(monkeypatch):
    from bus import envelope
    monkeypatch.setattr(envelope, "_HEADS", {})
    monkeypatch.setattr(envelope, "MAX_HEADS", 8)
    for i in range(20):
        assert decode(stamped(frames_for(source=f"s{i}"), sender=f"s{i}")).sender == f"s{i}"
        assert 0 < len(envelope._HEADS) <= 8
    for bad in (b"no.such.topic\x00s1", b"demo.tick\x00\xff", b"\x00reader"):  # refused, never remembered
        with pytest.raises(MalformedMessage):
            decode([bad, frames_for()[1]])
        assert bad not in envelope._HEADS
    # a remembered frame reads the same as a new one: the personal channel's topic and the stamp
    personal = [stamp(channel(b"reader", b"demo.tick"), b"demo"), frames_for()[1]]
    first, again = decode(personal), decode(personal)
    assert (first.topic, first.sender) == (again.topic, again.sender) == ("demo.tick", "demo")
