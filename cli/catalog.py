"""`lens lens index`: check the lens app's catalog (apps/lens/catalog.py) and build its index, as the app does.

Every broken [[item]] is named by file and line (and skipped, as the app skips it); then the index is built
and measured (items, descriptors, build time, memory). On success catalog.toml's time is brought forward, so a
running lens app indexes the catalog again at its next look (it watches that file). Nothing heavy is
imported until the command runs: `lens --help` stays light.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def add_parser(commands) -> None:
    lens = commands.add_parser("lens", help="the lens app's catalog: check it and build its index",
                               description="The lens app's offline catalog (apps/lens/catalog, or "
                                           "$LENS_CATALOG_DIR).")
    lens_cmds = lens.add_subparsers(dest="lens_command", metavar="COMMAND", required=True)
    p = lens_cmds.add_parser("index", help="check the catalog and build its index",
                             description="Check every [[item]] of catalog.toml (a broken one is named by file and "
                                         "line, and skipped) and build the index the app looks things up in: "
                                         "items, descriptors, build time and memory. A running lens app indexes "
                                         "the catalog again at its next look. Exit 1 when an item was skipped, "
                                         "2 when the catalog cannot be used at all.")
    p.add_argument("directory", nargs="?", type=Path, help="the catalog's folder (default: the app's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_index)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cmd_index(args) -> int:
    from apps.lens.catalog import catalog_dir, load
    from policies.checker import PolicyError

    directory = args.directory or catalog_dir()
    before, started = _rss_bytes(), time.perf_counter()
    try:
        catalog = load(directory)
    except (PolicyError, OSError) as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc)}))
        else:
            print(f"lens lens index: {exc}", file=sys.stderr)
        return 2
    seconds, grown = time.perf_counter() - started, _rss_bytes() - before
    path = directory / "catalog.toml"
    os.utime(path)  # a running lens app compares this time with its index's, and indexes again
    index = catalog.index
    report = {"ok": not catalog.skipped, "catalog": str(path), "items": len(catalog.items),
              "skipped": list(catalog.skipped), "descriptors": len(index.owners), "barcodes": len(index.by_ean),
              "build_s": round(seconds, 2), "index_bytes": index.nbytes, "process_growth_bytes": grown}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['items']} items indexed from {path} in {seconds:.2f} s: {report['descriptors']} ORB "
              f"descriptors ({index.nbytes / 2**20:.1f} MiB), {report['barcodes']} barcodes; the process grew "
              f"{grown / 2**20:.0f} MiB reading and indexing it")
        for why in catalog.skipped:
            print(f"skipped: {why}")
        print("a running lens app indexes it again at its next look")
    return 0 if not catalog.skipped else 1
