"""`lens`: the one command-line entry to lensos. Every subcommand has --help."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from cli import catalog as lens_commands
from bus import logs
from bus.errors import BusError, BusNotRunning
from cli import bus as bus_commands
from cli import commands as system_commands
from cli import daemons as daemon_commands
from cli import security
from cli import trace as trace_command
from policies.rules import MODELS

NOT_RUNNING = 3  # the exit status of every command that needs the bus when no broker is there (as LSB's status)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lens", description="lensos: an operating-system shell for smart glasses.")
    parser.add_argument("--runtime-dir", metavar="DIR",
                        help="bus runtime directory (default: $LENS_RUNTIME_DIR, $RUNTIME_DIRECTORY, or per-user)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    up = commands.add_parser("up", help="run the whole system (development: simulated hardware)",
                             description="Start every process of the process table, in order, and supervise it.")
    up.add_argument("--only", metavar="NAMES", help="comma-separated processes to start (the broker is always started)")
    up.add_argument("--block", metavar="NAMES", help="comma-separated processes not to start")
    up.add_argument("--profile", choices=MODELS, help="glasses model to run (default: $LENS_MODEL or s1)")
    up.add_argument("--backend", action="append", default=[], metavar="[NAME=]real|sim",
                    help="hardware backend for one daemon (NAME=real) or, without a name, for all (default: sim); "
                         "repeat for several")
    up.add_argument("--web", action="store_true",
                    help="also serve the live view of the glasses on http://127.0.0.1:8470/ and the bus to Foxglove "
                         "on ws://127.0.0.1:8765 (make run does)")
    up.add_argument("--watchdog", type=float, metavar="S",
                    help="every process's watchdog timeout instead of the table's (to see a hung loop restarted)")
    up.set_defaults(func=cmd_up)

    bus_commands.add_parser(commands)
    security.add_parser(commands)
    trace_command.add_parser(commands)
    system_commands.add_parsers(commands)
    daemon_commands.add_parsers(commands)
    lens_commands.add_parser(commands)
    return parser


def cmd_up(args) -> int:
    from bus.runtime import Runtime
    from manager.launcher import up
    from manager.processes import PROCESSES

    processes = [p for p in PROCESSES if args.web or not p.dev_only]
    known = {p.name for p in processes}

    def names(text: str) -> set[str]:
        wanted = {n.strip() for n in text.split(",") if n.strip()}
        if wanted - known:
            raise BusError(f"unknown process(es): {', '.join(sorted(wanted - known))} (known: {', '.join(known)})")
        return wanted

    if args.only:
        wanted = {"broker"} | names(args.only)
        processes = [p for p in processes if p.name in wanted]
    if args.block:
        blocked = names(args.block)
        if "broker" in blocked:
            raise BusError("the broker cannot be blocked: every other process talks through it")
        processes = [p for p in processes if p.name not in blocked]
    if args.profile:
        processes = [p for p in processes if args.profile in p.models]
    return up(processes, Runtime.resolve(args.runtime_dir), model=args.profile,
              backends=_backends(args.backend, processes), watchdog_s=args.watchdog)


def _backends(choices: list[str], processes) -> dict[str, str]:
    """--backend real / --backend camerad=real ... as {process: backend}, checked against the table."""
    chosen: dict[str, str] = {}
    for choice in choices:
        name, _, backend = choice.rpartition("=")
        targets = [p for p in processes if p.backends and (not name or p.name == name)]
        if name and not targets:
            raise BusError(f"--backend {choice}: {name} is not a process with backends "
                           f"({', '.join(p.name for p in processes if p.backends)})")
        for process in targets:
            if backend not in process.backends:
                raise BusError(f"--backend {choice}: {process.name} has backends {', '.join(process.backends)}")
            chosen[process.name] = backend
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(f"lens {args.command}", logging.DEBUG if args.verbose else logging.WARNING)
    try:
        if args.command == "bus":
            return bus_commands.run(args)
        return args.func(args)
    except BusNotRunning as exc:
        print(f"lens {args.command}: {exc}", file=sys.stderr)
        return NOT_RUNNING
    except BusError as exc:
        print(f"lens {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `lens status | head`: the reader left, which is no error of ours. Python flushes stdout once more
        # at exit; point it at /dev/null so that flush cannot raise a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
