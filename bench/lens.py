"""Benchmark (not a test): how well and how fast the lens recognises catalog packs as the camera sees them.

    python bench/lens.py [--per 20] [--seed 7]

Every condition of apps/lens/views.py (scale, rotation, perspective, stretch, blur, noise, JPEG, light,
occlusion, clutter, all at once) on random packs of the shipped catalog, --per looks each; as many scenes
without a catalog pack (clutter, a wall, other brands' packs drawn alike). Printed: right / wrong / not sure
per condition, non-items named, latency per look (p50, p99) at 640x480, index build time. Not yet: the curve
at 10 and 1000 items, and the index's memory.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from apps.lens import draw_catalog  # noqa: E402
from apps.lens.catalog import CATALOG_DIR, Offline, load  # noqa: E402
from apps.lens.views import CONDITIONS, nothing  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    catalog = load()
    print(f"{len(catalog.items)} items indexed in {time.perf_counter() - started:.2f} s "
          f"({len(catalog.index.owners)} descriptors); {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    backend, rng = Offline(catalog), np.random.default_rng(args.seed)
    ids = sorted(catalog.items)
    packs = {i: Image.open(CATALOG_DIR / catalog.items[i]["image"]) for i in ids}
    times, totals = [], [0, 0, 0]
    print(f"{'condition':12} {'right':>6} {'wrong':>6} {'unsure':>7}")
    for name, condition in CONDITIONS.items():
        counts = [0, 0, 0]
        for _ in range(args.per):
            item = ids[rng.integers(len(ids))]
            view = condition(packs[item], rng)
            t = time.perf_counter()
            answer = backend.identify(backend.look(view))
            times.append(time.perf_counter() - t)
            counts[2 if answer is None else 0 if answer.name == catalog.items[item]["name"] else 1] += 1
        totals = [a + b for a, b in zip(totals, counts)]
        print(f"{name:12} {counts[0]:6d} {counts[1]:6d} {counts[2]:7d}")
    n = sum(totals)
    print(f"{'all':12} {totals[0] / n:6.1%} {totals[1] / n:6.1%} {totals[2] / n:7.1%}")
    strangers = draw_catalog.items(len(ids) + 50)[len(ids):]
    named = 0
    for k in range(args.per * 3):
        stranger = draw_catalog.draw(strangers[k % len(strangers)]) if k % 2 else None
        view = nothing(rng, stranger)
        t = time.perf_counter()
        named += backend.identify(backend.look(view)) is not None
        times.append(time.perf_counter() - t)
    print(f"non-items named: {named} of {args.per * 3}")
    ms = np.array(times) * 1000
    print(f"latency per look: p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
