"""The topic table tested as a table, and the schema language it is written in."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.sdk.manifest import load_all
from bus.errors import PayloadError, UnknownTopic
from bus.fields import Schema, parse_field
from bus.topics import ANY_NODE, TOPICS, Kind, Topic, _build, lookup, matches
from manager.processes import PROCESSES


def test_a_topic_declared_twice_is_refused():
    row = Topic("x.y", Kind.EVENT, "demo", {})
    with pytest.raises(ValueError, match="declared twice"):
        _build([row, row])


def test_every_owner_is_a_process_of_the_process_table_or_an_app():
    tools = {"demo", "recorder", "checker"}  # `python -m bustools.demo`, `lens bus record --snapshot`, `lens bus check --live`
    apps = set(load_all()[0])  # apps are processes of appd, declared by their manifests
    processes = {p.name for p in PROCESSES} | tools | apps
    for topic in TOPICS.values():
        assert topic.owner == ANY_NODE or topic.owner in processes, topic.name


def test_requests_end_in_request_and_have_a_derived_reply():
    for topic in TOPICS.values():
        if topic.kind is Kind.REQUEST:
            assert topic.name.endswith(".request")
            reply = TOPICS[topic.reply_topic]
            assert reply.kind is Kind.REPLY and reply.owner == topic.owner


def test_every_request_that_drives_the_simulation_is_the_developers_only():
    # An app that could speak into the mic or break the LED could fake what the wearer said or did.
    for topic in TOPICS.values():
        if ".sim." in topic.name and topic.kind is Kind.REQUEST:
            assert topic.askers == (), topic.name


def test_only_state_topics_are_latched_and_only_streams_ride_the_stream_lane():
    for topic in TOPICS.values():
        assert topic.latched == (topic.kind is Kind.STATE)
        assert (topic.lane == "stream") == (topic.kind is Kind.STREAM)
        assert topic.max_size > 0


def test_unknown_topic_error_suggests_near_names():
    with pytest.raises(UnknownTopic, match="did you mean demo.tick"):
        lookup("demo.tik")


@pytest.mark.parametrize("prefix,topic,expected", [
    ("", "power.state", True),
    ("power", "power.state", True),
    ("power.", "power.state", True),
    ("power.state", "power.state", True),
    ("pow", "power.state", False),
    ("power.state", "power.stateful", False),
])
def test_prefixes_match_whole_dotted_segments(prefix, topic, expected):
    assert matches(prefix, topic) is expected


@pytest.mark.parametrize("spec,good,bad", [
    ("int", 3, True),  # a bool is not an int on the bus
    ("int", -7, 1.5),
    ("float", 2, "2"),
    ("float", 2.5, None),
    ("str", "x", b"x"),
    ("bytes", b"\x00", "x"),
    ("bool", False, 0),
    ("list[int]", [1, 2], [1, "2"]),
    ("list", ["a", 1], {"a": 1}),
    ("dict", {"a": 1}, [1]),
])
def test_field_types(spec, good, bad):
    schema = Schema({"f": spec})
    schema.validate("t", {"f": good})
    with pytest.raises(PayloadError, match="field 'f'|missing required field 'f'"):
        schema.validate("t", {"f": bad})


def test_optional_fields_may_be_missing_or_none_but_unknown_fields_are_refused():
    schema = Schema({"a": "int", "b": "str?"})
    schema.validate("t", {"a": 1})
    schema.validate("t", {"a": 1, "b": None})
    with pytest.raises(PayloadError, match="missing required field 'a'"):
        schema.validate("t", {"b": "x"})
    with pytest.raises(PayloadError, match="unknown field.*zzz"):
        schema.validate("t", {"a": 1, "zzz": 2})
    with pytest.raises(PayloadError, match="payload must be a map"):
        schema.validate("t", [1])


EXAMPLES = {"int": 3, "float": 2.5, "str": "s", "bool": False, "bytes": b"b", "dict": {"k": 1}, "any": [1],
            "list": ["a", 1]}


def example(field):
    return [EXAMPLES[field.item]] if field.item else EXAMPLES[field.base]


@pytest.mark.parametrize("name", sorted(TOPICS))
def test_the_quick_check_says_yes_to_valid_payloads_of_every_topic(name):
    schema = TOPICS[name].schema
    full = {f.name: example(f) for f in schema.fields}
    required = {f.name: example(f) for f in schema.fields if not f.optional}
    nulls = {f.name: None if f.optional else example(f) for f in schema.fields}
    for payload in (full, required, nulls):
        schema._explain(name, payload)  # valid, as the slow loop sees it
        assert schema.quick(payload), (name, payload)


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4) | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6)


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(sorted(TOPICS)), st.data())
def test_the_quick_check_never_says_yes_to_what_the_slow_one_refuses(name, data):
    schema = TOPICS[name].schema
    # A valid payload with one thing changed: a field set to anything (or an unknown one added), or one left out.
    payload = {f.name: example(f) for f in schema.fields if not f.optional or data.draw(st.booleans())}
    key = data.draw(st.sampled_from([f.name for f in schema.fields] + ["zzz"]))
    if data.draw(st.booleans()):
        payload[key] = data.draw(values)
    else:
        payload.pop(key, None)
    if schema.quick(payload):
        schema._explain(name, payload)  # raises PayloadError if the quick check was wrong


def test_a_bad_type_spec_names_the_field():
    with pytest.raises(ValueError, match="field 'speed'.*unknown type 'fast'"):
        parse_field("speed", "fast")


def test_json_schema_is_derived_from_the_table():
    schema = TOPICS["demo.wave"].schema.json_schema()
    assert schema["properties"]["samples"] == {"type": "array", "items": {"type": "number"}}
    assert schema["required"] == ["samples", "t"]
    assert schema["additionalProperties"] is False


def test_a_failed_reply_must_say_why():
    reply = TOPICS["demo.echo.reply"]
    reply.validate({"to": "a", "cid": 1, "ok": False, "error": "no"})
    with pytest.raises(PayloadError, match="must say why"):
        reply.validate({"to": "a", "cid": 1, "ok": False})
    with pytest.raises(PayloadError, match="result"):
        reply.validate({"to": "a", "cid": 1, "ok": True, "result": {"text": 1, "n": 1}})


def test_every_rate_in_the_table_is_what_the_code_does():
    """A row's rate_hz is what `lens bus top` shows as nominal: each is the figure the code publishes at."""
    from broker.broker import STATS_PERIOD_S
    from bus.service import HEARTBEAT_S
    from bustools import demo
    from daemons.wake.spotter import HOP_S
    from policies.loader import load

    hardware = load().hardware
    code = {
        "node.heartbeat": 1 / HEARTBEAT_S,  # the fastest a process beats unasked; supervised, slower
        "bus.broker.stats": 1 / STATS_PERIOD_S,
        "camera.frame": hardware.camera.fps,
        "audio.mic": 1 / hardware.audio.block_s,
        "audio.wake.mic": 1 / HOP_S,  # audiod gathers the device's blocks to the spotter's hop
        "demo.tick": 1 / demo.TICK_S,
        "demo.status": 1 / demo.STATUS_S,
        "demo.wave": 1 / demo.WAVE_S,
    }
    declared = {name: topic.rate_hz for name, topic in TOPICS.items() if topic.rate_hz}
    assert declared == pytest.approx(code)
    # And the other way: a topic the timers' table (cli/timers.py, itself checked against every file that arms
    # a repeating timer) says is published on a period has a rate here, not 0 ("on change").
    from cli.timers import TIMERS

    periodic = {timer.what for timer in TIMERS if timer.what in TOPICS}
    assert periodic and periodic <= set(code), periodic - set(code)


def test_bench_and_demo_topics_are_out_of_the_product_table_and_unknown_in_a_product_unit():
    import os
    import subprocess
    import sys

    from bus.topics import _DEVELOPMENT_TABLE, _TABLE
    from tests.conftest import REPO

    assert not [t.name for t in _TABLE if t.name.split(".")[0] in ("bench", "demo")]
    assert {t.name.split(".")[0] for t in _DEVELOPMENT_TABLE} == {"bench", "demo"}
    script = "from bus.topics import TOPICS; print(sorted({n.split('.')[0] for n in TOPICS} & {'bench', 'demo'}))"
    known = {}
    for place, extra in (("product unit", {"LENS_IMAGE": "1", "LENS_DEVELOPMENT": "0"}),
                         ("development unit", {"LENS_IMAGE": "1", "LENS_DEVELOPMENT": "1"}),
                         ("by hand", {"INVOCATION_ID": "a terminal that is a user service"})):
        env = {k: v for k, v in os.environ.items() if k not in ("LENS_IMAGE", "LENS_DEVELOPMENT")} | extra
        known[place] = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True,
                                      text=True, check=True).stdout.strip()
    assert known == {"product unit": "[]", "development unit": "['bench', 'demo']", "by hand": "['bench', 'demo']"}
