"""The one table of every topic on the lensos bus.

Each row says what a topic carries (its fields and their types), who may
publish it, how often, how big a message may be, and its kind:

- STATE   latched: the broker keeps the last message and hands it to every
          subscriber that joins or reconnects later.
- EVENT   something happened; delivered reliably (large high-water marks,
          queued while the broker is away, gaps reported).
- REQUEST a question to the topic's owner, answered on the derived
          ``<name>.reply`` topic (kind REPLY) with the same correlation id.
- STREAM  high-rate data where the newest matters (frame descriptors, audio
          chunks): small high-water marks on a lane of its own, so a flood
          of frames can never delay or drop state and events.

Validation, the sniffer's columns, the broker's cache and checks, and the
recorder's schemas all derive from this table; nothing else declares topics.

Over 400 lines because it is one table: a row per topic, read top to bottom like
openpilot's services.py; split across files it would be several tables.
"""

from __future__ import annotations

import enum

from bus import development
from bus.errors import PayloadError, UnknownTopic
from bus.fields import Schema

ANY_NODE = "*"  # owner of topics any node may publish (probes, requests)


class Kind(enum.Enum):
    STATE = "state"
    EVENT = "event"
    REQUEST = "request"
    REPLY = "reply"
    STREAM = "stream"


# High-water marks per lane (messages per peer). The reliable lane never drops
# at any rate a node can sustain; the stream lane keeps only the freshest few.
LANE_HWM = {"reliable": 100_000, "stream": 8}
LANES = tuple(LANE_HWM)
LIMIT_BURST_S = 5.0  # a sender held to a topic's limit_hz may send this many seconds' worth at once

_DEFAULT_MAX_SIZE = {
    Kind.STATE: 64 * 1024,
    Kind.EVENT: 64 * 1024,
    Kind.REQUEST: 64 * 1024,
    Kind.REPLY: 64 * 1024,
    Kind.STREAM: 1024 * 1024,
}

BENCH_MAX_SIZE = 65 * 1024  # a 64 KiB benchmark body with the envelope around it (_DEVELOPMENT_TABLE)

_REQUEST_ENVELOPE = {"cid": "int"}
_REPLY_FIELDS = {"to": "str", "cid": "int", "ok": "bool", "error": "str?", "result": "dict?"}


def _never(payload: object) -> bool:
    return False


