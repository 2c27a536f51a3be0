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
import os
import sys
import threading
from contextlib import contextmanager
from typing import Iterator, NoReturn

from bus import logs, sdnotify
from bus.args import argument_parser
from bus.node import Node

# A process's heartbeat: cheap enough for idle glasses (each beat wakes the broker and the shell,
# and the beats of a dozen processes were most of what an idle bus carried). It says "alive" and
# "not hung": a death is seen at once without it (bus.departed, node.bye), and a focus owner that
# stops beating loses its focus after three periods (shell.core.MISSED_BEATS). The shell's replies name
# a faster pace where only silence can tell a death or a hang (shell.core.beat_for).
HEARTBEAT_S = 5.0
# How long a supervised process waits at its start for the broker's confirmation. A tool's 5 s (bus.node) is
# for someone at a prompt; a daemon that gives up only exits to be restarted and start again, and under TCG
# on a loaded board a start took 5-40 s (the broker restarting, the CPU shared). systemd's TimeoutStartSec
# (90 s) stays the outer bound.
START_TIMEOUT_S = 60.0


def arguments(name: str, doc: str | None, backends: tuple[str, ...] = (),
              state_dir: str | None = None) -> argparse.ArgumentParser:
    parser = argument_parser(f"python -m {name}", (doc or "").strip().splitlines()[0])
    parser.add_argument("--runtime-dir", metavar="DIR", help="bus runtime directory (default: $LENS_RUNTIME_DIR)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    add_options(parser, backends, state_dir)
    return parser


def add_options(parser: argparse.ArgumentParser, backends: tuple[str, ...] = (),
                state_dir: str | None = None) -> None:
    """The options of a process that `lens` also offers (it has --runtime-dir and -v of its own).

    ``state_dir`` says what the process keeps there; without it the process has no --state-dir."""
    parser.add_argument("--policy-dir", metavar="DIR", help="policy directory (default: $LENS_POLICY_DIR)")
    # The models are the policies' (policies.rules.MODELS), which the bus does not import: the policy
    # loader every process calls next refuses an unknown one by name (exit status 2, as argparse's).
    parser.add_argument("--model", metavar="MODEL", help="glasses model (default: $LENS_MODEL or s1)")
    if backends:
        parser.add_argument("--backend", choices=backends, default=backends[-1],
                            help=f"hardware backend (default: {backends[-1]})")
    if state_dir:
        parser.add_argument("--state-dir", metavar="DIR", help=f"{state_dir} (default: $LENS_STATE_DIR)")


@contextmanager
def exits_on(name: str, *errors: type[Exception]) -> Iterator[None]:
    """Start-up errors (a bad policy file, hardware that cannot be opened): one line, exit status 2."""
    try:
        yield
    except errors as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def node(name: str, args: argparse.Namespace) -> Node:
    logs.configure(name, logging.DEBUG if args.verbose else logging.INFO)
    threading.excepthook = _thread_died
    made = Node(name, args.runtime_dir, heartbeat=heartbeat_period())
    made.start_timeout = START_TIMEOUT_S
    return made


EXIT_WORK_STOPPED = 70  # EX_SOFTWARE: a thread died or the work stalled; the supervisor restarts the process


def fatal(why: str) -> NoReturn:
    """The process's work has stopped (a thread of it died, a device stopped moving): exit at once, so its
    supervisor (systemd, lens up) restarts it and the shell sees it gone. A process whose loop still turns
    and heartbeats while its work is dead would be reported alive and do nothing. With a pending exception,
    its traceback is logged."""
    logging.getLogger("lensos").critical("%s; exiting to be restarted", why, exc_info=sys.exc_info()[0] is not None)
    logging.shutdown()
    os._exit(EXIT_WORK_STOPPED)


def _thread_died(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    logging.getLogger("lensos").critical("thread %s died", args.thread.name if args.thread else "?",
                                         exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
    fatal(f"thread {args.thread.name if args.thread else '?'} died")


def heartbeat_period() -> float:
    """HEARTBEAT_S; or, for a process its supervisor watches (systemd's WatchdogSec=, lens up's the same),
    the watchdog ping's period: it beats with each ping, in the same wake-up (every 5 s under the table's
    10 s watchdog). The shell calls a process silent after 1.5 of its periods (shell.census), 3/4 of the
    watchdog's timeout, so a hung one is reported before its supervisor kills it. Beating once every six
    pings (30 s) cost an idle bus less, but then no rule could tell a hang in time."""
    ping = sdnotify.watchdog_period()
    return HEARTBEAT_S if ping is None else ping
