"""`lens bus foxglove` with a real client nobody here wrote: the npm registry's @foxglove/ws-protocol (over
`ws`), installed by `make install` into tests/foxglove, driven from here through tests/foxglove/client.mjs.
It subscribes, receives and decodes each kind of message (a state, the shell's state, batteries, camera
frames and the display as foxglove.CompressedImage, an event); a publish is carried to the bus only with
--allow-publish and only on a topic it may publish; camera frames stay out without --include-capture."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading

import pytest

from bustools import bag
from bus.node import Node
from bus.topics import TOPICS
from tests.conftest import DEADLINE_S, REPO, wait_for
from tests.system import System, running

CLIENT_DIR = REPO / "tests" / "foxglove"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (CLIENT_DIR / "node_modules" / "@foxglove" / "ws-protocol").exists()
                                 or shutil.which("node") is None,
                                 reason="the Foxglove client is not installed: `make install` puts it in "
                                        "tests/foxglove/node_modules (node and npm)")]


class Client:
    """The npm client as a child process; its JSON lines read by a thread into a list."""

    def __init__(self, procs, url: str, *args: str):
        self.child = subprocess.Popen(["node", str(CLIENT_DIR / "client.mjs"), url, *args], cwd=CLIENT_DIR,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.children.append(self.child)
        self.lines: list[dict] = []
        self.raw: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.child.stdout:
            try:
                self.lines.append(json.loads(line))
            except json.JSONDecodeError:
                self.lines.append({"event": "text", "text": line})

    def seen(self, event: str, **match) -> list[dict]:
        return [line for line in list(self.lines) if line.get("event") == event
                and all(line.get(k) == v for k, v in match.items())]

    def wait(self, what: str, condition, timeout: float = DEADLINE_S):
        return wait_for(lambda: condition() or None, timeout, f"{what} (client saw {self.lines[-5:]})")


def serve(procs, *extra) -> str:
    server = procs.lens("bus", "foxglove", "--port", "0", "--json", *extra, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
    line = server.stdout.readline()
    assert line, server.stderr.read()
    return json.loads(line)["url"]


def test_a_foxglove_client_sees_every_kind_and_publishes_only_what_it_may(procs, runtime, tmp_path):
    system = System(procs, runtime, tmp_path)
    system.watcher.wait_state(running, "boot")
    procs.start_ready("-m", "daemons.display")
    watched = serve(procs, "--include-capture", "--allow-publish")
    private = serve(procs)
    kinds = ["shell.state", "power.state", "camera.image", "display.image", "camera.frame", "phone.notification"]
    client = Client(procs, watched, *kinds, "--publish", "phone.notification",
                    json.dumps({"id": "n1", "source": "foxglove", "title": "from Foxglove"}))
    refused = Client(procs, watched, "--publish", "audio.mic", json.dumps({"owner": "x"}))
    plain = Client(procs, private, "camera.frame", "camera.image", "--publish", "phone.notification",
                   json.dumps({"id": "n2", "source": "foxglove", "title": "never"}))
    heard = []
    listener = Node("listener", runtime)
    listener.subscribe("phone.notification", lambda m: heard.append(m.payload))
    listener.start(timeout=DEADLINE_S)
    procs.cleanups.append(listener.close)

    def channels() -> dict:
        return {c["topic"]: c for line in client.seen("advertise") for c in line["channels"]}
    client.wait("every topic of the table a channel", lambda: set(TOPICS) <= set(channels()))
    channels = channels()
    for topic in TOPICS:
        assert channels[topic]["encoding"] == "json" and channels[topic]["schemaEncoding"] == "jsonschema"
        assert channels[topic]["schema"] == bag.schema_for(topic), f"{topic}: the table's JSON Schema"
    for image in ("camera.image", "display.image"):
        assert channels[image]["schemaName"] == "foxglove.CompressedImage"

    app = system.app("camapp")
    app.take_camera()
    app.ask("camera.control.request", mode="preview")
    app.ask("power.sim.request", action="charge", battery="left", percent=42.0)  # a change to plot
    for kind in kinds:
        client.wait(f"a decoded {kind}", lambda: client.seen("message", topic=kind))
    state = client.seen("message", topic="shell.state")[-1]["decoded"]
    assert state["state"] in ("active", "idle") and state["_lens"]["source"] == "shell"
    client.wait("the left battery's percent to plot", lambda: [
        b for m in client.seen("message", topic="power.state") for b in m["decoded"]["batteries"]
        if b.get("percent") is not None and abs(b["percent"] - 42.0) < 1])
    frame = client.seen("message", topic="camera.image")[-1]
    assert frame["schemaName"] == "foxglove.CompressedImage" and frame["decoded"]["format"] == "jpeg"
    assert frame["decoded"]["data"]["head"].startswith("ffd8") and frame["decoded"]["data"]["bytes"] > 1000
    display = client.seen("message", topic="display.image")[-1]["decoded"]
    assert display["format"] == "png" and display["data"]["head"] == "89504e47"

    wait_for(lambda: heard or None, DEADLINE_S, "the client's notification on the bus",
             poll=lambda remaining: listener.run_once(min(remaining, 0.1)))
    assert {k: heard[0][k] for k in ("id", "source", "title")} == {"id": "n1", "source": "foxglove",
                                                                    "title": "from Foxglove"}
    refused.wait("the refusal", lambda: [s for s in refused.seen("status") if "audio.mic" in s["message"]])

    plain.wait("frame descriptors without --include-capture", lambda: plain.seen("message", topic="camera.frame"))
    assert plain.seen("serverInfo")[0]["capabilities"] == [], "no clientPublish without --allow-publish"
    assert not plain.seen("message", topic="camera.image"), "no pixels without --include-capture"
    listener.run_once(0.5)
    assert all(n["id"] != "n2" for n in heard), "nothing published without --allow-publish"
    app.ask("camera.control.request", mode="off")
    sessions = {(r["owner"], r["resource"]) for r in system.audit if r["event"] == "start"}
    assert ("developer", "camera") in sessions, "--include-capture is in the privacy log"


def test_lens_up_web_serves_foxglove_as_a_process_of_the_table(procs, runtime):
    """make run (lens up --web) starts bustools.foxglove_service: READY=1 once live, 127.0.0.1, no publishing."""
    from manager.processes import PROCESSES

    [process] = [p for p in PROCESSES if p.module == "bustools.foxglove_service"]
    assert process.dev_only, "development only: never a unit on the board"
    procs.start_broker()
    procs.start_ready("-m", process.module, "--port", "0")
    port = int(runtime.path("foxglove.port").read_text())
    client = Client(procs, f"ws://127.0.0.1:{port}", "power.state")
    [info] = client.wait("the server", lambda: client.seen("serverInfo"))
    assert info["name"] == "lensos" and info["capabilities"] == []
    client.wait("every topic a channel", lambda: set(TOPICS) <= {c["topic"] for line in client.seen("advertise")
                                                                   for c in line["channels"]})