class Topic:
    """One row of the table. Not a dataclass: every process imports this module (see bus/slotted.py)."""

    __slots__ = ("name", "kind", "owner", "fields", "rate_hz", "max_size", "permission", "doc", "reply",
                 "reply_max_size", "readers", "askers", "limit_hz", "schema", "result_schema",
                 "latched", "quick", "wire", "lane", "personal", "starts_trace")

    def __init__(self, name: str, kind: Kind, owner: str, fields: dict[str, str], *, rate_hz: float = 0.0,
                 max_size: int = 0, permission: str | None = None, doc: str = "",
                 reply: dict[str, str] | None = None, reply_max_size: int = 0,
                 readers: tuple[str, ...] | None = None, askers: tuple[str, ...] | None = None, limit_hz: float = 20.0,
                 starts_trace: bool = False):
        self.name, self.kind, self.fields = name, kind, fields
        self.owner = owner  # the node allowed to publish it (for REQUEST: the node that serves it)
        self.rate_hz = rate_hz  # nominal rate; 0 means "on change"
        self.max_size = max_size or _DEFAULT_MAX_SIZE[kind]  # bytes of the encoded body
        self.permission = permission  # permission a subscriber needs (the broker enforces it: broker.gate)
        self.doc = doc
        self.reply = reply  # REQUEST only: fields of a successful reply's result
        self.reply_max_size = reply_max_size  # REQUEST only: bytes its reply may take (0: the kind's default)
        # Who may read it besides the developer (broker.gate): None, everyone; else identities, and "@field" for
        # the identity a payload field names. A request is its server's only, a reply its asker's ("@to"):
        # what an app asked or was answered is no other app's to read.
        if readers is None and kind is Kind.REQUEST:
            readers = (owner,)
        elif readers is None and kind is Kind.REPLY:
            readers = ("@to",)
        self.readers = readers
        # REQUEST only: the identities that may ask it besides the developer's tools (the broker holds senders to
        # it: broker.gate). None: anyone (its server decides); (): the developer's tools alone (the requests that
        # drive the simulation: no app moves the simulated battery, LED or touchpad).
        self.askers = askers
        # Messages a second the broker lets through from one sender that is not the owner (a request, a topic of
        # ANY_NODE), in bursts of up to LIMIT_BURST_S seconds' worth; the rest dropped, counted and reported.
        self.limit_hz = limit_hz
        # Published outside any trace, it begins one (bus.tracing): where a piece of the wearer's work starts.
        self.starts_trace = starts_trace
        declared = {**_REQUEST_ENVELOPE, **fields} if kind is Kind.REQUEST else dict(fields)
        self.schema = Schema(declared)
        self.result_schema = Schema(reply) if reply is not None else None
        # Derived from kind once, as plain attributes: publish reads them for every message.
        self.latched = kind is Kind.STATE  # latched: the broker keeps the last one
        # The hot paths ask this first and validate only when it says no; a reply's rules go beyond its fields.
        self.quick = self._compile_quick if kind is not Kind.REPLY else _never
        self.wire = name.encode()  # the topic frame
        # Sent on personal channels only (the broker's copy to each reader): restricted or read by some only.
        self.personal = bool(permission) or readers is not None
        self.lane = "stream" if kind is Kind.STREAM else "reliable"

    def __setattr__(self, name: str, value) -> None:
        if hasattr(self, "lane"):  # set last in __init__: from then on the row is read-only, as a table is
            raise AttributeError(f"topic {self.name}: the table is read-only ({name})")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"Topic({self.name!r}, {self.kind}, owner={self.owner!r})"

    def _compile_quick(self, payload: object) -> bool:
        valid = self.schema.quick(payload)  # the schema compiles its check on this first call
        object.__setattr__(self, "quick", self.schema.quick)  # the row's one write after __init__
        return valid

    @property
    def reply_topic(self) -> str:
        return self.name[: -len(".request")] + ".reply"

    def validate(self, payload: dict) -> None:
        self.schema.validate(self.name, payload)
        if self.kind is not Kind.REPLY:
            return
        if payload.get("ok") and self.result_schema is not None:
            self.result_schema.validate(self.name + " result", payload.get("result") or {})
        if not payload.get("ok") and not payload.get("error"):
            raise PayloadError(f"{self.name}: a failed reply must say why in 'error'")


def _reply_of(request: Topic) -> Topic:
    return Topic(
        request.reply_topic,
        Kind.REPLY,
        request.owner,
        _REPLY_FIELDS,
        permission=request.permission,
        doc=f"replies to {request.name}",
        reply=request.reply,
        max_size=request.reply_max_size,
    )


