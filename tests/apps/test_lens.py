"""The lens app: catalog packs recognised as the camera sees them, a barcode alone, "not sure" on anything
else, a broken catalog entry named and skipped, the online backend behind the same interface, and the
README's workflow (`lens camera show`, `lens say "how much is this"`) over the real bus for every item."""

from __future__ import annotations

import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
from PIL import Image

from apps.lens import draw_catalog
from apps.lens.catalog import CATALOG_DIR, Offline, Online, load
from apps.lens.views import CONDITIONS, nothing
from daemons.camera.backends import SimCamera
from frames.held_up import held_up
from policies.checker import PolicyError
from tests.conftest import DEADLINE_S, wait_for, wait_line


@pytest.fixture(scope="module")
def catalog():
    return load()


def pack(catalog, item: str) -> Image.Image:
    return Image.open(CATALOG_DIR / catalog.items[item]["image"])


def test_the_catalog_is_a_hundred_packs_with_names_prices_and_real_barcodes(catalog):
    assert len(catalog.items) >= 100 and not catalog.skipped
    for item in catalog.items.values():
        assert item["name"] and item["name_zh"] and item["price"] > 0 and item["currency"] == "CNY"
        code = item["ean"]
        assert (sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(code[:12])) + int(code[12])) % 10 == 0
    # The shipped pictures are what the generator draws (nobody edited one by hand and forgot the other).
    first = draw_catalog.items(1)[0]
    assert np.array_equal(np.asarray(draw_catalog.draw(first)), np.asarray(Image.open(CATALOG_DIR / first["image"])))


def test_every_pack_is_named_held_up_and_a_sample_under_every_condition(catalog):
    backend, rng = Offline(catalog), np.random.default_rng(31)
    for item in catalog.items:  # fitted and centred, as `lens camera show` shows it
        answer = backend.identify(backend.look(np.asarray(held_up(pack(catalog, item), 640, 480, 0.8))))
        assert answer is not None and answer.name == catalog.items[item]["name"], item
        assert answer.price == catalog.items[item]["price"] and answer.confidence >= catalog.threshold
    ids = sorted(catalog.items)
    right = wrong = 0
    for name, condition in CONDITIONS.items():
        for _ in range(3):
            item = ids[rng.integers(len(ids))]
            answer = backend.identify(backend.look(condition(pack(catalog, item), rng)))
            right += answer is not None and answer.name == catalog.items[item]["name"]
            wrong += answer is not None and answer.name != catalog.items[item]["name"]
    assert wrong == 0 and right >= 0.7 * 3 * len(CONDITIONS)  # bench/lens.py measures the rates


def test_a_barcode_alone_is_an_exact_answer(catalog):
    """A close-up of the barcode: no feature of the pack's art in view (the index leaves bars out)."""
    item = "panda-cola"
    shot = pack(catalog, item).convert("RGB").crop((40, 295, 260, 365))
    view = np.asarray(held_up(shot, 640, 480, 0.9))
    answer = Offline(catalog).identify(Offline(catalog).look(view))
    assert answer is not None and (answer.name, answer.how) == (catalog.items[item]["name"], "barcode")
    assert len(answer.outline) == 4
    found = catalog.index.by_features(view[..., 0].copy(), view)
    assert found.id is None or found.confidence < catalog.threshold  # the features alone could not say


def card(lines: list[tuple[str, str, int]]) -> np.ndarray:
    """A shelf label as the camera sees it: words only, in another font than any pack prints, no pack art."""
    from PIL import ImageDraw, ImageFont

    label = Image.new("RGB", (420, 90 * len(lines)), (255, 255, 255))
    draw = ImageDraw.Draw(label)
    for row, (text, font, size) in enumerate(lines):
        draw.text((210, 45 + 90 * row), text, fill=(20, 20, 20), font=ImageFont.truetype(font, size), anchor="mm")
    return np.asarray(held_up(label, 640, 480, 0.8, 3))


