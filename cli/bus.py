"""`lens bus ...`: the broker and the developer's tools (sniff, top, pub, call, list; record, replay: cli.bag)."""

from __future__ import annotations

import json
import logging
import sys

from cli import bridge
from cli.connect import need_bus, tool_node, watching_node
from bus import keys
from bus.errors import BusError
from bus.lanes import lanes_for
from bus.node import Node
from bus.runtime import Runtime
from bustools.textform import jsonable, message_json, message_line, parse_assignments
from bus.topics import ANY_NODE, TOPICS, Kind, lookup
from bustools.top import TopView

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    bus = subparsers.add_parser("bus", help="the message bus: broker and tools",
                                description="Run the broker and look into the bus.")
    commands = bus.add_subparsers(dest="bus_command", metavar="COMMAND", required=True)

    p = commands.add_parser("broker", help="run the broker (XSUB/XPUB per lane, latched cache)",
                            description="Run the broker in the foreground until SIGTERM or Ctrl-C.")
    p.set_defaults(func=cmd_broker)

    p = commands.add_parser("sniff", help="print messages as they pass",
                            description="Print every valid message under the given topic prefixes "
                                        "(all when none), latched state first.")
    p.add_argument("prefixes", nargs="*", metavar="PREFIX", help="dotted topic prefix, e.g. power or demo.tick")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--count", type=int, metavar="N", help="exit after N messages")
    p.add_argument("--timeout", type=float, metavar="S", help="exit after S seconds (status 1 if --count not reached)")
    p.add_argument("--live", action="store_true", help="skip the latched state, show only new messages")
    p.add_argument("--stats", action="store_true", help="on exit, print per-topic counters (drops, malformed) to stderr")
    _add_priority_option(p)
    bridge.add_remote_options(p)
    p.set_defaults(func=cmd_sniff)

    p = commands.add_parser("top", help="per-topic rate, bandwidth, drops, publishers",
                            description="A refreshing table of every topic on the bus.")
    p.add_argument("--once", action="store_true", help="listen for --window seconds, print one table, exit")
    p.add_argument("--window", type=float, default=2.0, metavar="S", help="measuring window (default 2 s)")
    _add_priority_option(p)
    p.add_argument("--json", action="store_true", help="with --once: print JSON")
    p.set_defaults(func=cmd_top)

    p = commands.add_parser("pub", help="publish one message by hand, validated against the table",
                            description="Publish TOPIC with fields given as key=value (values read as each "
                                        "field's type; lists and maps as JSON).")
    p.add_argument("topic")
    p.add_argument("fields", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_pub)

    p = commands.add_parser("call", help="send a request and print the reply",
                            description="Send a request (a topic ending in .request) and print its reply.")
    p.add_argument("topic")
    p.add_argument("fields", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--timeout", type=float, default=2.0, metavar="S")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_call)

    p = commands.add_parser("list", help="topics in the table and those seen on the wire",
                            description="The topic table, with which topics are live and who publishes them.")
    p.add_argument("--listen", type=float, default=1.0, metavar="S",
                   help="seconds to watch the wire (0: the table and latched state only)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    from cli import bag, check, foxglove
    bag.add_parsers(commands)
    check.add_parsers(commands)
    foxglove.add_parsers(commands)
    bridge.add_parsers(commands)


def _add_priority_option(p) -> None:
    p.add_argument("--normal-priority", action="store_true",
                   help="compete for CPU like the glasses' own processes (by default a watching tool runs at idle "
                        "priority: on a busy machine it falls behind, and its drops count what it missed)")


def _tool_node(args, role: str, **kwargs) -> Node:
    return tool_node(role, args.runtime, **kwargs)


def cmd_broker(args) -> int:
    from broker.broker import serve
    return serve(args.runtime)


def cmd_sniff(args) -> int:
    prefixes = args.prefixes or [""]
    for prefix in prefixes:
        lanes_for(prefix)  # a prefix no topic has is named first, even with nothing running
    if args.remote:
        return bridge.sniff_remote(args, prefixes)
    printed = 0
    emit = message_json if args.json else message_line

    with watching_node(args, "sniff") as node:
        def show(msg):
            nonlocal printed
            if args.live and msg.latched:
                return
            if args.count is not None and printed >= args.count:
                return
            print(emit(msg), flush=True)
            printed += 1
            if args.count is not None and printed >= args.count:
                node.stop()

        for prefix in prefixes:
            node.subscribe(prefix, show, from_anyone=True)
        if args.timeout is not None:
            node.after(args.timeout, node.stop)
        node.start()
        print(f"lens bus sniff: listening to {', '.join(p or '(all)' for p in prefixes)}", file=sys.stderr, flush=True)
        node.run()
        if args.stats:
            print(json.dumps(node.stats()), file=sys.stderr)
    if args.count is not None and printed < args.count:
        print(f"lens bus sniff: {printed} of {args.count} messages before the timeout", file=sys.stderr)
        return 1
    return 0


def cmd_top(args) -> int:
    view = TopView()
    with watching_node(args, "top") as node:
        node.subscribe("", view.on_message, from_anyone=True)
        node.start()
        if args.once:
            view.reset_window()
            node.after(args.window, node.stop)
            node.run()
            view.merge_counters(node.intake)
            print(json.dumps(view.snapshot()) if args.json else view.render(), flush=True)
            return 0

        def refresh():
            view.merge_counters(node.intake)
            sys.stdout.write("\x1b[H\x1b[2J" + view.render() + "\n(Ctrl-C to quit)\n")
            sys.stdout.flush()
            view.reset_window()

        view.reset_window()
        node.every(max(args.window / 2, 0.5), refresh)
        node.run()
    return 0


def cmd_pub(args) -> int:
    topic = lookup(args.topic)
    if topic.kind in (Kind.REQUEST, Kind.REPLY):
        raise BusError(f"{topic.name} is a {topic.kind.value}; use `lens bus call` for requests")
    payload = parse_assignments(topic, args.fields)
    topic.validate(payload)  # fail before touching the bus
    # Said as the topic's owner, with the developer's key (which may speak as anyone, as replay and relay do):
    # a node's handlers take an owned topic from its owner only (bus.node.subscribe).
    runtime = need_bus(args.runtime)
    speaker = {} if topic.owner == ANY_NODE else \
        {"name": topic.owner, "key": keys.own_pair(runtime, keys.DEVELOPER).path}
    with tool_node("pub", runtime, publish_any=True, **speaker) as node:
        node.publish(topic.name, **payload)
        node.start()  # flushes the outbox once the lane is confirmed
    return 0


def cmd_call(args) -> int:
    topic = lookup(args.topic)
    payload = parse_assignments(topic, args.fields)
    with _tool_node(args, "call") as node:
        result = node.request(topic.name, timeout=args.timeout, **payload)
    print(json.dumps(jsonable(result)) if args.json else " ".join(f"{k}={v}" for k, v in result.items()))
    return 0


def cmd_list(args) -> int:
    seen: dict[str, set[str]] = {}
    latched: set[str] = set()
    unknown: dict[str, int] = {}
    with _tool_node(args, "list") as node:
        def note(msg):
            seen.setdefault(msg.topic, set()).add(msg.source)
            if msg.latched:
                latched.add(msg.topic)
        node.subscribe("", note, from_anyone=True)
        node.start()
        if args.listen > 0:
            node.after(args.listen, node.stop)
            node.run()
        unknown = {t: c.malformed for t, c in node.intake.counters.items() if t not in TOPICS}
    rows = []
    for name, topic in TOPICS.items():
        if name.startswith("bus.probe"):
            continue
        rows.append({"topic": name, "kind": topic.kind.value, "owner": topic.owner, "lane": topic.lane,
                     "rate_hz": topic.rate_hz, "max_size": topic.max_size, "fields": topic.fields,
                     "publishers": sorted(seen.get(name, ())), "has_latched": name in latched})
    if args.json:
        print(json.dumps({"topics": rows, "unknown_on_wire": unknown}))
        return 0
    print(f"{'TOPIC':28} {'KIND':8} {'OWNER':10} {'LANE':9} {'RATE':>6}  SEEN FROM")
    for row in rows:
        rate = f"{row['rate_hz']:g}" if row["rate_hz"] else "-"
        publishers = ", ".join(row["publishers"]) or "-"
        print(f"{row['topic']:28} {row['kind']:8} {row['owner']:10} {row['lane']:9} {rate:>6}  {publishers}")
    for name, count in sorted(unknown.items()):
        print(f"{name:28} {'UNKNOWN':8} {'-':10} {'-':9} {'-':>6}  {count} malformed/unknown messages")
    return 0


def run(args) -> int:
    args.runtime = Runtime.resolve(args.runtime_dir)
    try:
        return args.func(args)
    except BrokenPipeError:
        sys.stderr.close()  # `lens bus sniff | head`: the reader left; nothing to report
        return 0

