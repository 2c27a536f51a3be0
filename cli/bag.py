"""`lens bus record | snapshot | replay | info`: recordings of the bus (MCAP) from the command line."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from bustools import bag
from bus.errors import BusError
from bus.wakeup import interrupt_on_stop_signals

STOP_GRACE_S = 0.3


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _not_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text}")
    return value


def add_parsers(commands) -> None:
    p = commands.add_parser("record", help="record the bus into an MCAP file (opens in Foxglove)",
                            description="Record messages under the given prefixes (all when none) into MCAP, "
                                        "until Ctrl-C or --duration. Camera frames, mic audio and photos stay "
                                        "out (their descriptors and timing go in) unless --include-capture.")
    p.add_argument("prefixes", nargs="*", metavar="PREFIX")
    p.add_argument("-o", "--output", required=True, metavar="FILE.mcap")
    p.add_argument("--duration", type=_positive, metavar="S", help="stop after S seconds")
    p.add_argument("--split-size", type=_positive, metavar="MB", help="start a new file after this many MB")
    p.add_argument("--split-time", type=_positive, metavar="S", help="start a new file after this many seconds")
    p.add_argument("--compression", choices=("zstd", "lz4", "none"), default="zstd")
    p.add_argument("--include-capture", action="store_true",
                   help="put camera frames (as JPEG), mic audio and photos in: only for an identity that may see "
                        "them (the developer's), written into the privacy log, and the file marked as holding them")
    p.add_argument("--frame-every", type=_at_least_one, default=1, metavar="N",
                   help="with --include-capture: store every N-th camera frame (1)")
    p.add_argument("--snapshot", type=_positive, metavar="S",
                   help="keep only the last S seconds in memory; `lens bus snapshot` writes them next to -o")
    p.set_defaults(func=cmd_record)

    p = commands.add_parser("snapshot", help="write the running snapshot recorder's last seconds to a file",
                            description="Ask `lens bus record --snapshot S` to write what it keeps.")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_snapshot)

    p = commands.add_parser("replay", help="publish a recording back onto the bus with its original timing",
                            description="Replay an MCAP recording: each source as itself, frames back into a "
                                        "shared-memory ring.")
    p.add_argument("file")
    p.add_argument("--rate", type=_positive, default=1.0, help="speed (2: twice as fast)")
    p.add_argument("--loop", action="store_true", help="start over at the end, until Ctrl-C")
    p.add_argument("--start", type=_not_negative, default=0.0, metavar="S", help="skip the first S seconds")
    p.add_argument("--topics", nargs="+", default=[], metavar="PREFIX", help="only these topic prefixes")
    p.add_argument("--block", nargs="+", default=[], metavar="PREFIX", help="not these topic prefixes")
    p.add_argument("--exclude-source", action="append", default=[], metavar="NAME",
                   help="not what NAME published (e.g. shell, to replay into a fresh shell)")
    p.add_argument("--paused", action="store_true", help="one message per Enter")
    p.set_defaults(func=cmd_replay)

    p = commands.add_parser("info", help="what a recording holds: duration, topics, counts, rates, gaps",
                            description="Summarize an MCAP recording, like `ros2 bag info`.")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)


def cmd_record(args) -> int:
    from cli.connect import tool_node
    from bustools.capture_content import private_mark
    from bustools.record import Output, Recorder

    # A snapshot recorder serves bus.snapshot.request, whose owner in the table is "recorder".
    node = tool_node("record", args.runtime, name="recorder" if args.snapshot else None)
    consent = None
    if args.include_capture:
        what = f"snapshots of the last {args.snapshot:g} s next to {args.output}" if args.snapshot else args.output
        consent = consent_for(node, "lens bus record", what)
        if consent is None:
            node.close()
            return 2
    mark = consent.mark if consent is not None else private_mark
    output = None if args.snapshot else Output(Path(args.output), args.compression,
                                                int((args.split_size or 0) * 1e6), args.split_time or 0.0, mark)
    recorder = Recorder(node, output, args.prefixes, args.frame_every, args.snapshot or 0.0, Path(args.output),
                        args.compression, consent)
    try:
        node.start()
        if args.duration:
            node.after(args.duration, node.stop)
        print(f"lens bus record: recording {' '.join(args.prefixes) or 'everything'}"
              f"{' (last %gs kept for `lens bus snapshot`)' % args.snapshot if args.snapshot else ''}; Ctrl-C stops",
              file=sys.stderr)
        node.run()
        settle = time.monotonic() + STOP_GRACE_S  # what the broker already sent us still goes in the file
        while time.monotonic() < settle and not recorder.failed:
            node.run_once(0.05)
    finally:
        gaps = recorder.close()
        node.close()
        if consent is not None:
            consent.close(recorder.failed or "the recording stopped")
    files = output.paths if output else []
    print(f"lens bus record: {output.messages if output else 0} messages in {', '.join(map(str, files)) or '-'}; "
          + (f"GAPS: {', '.join(f'{k}: {v} missing' for k, v in gaps.items())}" if gaps else "no gaps"),
          file=sys.stderr)
    if recorder.failed:
        print(f"lens bus record: stopped early: {recorder.failed}; the files before the last are whole",
              file=sys.stderr)
        return 1
    return 0


def consent_for(node, command: str, what: str):
    """--include-capture: the identity may see capture, and the privacy log has the session (fsync'ed) before
    anything is kept or sent; None, having said why, when not."""
    from bustools.capture_content import Consent, who_may_see
    from bus.runtime import state_dir
    from shell.daemon import AUDIT_FILE

    why_not = who_may_see(node.identity)
    if why_not is not None:
        print(f"{command}: --include-capture refused: {why_not}", file=sys.stderr)
        return None
    log_path = state_dir(None, node.runtime.dir) / AUDIT_FILE
    try:
        consent = Consent(node.identity, log_path, f"{command} --include-capture: {what}")
    except OSError as exc:
        print(f"{command}: --include-capture refused: the privacy log {log_path} cannot be written "
              f"({exc.strerror})", file=sys.stderr)
        return None
    print(f"{command}: camera frames, mic audio and photos go in (privacy log: {log_path})", file=sys.stderr)
    return consent


def cmd_snapshot(args) -> int:
    from cli.connect import tool_node

    with tool_node("snapshot", args.runtime) as node:
        result = node.request("bus.snapshot.request", timeout=10.0)
    print(json.dumps(result) if args.json else f"{result['path']}: {result['messages']} messages")
    return 0


def cmd_replay(args) -> int:
    from cli.connect import need_bus
    from bustools.replay import Replayer

    items, damage, _ = _load(args.file)
    need_bus(args.runtime)
    if damage:
        print(f"lens bus replay: {args.file} is damaged after {damage.messages_read} messages ({damage.why}); "
              "replaying what comes before", file=sys.stderr)
    step = (lambda item: input(f"{item.topic} from {item.source} (Enter) ")) if args.paused else None
    replayer = Replayer(args.runtime, args.rate, args.topics, args.block, args.exclude_source, step)
    interrupt_on_stop_signals()
    try:
        while True:
            replayer.play(items, args.start)
            if not args.loop:
                break
    except KeyboardInterrupt:
        pass
    finally:
        replayer.close()
    print(f"lens bus replay: {replayer.published} messages published, {replayer.skipped} skipped", file=sys.stderr)
    return 1 if damage else 0


def _load(path: str) -> tuple[list[bag.Recorded], bag.Damage | None, dict]:
    """Every recorded message (images too) in file order, the damage that ended reading (if any), metadata."""
    items, damage, metadata = [], None, {}
    try:
        for item in bag.iterate(path):
            if isinstance(item, bag.Recorded):
                items.append(item)
            elif isinstance(item, bag.Damage):
                damage = item
            else:
                metadata[item[1]] = item[2]
    except bag.BagError as exc:
        raise BusError(str(exc)) from None
    return items, damage, metadata


def _capture(items: list[bag.Recorded], metadata: dict) -> dict:
    """Whether the file holds capture content: what is in it, read message by message, and its mark."""
    from bustools.capture_content import RESOURCES, carries, summary

    found = dict.fromkeys(RESOURCES, 0)
    withheld = 0
    for m in items:
        resource = carries(m.topic, m.payload)
        if resource:
            found[resource] += 1
        withheld += bool(m.withheld)
    return dict(summary(metadata, found), withheld=withheld)


def _capture_line(capture: dict) -> str:
    if capture["holds"]:
        what = ", ".join(f"{capture['counts'][r]} {r} message(s) with content" for r in capture["holds"])
        by = f"; recorded with --include-capture by {capture['identity']}, privacy log sessions " \
             f"{capture['privacy_sessions']}" if capture["marked"] else ""
        warn = "; NOT MARKED as holding it (recorded before recordings were private, or altered)" \
            if capture["unmarked_content"] else ""
        return f"YES: {what}{by}{warn}"
    if capture["marked"]:
        return f"none found, though recorded with --include-capture by {capture['identity']}"
    kept_out = f" ({capture['withheld']} message(s) with it withheld)" if capture["withheld"] else ""
    return f"none: camera frames, mic audio and photos were kept out{kept_out}" if capture["marked"] is not None \
        else f"none found (the file carries no capture mark){kept_out}"


def cmd_info(args) -> int:
    items, damage, metadata = _load(args.file)
    gaps = {k: int(v) for k, v in metadata.get("lensos.gaps", {}).items()}
    by_topic = Counter(m.topic for m in items)
    sources = defaultdict(set)
    for m in items:
        sources[m.topic].add(m.source)
    times = [m.log_ns for m in items]
    duration = (max(times) - min(times)) / 1e9 if len(times) > 1 else 0.0
    rows = [{"topic": t, "count": n, "hz": round(n / duration, 2) if duration else None,
             "sources": sorted(sources[t])} for t, n in sorted(by_topic.items())]
    info = {"file": args.file, "duration_s": round(duration, 3), "messages": len(items),
            "topics": rows, "gaps": gaps, "capture": _capture(items, metadata), "damaged": damage.why if damage else None}
    if args.json:
        print(json.dumps(info))
        return 1 if damage else 0
    print(f"file:      {args.file}\nduration:  {duration:.3f} s\nmessages:  {info['messages']}")
    if items:
        median = statistics.median(len(json.dumps(m.payload, default=str)) for m in items)
        print(f"payloads:  median {median:.0f} bytes of JSON")
    print(f"{'TOPIC':30} {'COUNT':>7} {'HZ':>8}  SOURCES")
    for row in rows:
        print(f"{row['topic']:30} {row['count']:7} {row['hz'] if row['hz'] is not None else '-':>8}  "
              f"{', '.join(row['sources'])}")
    print("gaps:      " + (", ".join(f"{k}: {v} missing" for k, v in gaps.items()) or "none"))
    print("capture:   " + _capture_line(info["capture"]))
    if damage:
        print(f"DAMAGED:   after {damage.messages_read} messages: {damage.why}")
    return 1 if damage else 0