LATIN = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def test_a_text_only_view_is_named_by_the_words_read(catalog):
    """No pack in view, no barcode: a label with the item's name, English and Chinese. Tesseract reads it and
    the catalog's names match it; a label of goods every brand makes names nothing."""
    backend, item = Offline(catalog), catalog.items["panda-cola"]
    view = card([("PANDA COLA", LATIN, 40), (item["name_zh"], draw_catalog.CJK, 48)])
    answer = backend.identify(backend.look(view))
    assert answer is not None and (answer.name, answer.how) == (item["name"], "text"), answer
    assert answer.price == item["price"] and answer.confidence >= catalog.threshold
    # The preview's outline is where the name was read: round the label's words, inside the label.
    from frames.held_up import WALL

    ys, xs = np.nonzero(~np.all(view == WALL, axis=2))
    corners = np.array(answer.outline)
    assert corners.shape == (4, 2), answer.outline
    assert (corners[:, 0] >= xs.min() - 2).all() and (corners[:, 0] <= xs.max() + 2).all()
    assert (corners[:, 1] >= ys.min() - 2).all() and (corners[:, 1] <= ys.max() + 2).all()
    width, height = np.ptp(corners, axis=0)
    assert width > 0.3 * np.ptp(xs) and height > 0.3 * np.ptp(ys)  # both lines of it, not a letter
    assert backend.identify(backend.look(card([("COLA", LATIN, 40), ("可乐", draw_catalog.CJK, 48)]))) is None


def test_a_pack_in_glare_is_named_by_its_look_and_its_name(catalog):
    """Over-exposed and small, its features alone are not sure; its name read on the pack, warped upright
    through their homography, makes it sure."""
    item = "red-star-soy-sauce"
    view = np.asarray(held_up(pack(catalog, item), 640, 480, 0.5, 5, 10))
    view = np.clip(view.astype(np.float32) * 1.7, 0, 255).astype(np.uint8)
    answer = Offline(catalog).identify(Offline(catalog).look(view))
    assert answer is not None and (answer.name, answer.how) == (catalog.items[item]["name"], "features+text")
    assert catalog.index.by_features(view[..., 1].copy(), view).confidence < catalog.threshold


def test_names_are_matched_whole_through_misreadings():
    from apps.lens.ocr import Names

    names = Names({"a": {"name": "Blue Sky honey, 500 g", "name_zh": "蓝天蜂蜜"},
                   "b": {"name": "Swan honey, 500 g", "name_zh": "天鹅蜂蜜"},
                   "c": {"name": "Swan green tea, 500 ml", "name_zh": "天鹅绿茶"},
                   "d": {"name": "Swan green tea bags, 25 bags", "name_zh": "天鹅绿茶包"}})
    assert names.named("BLUE SKY\nHoney\n500 g") == ("a", ["a"])
    assert names.named("SVWAN Honey")[0] == "b"  # a letter misread
    assert names.named("天 鹅 蜂 蜜")[0] == "b"  # the Chinese name alone
    assert names.named("Honey 500 g")[0] is None  # the goods alone: every brand's
    assert names.named("SWAN Green tea bags")[0] == "d"  # the longer name read whole
    # Another brand's green tea bags in the catalog: a word of theirs read beside Swan's green tea is not it.
    bags = Names({"c": {"name": "Swan green tea, 500 ml", "name_zh": "天鹅绿茶"},
                  "e": {"name": "Moon green tea bags, 25 bags", "name_zh": "月亮绿茶包"}})
    assert bags.named("SWAN Green tea bags")[0] is None and bags.named("天鹅绿茶包")[0] is None
    assert bags.named("SWAN Green tea 500 ml")[0] == "c"
    assert names.score("SWAN Honey", "a") <= 0.5 and names.score("SWAN Honey", "b") == 1.0
    # On a pack the features found: its brand and all but one other word, and no other brand, will do.
    assert names.score("BLUE SKY\nHon", "a") == 0.75
    assert names.score("SWAN SKY Honey", "a") <= 0.5  # another brand read
    assert names.score("SKY Honey", "a") <= 0.5  # its brand not read: anyone's honey
    assert names.score("BLUE SKY\nHon 天鹅", "a") <= 0.5  # another name's Chinese read: not surely this one


def test_without_tesseract_the_lens_still_answers_by_barcode_and_look(monkeypatch):
    from apps.lens import ocr

    monkeypatch.setattr(ocr.ctypes.util, "find_library", lambda name: "/nonexistent/lib" + name + ".so")
    monkeypatch.setattr(ocr, "_library", lambda: None)
    reader = ocr.Reader()
    assert reader.read(np.zeros((40, 40), np.uint8)) == "" and "libtesseract5" in reader.missing