_TABLE = [
    # --- the bus itself -----------------------------------------------------
    Topic("bus.probe", Kind.EVENT, ANY_NODE, {"node": "str", "nonce": "int"}, max_size=512,
          doc="a node's own round trip through the broker: its subscriptions are live when it comes back"),
    Topic("bus.probe.stream", Kind.STREAM, ANY_NODE, {"node": "str", "nonce": "int"}, max_size=512,
          doc="the same probe on the stream lane"),
    Topic("bus.broker.stats", Kind.STATE, "broker",
          {"uptime_s": "float", "lanes": "dict", "latched": "int", "pid": "int", "refused": "int",
           "clients": "dict", "forwarding": "str?", "sealed": "bool?"}, rate_hz=0.5,
          doc="messages and bytes through each lane of the broker; number of latched topics held; messages "
              "refused (bus.security says which); clients admitted and refused by key; whether the C loop "
              "forwards ('c') or Python alone ('python': not built); whether the lanes are sealed (CURVE on every "
              "frame) or entered with a pass (bus.access)"),
    Topic("bus.security", Kind.EVENT, "broker", {"identity": "str", "topic": "str", "reason": "str", "count": "int",
                                                 "uid": "int?", "pid": "int?"},
          doc="the broker refused something from a verified identity ('?': no key yet; topic '<connect>': the "
              "connection itself): what and why, the uid and pid the kernel gives for its peer (null: unknown), "
              "and how many times so far (reported at most once a second per identity, topic, reason, uid and "
              "pid)"),
    Topic("bus.refusals", Kind.STATE, "broker", {"total": "int", "kinds": "dict", "who": "dict"},
          doc="everything the broker refused since it started, by kind (unknown key, no key, connections shed, "
              "not its topic, too big, over its rate, eavesdropping, ...) and by who (an identity, or 'uid N' for "
              "a process without a key): the count and its kinds; updated at most once a second (`lens security`)"),
    Topic("bus.departed", Kind.EVENT, "broker", {"identity": "str"},
          doc="the last connection of a key went away (a process exited, cleanly or killed): whoever watches "
              "a process by its key knows at once, not a heartbeat timeout later"),
    Topic("bus.tap", Kind.EVENT, "broker", {"readers": "int", "path": "str"}, max_size=512,
          doc="the broker's tap (a ring of what it forwards, bus/tap.py) gained or lost a watching tool: "
              "subscribing to this topic is what asks for it; with no readers left the ring is gone"),
    Topic("bus.snapshot.request", Kind.REQUEST, "recorder", {}, reply={"path": "str", "messages": "int"},
          askers=(),
          doc="a snapshot recorder (`lens bus record --snapshot S`) writes the last S seconds to a file"),
    Topic("node.heartbeat", Kind.EVENT, ANY_NODE,
          {"node": "str", "pid": "int", "incarnation": "int", "period_s": "float?"},
          rate_hz=0.2, max_size=512,  # bus.service.HEARTBEAT_S; supervised: each watchdog ping (5 s)
          doc="a process is up and its subscriptions are live, and says when its next beat is due; the shell's "
              "ready set and liveness come from these"),
    Topic("node.census", Kind.EVENT, "shell", {"reason": "str"}, max_size=512,
          doc="the shell (re)started: every process beats now, so nobody waits a heartbeat period to be seen"),
    Topic("node.bye", Kind.EVENT, ANY_NODE, {"node": "str", "pid": "int"}, max_size=512,
          doc="a process is stopping cleanly: whatever it held is released now, not at the heartbeat timeout"),
    Topic("node.lost", Kind.EVENT, ANY_NODE, {"node": "str", "messages": "int", "why": "str"}, max_size=1024,
          doc="a process could not deliver messages it had accepted (its outbox full while the broker was away "
              "or behind): said once it is back on the bus; the shell counts them"),
    # --- the shell: system state, focus, the capture LED ---------------------------
    Topic("shell.state", Kind.STATE, "shell",
          {"state": "str", "degraded": "list[str]", "ready": "list[str]", "foreground": "str?", "brightness": "float",
           # The state's properties, as shell/machine.py declares them with the states: act on these, not on names.
           # Those since 2026-12-07 may be missing (a recording or a checkpoint from before): read as false.
           "running": "bool", "recording_allowed": "bool", "remote_calls": "bool", "capture_paused": "bool",
           "display_on": "bool", "resumable": "bool?", "alive": "bool?", "wake_listening": "bool?",
           "power_at_risk": "bool?", "swapping": "bool?", "shutting_down": "bool?", "asleep": "bool?",
           "power": "dict",
           "focus": "dict", "privacy": "dict", "nodes": "dict", "silent": "dict?", "boot_s": "float?",
           "model": "str", "lost": "dict?"},
          doc="the system state as the shell decided it: what `lens status` shows and the HUD mirrors. nodes: "
              "each process heard on the bus, {pid}; silent: those whose heartbeat is overdue (hung, most likely: "
              "shell.census), {pid, since: the wall time of its last beat}; degraded: required processes missing "
              "at boot, and system processes silent"),
    Topic("shell.focus.request", Kind.REQUEST, "shell",
          {"resource": "str", "kind": "str", "cls": "str", "reason": "str", "purpose": "str?", "behalf": "str?"},
          reply={"status": "str", "reason": "str", "beat_s": "float?"},
          doc="ask for display, audio_out, mic or camera; the answer is granted, queued or denied (with why), "
              "and the heartbeat period the asker must keep from now on (null: its own; set while it captures, while "
              "an app holds or waits for anything, and while a node on the developer's shared key does). "
              "behalf: the app a system process (the assistant) asks for: its permission is checked, and the "
              "audit log names it"),
    Topic("shell.release.request", Kind.REQUEST, "shell", {"resource": "str"},
          reply={"held": "bool", "beat_s": "float?"},
          doc="give a resource back (the previous owner on its stack gets it again); beat_s as for focus"),
    Topic("shell.foreground.request", Kind.REQUEST, "shell", {"app": "str"}, reply={"previous": "str?"},
          doc="bring an app to the foreground; the one before is backgrounded and loses the display"),
    Topic("shell.focus.notice", Kind.EVENT, "shell",
          {"owner": "str", "resource": "str", "status": "str", "reason": "str"},
          readers=("@owner",),  # the reason names the taker and its own text: the owner's to read (issue 27)
          doc="focus changed for an owner: granted, queued, denied, lost, suspended, ducked, restored"),
    Topic("shell.capture.notice", Kind.EVENT, "shell",
          {"owner": "str", "resource": "str", "status": "str", "reason": "str", "session": "str?"},
          readers=("camerad", "audiod", "@owner"),  # the daemons count a grant's session; the owner is told
          doc="capture for an owner: granted (the LED is confirmed lit), refused or revoked"),
    Topic("privacy.indicator", Kind.STATE, "shell", {"on": "bool", "cmd": "int", "reason": "str"},
          doc="the shell's word to the LED driver; cmd counts commands so a stale read-back is never taken"),
    Topic("privacy.capture", Kind.STATE, "shell",
          {"grants": "list[str]", "cmd": "int", "fault": "str?", "listening": "str?"},
          doc="who may capture now (owner:resource); capture daemons also check led.state themselves. "
              "listening: the one process that may hear the mic with the LED off (the wake-phrase spotter), "
              "while the policy allows it and nobody captures or waits to capture the mic; none otherwise"),
    Topic("privacy.violation", Kind.EVENT, "checker",
          {"rule": "str", "what": "str", "mono_ns": "int", "wall_ns": "int", "messages": "list[str]"},
          doc="`lens bus check --live` saw a privacy or safety rule broken (bustools.check): which, what, when and "
              "the messages involved"),
    Topic("app.permission.denied", Kind.EVENT, "shell",
          {"app": "str", "permission": "str", "call": "str", "why": "str"},
          doc="an app asked for what its manifest does not declare: refused, and told why"),
    Topic("shell.saved", Kind.EVENT, "shell", {"path": "str", "foreground": "str?"},
          doc="critical: the state the next boot restores was written (fsync'ed) to path"),
    # --- ledd: the capture LED --------------------------------------------------------
    Topic("led.state", Kind.STATE, "ledd",
          {"lit": "bool", "cmd": "int", "fault": "str?", "brightness": "int", "backend": "str"},
          doc="the LED as read back after applying command cmd; fault names what is wrong"),
    Topic("led.sim.request", Kind.REQUEST, "ledd", {"fault": "str?"}, reply={"fault": "str?"},
          askers=(),
          doc="simulated backend only: break the LED (fault text) or mend it (none)"),
    # --- powerd: two swappable batteries and the bridge --------------------------------
    Topic("power.state", Kind.STATE, "powerd",
          {"batteries": "list[dict]", "bridge": "dict", "percent": "float?", "present": "list[bool]",
           "load_w": "float", "backend": "str"},
          doc="per battery: name, present, percent, charging, voltage, time_to_empty_s; the bridge's seconds left"),
    Topic("power.event", Kind.EVENT, "powerd", {"event": "str", "battery": "str", "percent": "float"},
          doc="removed, inserted, low, critical, bridge_low"),
    Topic("power.sim.request", Kind.REQUEST, "powerd", {"action": "str", "battery": "str", "percent": "float?"},
          reply={"present": "list[bool]"},
          askers=(),
          doc="simulated backend only: pull or insert a battery (left, right), or set its charge"),
    # --- camerad: frames through a shared-memory ring --------------------------------------
    Topic("camera.frame", Kind.STREAM, "camerad",
          {"id": "int", "slot": "int", "gen": "int", "width": "int", "height": "int", "format": "str",
           "mono_ns": "int", "owner": "str", "ring": "int"}, rate_hz=30.0, max_size=512, permission="camera",
          doc="a frame is in ring number ring at slot, valid while the slot is at generation gen"),
    Topic("camera.state", Kind.STATE, "camerad",
          {"mode": "str", "owner": "str?", "fps": "float", "frames": "int", "ring": "int", "width": "int",
           "height": "int", "backend": "str", "paused": "bool", "recording": "str?", "why": "str"},
          doc="off, preview or video; who captures; frames this session; the number of the session's frame "
              "ring (0: none); the open recording's directory"),
    Topic("camera.ring.request", Kind.REQUEST, "camerad", {}, reply={"door": "str", "ticket": "str", "ring": "int"},
          doc="a one-use ticket for the frame ring's descriptor at the door (frames.door): only for the "
              "one capturing with a lit LED"),
    Topic("camera.control.request", Kind.REQUEST, "camerad", {"mode": "str"},
          reply={"mode": "str", "path": "str?"},
          doc="off, preview, video, photo: refused unless the shell granted the caller camera capture "
              "and the LED is confirmed lit"),
    Topic("camera.sim.request", Kind.REQUEST, "camerad",
          {"image": "str?", "scale": "float?", "rotate": "float?", "tilt": "float?"}, reply={"showing": "str"},
          askers=(),
          doc="simulated backend only: show this picture (a PNG or JPEG path) to the camera, fitted and "
              "centred, at a scale of that fit, turned and tilted (degrees); or the usual pattern or "
              "folder again (none)"),
    Topic("camera.segment", Kind.EVENT, "camerad",
          {"owner": "str", "path": "str", "frames": "int", "first": "int", "last": "int", "why": "str"},
          readers=("shell", "@owner"),
          doc="a recording segment was closed and fsync'ed (checkpoint, stop, swap)"),
    Topic("camera.session", Kind.EVENT, "camerad",
          {"owner": "str", "session": "str?", "frames": "int", "why": "str?"},
          readers=("shell", "@owner"),
          doc="a capture ended: how many frames it took (a recording's: those whole on disk), for the shell's "
              "audit log; why, when its owner did not end it (the shell then takes the camera back)"),
    # --- inputd: the temple touchpad and the button -----------------------------------------
    Topic("input.gesture", Kind.EVENT, "inputd", {"gesture": "str", "source": "str", "mono_ns": "int"},
          max_size=512, starts_trace=True,
          doc="tap, double_tap, long_press, swipe_forward, swipe_back (touchpad); button, button_long"),
    Topic("input.state", Kind.STATE, "inputd", {"backend": "str", "devices": "list[str]", "fault": "str?"},
          doc="the input devices inputd reads; fault names one that went away"),
    Topic("input.sim.request", Kind.REQUEST, "inputd", {"gesture": "str"}, reply={"events": "int"},
          askers=(),
          doc="simulated backend only: play a gesture as the raw events a finger makes"),
    # --- displayd: what the wearer sees (S1), or hears instead (G1) ------------------------------
    Topic("display.card.request", Kind.REQUEST, "displayd",
          {"id": "str", "title": "str", "body": "str?", "icon": "str?", "items": "list[str]?", "selected": "int?",
           "progress": "float?", "ttl_s": "float?", "image": "bytes?", "outline": "list[float]?"},
          reply={"shown": "bool", "why": "str"},
          doc="post or replace a card (by id); shown while the app has display focus, kept until then; image: a "
              "small PNG or JPEG (displayd's scene.IMAGE_MAX), outline: a polygon over it, x, y, x, y... in its "
              "pixels (what the lens app recognised, drawn by displayd)"),
    Topic("display.shown", Kind.EVENT, "displayd",
          {"app": "str", "id": "str", "shown": "bool", "why": "str", "frame": "int", "mono_ns": "int"},
          readers=("@app",), max_size=512,
          doc="a receipt to the app alone: its card came into the wearer's view in frame (display.frame's n) at "
              "mono_ns, or went out of it while still posted (covered: why)"),
    Topic("display.clear.request", Kind.REQUEST, "displayd", {"id": "str?"}, reply={"cleared": "int"},
          doc="take one of the caller's cards down (all of them without an id)"),
    Topic("display.snapshot.request", Kind.REQUEST, "displayd", {},
          reply={"png": "bytes", "width": "int", "height": "int", "frames": "int"}, reply_max_size=4 * 1024 * 1024,
          doc="what the wearer sees now, as a PNG read back from the panel"),
    Topic("display.state", Kind.STATE, "displayd",
          {"on": "bool", "brightness": "float", "user_level": "float", "width": "int", "height": "int",
           "backend": "str", "font": "str?", "layers": "list[str]", "alert": "str?", "notice": "str?"},
          readers=("assistantd", "webview"),  # the alert's text is the wearer's (issue 27)
          doc="panel on or off, its brightness (the shell's for the state times the wearer's user_level), which "
              "layers are up (hud, card, toast, alert), the alert's and the HUD notice's text"),
    Topic("display.brightness.request", Kind.REQUEST, "displayd", {"level": "float"}, reply={"level": "float"},
          doc="the wearer's brightness, 0.1..1 (kept across restarts); dimmed further by the system state"),
    Topic("display.frame", Kind.STREAM, "displayd",
          {"n": "int", "mono_ns": "int", "layers": "list[str]", "png": "str?", "answers": "list[str]?"},
          max_size=1024,
          doc="a frame went to the panel (rendered only on change); png: the live view's file (sim); answers: the "
              "card and clear requests (source:cid) this is the first frame to show"),
    # --- audiod: the bone-conduction speaker and the microphone ------------------------------
    Topic("audio.speak", Kind.EVENT, ANY_NODE, {"text": "str", "app": "str", "interrupt": "bool", "id": "str?"},
          readers=("audiod", "webview"),  # G1 reads every card and answer aloud: no other app's to hear
          doc="say this through the bone-conduction speaker (G1 cards, alerts, the assistant's answers); "
              "heard under the speaker's focus rules for app (displayd and the shell speak for others)"),
    Topic("audio.play.request", Kind.REQUEST, "audiod",
          {"id": "str", "sound": "str", "loop": "bool?", "volume": "float?", "start_s": "float?"},
          reply={"length_s": "float"},
          doc="play a built-in sound (chime, beep, listen, music) or a WAV file by absolute path, under the "
              "caller's audio_out focus, from start_s seconds in (a paused song resumed); the same id replaces "
              "what played under it"),
    Topic("audio.stop.request", Kind.REQUEST, "audiod", {"id": "str?"}, reply={"stopped": "int"},
          doc="fade out one of the caller's sounds (all of them without an id)"),
    Topic("audio.played", Kind.EVENT, "audiod", {"owner": "str", "id": "str", "status": "str"},
          doc="a sound or utterance ended: finished, stopped, interrupted, replaced, failed"),
    Topic("audio.state", Kind.STATE, "audiod",
          {"backend": "str", "voice": "str", "rate": "int", "streams": "list[dict]", "mic": "dict",
           "xruns": "int", "fault": "str?"},
          doc="what the speaker plays (owner, id, kind, status: playing, ducked, held, ending) and the mic's "
              "owner; changes only, not levels"),
    Topic("audio.mic.request", Kind.REQUEST, "audiod", {"on": "bool"}, reply={"on": "bool", "rate": "int"},
          doc="open or close the mic for the caller: refused unless the shell granted it mic capture and "
              "the LED is confirmed lit"),
    Topic("audio.mic", Kind.EVENT, "audiod",
          {"owner": "str", "seq": "int", "rate": "int", "mono_ns": "int", "pcm": "bytes"},
          rate_hz=50.0, max_size=16 * 1024, permission="mic",
          doc="a block of the mic (int16 mono); on the reliable lane, since speech-to-text needs every "
              "block; seq shows a gap"),
    Topic("audio.wake.mic", Kind.EVENT, "audiod",
          {"owner": "str", "seq": "int", "rate": "int", "mono_ns": "int", "pcm": "bytes"},
          rate_hz=4.0, max_size=32 * 1024, permission="listen",  # a quarter second (the spotter's hop), 48 kHz max
          doc="a quarter second of the mic while nobody captures it, seq its last device block's, for the "
              "wake-phrase spotter alone: the broker "
              "hands it only to the identity privacy.capture names as listening (and the developer); "
              "never off the glasses (the bridge refuses a topic with a permission)"),
    Topic("audio.sim.mic.request", Kind.REQUEST, "audiod",
          {"text": "str?", "wav": "str?", "voice": "str?", "wpm": "int?", "when": "str?"},
          reply={"length_s": "float", "open": "bool"}, askers=(),
          doc="simulated backend only: speak text (espeak-ng) or play a WAV (absolute path) into the mic, once, "
              "when it is next open (at once if it is); when='capture': not before it is opened for a capture "
              "(the temple held: not into the wake-phrase spotter's ear, which has it until then)"),
    Topic("audio.vad", Kind.EVENT, "audiod", {"owner": "str", "speech": "bool", "seq": "int", "level_db": "float"},
          doc="speech started or ended in the mic's blocks (energy detector), at block seq"),
    Topic("audio.session", Kind.EVENT, "audiod", {"owner": "str", "session": "str?", "blocks": "int",
                                                   "seconds": "float"},
          readers=("shell", "@owner"),
          doc="a mic capture ended: how much it took, for the shell's audit log"),
    # --- assistantd: ask, and hear or see the answer ----------------------------------------------
    Topic("assistant.say.request", Kind.REQUEST, "assistantd", {"text": "str"},
          reply={"session": "str", "listening": "bool"}, starts_trace=True,
          doc="development speech-to-text: what the wearer said (after the wake phrase, or while the assistant "
              "listens, or on its own as if the temple was held); the answer follows as assistant.answer"),
    Topic("assistant.listen.request", Kind.REQUEST, "assistantd", {"template": "str"},
          reply={"session": "str"}, starts_trace=True,
          doc="an app asks the assistant to listen: what is heard goes into template's {heard} ('translate "
              "{heard} to french') and is answered as if said so; the answer is assistant.answer's session"),
    Topic("assistant.clear.request", Kind.REQUEST, "assistantd", {}, reply={"cleared": "int"},
          doc="forget the conversation so far"),
    Topic("assistant.state", Kind.STATE, "assistantd",
          {"phase": "str", "session": "str?", "trigger": "str?", "stt": "str", "llm": "str?", "remote": "bool",
           "turns": "int", "why": "str"},
          doc="idle, listening, thinking or answering; the engines; how many turns the conversation holds "
              "(never what was said)"),
    Topic("assistant.answer", Kind.EVENT, "assistantd",
          {"session": "str", "text": "str", "source": "str", "action": "str?", "status": "str", "asker": "str?"},
          readers=("webview", "@asker"),  # what the wearer is told is no app's to read (issue 27)
          doc="a session ended: its answer, from the offline intents or the LLM; status answered, interrupted, "
              "refused, unheard; read by the app that asked (asker; none: the wearer asked) and the live view"),
    Topic("assistant.action", Kind.EVENT, "assistantd",
          {"session": "str", "action": "str", "args": "dict", "app": "str"},
          readers=("@app",),
          doc="an action that belongs to an app (identify, music, notifications): the app does it and answers "
              "with assistant.told.request"),
    Topic("assistant.told.request", Kind.REQUEST, "assistantd", {"session": "str", "text": "str"}, reply={},
          doc="the app handed an assistant.action says what it told the wearer (its card or speech): the "
              "session's answer; refused from any other app, or when the session is over"),
    Topic("assistant.asked", Kind.EVENT, "assistantd", {"session": "str"}, max_size=512,
          doc="the wearer asked the assistant (the wake phrase, the temple held, `lens say`): the shell wakes "
              "the glasses as for a tap"),
    Topic("assistant.wake", Kind.EVENT, "waked", {"seq": "int", "mono_ns": "int"}, max_size=512,
          starts_trace=True,
          doc="the wake-phrase spotter heard the phrase, in the audio.wake.mic block seq (no audio, no words: "
              "it holds none any more); the assistant asks for the mic at once, behind the LED"),
    # --- apps ---------------------------------------------------------------------------------------------
    Topic("shell.app.request", Kind.REQUEST, "shell", {"app": "str", "action": "str"},
          reply={"status": "str"},
          doc="start (and bring forward) or stop an app: refused with why when it is unknown, hidden on this "
              "model, or broken; the answer is what happens next (starting, foreground, stopping, ...)"),
    Topic("shell.apps", Kind.STATE, "shell", {"apps": "dict", "foreground": "str?", "errors": "list[str]"},
          doc="every app by id: name, state (stopped, starting, running, stopping, failed, hidden) and why; "
              "the manifests that are wrong"),
    Topic("appd.process.request", Kind.REQUEST, "appd", {"app": "str", "action": "str"},
          reply={"pid": "int?"}, askers=("shell",),
          doc="the shell's word to the app host: start or stop an app's process (nobody else's is taken)"),
    Topic("appd.state", Kind.STATE, "appd", {"running": "dict", "failed": "dict", "wanted": "list[str]",
                                             "users": "dict", "shared_user": "str?"},
          doc="app processes: pid of each running one, why each failed one stopped, the ones that should run "
              "(a restarted appd starts these again), the user each runs as, and why they share appd's "
              "user when they do (null: each app is a user of its own)"),
    Topic("phone.notification", Kind.EVENT, ANY_NODE,
          {"id": "str", "source": "str", "title": "str", "body": "str?"}, starts_trace=True,
          readers=("notifications", "webview"),  # what the phone was told is the wearer's (issue 27)
          doc="a notification from the paired phone (the phone bridge; `lens notify` in development)"),
    Topic("notifications.state", Kind.STATE, "notifications",
          {"count": "int", "unread": "int", "latest": "str?"},
          readers=("displayd", "home", "webview"),  # the latest one's title is the wearer's (issue 27)
          doc="how many notifications the glasses hold and how many are unread (the HUD's count)"),
    Topic("music.state", Kind.STATE, "music",
          {"title": "str?", "index": "int", "count": "int", "playing": "bool", "position_s": "float",
           "length_s": "float"},
          doc="the music app's now playing: which track of how many, playing or paused, and where"),
]


