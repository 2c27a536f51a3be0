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
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from apps.lens.matcher import Signature, best, signature
from policies.schema import PolicyError, Rule, Tables, read_checked

log = logging.getLogger("lens")
CATALOG_DIR = Path(__file__).resolve().parent / "catalog"
BACKDROP = (235, 235, 235)  # the catalog's product shots are taken on this
SCHEMA = {
    "match": {
        "threshold": Rule("float", 0.0, 1.0, doc="score the best item needs to be named"),
        "margin": Rule("float", 0.0, 1.0, doc="lead it needs over the runner-up"),
    },
    "online": {
        "endpoint": Rule("str", doc="a shopping API's URL ('' for offline only)"),
        "timeout_s": Rule("float", 0.1, 60.0, doc="no answer within this: the offline catalog answers"),
        "api_key_env": Rule("str", doc="environment variable holding the API key"),
    },
    "item": Tables({
        "id": Rule("str", doc="the item's id"),
        "name": Rule("str", doc="as said and shown"),
        "price": Rule("float", 0.0, 1e9, doc="its price"),
        "currency": Rule("str", doc="ISO 4217 code, e.g. CNY"),
        "image": Rule("str", doc="its product shot (PNG or JPEG) beside catalog.toml"),
    }, doc="the products"),
}


@dataclass(frozen=True)
class Answer:
    name: str
    price: float
    currency: str
    confidence: float
    source: str  # "catalog" or "online"


@dataclass(frozen=True)
class Catalog:
    items: dict[str, dict]
    signatures: dict[str, Signature]
    threshold: float
    margin: float
    online: dict


def catalog_dir() -> Path:
    return Path(os.environ.get("LENS_CATALOG_DIR") or CATALOG_DIR)


def load(directory: Path | None = None) -> Catalog:
    """Read and check catalog.toml and every product shot; PolicyError naming the file and line."""
    directory = directory or catalog_dir()
    path = directory / "catalog.toml"
    data = read_checked(path, SCHEMA)
    items, signatures = {}, {}
    for item in data["item"]:
        if item["id"] in items:
            raise PolicyError(f"{path}: item id {item['id']!r} is there twice")
        try:
            with Image.open(directory / item["image"]) as image:
                pixels = np.asarray(image.convert("RGB"))
        except OSError as exc:
            raise PolicyError(f"{path}: item {item['id']!r}: cannot read its image: {exc}") from None
        items[item["id"]] = item
        signatures[item["id"]] = signature(pixels, backdrop=BACKDROP)
    return Catalog(items, signatures, data["match"]["threshold"], data["match"]["margin"], data["online"])


class Offline:
    name = "catalog"
    patience_s = 5.0  # how long the app gives identify() (milliseconds, normally)

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def look(self, pixels: np.ndarray) -> Signature:
        return signature(pixels)

    def identify(self, seen: Signature) -> Answer | None:
        c = self.catalog
        match = best(seen, c.signatures, c.threshold, c.margin)
        log.info("catalog: %s (score %.2f, runner-up %.2f)", match.id or "not sure", match.score, match.runner_up)
        if match.id is None:
            return None
        item = c.items[match.id]
        return Answer(item["name"], item["price"], item["currency"], match.score, "catalog")


class Online:
    """A shopping API; the offline catalog answers whenever it cannot."""
    name = "online"

    def __init__(self, catalog: Catalog, offline: Offline):
        self.endpoint = catalog.online["endpoint"]
        self.timeout = catalog.online["timeout_s"]
        self.key = os.environ.get(catalog.online["api_key_env"], "")
        self.offline = offline
        self.patience_s = 3 * self.timeout + offline.patience_s  # connect, send, read; then the catalog

    def look(self, pixels: np.ndarray) -> tuple[bytes, Signature]:
        jpeg = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels)).save(jpeg, "JPEG", quality=85)
        return jpeg.getvalue(), self.offline.look(pixels)

    def identify(self, seen: tuple[bytes, Signature]) -> Answer | None:
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
