"""Benchmark (not a test): how well and how fast the lens recognises catalog packs as the camera sees them.

    python bench/lens.py [--per 20] [--seed 7] [--items N]
    python bench/lens.py --curve [--per 6]
    python bench/lens.py --strangers 200 [--skip 0] [--seed 7]

Every condition of apps/lens/views.py (scale, rotation, perspective, stretch, blur, noise, JPEG, light,
occlusion, clutter, all at once) on random packs of the catalog, --per looks each; three times --per scenes
without a catalog pack (clutter, a bare wall, and other brands' packs of the same goods drawn alike, which
the catalog does not have). Printed: right / wrong / not sure per condition and the rung that named them,
non-items named, latency per look (p50, p99) at 640x480, the index's build time and memory.

--items N draws a catalog of N items (apps/lens/draw_catalog.py, into a temporary folder: nothing is
committed) instead of the shipped 120; --curve does 10, 100 and 1000 and prints one line each. At 1000 every
brand-goods pair the generator has is in the catalog, so its non-items are clutter and walls only.
--strangers N is the look-alike sweep: N other brands' packs of the catalog's goods (the generator's next N
after --skip, none of them in the catalog), each held up face on and under one condition in turn; printed:
how many of the 2N views were named, and as what.
Memory: the process's resident size after reading and indexing the catalog (glibc's free pages handed back
first) less before; Tesseract's models, loaded once whatever the catalog, are counted apart.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from apps.lens import draw_catalog  # noqa: E402
from apps.lens.catalog import CATALOG_DIR, Offline, load  # noqa: E402
from apps.lens.ocr import shared_reader  # noqa: E402
from apps.lens.views import CONDITIONS, nothing  # noqa: E402
from frames.held_up import held_up  # noqa: E402


def rss_mib() -> float:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(directory: Path, per: int, seed: int, verbose: bool) -> dict:
    before = rss_mib()
    started = time.perf_counter()
    catalog = load(directory)
    build_s = time.perf_counter() - started
    memory = rss_mib() - before
    backend, rng = Offline(catalog), np.random.default_rng(seed)
    ids = sorted(catalog.items)
    times, totals, rungs = [], [0, 0, 0], collections.Counter()
    if verbose:
        print(f"{len(ids)} items indexed in {build_s:.2f} s ({len(catalog.index.owners)} descriptors, "
              f"{memory:.0f} MiB); {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
        print(f"{'condition':12} {'right':>6} {'wrong':>6} {'unsure':>7}")
    for name, condition in CONDITIONS.items():
        counts = [0, 0, 0]
        for _ in range(per):
            item = ids[rng.integers(len(ids))]
            with Image.open(directory / catalog.items[item]["image"]) as picture:
                view = condition(picture, rng)
            t = time.perf_counter()
            answer = backend.identify(backend.look(view))
            times.append(time.perf_counter() - t)
            counts[2 if answer is None else 0 if answer.name == catalog.items[item]["name"] else 1] += 1
            if answer is not None:
                rungs[answer.how] += 1
        totals = [a + b for a, b in zip(totals, counts)]
        if verbose:
            print(f"{name:12} {counts[0]:6d} {counts[1]:6d} {counts[2]:7d}")
    n = sum(totals)
    room = len(draw_catalog.items(1000)) - len(ids)
    strangers = draw_catalog.items(len(ids) + min(50, room))[len(ids):] if room > 0 else []
    named = 0
    for k in range(per * 3):
        stranger = draw_catalog.draw(strangers[k % len(strangers)]) if k % 2 and strangers else None
        view = nothing(rng, stranger)
        t = time.perf_counter()
        named += backend.identify(backend.look(view)) is not None
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1000
    result = {"items": len(ids), "build_s": build_s, "memory_mib": memory, "right": totals[0] / n,
              "wrong": totals[1] / n, "unsure": totals[2] / n, "looks": n, "non_items": per * 3,
              "non_items_named": named, "strangers": bool(strangers), "p50_ms": float(np.percentile(ms, 50)),
              "p99_ms": float(np.percentile(ms, 99)), "rungs": dict(rungs)}
    if verbose:
        print(f"{'all':12} {result['right']:6.1%} {result['wrong']:6.1%} {result['unsure']:7.1%}")
        print("named by: " + ", ".join(f"{how} {count}" for how, count in rungs.most_common()))
        print(f"non-items named: {named} of {per * 3}" + ("" if strangers else " (clutter and walls only)"))
        print(f"latency per look: p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms")
    return result


def strangers(count: int, skip: int, seed: int) -> int:
    catalog = load(CATALOG_DIR)
    backend, rng = Offline(catalog), np.random.default_rng(seed)
    first = len(catalog.items) + skip
    drawn = draw_catalog.items(first + count)[first:]
    conditions = list(CONDITIONS.items())
    named = []
    for k, item in enumerate(drawn):
        picture = draw_catalog.draw(item)
        name, condition = conditions[k % len(conditions)]
        for how, view in (("face on", np.asarray(held_up(picture, 640, 480, 0.8))), (name, condition(picture, rng))):
            answer = backend.identify(backend.look(view))
            if answer is not None:
                named.append(f"{item['id']} ({how}) as {answer.name}, {answer.confidence:.0%} by {answer.how}")
    print(f"other brands' packs named: {len(named)} of {2 * len(drawn)} views ({len(drawn)} packs, face on and "
          f"under a condition each; the generator's {first + 1}-{first + len(drawn)})")
    for line in named:
        print(f"  {line}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per", type=int, default=None, help="looks per condition (default 20; 6 with --curve)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--items", type=int, default=0, help="draw a catalog of this many (default: the shipped)")
    parser.add_argument("--curve", action="store_true", help="10, 100 and 1000 items, one line each")
    parser.add_argument("--strangers", type=int, default=0, metavar="N",
                        help="the look-alike sweep: N other brands' packs, not in the catalog")
    parser.add_argument("--skip", type=int, default=0, help="with --strangers: start this far into them")
    args = parser.parse_args()
    if args.strangers:
        return strangers(args.strangers, args.skip, args.seed)
    before = rss_mib()
    shared_reader().read(np.full((32, 32), 255, np.uint8))  # Tesseract's models: loaded once, whatever the catalog
    print(f"Tesseract's models: {rss_mib() - before:.0f} MiB")
    if not args.curve and not args.items:
        measure(CATALOG_DIR, args.per or 20, args.seed, True)
        return 0
    sizes = [10, 100, 1000] if args.curve else [args.items]
    if args.curve:
        print(f"{'items':>6} {'build s':>8} {'MiB':>5} {'right':>6} {'wrong':>6} {'unsure':>7} {'non-items named':>16}"
              f" {'p50 ms':>7} {'p99 ms':>7}  (load {os.getloadavg()[0]:.1f} at start)")
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="lens-catalog-") as folder:
            draw_catalog.write(Path(folder), size, optimize=False)
            r = measure(Path(folder), args.per or (6 if args.curve else 20), args.seed, not args.curve)
        if args.curve:
            print(f"{r['items']:6d} {r['build_s']:8.2f} {r['memory_mib']:5.0f} {r['right']:6.1%} {r['wrong']:6.1%} "
                  f"{r['unsure']:7.1%} {r['non_items_named']:9d} of {r['non_items']:3d} {r['p50_ms']:7.1f} "
                  f"{r['p99_ms']:7.1f}" + ("" if r["strangers"] else "  (no strangers left to draw)"), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