# The developer's traffic: benchmarks and the demo publisher, never the product's. Known only where the
# developer's tools are at home (bus.development: not in a product image's units), so a product's broker
# refuses these as any unknown topic, and no app there may fill the bus with 64 KiB bench messages.
_DEVELOPMENT_TABLE = [
    # --- benchmark traffic (bench/bus.py) ----------------------------------------
    # pad: bytes that bring a message to the size measured (64 B, 1 KiB, 64 KiB), as raw's bodies are
    Topic("bench.ping", Kind.EVENT, ANY_NODE, {"seq": "int", "t_ns": "int", "pad": "bytes?"},
          max_size=BENCH_MAX_SIZE, doc="latency probe"),
    Topic("bench.pong", Kind.EVENT, ANY_NODE, {"seq": "int", "t_ns": "int", "pad": "bytes?"},
          max_size=BENCH_MAX_SIZE, doc="latency probe, answered"),
    Topic("bench.blast", Kind.EVENT, ANY_NODE, {"seq": "int", "t_ns": "int", "pad": "bytes?"},
          max_size=BENCH_MAX_SIZE, doc="throughput traffic"),
    Topic("bench.report", Kind.EVENT, ANY_NODE, {"received": "int", "first_ns": "int", "last_ns": "int",
                                                  "drops": "int"}, doc="what the receiving side counted"),
    # --- the demo publisher (python -m bustools.demo): traffic on every lane for the bus's own tests ----
    Topic("demo.tick", Kind.EVENT, "demo", {"n": "int", "text": "str"}, rate_hz=1.0,
          doc="a counter, once a second"),
    Topic("demo.status", Kind.STATE, "demo", {"uptime_s": "float", "ticks": "int", "started_wall": "float"},
          rate_hz=0.2, doc="the demo's latched status"),
    Topic("demo.wave", Kind.STREAM, "demo", {"t": "float", "samples": "list[float]"}, rate_hz=10.0,
          doc="a sine wave in chunks, on the stream lane"),
    Topic("demo.echo.request", Kind.REQUEST, "demo", {"text": "str"}, reply={"text": "str", "n": "int"},
          doc="echoes text back, upper-cased, with a count"),
]


