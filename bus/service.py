"""What every lensos process does the same way: its command line, its log and its node.

    args = service.arguments("ledd", __doc__, backends=("real", "sim")).parse_args(argv)
    with service.node("ledd", args) as node:
        ...                      # subscribe, serve, open the backend
        node.run()               # READY=1 once subscriptions are live, heartbeats, SIGTERM stops

The heartbeat is what the shell counts as "ready" at boot and as "alive"
for focus owners, so every process of the system sends it; tools do not.
"""

from __future__ import annotations

import argparse
import logging

from bus.node import Node

HEARTBEAT_S = 0.3  # a third of the shell's default liveness timeout (policies/focus.toml)


def arguments(name: str, doc: str | None, backends: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {name}", description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--runtime-dir", metavar="DIR", help="bus runtime directory (default: $LENS_RUNTIME_DIR)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    add_options(parser, backends)
    return parser


def add_options(parser: argparse.ArgumentParser, backends: tuple[str, ...] = ()) -> None:
    """The options of a process that `lens` also offers (it has --runtime-dir and -v of its own)."""
    parser.add_argument("--policy-dir", metavar="DIR", help="policy directory (default: $LENS_POLICY_DIR)")
    parser.add_argument("--model", choices=("s1", "g1"), help="glasses model (default: $LENS_MODEL or s1)")
    if backends:
        parser.add_argument("--backend", choices=backends, default=backends[-1],
                            help=f"hardware backend (default: {backends[-1]})")


def node(name: str, args: argparse.Namespace) -> Node:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format=f"{name}: %(levelname)s %(message)s")
    return Node(name, args.runtime_dir, heartbeat=HEARTBEAT_S)
