"""Benchmark: how well and how fast the lens app's offline catalog recognises what the camera sees.

    python bench/lens.py [--rounds 12] [--seed 7]

Every catalog product is held up (off centre, bigger or smaller, in other
light, with noise) in front of five backgrounds, --rounds times; scenes
without any product are shown as often. Printed: right, wrong and "not sure"
per background, false answers on the empty scenes, and the time of one look
(signature + match) as a ratio to copying the 640x480 frame once, measured
in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from apps.lens.catalog import CATALOG_DIR, Offline, load  # noqa: E402
from tests.apps.scenes import held_up, nothing  # noqa: E402

BACKGROUNDS = ("table", "desk", "wall", "outdoors", "clutter")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    catalog = load()
    backend = Offline(catalog)
    rng = np.random.default_rng(args.seed)
    products = {item: Image.open(CATALOG_DIR / row["image"]).convert("RGB") for item, row in catalog.items.items()}
    names = {row["name"]: item for item, row in catalog.items.items()}
    outcome: dict[str, Counter] = {kind: Counter() for kind in BACKGROUNDS}
    looks, copies = [], []
    for _ in range(args.rounds):
        for item, product in products.items():
            for kind in BACKGROUNDS:
                frame = held_up(product, kind, rng)
                t0 = time.perf_counter()
                answer = backend.identify(backend.look(frame))
                looks.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                frame.copy()
                copies.append(time.perf_counter() - t0)
                outcome[kind]["not sure" if answer is None else "right" if names[answer.name] == item else "wrong"] += 1
    false = Counter()
    for _ in range(args.rounds * len(products)):
        for kind in BACKGROUNDS:
            false[kind] += backend.identify(backend.look(nothing(kind, rng))) is not None
    print(f"catalog of {len(products)} products, threshold {catalog.threshold}, margin {catalog.margin}")
    print(f"{'background':12}{'right':>8}{'not sure':>10}{'wrong':>7}{'empty scenes named':>20}")
    for kind in BACKGROUNDS:
        c, n = outcome[kind], args.rounds * len(products)
        print(f"{kind:12}{c['right']:>8}{c['not sure']:>10}{c['wrong']:>7}{false[kind]:>14} / {n}")
    total = sum(outcome.values(), Counter())
    print(f"{'all':12}{total['right']:>8}{total['not sure']:>10}{total['wrong']:>7}{sum(false.values()):>14} / "
          f"{args.rounds * len(products) * len(BACKGROUNDS)}")
    look, copy = statistics.median(looks), statistics.median(copies)
    print(f"\none look: median {look * 1e3:.2f} ms = {look / copy:.0f}x one copy of the frame ({copy * 1e3:.3f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
