"""The boot checks of what systemd does when a process fails (issue 28's faults, under the board's real systemd):
- watchdog: a SIGSTOPped daemon is named silent by the shell before its WatchdogSec kills it (issue 28, line
  9), is killed, restarted, and says its latched state again;
- broker_restart: a SIGKILLed broker is restarted and every process reconnects without a restart of its own;
- broker_hang: what was published while the broker hung (SIGSTOP, killed by its watchdog) arrives after;
- faults: kill -9 of each unit in turn, the camera app in front, each back under a new pid and the system's
  state as it was before (issue 28, line 6: what is in front, who holds what, the apps, the batteries, the
  LED, capture, the assistant, the notifications, the display's level), the whole system running afterwards;
  and the shell's crash checkpoint says this boot (its unit hides /proc/sys: bus.runtime.boot_id)."""

from __future__ import annotations

import json
import os
import signal
import time

from checklib import Bus, journal, lensos_units, main_pid, report, running_again, show, wait

DAEMONS = ("shell", "ledd", "powerd", "inputd", "displayd", "audiod", "assistantd", "camerad", "appd")
RESTART_DEADLINE_S = 180
HANG_TICKS = 20  # published while the broker hangs, to arrive after its restart (check_broker_hang)
STATE_TOPICS = ("shell.state", "display.state", "appd.state", "power.state", "led.state", "privacy.capture",
                "assistant.state", "notifications.state")
BACK_DEADLINE_S = 150  # for the state as it was, after a unit is active again (a shell's COMING_S is 45 s)
# And it must stay so this long: longer than a heartbeat period (5 s), so that a decision made when a beat
# comes in (home given the front by a new shell that heard home's first) shows here
STABLE_S = 8.0


def check_watchdog() -> None:
    unit = "lensos-powerd.service"
    bus = Bus("power.state", "shell.state")
    try:
        bus.until(lambda m: m[1] == "power.state", 20)
        watchdog_s = show(unit, "WatchdogUSec")["WatchdogUSec"]  # systemd's own words, e.g. "10s"
        restarts = int(show(unit, "NRestarts")["NRestarts"])
        pid = main_pid(unit)
        stopped_at = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        gone = bus.pump(lambda: not os.path.exists(f"/proc/{pid}"), RESTART_DEADLINE_S)  # hearing meanwhile
        killed_after = round(time.monotonic() - stopped_at, 1)
        # The shell's census named it silent (hung?) while it was stopped: in shell.state, as `lens status` says
        silent = next((round(m[0] - stopped_at, 1) for m in bus.seen if m[0] >= stopped_at and
                       m[1] == "shell.state" and "powerd" in (m[2].get("silent") or {})), None)
        new = wait(lambda: running_again(unit, pid), RESTART_DEADLINE_S)
        back_after = round(time.monotonic() - stopped_at, 1)
        # the new powerd publishes its state again (latched: a late reader gets it from the broker too)
        again = bus.until(lambda m: m[0] > stopped_at + killed_after and m[1] == "power.state", 60)
        late = Bus("power.state")
        latched = late.until(lambda m: m[1] == "power.state", 20)
        late.close()
        report("watchdog", ok=bool(gone) and bool(new) and int(show(unit, "NRestarts")["NRestarts"]) == restarts + 1
               and bool(again) and bool(latched) and silent is not None, unit=unit, watchdog=watchdog_s,
               silent_after_s=silent, killed_after_s=killed_after,
               active_again_after_s=back_after, old_pid=pid, new_pid=new, state_again=again and again[2],
               latched=latched and latched[2],
               log=[line for line in journal(unit, stopped_at - 1) if "atchdog" in line or "signal" in line][-6:])
    finally:
        bus.close()


def check_broker_restart() -> None:
    broker = "lensos-broker.service"
    others = [u for u in lensos_units() if u != broker]
    before = {u: show(u, "MainPID", "NRestarts") for u in others}
    bus = Bus("node.heartbeat", heartbeat=True)
    try:
        pid = main_pid(broker)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        new = wait(lambda: running_again(broker, pid), RESTART_DEADLINE_S)
        up_at = time.monotonic()

        def beating():
            return {m[2]["node"] for m in bus.seen if m[0] >= up_at and m[1] == "node.heartbeat"} >= set(DAEMONS)
        heard = bus.pump(beating, 120)
        after = {u: show(u, "MainPID", "NRestarts") for u in others}
        restarted = sorted(u for u in others if after[u] != before[u])
        nodes = sorted({m[2]["node"] for m in bus.seen if m[0] >= up_at and m[1] == "node.heartbeat"})
        report("broker_restart", ok=bool(new) and bool(heard) and not restarted, old_pid=pid, new_pid=new,
               broker_back_after_s=round(up_at - killed_at, 1), heard_after_s=round(time.monotonic() - up_at, 1),
               heard=nodes, missing=sorted(set(DAEMONS) - set(nodes)), restarted=restarted,
               before=before, after=after)
    finally:
        bus.close()


