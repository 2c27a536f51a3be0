"""`lens say --trace` and `lens trace --file`: one assistant session as every process's hops, in order."""

import json
import signal
import subprocess

import pytest

from tests.conftest import DEADLINE_S, drain_lines, read_json_lines, wait_line
from tests.daemons.test_assistant import assistant_system

pytest.importorskip("pocketsphinx")


def first(hops: list[dict], source: str, topic: str, after: int = -1, **summary) -> int:
    """The index of the first hop of ``source`` on ``topic`` after index ``after`` (its summary holding
    ``summary``'s words); the test fails naming it when there is none."""
    for i, hop in enumerate(hops):
        if i > after and hop["source"] == source and hop["topic"] == topic and all(
                f"{k}={v}" in hop["summary"] for k, v in summary.items()):
            return i
    pytest.fail(f"no {source} {topic} {summary or ''} after hop {after}: "
                + json.dumps([(h['source'], h['topic'], h['summary']) for h in hops], indent=0))


@pytest.mark.slow
def test_a_question_is_one_trace_across_every_process_that_answers_it_live_and_in_a_recording(
        procs, runtime, tmp_path):
    assistant_system(procs, runtime, tmp_path)
    recording = tmp_path / "session.mcap"
    recorder = procs.lens("bus", "record", "-o", str(recording), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    wait_line(recorder.stderr, "recording")
    said = procs.run_lens("say", "--trace", "--json", "what", "time", "is", "it", timeout=120)
    assert said.returncode == 0, said.stdout + said.stderr
    answer, timeline = read_json_lines(said.stdout)
    assert answer["text"].startswith("It is ")
    hops = timeline["hops"]
    asked = first(hops, hops[0]["source"], "assistant.say.request")
    assert asked == 0 and hops[0]["source"].startswith("lens-say-"), "the question is the root"
    # The session's hops in the order they must happen: the mic only behind the LED, the answer before the
    # frame that shows it, and the assistant idle last.
    focus = first(hops, "assistantd", "shell.focus.request", asked, resource="'mic'")
    lit = first(hops, "ledd", "led.state", focus, lit="True")
    granted = first(hops, "shell", "shell.capture.notice", lit, resource="'mic'", status="'granted'")
    opened = first(hops, "assistantd", "audio.mic.request", granted, on="True")
    answered = first(hops, "assistantd", "assistant.answer", opened, status="'answered'")
    card = first(hops, "assistantd", "display.card.request", answered)
    first(hops, "displayd", "display.frame", card)
    first(hops, "ledd", "led.state", answered, lit="False")
    assert hops[-1]["topic"] in ("assistant.state", "display.state", "display.frame")
    assert {"lens-say", "assistantd", "shell", "ledd", "audiod", "displayd"} <= {
        h["source"].rsplit("-", 1)[0] if h["source"].startswith("lens-say") else h["source"] for h in hops}
    assert [h["at_ms"] for h in hops] == sorted(h["at_ms"] for h in hops)
    assert all(h["gap_ms"] >= 0 for h in hops)

    # The recording keeps the trace ids: the same timeline read back from the file.
    recorder.send_signal(signal.SIGINT)
    assert recorder.wait(timeout=DEADLINE_S) == 0, drain_lines(recorder.stderr)
    read = procs.run_lens("trace", "--file", str(recording), "--count", "0", "--json")
    assert read.returncode == 0, read.stderr
    traces = {t["trace"]: t for t in read_json_lines(read.stdout)}
    assert timeline["trace"] in traces, "the question's trace is not in the recording"
    recorded = traces[timeline["trace"]]["hops"]
    # what a recorder hears is what anyone hears: requests and replies are personal, the rest the same
    public = [(h["source"], h["topic"]) for h in hops if not h["topic"].endswith((".request", ".reply"))]
    assert [(h["source"], h["topic"]) for h in recorded if not h["topic"].endswith((".request", ".reply"))] \
        [:len(public)] == public
    text = procs.run_lens("trace", "--file", str(recording), "--count", "0")
    assert f"trace {timeline['trace']}:" in text.stdout and "waited" in text.stdout
