"""The lens app: catalog items recognised in camera scenes, 'not sure' on anything else, the online
backend behind the same interface, and the app over the real bus with the sim camera shown a scene."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
from PIL import Image

from apps.lens.catalog import CATALOG_DIR, Offline, Online, load
from policies.schema import PolicyError
from tests.apps.scenes import held_up, nothing
from tests.system import FAST, System

ITEMS = ("cola", "oats", "green-tea", "water", "chocolate", "coffee")
BACKGROUNDS = ("table", "desk", "wall", "outdoors")


@pytest.fixture(scope="module")
def catalog():
    return load()


def product(item: str) -> Image.Image:
    return Image.open(CATALOG_DIR / f"{item}.png").convert("RGB")


def test_every_catalog_item_is_named_on_every_background(catalog):
    backend, rng = Offline(catalog), np.random.default_rng(11)
    for item in ITEMS:
        for kind in BACKGROUNDS:
            for _ in range(2):
                answer = backend.identify(backend.look(held_up(product(item), kind, rng)))
                assert answer is not None and answer.name == catalog.items[item]["name"], (item, kind)
                assert answer.price == catalog.items[item]["price"] and answer.confidence >= catalog.threshold


def test_scenes_without_a_catalog_item_are_not_sure(catalog):
    backend, rng = Offline(catalog), np.random.default_rng(12)
    for kind in (*BACKGROUNDS, "clutter"):
        for _ in range(4):
            assert backend.identify(backend.look(nothing(kind, rng))) is None, kind
    # The sim camera's own pattern, and a product that is not in the catalog (a grey box).
    from daemons.camera.backends import SimCamera
    pattern = SimCamera(640, 480).grab(7, np.empty((480, 640, 3), np.uint8))
    assert backend.identify(backend.look(pattern)) is None
    box = Image.new("RGB", (240, 240), (235, 235, 235))
    box.paste((120, 120, 125), (50, 30, 190, 220))
    assert backend.identify(backend.look(held_up(box, "table", rng))) is None


def test_a_catalog_mistake_names_its_file_and_line(tmp_path):
    shutil.copytree(CATALOG_DIR, tmp_path / "catalog")
    path = tmp_path / "catalog" / "catalog.toml"
    text = path.read_text()
    path.write_text(text.replace("price = 12.90", 'price = "cheap"'))
    line = next(n for n, row in enumerate(path.read_text().splitlines(), 1) if "cheap" in row)
    with pytest.raises(PolicyError, match=rf"catalog.toml:{line}: item\[2\].price: must be float"):
        load(tmp_path / "catalog")
    path.write_text(text.replace('image = "oats.png"', 'image = "gone.png"'))
    with pytest.raises(PolicyError, match="item 'oats': cannot read its image"):
        load(tmp_path / "catalog")
    path.write_text('item = ["cola"]\n' + text[:text.index("\n[[item]]")])  # a list, not tables
    with pytest.raises(PolicyError, match=r"catalog.toml:1: item\[1\]: must be a table \(\[\[item\]\]\), got str"):
        load(tmp_path / "catalog")
    path.write_text(text.replace("threshold = 0.6", "threshold = 1.5"))
    with pytest.raises(PolicyError, match=r"match.threshold: 1.5 is out of range"):
        load(tmp_path / "catalog")


class Shop(BaseHTTPRequestHandler):
    answer: dict | bytes | None = None  # bytes: sent as they are (a broken shop)
    seen: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Shop.seen.append((self.headers["Content-Type"], self.headers.get("Authorization"), body[:3]))
        if Shop.answer is None:
            self.send_error(503)
            return
        data = Shop.answer if isinstance(Shop.answer, bytes) else json.dumps(Shop.answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_the_online_backend_answers_and_falls_back_to_the_catalog(catalog, monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), Shop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("LENS_SHOPPING_API_KEY", "k-123")
        online = dict(catalog.online, endpoint=f"http://127.0.0.1:{server.server_port}/identify", timeout_s=5.0)
        backend = Online(catalog.__class__(**{**catalog.__dict__, "online": online}), Offline(catalog))
        scene = held_up(product("coffee"), "desk", np.random.default_rng(13))
        Shop.answer = {"name": "Arabica beans, 250 g", "price": 61.0, "currency": "CNY", "confidence": 0.97}
        answer = backend.identify(backend.look(scene))
        assert (answer.name, answer.price, answer.source) == ("Arabica beans, 250 g", 61.0, "online")
        assert Shop.seen[-1] == ("image/jpeg", "Bearer k-123", b"\xff\xd8\xff")  # a JPEG, with the key
        Shop.answer = None  # the shop is down: the catalog answers
        answer = backend.identify(backend.look(scene))
        assert (answer.name, answer.source) == ("Coffee beans, 250 g", "catalog")
        Shop.answer = {"name": "A guess", "price": 1.0, "currency": "CNY", "confidence": 0.2}  # unsure: catalog
        assert backend.identify(backend.look(scene)).source == "catalog"
        for broken in (b"<html>oops</html>", b'{"name": "No price"}', b'{"name": "x", "price": "cheap", '
                                                                          b'"currency": "CNY"}', b"[1, 2]"):
            Shop.answer = broken  # not JSON, a field missing, a wrong type, not an object: the catalog answers
            assert backend.identify(backend.look(scene)).name == "Coffee beans, 250 g"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_the_lens_app_names_what_the_camera_sees_and_says_not_sure_otherwise(procs, runtime, tmp_path):
    rng = np.random.default_rng(14)
    scenes = {"oats": held_up(product("oats"), "table", rng), "nothing": nothing("outdoors", rng)}
    for name, pixels in scenes.items():
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
    changes = {**FAST, "system.toml": {**FAST["system.toml"], "apps": {"boot": []}}}
    system = System(procs, runtime, tmp_path, changes)
    for module in ("daemons.input", "daemons.display", "shell.appd"):
        procs.start_ready("-m", module)
    user = system.watcher
    user.node.subscribe("display.card.request", user._keep)
    assert procs.run_lens("app", "start", "lens").returncode == 0

    def card_after(mark: int) -> dict:
        return user.wait(lambda: next((m.payload for m in user.log[mark:] if m.topic == "display.card.request"
                                       and m.source == "lens" and m.payload["title"] not in ("Lens", "Looking…")),
                                      None), "the lens app's answer")

    for name, title, body in (("oats", "Rolled oats, 500 g", "¥12.90"), ("nothing", "Not sure", "Not sure what")):
        shown = procs.run_lens("camera", "show", str(tmp_path / f"{name}.png"))
        assert shown.returncode == 0, shown.stderr
        mark = len(user.log)
        user.ask("input.sim.request", gesture="tap")
        card = card_after(mark)
        assert card["title"] == title and card["body"].startswith(body)
        # It looked with the LED lit, and gave the camera back before answering.
        user.wait(lambda: user.notices("shell.capture.notice", owner="lens", status="granted")
                  and not user.latest["shell.state"]["focus"]["camera"]["owner"], "the camera given back")
    assert len(user.notices("camera.session", owner="lens")) == 2
    refused = procs.run_lens("camera", "show", str(tmp_path / "missing.png"))
    assert refused.returncode != 0 and "cannot show" in refused.stderr