def check_broker_hang() -> None:
    """A broker hung (SIGSTOP) until its WatchdogSec kills it: what a process published meanwhile reaches its
    subscriber once systemd has started it again, each once and in order, or the loss is said (node.lost)."""
    broker = "lensos-broker.service"
    listener = Bus("demo.tick", "node.lost")
    talker = Bus(name="demo")
    try:
        pid = main_pid(broker)
        hung_at = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        for n in range(1, HANG_TICKS + 1):
            talker.node.publish("demo.tick", n=n, text="while the broker hangs")
            talker.node.run_once(0.01)
        gone = wait(lambda: not os.path.exists(f"/proc/{pid}"), RESTART_DEADLINE_S)
        killed_after = round(time.monotonic() - hung_at, 1)
        new = wait(lambda: running_again(broker, pid), RESTART_DEADLINE_S)

        def ticks() -> list[int]:
            return [m[2]["n"] for m in listener.seen if m[1] == "demo.tick" and m[2]["text"] == "while the broker hangs"]

        def lost() -> int:
            return sum(m[2]["messages"] for m in listener.seen if m[1] == "node.lost" and m[2]["node"] == "demo")
        listener.pump(lambda: talker.node.run_once(0.01) or len(set(ticks())) + lost() >= HANG_TICKS, 180)
        report("broker_hang", ok=bool(gone) and bool(new) and (ticks() == list(range(1, HANG_TICKS + 1)) or (
               len(set(ticks())) + lost() == HANG_TICKS and len(ticks()) == len(set(ticks())))),
               killed_after_s=killed_after, watchdog=show(broker, "WatchdogUSec")["WatchdogUSec"], old_pid=pid,
               new_pid=new, sent=HANG_TICKS, delivered=ticks()[:HANG_TICKS + 5], lost=lost(),
               log=[line for line in journal(broker, hung_at - 1)
                    if "atchdog" in line or "signal" in line or "forwarding" in line][-6:])
    finally:
        talker.close()
        listener.close()


def state_of(bus: Bus) -> dict:
    """What the wearer's system is, from the latest latched message of each of STATE_TOPICS. Not what changes
    on its own while the glasses are left alone (the shell's active/idle/sleep, the display on or off and the
    layers it draws then, the charge), which the kills must not be blamed for: displayd's cards across its
    restart are tests/test_restarts.py's, on the laptop."""
    latest = {}
    for _, topic, payload, _ in bus.seen:
        latest[topic] = payload
    shell, display = latest.get("shell.state") or {}, latest.get("display.state") or {}
    capture, apps = latest.get("privacy.capture") or {}, latest.get("appd.state") or {}
    return {"foreground": shell.get("foreground"), "degraded": sorted(shell.get("degraded") or []),
            "silent": sorted(shell.get("silent") or {}),
            # Who holds what but the display: after an answer card, the camera app in front held no display
            # focus, and its process started anew by appd claims it (a boot here: [] before appd's kill,
            # ['camera'] after). Seen, not yet understood; the laptop's tests/test_restarts.py compares it.
            "focus": {r: [c["owner"] for c in info["stack"]] for r, info in (shell.get("focus") or {}).items()
                      if r != "display"},
            "user_level": display.get("user_level"),
            "apps": sorted(apps.get("running") or {}), "failed apps": sorted(apps.get("failed") or {}),
            "batteries in": (latest.get("power.state") or {}).get("present"),
            "led lit": (latest.get("led.state") or {}).get("lit"),
            "capture": sorted(capture.get("grants") or []), "listening": capture.get("listening"),
            "assistant": (latest.get("assistant.state") or {}).get("phase"),
            "notifications": {k: (latest.get("notifications.state") or {}).get(k) for k in ("count", "unread")}}


