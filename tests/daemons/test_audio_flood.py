"""audiod and the notifications app under a flood from one app: the speaker keeps working, what an outsider
can grow is bounded, and a thread that dies takes its process down (to be restarted) instead of leaving a
daemon that heartbeats over dead work."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from bus.errors import RequestFailed
from bus.service import EXIT_WORK_STOPPED
from daemons.audio.__main__ import MAX_LISTED, MAX_STREAMS
from tests.conftest import REPO
from tests.system import System, running

BIG = "x" * 60_000  # near the table's 64 KB for an event


def test_a_thread_that_dies_takes_its_process_down(procs, runtime):
    script = textwrap.dedent("""
        import threading, time
        from bus import service
        args = service.arguments("crashy", "a process whose thread dies").parse_args([])
        with service.node("crashy", args):
            threading.Thread(target=lambda: 1 / 0, name="speaker").start()
            time.sleep(60)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=procs.env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == EXIT_WORK_STOPPED, done.stderr
    assert "thread speaker died" in done.stderr and "ZeroDivisionError" in done.stderr


@pytest.mark.slow
def test_a_flood_of_sounds_and_speech_leaves_the_speaker_working_and_bounded(procs, runtime, tmp_path):
    system = System(procs, runtime, tmp_path)
    audiod = procs.start_ready("-m", "daemons.audio")
    user = system.watcher
    user.wait_state(running, "boot")
    noisy = system.app("noisy")
    noisy.ask("audio.play.request", id="x", sound="music")
    noisy.wait(lambda: [s for s in (noisy.latest.get("audio.state") or {}).get("streams", [])
                        if s["id"] == "x" and s["status"] == "playing"], "music playing")
    # The same id over and over: each replaces the last, and the ones cut short fade out faster than the
    # music they replaced (they never got as loud), so they leave the mixer before it.
    answers: list = []
    for i in range(200):
        noisy.node.request_async("audio.play.request", lambda r, e: answers.append(e), timeout=30,
                                 id="x", sound="beep" if i % 2 else "chime")
    for i in range(30):
        noisy.node.publish("audio.speak", text=BIG, app="noisy", interrupt=False, id="words")
    noisy.wait(lambda: len(answers) == 200, "every play answered", timeout=60)
    refused = []
    for i in range(MAX_STREAMS + 4):  # sounds of their own: bounded per owner, refused with why
        try:
            noisy.ask("audio.play.request", id=f"s{i}", sound="music", loop=True)
        except RequestFailed as exc:
            refused.append(str(exc))
    assert refused and all(f"at most {MAX_STREAMS}" in r for r in refused), refused
    noisy.ask("audio.stop.request")
    noisy.wait(lambda: noisy.notices("audio.played", owner="noisy", id="words", status="failed"),
               "speech beyond what may wait dropped, and said so")
    assert audiod.poll() is None, "audiod died"
    quiet = system.app("quiet")  # the speaker still plays, for another app (noisy's queued speech may go on)
    quiet.ask("audio.play.request", id="after", sound="beep")
    played = quiet.wait(lambda: quiet.notices("audio.played", owner="quiet", id="after"), "a sound after the flood")
    assert played[0]["status"] == "finished"
    assert all(len(m.payload["streams"]) <= MAX_LISTED for m in noisy.log if m.topic == "audio.state")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


@pytest.mark.slow
def test_a_flood_of_notifications_costs_the_app_little_and_the_speaker_nothing(procs, runtime, tmp_path):
    system = System(procs, runtime, tmp_path)
    procs.start_ready("-m", "daemons.audio")
    procs.start_ready("-m", "daemons.display")
    app = procs.start_ready("-m", "apps.notifications")
    user = system.watcher
    user.node.subscribe("notifications", user._keep)
    user.wait_state(running, "boot")
    user.wait(lambda: "notifications.state" in user.latest, "the app up")
    before = rss_mib(app.pid)
    phone = system.app("phone")
    for i in range(1000):
        phone.node.publish("phone.notification", id=f"n{i}", source="flood", title=f"{i} {BIG[:200]}", body=BIG)
        if i % 50 == 49:
            # Paced by what the app has taken in: what is measured is what the app keeps, not the socket's
            # queue of a developer-speed flood (apps' and the bridge's floods are rate-limited at the broker).
            phone.node.run_once(0)
            user.wait(lambda i=i: (user.latest.get("notifications.state") or {}).get("unread", 0) > i - 50,
                      "the app keeping up", timeout=120)
    user.wait(lambda: (user.latest.get("notifications.state") or {}).get("unread") == 1000, "all 1000 counted",
              timeout=120)
    grown = rss_mib(app.pid) - before
    assert user.latest["notifications.state"]["count"] == 50
    assert grown < 40, f"the notifications app grew {grown:.0f} MiB over the flood"
    chimes = user.wait(lambda: user.notices("audio.played", owner="notifications", id="chime"), "a chime")
    assert len(chimes) < 100, "one chime per notification"
    phone.ask("audio.play.request", id="after", sound="beep")
    assert phone.wait(lambda: phone.notices("audio.played", owner="phone", id="after"),
                      "a sound after the flood")[0]["status"] == "finished"


def test_an_open_speaker_whose_blocks_stop_coming_ends_the_process(monkeypatch):
    """Liveness from the work: a loop that turns over a stalled device is not alive."""
    from types import SimpleNamespace

    import daemons.audio.__main__ as audio_main

    clock, fatal = [0.0], []
    monkeypatch.setattr(audio_main.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(audio_main.service, "fatal", fatal.append)
    daemon = SimpleNamespace(device=SimpleNamespace(output=object(), input=None), mixer=SimpleNamespace(rendered=0),
                             mic_seq=0, progress={})
    for _ in range(20):  # blocks coming: alive however long
        clock[0] += audio_main.WORK_CHECK_S
        daemon.mixer.rendered += 160
        audio_main.Audiod.check_work(daemon)
    assert not fatal
    daemon.device.output = None  # closed (nothing to play): nothing is due
    clock[0] += 10 * audio_main.STALL_S
    audio_main.Audiod.check_work(daemon)
    assert not fatal
    daemon.device.output = object()
    while not fatal and clock[0] < 100 * audio_main.STALL_S:
        clock[0] += audio_main.WORK_CHECK_S
        audio_main.Audiod.check_work(daemon)
    assert fatal and "the speaker stopped" in fatal[0]
