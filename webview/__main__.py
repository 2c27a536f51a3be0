"""The live view of the glasses for development: `lens up --web` (on by default in `make run`).

A page on 127.0.0.1 only, never another interface: what the wearer sees
(the sim panel's PNG, refreshed on every frame), the capture LED, both
batteries and the bridge, who holds each focus, the shell's state, what the
speaker plays, the assistant's last answer and a sniffer pane of the bus.
Buttons play temple gestures, pull and insert batteries, and a text box
talks to the assistant.

The bus side is an ordinary node on this process's main thread; the HTTP
server runs in threads and talks to it only through ``View`` (a lock, a
condition for the page's server-sent events, and a queue of requests the
node thread sends on the bus).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bus import service
from bus.envelope import Message
from bus.node import Node
from bus.wakeup import Wakeup
from webview import reactions
from manager.processes import by_module

ROW = by_module("webview")  # its name and command line, from its row of the process table

log = logging.getLogger(ROW.name)

PAGE = Path(__file__).with_name("page.html")
SNIFF_KEEP = 60
QUIET_TOPICS = ("audio.mic", "display.frame", "camera.frame", "node.heartbeat", "bus.")  # counted, not listed
# What the page's buttons may ask, and nothing else: the view is not a general bus client. Each: the request,
# its fields from the page's body, and what of its aftermath the page is told (webview/reactions.py; None:
# only the reply, as the assistant's answer has a row of its own).
ACTIONS = {
    "gesture": ("input.sim.request", lambda b: {"gesture": str(b["gesture"])},
                lambda b: reactions.of_gesture(str(b["gesture"]))),
    "say": ("assistant.say.request", lambda b: {"text": str(b["text"])[:500]}, lambda b: None),
    "power": ("power.sim.request", lambda b: {"action": str(b["action"]), "battery": str(b["battery"])},
              lambda b: reactions.AT_ONCE),
}
ANSWER_S = 5.0 + reactions.FINGER_S + reactions.LONGEST_S  # the longest a button's answer can take
SPOKEN_KEEP = 4  # G1: the last things said instead of shown


class View:
    """What the page shows, shared by the node thread (writes) and the HTTP threads (reads)."""

    def __init__(self):
        self.lock = threading.Condition()
        self.version = 0
        self.state: dict = {"frame": 0, "answer": None}
        self.sniffed: deque[dict] = deque(maxlen=SNIFF_KEEP)
        self.spoken: deque[str] = deque(maxlen=SPOKEN_KEEP)
        self.counts: dict[str, int] = {}
        self.asks: queue.SimpleQueue = queue.SimpleQueue()
        self.wakeup = Wakeup()

    def update(self, **fields) -> None:
        with self.lock:
            self.state.update(fields)
            self.version += 1
            self.lock.notify_all()

    def snapshot(self, after: int, timeout: float) -> tuple[int, dict]:
        with self.lock:
            self.lock.wait_for(lambda: self.version != after, timeout)
            return self.version, dict(self.state, sniffed=list(self.sniffed), counts=dict(self.counts),
                                      spoken=list(self.spoken))

    def ask(self, topic: str, fields: dict, watch: reactions.Aftermath | None) -> Future:
        future: Future = Future()
        self.asks.put((topic, fields, watch, future))
        self.wakeup.wake()
        return future


def summary(payload: dict) -> str:
    text = json.dumps({k: ("<%d bytes>" % len(v) if isinstance(v, bytes) else v) for k, v in payload.items()},
                      default=str)
    return text if len(text) <= 160 else text[:157] + "..."


# What the page shows of each state it follows, from the payload (built once, not per message).
KEPT = {
    "shell.state": lambda p: {"shell": {**{k: p[k] for k in ("state", "degraded", "foreground", "brightness", "model",
                                                             "ready")}, "silent": sorted(p.get("silent") or {})},
                              "focus": {r: f["owner"] for r, f in p["focus"].items()}},
    "led.state": lambda p: {"led": {"lit": p["lit"], "fault": p.get("fault")}},
    "power.state": lambda p: {"power": {"batteries": [{k: b[k] for k in ("name", "present", "percent")}
                                                      for b in p["batteries"]],
                                        # powerd's bridge time, as the alert and lens status show it,
                                        # and like them only while a battery is out
                                        "bridge_percent": p["bridge"]["percent"],
                                        "bridge_s": None if all(p["present"]) else p["bridge"].get("time_s")}},
    "display.frame": lambda p: {"frame": p["n"]},
    "display.state": lambda p: {"display": {k: p[k] for k in ("on", "brightness", "alert", "layers", "backend",
                                                              "width", "height")}},
    "audio.state": lambda p: {"audio": {"streams": [f"{s['owner']}:{s['id']} {s['status']}" for s in p["streams"]],
                                        "mic": p["mic"]["owner"]}},
    "assistant.state": lambda p: {"assistant": p["phase"]},
    "assistant.answer": lambda p: {"answer": p["text"]},
}


class Bridge:
    """The node thread's side: keeps the view current and sends the page's requests."""

    def __init__(self, node: Node, view: View):
        self.node, self.view = node, view
        self.reactions = reactions.Reactions(node, ignore=(node.name, "inputd", "broker"))
        node.subscribe("", self.on_message, from_anyone=True)
        node.watch(view.wakeup.fileno(), self.on_asks)

    def on_message(self, msg: Message) -> None:
        p, view = msg.payload, self.view
        with view.lock:
            view.counts[msg.topic] = view.counts.get(msg.topic, 0) + 1
            if not msg.topic.startswith(QUIET_TOPICS):
                view.sniffed.append({"t": time.strftime("%H:%M:%S"), "topic": msg.topic, "source": msg.source,
                                     "text": summary(p)})
            if msg.topic == "audio.speak":
                view.spoken.append(p["text"])
        self.reactions.on_message(msg)
        kept = KEPT.get(msg.topic)
        if kept is not None:
            view.update(**kept(p))
        elif not msg.topic.startswith(QUIET_TOPICS):
            view.update()

    def on_asks(self) -> None:
        self.view.wakeup.drain()
        while not self.view.asks.empty():
            self.send(*self.view.asks.get())

    def send(self, topic: str, fields: dict, watch: reactions.Aftermath | None, future: Future) -> None:
        """One button's request. Its answer is the reply, and, where the action has a watch, what followed on
        the glasses (the watch starts before the request: a gesture may be made before its reply is read)."""
        got: dict = {}

        def settle(answer: dict) -> None:
            if not future.done():  # a failed request is answered at once; its watch ends unheard
                future.set_result(answer)

        def both() -> None:
            if "result" in got and "seen" in got:
                shell = self.view.state.get("shell") or {}
                settle({"ok": True, "result": got["result"], **got["seen"], "foreground": shell.get("foreground")})

        def answered(result, error) -> None:
            if error is not None or watch is None:
                settle({"ok": error is None, "result": result, "error": str(error) if error else None})
            got["result"] = result
            both()

        def watched(seen: dict) -> None:
            got["seen"] = seen
            both()

        if watch is not None:
            self.reactions.watch(watch, watched)
        self.node.request_async(topic, answered, timeout=5.0, **fields)


def handler_for(view: View, png: Path):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/":
                self.reply(200, "text/html; charset=utf-8", PAGE.read_bytes())
            elif path == "/display.png":
                try:
                    self.reply(200, "image/png", png.read_bytes(), cache=False)
                except FileNotFoundError:
                    self.reply(404, "text/plain", b"no display (G1, or displayd is not running)")
            elif path == "/events":
                self.events()
            else:
                self.reply(404, "text/plain", b"not here")

        def do_POST(self):
            action = ACTIONS.get(self.path.removeprefix("/api/"))
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                topic, fields, watch = action[0], action[1](body), action[2](body)
            except (TypeError, KeyError, ValueError):
                self.reply(400, "application/json", b'{"ok": false, "error": "unknown action or bad body"}')
                return
            try:
                answer = view.ask(topic, fields, watch).result(timeout=ANSWER_S)
            except TimeoutError:
                answer = {"ok": False, "error": "the bus did not answer"}
            self.reply(200, "application/json", json.dumps(answer, default=str).encode())

        def events(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            version = -1
            try:
                while True:
                    new, state = view.snapshot(version, timeout=15.0)
                    if new == version:
                        self.wfile.write(b": keep-alive\n\n")
                    else:
                        self.wfile.write(b"data: " + json.dumps(state, default=str).encode() + b"\n\n")
                    self.wfile.flush()
                    version = new
                    time.sleep(0.1)  # at most ten updates a second to a page, however busy the bus
            except (BrokenPipeError, ConnectionResetError):
                return

        def reply(self, status: int, kind: str, body: bytes, cache: bool = True):
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            if not cache:
                self.send_header("Cache-Control", "no-store")
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the page moved on (a newer frame's picture replaces one still loading)

        def log_message(self, *args):
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = service.arguments(ROW.module, __doc__)
    parser.add_argument("--port", type=int, default=8470, help="port on 127.0.0.1 (default 8470; 0: any free)")
    args = parser.parse_args(argv)
    view = View()
    with service.node(ROW.name, args) as node:
        Bridge(node, view)
        server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(view, node.runtime.path("display.png")))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        port = server.server_address[1]
        (node.runtime.path("webview.port")).write_text(f"{port}\n")  # how tools and tests find a free port
        log.info("live view on http://127.0.0.1:%d/", port)
        node.start()
        node.run()
        server.shutdown()
        server.server_close()
        node.runtime.path("webview.port").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
