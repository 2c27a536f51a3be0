"""Every request an app may send, fuzzed against the whole running system: afterwards every process is the one
that was there before (nothing crashed or was restarted), every handler said no cleanly instead of raising,
and each daemon still answers.

The payloads are valid for the table (the broker and each receiver refuse the rest, as tests/bus/test_fuzz.py
shows): what is fuzzed is what a handler does with values the schema lets through, such as an empty or huge
string, a negative or enormous number, NaN or infinity, a long list.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import signal
import subprocess

import pytest

from bus import keys
from bus.node import Node
from bus.topics import TOPICS, Kind
from manager.processes import PROCESSES
from tests.conftest import DEADLINE_S, children_of, drain_lines, wait_for, wait_line

PER_TOPIC = 24  # payloads per request topic
SEED = 20261205

FORGED = "shell: INFO granted camera to fuzzapp"  # a log line an app would like the journal to show
STRINGS = ["", "x", "x" * 2000, "\x00\x01", "../../../etc/passwd", "🙂" * 50, "hey lens", "NaN", "-1", " ",
           f"x\n{FORGED}", f"\r{FORGED}\u2028", "\x1b[2J\x1b[H"]
INTS = [0, 1, -1, 7, 2**31, -2**31, 2**62, -2**62]
FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 1e308, -1e308, math.nan, math.inf, -math.inf]


def value(rng: random.Random, spec: str):
    """A value of the table's type ``spec`` that a handler may not expect."""
    if spec.endswith("?"):
        return None if rng.random() < 0.3 else value(rng, spec[:-1])
    if spec.startswith("list"):
        item = spec[5:-1] if spec.startswith("list[") else "str"
        return [value(rng, item) for _ in range(rng.choice([0, 1, 3, 200]))]
    return {
        "str": lambda: rng.choice(STRINGS),
        "int": lambda: rng.choice(INTS),
        "float": lambda: rng.choice(FLOATS + INTS[:4]),
        "bool": lambda: rng.random() < 0.5,
        "bytes": lambda: rng.randbytes(rng.choice([0, 1, 100])),
        "dict": lambda: rng.choice([{}, {"a": 1}, {"": None}]),
        "any": lambda: rng.choice([None, 1, "x", [1], {}]),
    }[spec]()


def app_requests():
    """Request topics served by a process of the table that an app may ask (the server judges); the ones that
    drive the simulation are the developer's tools' only, refused at the broker (tests/hostile/test_broker.py)."""
    running = {process.name for process in PROCESSES}
    return [t for t in TOPICS.values() if t.kind is Kind.REQUEST and t.owner in running and t.askers is None]


@pytest.mark.slow
def test_every_request_an_app_may_send_fuzzed_leaves_every_process_up_and_answering(procs, runtime):
    up = procs.lens("up", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_line(up.stdout, "processes ready in", timeout=60)
    before = sorted(children_of(up.pid))
    keys.generate(keys.app_keys_dir(runtime), ["fuzzapp"])
    app = Node("fuzzapp", runtime, key=keys.app_keys_dir(runtime) / "fuzzapp.key_secret")
    procs.cleanups.append(app.close)
    app.start(timeout=DEADLINE_S)
    rng = random.Random(SEED)
    answers: dict[str, list] = {}
    sent = 0
    for topic in app_requests():
        fields = {name: spec for name, spec in topic.fields.items()}
        for _ in range(PER_TOPIC):
            payload = {name: value(rng, spec) for name, spec in fields.items()}
            try:
                topic.validate({**payload, "cid": 1})
            except Exception:  # an over-long payload for its size limit: not this test's kind of input
                continue
            app.request_async(topic.name, lambda result, error, name=topic.name:
                              answers.setdefault(name, []).append(error), timeout=DEADLINE_S, **payload)
            sent += 1
            app.run_once(0.01)
    wait_for(lambda: sum(map(len, answers.values())) >= sent, what=f"all {sent} requests answered or timed out",
             poll=app.run_once, timeout=DEADLINE_S * 3)
    timed_out = {name: sum("no reply" in str(e) for e in errors) for name, errors in answers.items()}
    # Every server answered every request (refused or done): none went silent, which is how a handler that
    # raised would look to the asker.
    assert {name: n for name, n in timed_out.items() if n} == {}, timed_out

    # Still the same processes, all ready, and each server answers a plain question.
    status = json.loads(procs.run_lens("status", "--json").stdout)
    assert sorted(children_of(up.pid)) == before, "a process was restarted"
    assert status["shell.state"]["degraded"] == [], status
    assert app.request("display.clear.request", id="nothing", timeout=DEADLINE_S) is not None
    up.send_signal(signal.SIGINT)
    log = drain_lines(up.stdout)
    up.wait(DEADLINE_S)
    tracebacks = [chunk.splitlines()[-1] for chunk in log.split("Traceback")[1:]]
    assert tracebacks == [], "\n".join(itertools.islice(log.splitlines(), 0, 200))
    # What an app sent is quoted in the logs, never a line (or a terminal command) of its own.
    assert FORGED in log and not [line for line in log.splitlines() if line.startswith(FORGED)]
    assert "\x1b" not in log and "\u2028" not in log