def test_the_pack_nearest_the_centre_is_the_one_pointed_at(catalog):
    one, other = "panda-cola", sorted(catalog.items)[5]
    scene = Image.new("RGB", (640, 480), (96, 96, 96))
    for item, x in ((one, 20), (other, 330)):
        picture = pack(catalog, item)
        small = picture.resize((picture.width * 3 // 4, picture.height * 3 // 4))
        scene.paste(small, (x, 90), small)
    view, backend = np.asarray(scene), Offline(catalog)
    for shift, item in ((-120, other), (120, one)):  # either one brought to the centre
        answer = backend.identify(backend.look(np.roll(view, shift, axis=1)))
        assert answer is not None and answer.name == catalog.items[item]["name"], (shift, answer)


def test_scenes_without_a_catalog_pack_are_not_sure(catalog):
    backend, rng = Offline(catalog), np.random.default_rng(32)
    for _ in range(6):
        assert backend.identify(backend.look(nothing(rng))) is None
    pattern = SimCamera(640, 480).grab(7, np.empty((480, 640, 3), np.uint8))
    assert backend.identify(backend.look(pattern)) is None
    # Packs drawn alike but not in the catalog (other brands of the same goods, barcodes it does not know).
    for stranger in draw_catalog.items(len(catalog.items) + 3)[len(catalog.items):]:
        view = np.asarray(held_up(draw_catalog.draw(stranger), 640, 480, 0.8))
        assert backend.identify(backend.look(view)) is None, stranger["id"]


# Other brands' packs of the catalog's goods, drawn alike (not in the catalog), that its features once named
# held up face on: with 40-70 inliers on the words and shapes they share, and looking half like ours.
LOOKALIKES = ("crane-mineral-water", "swan-yogurt-drink", "golden-field-honey", "spring-energy-drink",
              "dragon-orange-juice", "panda-yogurt-drink", "great-wall-green-tea", "lotus-yogurt-drink",
              "orchid-energy-drink", "sunrise-shampoo", "dragon-yogurt-drink", "swan-cooking-oil",
              "cloud-green-tea-bags", "maple-green-tea-bags", "ocean-green-tea-bags", "orchid-tuna",
              "panda-toothpaste")


def test_other_brands_packs_of_the_same_goods_held_up_face_on_are_not_named(catalog):
    backend, drawn = Offline(catalog), {item["id"]: item for item in draw_catalog.items(1000)}
    named = {}
    for stranger in LOOKALIKES:
        assert stranger not in catalog.items
        answer = backend.identify(backend.look(np.asarray(held_up(draw_catalog.draw(drawn[stranger]), 640, 480, 0.8))))
        if answer is not None:
            named[stranger] = (answer.name, answer.confidence, answer.how)
    assert named == {}


def test_a_cut_out_pack_on_clutter_looks_like_itself(catalog):
    """A can's or a bottle's picture is a cut-out: around the pack, its rectangle shows whatever is behind it,
    which is no evidence against the pack. On clutter, the pack alone is compared, and looks like itself."""
    from apps.lens.recognizer import grey
    from apps.lens.views import _frame, clutter

    sure = 0
    for item in ("jade-sparkling-water", "panda-cola", "cloud-green-tea", "bamboo-honey", "sunrise-lemon-soda",
                 "plum-iced-coffee"):
        for seed in range(6):
            rng = np.random.default_rng(seed)
            view = _frame(pack(catalog, item), rng, scale=(0.6, 0.8), rotate=10, tilt=10, background=clutter(rng))
            found = catalog.index.by_features(grey(view), view)
            assert found.id == item and found.evidence["alike"] >= 0.8, (item, seed, found.evidence)
            sure += found.confidence >= catalog.threshold
    assert sure >= 32  # by its features alone, without reading its print (the rest: too few inliers)


def test_a_broken_catalog_entry_is_named_by_file_and_line_and_skipped(tmp_path):
    shutil.copytree(CATALOG_DIR, tmp_path / "catalog")
    path = tmp_path / "catalog" / "catalog.toml"
    text = path.read_text()
    lines = text.splitlines()
    first = next(n for n, row in enumerate(lines) if row.startswith("price ="))
    lines[first] = 'price = "cheap"'
    ean = next(n for n, row in enumerate(lines) if row.startswith("ean =") and n > first + 5)
    lines[ean] = lines[ean][:-2] + str((int(lines[ean][-2]) + 1) % 10) + '"'  # a wrong check digit
    image = next(n for n, row in enumerate(lines) if row.startswith("image =") and n > ean + 5)
    lines[image] = 'image = "gone.png"'
    path.write_text("\n".join(lines) + "\n")
    catalog = load(tmp_path / "catalog")
    assert len(catalog.items) == len(load().items) - 3
    assert [why.split(": ")[0] for why in catalog.skipped] == [f"{path}:{first + 1}", f"{path}:{ean + 1}",
                                                                f"{path}:{image + 1}"]
    assert "must be float" in catalog.skipped[0] and "check digit" in catalog.skipped[1]
    assert "cannot read it" in catalog.skipped[2]
    path.write_text(text.replace("threshold = 0.6", "threshold = 1.5"))  # the catalog's own settings: fatal
    with pytest.raises(PolicyError, match=r"catalog.toml:\d+: match.threshold: 1.5 is out of range"):
        load(tmp_path / "catalog")


class Shop(BaseHTTPRequestHandler):
    answer: dict | bytes | None = None  # bytes: sent as they are (a broken shop)
    delay_s = 0.0
    seen: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Shop.seen.append((self.headers["Content-Type"], self.headers.get("Authorization"), body[:3]))
        time.sleep(Shop.delay_s)  # a slow shop (the test's own thread: the app under test must not wait)
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


@pytest.fixture
def shop():
    server = HTTPServer(("127.0.0.1", 0), Shop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Shop.answer, Shop.delay_s = None, 0.0
    yield f"http://127.0.0.1:{server.server_port}/identify"
    server.shutdown()
    server.server_close()


def test_the_online_backend_answers_and_falls_back_to_the_catalog(catalog, monkeypatch, shop):
    monkeypatch.setenv("LENS_SHOPPING_API_KEY", "k-123")
    online = dict(catalog.online, endpoint=shop, timeout_s=5.0)
    backend = Online(catalog.__class__(**{**catalog.__dict__, "online": online}), Offline(catalog))
    item = "blue-sky-coffee-beans"
    scene = np.asarray(held_up(pack(catalog, item), 640, 480, 0.7, 10, 10, ))
    Shop.answer = {"name": "Arabica beans, 250 g", "price": 61.0, "currency": "CNY", "confidence": 0.97}
    answer = backend.identify(backend.look(scene))
    assert (answer.name, answer.price, answer.source) == ("Arabica beans, 250 g", 61.0, "online")
    assert Shop.seen[-1] == ("image/jpeg", "Bearer k-123", b"\xff\xd8\xff")  # a JPEG, with the key
    Shop.answer = None  # the shop is down: the catalog answers
    name = catalog.items[item]["name"]
    assert (backend.identify(backend.look(scene)).name, backend.identify(backend.look(scene)).source) == \
        (name, "catalog")
    Shop.answer = {"name": "A guess", "price": 1.0, "currency": "CNY", "confidence": 0.2}  # unsure: catalog
    assert backend.identify(backend.look(scene)).source == "catalog"
    for broken in (b"<html>oops</html>", b'{"name": "No price"}', b'{"name": "x", "price": "cheap", '
                                                                      b'"currency": "CNY"}', b"[1, 2]"):
        Shop.answer = broken  # not JSON, a field missing, a wrong type, not an object: the catalog answers
        assert backend.identify(backend.look(scene)).name == name


@pytest.mark.slow
def test_every_item_through_the_readme_workflow_and_a_slow_shop_keeps_the_app_beating(procs, runtime, tmp_path,
                                                                                     shop):
    """`lens up`, then for every catalog item what `lens camera show FILE` and `lens say "how much is this"`
    send (the commands themselves for a few, the same requests from one node for the rest); then the
    catalog is given a slow shop, and the app keeps beating while it answers."""
    from bus.node import Node

    folder = tmp_path / "catalog"
    shutil.copytree(CATALOG_DIR, folder)
    catalog = load(folder)
    procs.use_env(LENS_CATALOG_DIR=str(folder))
    up = procs.lens("up", stdout=__import__("subprocess").PIPE, stderr=__import__("subprocess").STDOUT)
    wait_line(up.stdout, "processes ready in")
    ear = Node("ear", runtime)
    answers, beats = [], []
    ear.subscribe("assistant.answer", lambda msg: answers.append(msg.payload))
    ear.subscribe("node.heartbeat", lambda msg: beats.append(time.monotonic()) if msg.source == "lens" else None)
    ear.start()
    procs.cleanups.append(ear.close)

    def ask(text: str) -> dict:
        session = ear.request("assistant.say.request", timeout=DEADLINE_S, text=text)["session"]
        return wait_for(lambda: next((a for a in answers if a["session"] == session), None), DEADLINE_S,
                        "the assistant's answer", poll=ear.run_once)

    items = sorted(catalog.items)
    for item in items[:2]:  # the README's own commands
        shown = procs.run_lens("camera", "show", str(folder / catalog.items[item]["image"]))
        assert shown.returncode == 0, shown.stderr
        said = procs.run_lens("say", "how much is this")
        expected = catalog.items[item]
        assert said.returncode == 0 and said.stdout.startswith(expected["name"]), said.stdout
        assert f"¥{expected['price']:.2f} CNY" in said.stdout and "% sure" in said.stdout
    for item in items[2:]:
        ear.request("camera.sim.request", timeout=DEADLINE_S, image=str(folder / catalog.items[item]["image"]))
        answer = ask("how much is this")
        expected = catalog.items[item]
        assert answer["text"].startswith(f"{expected['name']}") and f"¥{expected['price']:.2f}" in answer["text"], \
            (item, answer)
    shown = procs.run_lens("camera", "show")  # the sim camera's own pattern: no item
    said = procs.run_lens("say", "how much is this")
    assert "Not sure" in said.stdout, said.stdout

    # A slow shop behind the same interface: the app's loop beats on while it waits.
    Shop.answer, Shop.delay_s = {"name": "Arabica beans", "price": 61.0, "currency": "CNY", "confidence": 0.9}, 3.0
    text = (folder / "catalog.toml").read_text()
    (folder / "catalog.toml").write_text(text.replace('endpoint = ""', f'endpoint = "{shop}"')
                                         .replace("timeout_s = 3.0", "timeout_s = 10.0"))
    procs.run_lens("camera", "show", str(folder / catalog.items[items[0]]["image"]))
    before = len(beats)
    started = time.monotonic()
    answer = ask("how much is this")
    assert answer["text"].startswith("Arabica beans") and time.monotonic() - started >= 3.0
    during = [t for t in beats[before:] if started < t < started + 3.0]
    assert len(during) >= 2, f"the lens app beat {len(during)} times in the 3 s the shop took"


def outlined(outline: list[float], scale: float) -> np.ndarray:
    """The area inside a card's outline (preview pixels), as a 640x480 mask of the view."""
    from PIL import ImageDraw

    mask = Image.new("L", (640, 480), 0)
    ImageDraw.Draw(mask).polygon([(x / scale, y / scale) for x, y in zip(outline[::2], outline[1::2])], fill=1)
    return np.asarray(mask).astype(bool)


@pytest.mark.slow
def test_the_card_shows_what_the_camera_saw_with_the_item_outlined_and_no_outline_when_not_sure(procs, runtime):
    """The README's workflow with the README's own turned and tilted pack: the lens app's card carries a
    preview of the view with an outline where the pack was placed, and displayd draws both on the panel.
    A not-sure answer shows what was seen, outlining nothing."""
    import io
    import subprocess

    from bus.node import Node
    from frames.held_up import WALL
    from daemons.display.render import GREEN

    up = procs.lens("up", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_line(up.stdout, "processes ready in")
    cards = []
    watcher = Node("watcher", runtime)
    watcher.subscribe("display.card.request", lambda m: cards.append(m.payload) if m.source == "lens" else None)
    watcher.start()
    procs.cleanups.append(watcher.close)
    item, placed = load().items["panda-cola"], ("--scale", "0.6", "--rotate", "15", "--tilt", "20")
    shown = procs.run_lens("camera", "show", str(CATALOG_DIR / item["image"]), *placed)
    assert shown.returncode == 0, shown.stderr
    said = procs.run_lens("say", "how much is this")
    assert said.returncode == 0 and said.stdout.startswith(item["name"]), said.stdout
    card = wait_for(lambda: next((c for c in cards if c["title"] == item["name"]), None), DEADLINE_S,
                    "the lens app's card", poll=watcher.run_once)
    preview = Image.open(io.BytesIO(card["image"]))
    assert preview.format == "JPEG" and preview.size[0] / preview.size[1] == 640 / 480
    scale = preview.size[0] / 640
    inside = outlined(card["outline"], scale)
    # Where `lens camera show` put the pack: its own pixels, and its picture's whole rectangle.
    with Image.open(CATALOG_DIR / item["image"]) as picture:
        args = (640, 480, 0.6, 15, 20)
        pack_pixels = ~np.all(np.asarray(held_up(picture, *args)) == WALL, axis=2)
        rectangle = ~np.all(np.asarray(held_up(Image.new("RGB", picture.size, (255, 255, 255)), *args)) == WALL,
                            axis=2)
    assert len(card["outline"]) == 8  # the picture's four corners, through the homography
    assert inside[pack_pixels].mean() > 0.97, "the outline encloses the pack"
    assert (inside & rectangle).sum() / (inside | rectangle).sum() > 0.85, "and is where its picture was placed"

    def green(panel: np.ndarray) -> int:
        return int((np.abs(panel.astype(int) - GREEN[:3]).max(axis=2) < 40).sum())

    def snapshot() -> np.ndarray:
        reply = watcher.request("display.snapshot.request", timeout=DEADLINE_S)
        return np.asarray(Image.open(io.BytesIO(reply["png"])).convert("RGB"))

    # displayd draws it: the outline's green is on the panel, over the preview (drawn at its own size there).
    wait_for(lambda: green(snapshot()) > green(np.asarray(preview.convert("RGB"))) + 100, DEADLINE_S,
             "the outline on the panel", poll=watcher.run_once)

    procs.run_lens("camera", "show")  # the sim camera's own pattern: no item
    said = procs.run_lens("say", "how much is this")
    assert "Not sure" in said.stdout, said.stdout
    unsure = wait_for(lambda: next((c for c in cards if c["title"] == "Not sure"), None), DEADLINE_S,
                      "the not-sure card", poll=watcher.run_once)
    assert unsure.get("image") and unsure.get("outline") is None, "what was seen, and nothing claimed in it"


def test_lens_lens_index_checks_the_catalog_builds_the_index_and_names_what_it_skipped(tmp_path):
    """`lens lens index DIR`: items, descriptors, time and memory; a broken entry by file and line (exit 1);
    catalog.toml's time brought forward, which a running lens app takes as its cue to index again."""
    import subprocess
    import sys

    folder = tmp_path / "catalog"
    draw_catalog.write(folder, 3, optimize=False)
    path = folder / "catalog.toml"
    lens = [sys.executable, "-m", "cli.main"]
    ok = subprocess.run([*lens, "lens", "index", str(folder), "--json"], capture_output=True, text=True,
                        timeout=DEADLINE_S)
    report = json.loads(ok.stdout)
    assert ok.returncode == 0 and report["ok"] and report["items"] == 3 and report["barcodes"] == 3, ok.stderr
    assert report["descriptors"] > 3 * 100 and report["index_bytes"] > 0 and report["skipped"] == []
    lines = path.read_text().splitlines()
    broken = next(n for n, row in enumerate(lines) if row.startswith("ean ="))
    lines[broken] = 'ean = "123"'
    path.write_text("\n".join(lines) + "\n")
    stamp = path.stat().st_mtime_ns
    bad = subprocess.run([*lens, "lens", "index", str(folder)], capture_output=True, text=True, timeout=DEADLINE_S)
    assert bad.returncode == 1 and "2 items indexed" in bad.stdout
    assert f"skipped: {path}:{broken + 1}: item[1].ean: '123' is not an EAN-13" in bad.stdout, bad.stdout
    assert path.stat().st_mtime_ns > stamp
    path.write_text("[match]\nthreshold = 2\n")
    fatal = subprocess.run([*lens, "lens", "index", str(folder)], capture_output=True, text=True, timeout=DEADLINE_S)
    assert fatal.returncode == 2 and "catalog.toml" in fatal.stderr
