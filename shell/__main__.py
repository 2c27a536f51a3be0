"""The shell: the one authority on system state, focus and the capture LED (`python -m shell`)."""

from __future__ import annotations

import argparse
import logging

from bus import service
from bus.runtime import state_dir
from policies.checker import PolicyError
from policies.loader import load
from policies.names import unknown_names
from shell.daemon import ShellDaemon
from manager.processes import by_module

ROW = by_module("shell")  # its name and command line, from its row of the process table

log = logging.getLogger(ROW.name)
STATE_DIR = "audit log and saved state"  # what --state-dir holds, for `python -m shell` and `lens shell run`


def run(args: argparse.Namespace) -> int:
    with service.exits_on(ROW.name, PolicyError):
        policy = load(args.policy_dir, args.model)
    with service.node(ROW.name, args) as node:
        for name in unknown_names(policy):  # the shell still boots: a daemon never heard is named as degraded
            log.warning("%s", name)
        daemon = ShellDaemon(node, policy, state_dir(args.state_dir, node.runtime.dir))
        node.start()
        node.publish("node.census", reason="shell started")  # who is up already answers now, not a period later
        daemon.settle()
        node.run()
        daemon.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(service.arguments(ROW.module, __doc__, state_dir=STATE_DIR).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
