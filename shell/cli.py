"""`lens`: the one command-line entry to lensos. Every subcommand has --help."""

from __future__ import annotations

import argparse
import logging
import sys

from bus import cli as bus_cli
from bus.errors import BusError
from daemons import cli as daemons_cli
from shell import commands as shell_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lens", description="lensos: an operating-system shell for smart glasses.")
    parser.add_argument("--runtime-dir", metavar="DIR",
                        help="bus runtime directory (default: $LENS_RUNTIME_DIR, $RUNTIME_DIRECTORY, or per-user)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    up = commands.add_parser("up", help="run the whole system (development: simulated hardware)",
                             description="Start every process of the process table, in order, and supervise it.")
    up.add_argument("--only", metavar="NAMES", help="comma-separated processes to start (the broker is always started)")
    up.set_defaults(func=cmd_up)

    bus_cli.add_parser(commands)
    shell_commands.add_parsers(commands)
    daemons_cli.add_parsers(commands)
    return parser


def cmd_up(args) -> int:
    from bus.runtime import Runtime
    from shell.launcher import up
    from shell.processes import PROCESSES

    processes = list(PROCESSES)
    if args.only:
        wanted = {"broker", *(n.strip() for n in args.only.split(",") if n.strip())}
        unknown = wanted - {p.name for p in processes}
        if unknown:
            raise BusError(f"unknown process(es): {', '.join(sorted(unknown))}")
        processes = [p for p in processes if p.name in wanted]
    return up(processes, Runtime.resolve(args.runtime_dir))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format=f"lens {args.command}: %(levelname)s %(message)s")
    try:
        if args.command == "bus":
            return bus_cli.run(args)
        return args.func(args)
    except BusError as exc:
        print(f"lens {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
