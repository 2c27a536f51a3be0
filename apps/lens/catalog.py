"""The lens app's backends: the offline catalog (apps/lens/catalog, or $LENS_CATALOG_DIR) and an
optional online shopping API, behind one interface.

    backend = open_backend(load(directory))
    seen = backend.look(pixels)      # inside the frame's view: only what is needed, copied out
    answer = backend.identify(seen)  # an Answer, or None for "not sure"

The online API is asked with a JPEG of the view (POST, JSON back:
{"name", "price", "currency", "confidence"}); any error, timeout or
unsure answer falls back to the offline catalog, which always answers.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from apps.lens.recognizer import Found, Index
from policies.checker import PolicyError, Rule, Tables, read_checked

log = logging.getLogger("lens")
CATALOG_DIR = Path(__file__).resolve().parent / "catalog"
BEHIND = (128, 128, 128)  # a cut-out pack picture is indexed over this
SCHEMA = {
    "match": {
        "threshold": Rule("float", 0.0, 1.0, doc="confidence the best item needs to be named"),
        "margin": Rule("float", 0.0, 1.0, doc="how far its evidence must lead a rival's for the same place"),
    },
    "online": {
        "endpoint": Rule("str", doc="a shopping API's URL ('' for offline only)"),
        "timeout_s": Rule("float", 0.1, 60.0, doc="no answer within this: the offline catalog answers"),
        "api_key_env": Rule("str", doc="environment variable holding the API key"),
    },
    "item": Tables({
        "id": Rule("str", doc="the item's id"),
        "name": Rule("str", doc="as said and shown"),
        "name_zh": Rule("str", doc="its name in Chinese"),
        "price": Rule("float", 0.0, 1e9, doc="its price"),
        "currency": Rule("str", doc="ISO 4217 code, e.g. CNY"),
        "ean": Rule("str", doc="its EAN-13 (13 digits, the last the check digit)"),
        "image": Rule("str", doc="its pack picture (PNG or JPEG, a cut-out with alpha at best) beside catalog.toml"),
    }, doc="the products"),
}
ITEM_ERROR = re.compile(r":\d+: item\[(\d+)\]")


@dataclass(frozen=True)
class Answer:
    name: str
    price: float
    currency: str
    confidence: float
    source: str  # "catalog" or "online"
    how: str = ""  # the rung that named it: barcode, features, features+text, text
    outline: tuple = ()  # where it is in the view, (x, y) corners, for the preview


@dataclass(frozen=True)
class Catalog:
    items: dict[str, dict]
    index: Index
    threshold: float
    margin: float
    online: dict
    skipped: tuple[str, ...] = ()  # each broken [[item]], as file:line: why
    path: Path | None = None
    stamp: float = 0.0  # catalog.toml's mtime when read: a newer one is read again


def catalog_dir() -> Path:
    return Path(os.environ.get("LENS_CATALOG_DIR") or CATALOG_DIR)


def ean_ok(code: str) -> bool:
    if len(code) != 13 or not code.isdigit():
        return False
    return sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(code[:12])) % 10 == (10 - int(code[12])) % 10


def _item_line(text: str, index: int, key: str) -> int:
    """The line of `key` in the index-th [[item]] (0-based), or of its header."""
    lines = text.splitlines()
    headers = [n for n, line in enumerate(lines, 1) if re.fullmatch(r"\[\[\s*item\s*\]\]\s*(#.*)?", line.strip())]
    first = headers[index] if index < len(headers) else 1
    last = headers[index + 1] if index + 1 < len(headers) else len(lines) + 1
    return next((n for n in range(first, last) if re.match(rf"{key}\s*=", lines[n - 1].strip())), first)


def load(directory: Path | None = None) -> Catalog:
    """Read and check catalog.toml and every pack picture, and index them. A broken [[item]] is named
    (file:line: why), logged and skipped; a broken [match] or [online], or no item left, is a PolicyError."""
    directory = directory or catalog_dir()
    path = directory / "catalog.toml"
    skipped: list[str] = []
    bad: set[int] = set()
    try:
        read_checked(path, SCHEMA)
    except PolicyError as exc:
        fatal = [e for e in exc.errors if not ITEM_ERROR.search(e)]
        if fatal:
            raise PolicyError(fatal) from None
        skipped += exc.errors
        bad = {int(ITEM_ERROR.search(e).group(1)) - 1 for e in exc.errors}
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    items, pictures = {}, {}
    for n, item in enumerate(data["item"]):
        if n in bad:
            continue
        item = dict(item, price=float(item["price"]))

        def skip(key: str, why: str, n=n) -> None:
            skipped.append(f"{path}:{_item_line(text, n, key)}: item[{n + 1}].{key}: {why}")
        if item["id"] in items:
            skip("id", f"{item['id']!r} is there twice")
            continue
        if not ean_ok(item["ean"]):
            skip("ean", f"{item['ean']!r} is not an EAN-13 with its check digit")
            continue
        try:
            with Image.open(directory / item["image"]) as image:
                pictures[item["id"]] = (np.asarray(flatten(image)), item["ean"], solid(image))
        except (OSError, ValueError) as exc:
            skip("image", f"cannot read it: {exc}")
            continue
        items[item["id"]] = item
    for why in skipped:
        log.warning("catalog: %s (skipped)", why)
    if not items:
        raise PolicyError(f"{path}: no item left to recognise ({len(skipped)} skipped)")
    return Catalog(items, Index(pictures, items), data["match"]["threshold"], data["match"]["margin"], data["online"],
                   tuple(skipped), path, path.stat().st_mtime)


def solid(image: Image.Image) -> np.ndarray | None:
    """Where a cut-out is the pack (alpha at least half), or None for a picture without alpha: all of it."""
    if image.mode not in ("RGBA", "LA", "P"):
        return None
    return np.asarray(image.convert("RGBA"))[..., 3] >= 128


def flatten(image: Image.Image) -> Image.Image:
    """A cut-out pack over a plain grey; a picture without alpha as it is."""
    if image.mode in ("RGBA", "LA", "P"):
        behind = Image.new("RGBA", image.size, BEHIND + (255,))
        behind.alpha_composite(image.convert("RGBA"))
        return behind.convert("RGB")
    return image.convert("RGB")


class Offline:
    name = "catalog"
    # How long the app gives identify(): tens of milliseconds by barcode or features; reading text adds 0.1 to
    # 0.7 s, and several seconds on a 2-core machine loaded eight deep (measured: 3.8 s for a first read).
    patience_s = 10.0

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def look(self, pixels: np.ndarray) -> np.ndarray:
        """The view, copied out of the ring (the frame may be overwritten once we let go)."""
        return np.array(pixels[..., :3])

    def identify(self, seen: np.ndarray) -> Answer | None:
        c = self.catalog
        found: Found = c.index.identify(seen, c.threshold)
        log.info("catalog: %s by %s (%.2f sure, %s)", found.id or "not sure", found.rung or "nothing",
                 found.confidence, found.evidence)
        if found.id is None or found.confidence < c.threshold:
            return None
        if found.rung == "features" and found.evidence.get("rival", 0) > (1 - c.margin) * found.evidence["inliers"]:
            return None  # another pack claims the same place nearly as well, and its name was not read to tell
        item = c.items[found.id]
        outline = tuple((round(float(x)), round(float(y))) for x, y in found.outline) if found.outline is not None \
            else ()
        return Answer(item["name"], item["price"], item["currency"], found.confidence, "catalog", found.rung,
                      outline)


class Online:
    """A shopping API; the offline catalog answers whenever it cannot."""
    name = "online"

    def __init__(self, catalog: Catalog, offline: Offline):
        self.endpoint = catalog.online["endpoint"]
        self.timeout = catalog.online["timeout_s"]
        self.key = os.environ.get(catalog.online["api_key_env"], "")
        self.offline = offline
        self.patience_s = 3 * self.timeout + offline.patience_s  # connect, send, read; then the catalog

    def look(self, pixels: np.ndarray) -> tuple[bytes, np.ndarray]:
        jpeg = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels)).save(jpeg, "JPEG", quality=85)
        return jpeg.getvalue(), self.offline.look(pixels)

    def identify(self, seen: tuple[bytes, np.ndarray]) -> Answer | None:
        jpeg, sig = seen
        headers = {"Content-Type": "image/jpeg", **({"Authorization": f"Bearer {self.key}"} if self.key else {})}
        try:
            request = urllib.request.Request(self.endpoint, data=jpeg, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                body = json.loads(reply.read(64 * 1024))
            answer = Answer(str(body["name"]), float(body["price"]), str(body["currency"]),
                            float(body.get("confidence", 1.0)), "online")
        except (OSError, urllib.error.URLError, ValueError, KeyError, TypeError) as exc:
            log.warning("online: %s; the catalog answers", exc)
            return self.offline.identify(sig)
        return answer if answer.confidence >= self.offline.catalog.threshold else self.offline.identify(sig)


def open_backend(catalog: Catalog, offline_only: bool = False) -> Offline | Online:
    offline = Offline(catalog)
    return offline if offline_only or not catalog.online["endpoint"] else Online(catalog, offline)