# Identities the broker holds to the topics they own and a node's own signs of life: no request, no topic of
# ANY_NODE. The wake-phrase spotter hears the mic with the LED off, so all it may ever say is that it heard the
# phrase (assistant.wake): not a word, a spoken line or a notification that could carry what it heard.
CONFINED = ("waked",)
LIFE_SIGNS = ("node.heartbeat", "node.bye", "bus.probe", "bus.probe.stream")


def _build(rows: list[Topic]) -> dict[str, Topic]:
    table: dict[str, Topic] = {}
    for row in rows:
        rows_here = [row, _reply_of(row)] if row.kind is Kind.REQUEST else [row]
        for topic in rows_here:
            if topic.name in table:
                raise ValueError(f"topic {topic.name!r} is declared twice")
            table[topic.name] = topic
    return table


TOPICS: dict[str, Topic] = _build(_TABLE + (_DEVELOPMENT_TABLE if development.tools_here() else []))
LATCHED: tuple[str, ...] = tuple(name for name, t in TOPICS.items() if t.latched)
MAX_MESSAGE_SIZE = max(t.max_size for t in TOPICS.values())


def lookup(name: str) -> Topic:
    """The table row for ``name``; UnknownTopic with the nearest names otherwise."""
    topic = TOPICS.get(name)
    if topic is None:
        import difflib  # only when a name is wrong: not a cost every process pays at start
        near = difflib.get_close_matches(name, TOPICS, n=3)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise UnknownTopic(f"unknown topic {name!r}{hint}; topics are declared in bus/topics.py")
    return topic


def from_owner(topic: str, source: str) -> bool:
    """Did the topic's owner (by the table) say it? For tools that hear every sender (a recording, the tap), as
    a node's loop applies the owner column to its handlers: the developer's key may speak as anyone."""
    spec = TOPICS.get(topic)
    return spec is not None and spec.owner in (ANY_NODE, source)


def matches(prefix: str, topic: str) -> bool:
    """Dotted prefix match: 'power' and 'power.' match 'power.state'; '' matches all."""
    prefix = prefix.rstrip(".")
    return not prefix or topic == prefix or topic.startswith(prefix + ".")
