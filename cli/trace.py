"""`lens trace`: where the seconds of an answer went, hop by hop (bus.tracing, bustools.timeline).

Live, it watches the bus (as `lens bus sniff` does: from the tap, at idle priority) and prints each trace
once it has been quiet for --quiet seconds: the next assistant session, gesture or notification. With
--file it reads a recording (`lens bus record`), whose messages keep their trace ids. `lens say --trace`
prints the timeline of its own question.
"""

from __future__ import annotations

import json
import sys
import time

from bustools import bag
from bustools.timeline import Collector, Trace
from cli.connect import watching_node

QUIET_S = 6.0  # after the answer: the LED's hold (3 s) and the card's time up (5 s) are hops too


def add_parser(commands) -> None:
    p = commands.add_parser("trace", help="where the time of an answer went: each process's hops, timed",
                            description="Print traces as timelines: which process, which hop, how long, where "
                                        "it waited. Live (the next traces on the bus: hold the temple, say "
                                        "something, or run `lens say` meanwhile) or from a recording.")
    p.add_argument("--file", metavar="REC", help="read a recording (lens bus record) instead of the live bus")
    p.add_argument("--count", type=int, default=1, metavar="N",
                   help="live: stop after N traces (default 1); --file: the last N (0: all)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="live: give up after S seconds")
    p.add_argument("--quiet", type=float, default=QUIET_S, metavar="S",
                   help=f"a trace is complete once nothing was added to it for S seconds (default {QUIET_S:g})")
    p.add_argument("--min-hops", type=int, default=2, metavar="N",
                   help="leave out traces of fewer hops (a notification nobody acted on; default 2)")
    p.add_argument("--json", action="store_true", help="one JSON object per trace")
    p.add_argument("--normal-priority", action="store_true",
                   help="watch at normal priority instead of SCHED_IDLE")
    p.set_defaults(func=cmd_trace)


def show(trace: Trace, as_json: bool) -> None:
    if as_json:
        print(json.dumps(trace.as_json()), flush=True)
    else:
        print("\n".join(trace.lines()), flush=True)


def cmd_trace(args) -> int:
    if args.file:
        return from_file(args)
    args.runtime = args.runtime_dir  # watching_node's name for it, as the bus commands set it
    printed = 0
    collector = Collector(args.quiet)
    with watching_node(args, "trace") as node:
        def on_message(msg) -> None:
            collector.add(msg, time.monotonic_ns())

        def sweep() -> None:
            nonlocal printed
            for trace in collector.complete(time.monotonic_ns()):
                if len(trace.hops()) < args.min_hops or printed >= args.count:
                    continue
                show(trace, args.json)
                printed += 1
            if printed >= args.count:
                node.stop()

        node.subscribe("", on_message, from_anyone=True)
        node.every(min(0.25, args.quiet / 2), sweep)
        node.after(args.timeout, node.stop)
        node.start()
        print(f"lens trace: waiting for {args.count} trace(s) on the bus", file=sys.stderr, flush=True)
        node.run()
    if printed < args.count:
        print(f"lens trace: {printed} of {args.count} traces within {args.timeout:g} s", file=sys.stderr)
        return 1
    return 0


def from_file(args) -> int:
    collector = Collector(0)
    damaged = None
    for item in bag.iterate(args.file):
        if isinstance(item, bag.Damage):
            damaged = item
        elif not isinstance(item, tuple):
            collector.add(item, 0)
    traces = [t for t in collector.complete(1) if len(t.hops()) >= args.min_hops]
    for trace in traces[-args.count:] if args.count else traces:
        show(trace, args.json)
    if damaged is not None:
        print(f"lens trace: {args.file}: read {damaged.messages_read} messages, then {damaged.why}", file=sys.stderr)
    if not traces:
        print(f"lens trace: {args.file}: no traces (recorded before traces existed, or nothing traced ran)",
              file=sys.stderr)
        return 1
    return 0
