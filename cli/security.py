"""`lens security`: what the broker refused since it started, by kind and by who, at a glance.

Read from the broker's latched ``bus.refusals`` (broker.gate counts every refusal; the broker publishes the
summary at most once a second), so the command answers at once, whoever was watching or not. With
``--follow`` it goes on printing each ``bus.security`` report as it comes: who, what, why, and the uid and
pid the kernel gave for the peer.
"""

from __future__ import annotations

import argparse
import json

from bus.errors import BusError


def add_parser(commands) -> None:
    p = commands.add_parser("security", help="what the bus refused, by kind and by who",
                            description="What the broker refused since it started (keys it does not hold, "
                                        "connections shed, topics not the sender's, floods, eavesdropping), "
                                        "by kind and by who.")
    p.add_argument("--json", action="store_true", help="print bus.refusals as one JSON object (with --follow: "
                                                         "then each bus.security report, one per line)")
    p.add_argument("--follow", action="store_true", help="then print each refusal as the broker reports it")
    p.add_argument("--timeout", type=float, default=3.0, metavar="S", help="wait this long for the bus (default 3)")
    p.set_defaults(func=cmd_security)


def render(summary: dict) -> str:
    if not summary["total"]:
        return "no refusals since the broker started"
    lines = [f"{summary['total']} refused since the broker started", "by kind"]
    for kind, count in sorted(summary["kinds"].items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"  {count:>8}  {kind}")
    lines.append("by who")
    for who, info in summary["who"].items():
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(info["kinds"].items(), key=lambda item: -item[1]))
        lines.append(f"  {info['count']:>8}  {who:<24} {kinds}")
    return "\n".join(lines)


def report_line(payload: dict) -> str:
    peer = "" if payload.get("uid") is None else f" (uid {payload['uid']} pid {payload['pid']})"
    return f"{payload['identity']}{peer}: {payload['topic']}: {payload['reason']} ({payload['count']} so far)"


def cmd_security(args: argparse.Namespace) -> int:
    from cli.connect import tool_node

    found: list[dict] = []
    with tool_node("security", args.runtime_dir) as node:
        node.subscribe("bus.refusals", lambda msg: found.append(msg.payload))
        if args.follow:
            node.subscribe("bus.security", lambda msg: print(
                json.dumps(msg.payload, sort_keys=True) if args.json else report_line(msg.payload), flush=True))
        node.start(timeout=args.timeout)
        if not found:
            raise BusError("no bus.refusals from the broker: is it running (`lens up`)?")
        print(json.dumps(found[-1], sort_keys=True) if args.json else render(found[-1]), flush=True)
        if args.follow:
            found.clear()
            try:
                node.run()
            except KeyboardInterrupt:
                pass
    return 0