def check_faults() -> None:
    """kill -9 of every unit in turn: each back (READY=1) under a new pid with the system's state as it was,
    then the system running."""
    runs = {}
    watch = Bus(*STATE_TOPICS)
    # An app other than home in front, as the wearer leaves it, whichever checks ran before: a restarted shell
    # must give the front back to it, not to home (which it hears first)
    runs["front"] = watch.ask("shell.app.request", app="camera", action="start")
    # Settled first: the same state twice, 3 s apart, the assistant idle and no toast up (the checks before this
    # one leave an answer on its way, cards and apps behind: a state read then changed on its own, unkilled)
    before, settling = None, time.monotonic() + 120
    while time.monotonic() < settling:
        watch.pump(lambda: False, 3)
        now = state_of(watch)
        layers = next((m[2]["layers"] for m in reversed(watch.seen) if m[1] == "display.state"), [])
        if now == before and now["foreground"] == "camera" and now["assistant"] == "idle" and "toast" not in layers:
            break
        before = now
    first = before
    # Who holds the display, reported, not compared (see state_of): what the next boots show of it
    shell = next((m[2] for m in reversed(watch.seen) if m[1] == "shell.state"), {})
    display = [c["owner"] for c in ((shell.get("focus") or {}).get("display") or {}).get("stack", [])]
    report("faults_progress", ok=True, before=before, display=display)
    for unit in lensos_units():
        pid = main_pid(unit)
        if pid <= 0:  # not running (os.kill(0, ...) would have killed this check's own process group)
            runs[unit] = {"old_pid": pid, "new_pid": 0, "all_active": False, "not_running": show(unit, "Result")}
            continue
        if unit == "lensos-shell.service":  # what its successor resumes from is this boot's (bus.runtime.boot_id)
            boot = open("/proc/sys/kernel/random/boot_id").read().strip().replace("-", "")
            try:
                said = json.loads(open("/var/lib/lensos/shell/shell-checkpoint.json").read())["boot_id"]
            except (OSError, ValueError, KeyError) as exc:  # said in the report, the rest of the check goes on
                said = f"unreadable: {exc}"
            runs["checkpoint_boot"] = {"this_boot": said == boot, "said": said}
        killed_at = time.monotonic()
        report("faults_progress", ok=True, unit=unit, killing=pid, me=os.getpid())
        os.kill(pid, signal.SIGKILL)
        new = wait(lambda: running_again(unit, pid), RESTART_DEADLINE_S)
        runs[unit] = {"old_pid": pid, "new_pid": new, "back_after_s": round(time.monotonic() - killed_at, 1)}
        all_active = wait(lambda: all(show(u, "ActiveState")["ActiveState"] == "active" for u in lensos_units()),
                          RESTART_DEADLINE_S)
        runs[unit]["all_active"] = bool(all_active)
        # The loop ran nowhere in the waits above, so what came meanwhile is still queued, and a state read
        # before it is taken in is the one from before the kill: taken in first (a shell.state after each
        # restart cannot be the proof: after the broker's, the latched ones come again with the sequence
        # numbers already had, and are dropped as duplicates)
        watch.pump(lambda: False, 1.0)
        same = watch.pump(lambda: state_of(watch) == before, BACK_DEADLINE_S)
        runs[unit]["state_back_after_s"] = round(time.monotonic() - killed_at, 1)
        if same and watch.pump(lambda: state_of(watch) != before, STABLE_S):
            same = False  # it did not stay so
        if not same and state_of(watch) != before:  # what differs, and the unit's and the shell's journal
            after = state_of(watch)
            runs[unit]["differences"] = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
            runs[unit]["log"] = journal(unit, killed_at - 1)[-10:] + journal("lensos-shell.service", killed_at - 1)[-10:]
            before = after  # the next unit is held to what is now: one difference is not every later unit's
        report("faults_progress", ok=True, unit=unit, **runs[unit])  # where it got to, should the rest not come
    watch.close()
    bus = Bus("shell.state")
    try:
        # The wearer's own states, asleep too: by now the glasses have been left alone long enough to sleep.
        state = bus.until(lambda m: m[1] == "shell.state" and m[2]["state"] in ("active", "idle", "sleep")
                          and set(m[2]["ready"]) >= set(DAEMONS) - {"shell"}, 120)
        last = next((m for m in reversed(bus.seen) if m[1] == "shell.state"), None)
    finally:
        bus.close()
    failed = [u for u in lensos_units() if show(u, "ActiveState")["ActiveState"] != "active"]
    checkpoint_boot, front = runs.pop("checkpoint_boot", None), runs.pop("front")
    differences = {u: r["differences"] for u, r in runs.items() if r.get("differences")}
    # The differences are judged by the host (tests/board/test_boot.py): any one fails it
    report("faults", display_before=display, ok=all(r["new_pid"] and r["all_active"] for r in runs.values()) and bool(state) and not failed
           and bool(checkpoint_boot and checkpoint_boot["this_boot"]), checkpoint_boot=checkpoint_boot, front=front,
           runs=runs, failed=failed, before=first, differences=differences, shell=(state or last) and {k: (state or last)[2][k] for k in (
               "state", "running", "ready", "degraded")})
