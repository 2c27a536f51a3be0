"""The shell on the bus: what arrives goes into ShellCore, what it decides goes out, latched.

One handler per input, each ending in ``settle()``, which is the only place
anything is published. The order inside settle is the privacy promise:
the audit record of a capture is on disk (fsync'ed) before the grant goes
out, and grants and withdrawals (``privacy.capture``) go out before the
owners are told, so a capturing daemon never lags the owner it serves.

The LED command carries a counter (``cmd``) that ledd echoes back; a
read-back for any other command is stale and ignored, so an LED being
switched off can never confirm a capture that is just starting.

The shell keeps a checkpoint of its decisions in the state directory after
every change, so a shell that crashed and was restarted carries on with
the same focus stacks, grants and LED command instead of a blank slate.
The checkpoint is data with a schema (shell.checkpoint), checked before it
is used; one that does not pass is refused with a log and the shell starts
fresh.

Over 400 lines: one short handler per input the shell hears, all feeding the
one settle() whose order is the promise above; apart, that order would be
scattered across modules.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path

from bus.envelope import Message
from bus.keys import DEVELOPER
from bus.errors import RequestRefused
from bus.node import Node
from bus.audit import AuditLog
from bus.runtime import boot_id, this_boot, write_atomically
from bus.timers import Timer
from manager.processes import wearer_capturers
from shell import checkpoint, machine
from shell.apps import Apps
from shell.census import Census
from shell.core import CAPTURERS, LISTENER, ShellCore
from shell.focus import Notice
from policies.loader import Policy
from shell.privacy import CAPTURE_RESOURCES, CaptureNotice

SAVES = machine.sources("saved")  # where the machine waits for what runs to be saved (critical) before it stops

log = logging.getLogger(__name__)
logging.getLogger("transitions").setLevel(logging.WARNING)  # every callback at INFO drowns the shell's own log

AUDIT_FILE = "privacy-audit.jsonl"
SAVED_FILE = "saved-state.json"  # written at critical, restored by the next boot
CHECKPOINT_FILE = "shell-checkpoint.json"  # survives a crash of the shell, not a reboot
PICKLED_CHECKPOINT = "shell-checkpoint.pickle"  # an older shell's: never read (unpickling runs code)
ENDED_SHOW_S = 8.0  # how long the HUD says a capture was ended by the system (a full disk...)
WEARER_CAPTURERS = wearer_capturers()  # the process table's: who captures for the wearer with no manifest


def _exists(pid) -> bool:
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's (an app's): there
    return True


class ShellDaemon:
    def __init__(self, node: Node, policy: Policy, state_dir: Path):
        self.node = node
        self.policy = policy
        self.state_dir = state_dir
        self.audit = AuditLog(state_dir / AUDIT_FILE)
        now = time.monotonic()
        self.started = now
        restored = self._take_saved()
        self.core = ShellCore(policy, now, restored=restored)
        # LED command counter; random so an old shell's reports never match (os.urandom: secrets loads libcrypto)
        self.cmd = int.from_bytes(os.urandom(4)) >> 1
        self.sessions: dict[tuple[str, str], dict] = {}  # open audit sessions
        self.boot_s: float | None = None
        self.census = Census(node.name, policy.focus.liveness.heartbeat_timeout_s)
        self.nodes = self.census.nodes  # who is on the bus: name -> pid, last heartbeat, ... (shell.census)
        self.published: dict[str, dict] = {}
        self.timer: Timer | None = None
        self.ended: dict | None = None  # a capture the system ended, on the HUD for ENDED_SHOW_S (_tell_wearer)
        self.lost: dict[str, int] = {}  # process -> messages it accepted and could not deliver (node.lost)
        self.ended_timer: Timer | None = None
        self._resume_checkpoint()
        self.apps = Apps(node, policy, self.core, self.settle)
        if restored and self.core.state == "booting":  # a boot after a critical shutdown, not a crash resumed
            self.apps.bring_back(restored.get("foreground"))
        node.subscribe("node.heartbeat", self.on_node)
        node.subscribe("bus.departed", self.on_departed)
        node.subscribe("node.bye", self.on_node)
        node.subscribe("node.lost", self.on_lost)
        node.subscribe("led.state", self.on_led)
        node.subscribe("power.state", self.on_power)
        node.subscribe("camera.session", self.on_counted)
        node.subscribe("audio.session", self.on_counted)
        node.subscribe("input.gesture", self.on_input)
        node.subscribe("assistant.asked", self.on_input)
        node.serve("shell.focus.request", self.on_focus_request)
        node.serve("shell.release.request", self.on_release)
        node.serve("shell.foreground.request", self.on_foreground)
        node.serve("shell.app.request", self.on_app_request)
        node.subscribe("appd.state", self.on_app_host)

    # --- inputs -------------------------------------------------------------------
    def on_lost(self, msg: Message) -> None:
        """A process's own word that messages it accepted were lost: counted in shell.state for `lens status`."""
        name = msg.payload["node"]
        if name != msg.source or msg.payload["messages"] <= 0:
            log.warning("shell: %s sent a node.lost for %s; ignored", msg.source, name)
            return
        self.lost[name] = self.lost.get(name, 0) + msg.payload["messages"]
        log.warning("shell: %s lost %d messages: %s", name, msg.payload["messages"], msg.payload["why"])
        self.settle()  # the one place anything is published

    def on_node(self, msg: Message) -> None:
        name, now = msg.payload["node"], time.monotonic()
        if name != msg.source:
            log.warning("shell: %s sent a %s for %s; ignored", msg.source, msg.topic, name)
            return
        if msg.topic == "node.bye":
            known = self.nodes.get(name)
            if known is not None and known["pid"] != msg.payload["pid"]:
                # The goodbye of a process already replaced (appd started it again before its old self had
                # finished leaving): what the new one holds is the new one's.
                log.info("shell: %s's earlier process (pid %d) said goodbye after pid %d began; kept",
                         name, msg.payload["pid"], known["pid"])
                return
            self.nodes.pop(name, None)
            self.core.owner_gone(name, now, "exited")
        else:
            known = self.nodes.get(name)
            period = msg.payload.get("period_s") or 0.0
            heard = self.census.beat(name, msg.payload["pid"], period, msg.sender, now)
            self.core.heartbeat(name, now, period)
            if heard == "back" or (heard == "same" and self.census.unproven):
                self.settle()  # no longer silent; or someone's silence can be judged now that the bus carries beats
            if heard != "new":
                return  # only deadlines moved later: the armed timer fires early and re-arms, no more
            if known is not None and name in CAPTURERS:  # restarted before its silence or its key's end showed
                self.core.owner_gone(name, now, f"restarted (pid {known['pid']} -> {msg.payload['pid']})")
            self.core.daemon_ready(name, now)
        self.settle()

    def on_departed(self, msg: Message) -> None:
        """The broker saw the last connection of a key go: every process of that key is gone, now (a
        killed process says no node.bye, and waiting for its silence would cost a heartbeat timeout)."""
        now = time.monotonic()
        for name in [n for n, v in self.nodes.items() if v.get("identity") == msg.payload["identity"]]:
            if name != self.node.name:
                log.info("shell: %s left the bus (its key's last connection closed)", name)
                del self.nodes[name]
                self.core.owner_gone(name, now, "its connection to the bus closed")
        self.settle()

    def on_led(self, msg: Message) -> None:
        p = msg.payload
        if p["cmd"] != self.cmd:
            return  # the read-back of an earlier command (or an earlier shell's): says nothing now
        self.core.led_report(p["lit"], p.get("fault"), time.monotonic())
        self.settle()

    def on_power(self, msg: Message) -> None:
        p = msg.payload
        self.core.power_report(p["present"], p["percent"], p["bridge"].get("time_s"), time.monotonic())
        self.settle()

    def on_input(self, msg: Message) -> None:
        """The wearer touched the glasses or said the wake phrase: awake, and the idle clock starts again."""
        self.core.input(time.monotonic())
        self.settle()

    def on_counted(self, msg: Message) -> None:
        """The capturing daemon's count of what a session took, added to its audit record."""
        p = msg.payload
        # (field in the message, field in the record): the mic's seconds are audio taken, not the session's
        counts = {"camera.session": (("frames", "frames"),),
                  "audio.session": (("blocks", "blocks"), ("seconds", "audio_s"))}
        if p.get("session"):
            self.audit.append({"event": "counted", "session": p["session"], "owner": p["owner"],
                               **{kept: p[field] for field, kept in counts[msg.topic]}, "by": msg.source,
                               "wall": time.time()})
        resource = CAPTURERS.get(msg.source)
        current = self.sessions.get((p["owner"], resource), {}).get("session")
        if resource and p.get("why") and current in (None, p.get("session")):  # not a newer session's claim
            self.core.capture_ended(p["owner"], resource, p["why"], time.monotonic())
            self.settle()

    def on_focus_request(self, msg: Message) -> dict:
        p, now = msg.payload, time.monotonic()
        behalf = p.get("behalf") or None
        why = self._not_permitted(msg.source, p["resource"], behalf, msg.sender)
        if why is not None:
            return {"status": "denied", "reason": why}
        decision = self.core.focus_request(msg.source, p["resource"], p["kind"], p["cls"], p["reason"], now,
                                           p.get("purpose") or "", behalf)
        self.settle()
        if decision.status == "denied":
            log.info("shell: denied %s %s: %s", msg.source, p["resource"], decision.reason)
        return {"status": decision.status, "reason": decision.reason, "beat_s": self._beat_for(msg)}

    def _not_permitted(self, source: str, resource: str, behalf: str | None, sender: str = "") -> str | None:
        """Why a focus request may not be had, or None. Capture asked for on an app's behalf (the assistant
        asked by an app) needs that app's permission, as if it asked itself; only a system process asks for
        another, and only for an installed app (a bridge peer or a tool has no capture permission).

        Without a manifest, capture is the wearer's only: a process of the table that captures for the
        wearer (its ``captures`` column: assistantd) or the developer's own tools. Any other identity (a
        bridge peer, a key nobody gave an app) was let through here as if it were a system process."""
        manifest = self.apps.manifests.get(source)
        if behalf is not None and manifest is not None:
            why = f"{source} is an app and may ask only for itself, not on behalf of {behalf}"
            log.warning("shell: %s", why)
            return why
        app = behalf or source
        if resource not in CAPTURE_RESOURCES:
            return None
        if behalf is not None and resource not in WEARER_CAPTURERS.get(source, ()) and sender != DEVELOPER:
            # Only a process that captures for others (the table's captures column) asks in another's name: a
            # bridge peer or a stray key saying "for the camera app" would be credited as the camera app.
            why = f"{source} does not capture for others: it may not ask for the {resource} on behalf of {behalf}"
            log.warning("shell: %s", why)
            self.node.publish("app.permission.denied", app=source, permission=resource,
                              call="shell.focus.request", why=why)
            return why
        if behalf is None and manifest is None:
            if resource in WEARER_CAPTURERS.get(source, ()) or sender == DEVELOPER:
                return None
            why = f"{source} is neither an app with the {resource} permission nor a process that captures for " \
                  "the wearer"
            log.warning("shell: %s", why)
            self.node.publish("app.permission.denied", app=source, permission=resource,
                              call="shell.focus.request", why=why)
            return why
        manifest = self.apps.manifests.get(app)
        if manifest is not None and manifest.may(resource):
            return None
        if manifest is None:
            why = f"{app}, for whom {source} asked, is not an app with the {resource} permission"
        else:
            why = f"{app}'s manifest does not declare the {resource} permission" + \
                (f" ({source} asked on its behalf)" if behalf else "")
        log.warning("shell: %s", why)
        self.node.publish("app.permission.denied", app=app, permission=resource,
                          call=f"shell.focus.request by {source}" if behalf else "shell.focus.request", why=why)
        return why

    def on_release(self, msg: Message) -> dict:
        resource = msg.payload["resource"]
        held = any(c.owner == msg.source for c in self.core.arbiter.stacks.get(resource, []))
        self.core.focus_release(msg.source, resource, time.monotonic())
        self.settle()
        return {"held": held, "beat_s": self._beat_for(msg)}

    def _beat_for(self, msg: Message) -> float | None:
        """The pace the asker keeps from now on. A name that is not its key's identity is on a shared key
        (the developer's, as bus.lanes tells it from the node's side)."""
        return self.core.beat_for(msg.source, app=msg.source in self.apps.manifests,
                                  shared=msg.sender != msg.source)

    def on_foreground(self, msg: Message) -> dict:
        app = msg.payload["app"]
        if app != msg.source and self.policy.focus.roles.get(msg.source) != "system_alert":
            raise RequestRefused(f"{msg.source} may bring only itself to the foreground, not {app}")
        previous = self.core.set_foreground(app, time.monotonic())
        self.settle()
        return {"previous": previous}

    def on_app_request(self, msg: Message) -> dict:
        p = msg.payload
        answer = self.apps.request(msg.source, p["app"], p["action"], set(self.nodes), time.monotonic())
        self.settle()
        return answer

    def on_app_host(self, msg: Message) -> None:
        before, now = self.apps.host["running"], time.monotonic()
        self.apps.on_host(msg.payload)
        for app, pid in before.items():
            # appd reaped it: gone now, not a heartbeat timeout later (a killed app sends no node.bye).
            if msg.payload["running"].get(app) != pid and self.nodes.get(app, {}).get("pid") == pid:
                del self.nodes[app]
                self.core.owner_gone(app, now, "its process exited")
        self.settle()

    # --- outputs: the one place anything is published ---------------------------------
    def settle(self) -> None:
        core, now = self.core, time.monotonic()
        next_check = self._judge_silence(now)
        core.tick(now)
        self.apps.arrange(set(self.nodes), now)
        if core.state in SAVES and core.saved_state is not None:
            self._save(core.saved_state)
            core.save_done(now)
        notices, core.notices = core.notices, []
        if core.ended is not None:
            self._tell_wearer(*core.ended)
            core.ended = None
        for notice in notices:  # on disk before anyone may start capturing
            if isinstance(notice, CaptureNotice) and notice.status == "granted":
                self._open_session(notice, now)
        self._publish_led()
        listening, was = core.listening, self.sessions.get((LISTENER, "listen"))
        if listening and not was:  # on disk before the spotter hears a block, as a capture's start
            self._open_session(CaptureNotice(LISTENER, "listen", "granted", "waiting for the wake phrase"), now)
        # Grants and withdrawals go out before anyone is told, so a capturing daemon
        # already knows when the owner, told it may capture, asks it to start.
        self._publish_capture()
        if was and not listening:
            self._close_session((LISTENER, "listen"), self._why_not_listening(), now)
        for notice in notices:
            self._deliver(notice, now)
        if self.boot_s is None and core.state != "booting":
            self.boot_s = round(now - self.started, 3)
        self._publish_state(now)
        self._publish_if_changed("shell.apps", **self.apps.state(set(self.nodes)))
        self._reschedule(now, next_check)

    def _tell_wearer(self, resource: str, why: str) -> None:
        """A capture ended by the system, not its owner (a full disk, the camera failing, camerad gone, the
        LED): the wearer sees it on the HUD for ENDED_SHOW_S (shell.state privacy.ended; displayd shows it),
        whether or not the app that captured says anything. No app is named: that is the privacy log's."""
        self.ended = {"resource": resource, "why": why}
        if self.ended_timer is not None:
            self.ended_timer.cancel()

        def over() -> None:
            self.ended, self.ended_timer = None, None
            self.settle()
        self.ended_timer = self.node.after(ENDED_SHOW_S, over)

    def _judge_silence(self, now: float) -> float | None:
        """The census's rules (shell.census): who is silent now, who is gone; when to look again."""
        _, gone, next_check, roll_call = self.census.check(now)
        for name, quiet in gone:
            if name in CAPTURERS:
                self.core.owner_gone(name, now, f"no heartbeat for {quiet:.1f} s")
        if roll_call is not None:  # who is up beats now: a hang told from a stalled bus
            self.node.publish("node.census", reason=roll_call)
        return next_check

    def _open_session(self, notice: CaptureNotice, now: float) -> None:
        key = (notice.owner, notice.resource)
        if key in self.sessions:  # granted again while capturing: the capture goes on, and so does its record
            return
        session = uuid.uuid4().hex[:12]
        self.sessions[key] = {"session": session, "start": now}
        self.audit.append({"event": "start", "session": session, "owner": notice.owner,
                           "behalf": self.core.privacy.behalf.get(key), "resource": notice.resource,
                           "reason": self._reason(key), "wall": time.time()})

    def _deliver(self, notice: Notice | CaptureNotice, now: float) -> None:
        if isinstance(notice, Notice):
            self.node.publish("shell.focus.notice", owner=notice.owner, resource=notice.resource,
                              status=notice.status, reason=notice.reason)
            return
        key = (notice.owner, notice.resource)
        session = None
        if notice.status == "granted":
            session = self.sessions[key]["session"]
        elif key in self.sessions:  # capture has already been withdrawn in privacy.capture
            session = self._close_session(key, notice.reason, now)
        self.node.publish("shell.capture.notice", owner=notice.owner, resource=notice.resource,
                          status=notice.status, reason=notice.reason, session=session)

    def _close_session(self, key: tuple[str, str], why: str, now: float) -> str:
        opened = self.sessions.pop(key)
        self.audit.append({"event": "end", "session": opened["session"], "owner": key[0], "resource": key[1],
                           "why": why, "wall": time.time(), "seconds": round(now - opened["start"], 3)})
        return opened["session"]

    def _why_not_listening(self) -> str:
        privacy = self.core.privacy
        if privacy.listener is None:
            return f"{LISTENER} stopped"
        mic = sorted(owner for owner, resource in [*privacy.granted, *privacy.pending] if resource == "mic")
        return f"the mic is {', '.join(mic)}'s capture" if mic else f"the glasses are in {self.core.state}"

    def _reason(self, key: tuple[str, str]) -> str:
        if key == (LISTENER, "listen"):
            return "waiting for the wake phrase (no LED: nothing is kept or sent)"
        return self.core.privacy.granted.get(key, "")

    def _publish_led(self) -> None:
        privacy = self.core.privacy
        last = self.published.get("privacy.indicator")
        if last is not None and last["on"] == privacy.led_on:
            return
        self.cmd = (self.cmd + 1) % (1 << 31)
        reason = ", ".join(f"{o}:{r}" for o, r in [*privacy.granted, *privacy.pending]) or \
            ("hold after capture" if privacy.led_on else "no capture")
        self._publish_if_changed("privacy.indicator", on=privacy.led_on, cmd=self.cmd, reason=reason)

    def _publish_capture(self) -> None:
        privacy = self.core.privacy
        grants = sorted(f"{owner}:{resource}" for owner, resource in privacy.granted)
        self._publish_if_changed("privacy.capture", grants=grants, cmd=self.cmd, fault=privacy.fault,
                                 listening=self.core.listening)

    def _publish_state(self, now: float) -> None:
        state = self.core.snapshot()
        state["nodes"] = {name: {"pid": n["pid"]} for name, n in sorted(self.nodes.items())}
        state["silent"] = self.census.silent()
        # A hung system process is as good as a missing one; a hung app is the app's trouble, named in silent.
        state["degraded"] = sorted({*state["degraded"], *(n for n in state["silent"] if n not in self.apps.manifests)})
        state["privacy"]["ended"] = self.ended
        state["boot_s"] = self.boot_s
        state["lost"] = dict(sorted(self.lost.items())) or None
        state["model"] = self.policy.profile.name
        if self._publish_if_changed("shell.state", **state):
            self._checkpoint()

    def _publish_if_changed(self, topic: str, **payload) -> bool:
        if self.published.get(topic) == payload:
            return False
        self.node.publish(topic, **payload)
        self.published[topic] = payload
        return True

    def _reschedule(self, now: float, next_check: float | None) -> None:
        wake = min((d for d in (self.core.next_deadline(), next_check) if d is not None), default=None)
        if self.timer is not None:
            self.timer.cancel()
        self.timer = None if wake is None else self.node.after(max(wake - now, 0.0) + 0.001, self.settle)

    # --- what outlives the process --------------------------------------------------------
    def _take_saved(self) -> dict | None:
        """The state a critical shutdown saved, used once: the next boot starts from it."""
        path = self.state_dir / SAVED_FILE
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("shell: %s unreadable (%s); booting without it", path, exc)
            return None
        path.replace(path.with_name("saved-state.used.json"))
        log.info("shell: restoring %s", saved)
        return saved

    def _save(self, saved: dict) -> None:
        path = self.state_dir / SAVED_FILE
        write_atomically(path, json.dumps(saved, sort_keys=True).encode())
        self.node.publish("shell.saved", path=str(path), foreground=saved.get("foreground"))

    def _checkpoint(self) -> None:
        data = checkpoint.dump(self.core.export(), boot_id=boot_id() or "", cmd=self.cmd, boot_s=self.boot_s,
                               sessions=self.sessions, published=self.published)
        write_atomically(self.state_dir / CHECKPOINT_FILE, data, durable=False)

    def _resume_checkpoint(self) -> None:
        """After a crash (same boot), carry on where the last shell left off."""
        pickled = self.state_dir / PICKLED_CHECKPOINT
        if pickled.exists():
            log.warning("shell: %s is an older shell's pickled checkpoint, never read; removed", pickled)
            pickled.unlink()
        path = self.state_dir / CHECKPOINT_FILE
        try:
            data = checkpoint.load(path.read_bytes(), self.core.export())
        except FileNotFoundError:
            return
        except (OSError, checkpoint.CheckpointError) as exc:
            log.warning("shell: checkpoint %s refused (%s); starting afresh", path, exc)
            return
        if not this_boot(data["boot_id"]) or machine.has(data["core"]["state"], "shutting_down"):
            return  # an earlier boot's (or, this boot unknown, perhaps one's): its grants and focus are not now's
        now = time.monotonic()
        self.core.restore(data["core"])
        self.core.resumed(now)
        self.cmd, self.sessions, self.boot_s = data["cmd"], data["sessions"], data["boot_s"]
        self.published = data["published"]
        # The census too: a new shell that listed nobody until each beat came in (every 5 to 30 s) told
        # every daemon that keeps things for others (shellclient.departures) that all of them had left, and
        # displayd dropped every app's cards. Each is listed until its silence says otherwise.
        for name, info in (self.published.get("shell.state") or {}).get("nodes", {}).items():
            if name != self.node.name and _exists(info.get("pid")):
                self.census.resume(name, info["pid"], self.core.periods.get(name, 0.0), now)
        log.info("shell: resumed from the checkpoint in state %s", self.core.state)

    def close(self) -> None:
        path = self.state_dir / CHECKPOINT_FILE
        if path.exists():
            path.unlink()  # a clean stop: the next start is a boot, not a resume
