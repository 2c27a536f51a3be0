"""The shell: the one authority on system state, focus and the capture LED (`python -m shell`)."""

from __future__ import annotations

import argparse
import sys

from bus import service
from bus.runtime import state_dir
from policies.schema import PolicyError, load
from shell.daemon import ShellDaemon


def add_options(parser: argparse.ArgumentParser) -> None:
    service.add_options(parser)
    parser.add_argument("--state-dir", metavar="DIR", help="audit log and saved state (default: $LENS_STATE_DIR)")


def run(args: argparse.Namespace) -> int:
    try:
        policy = load(args.policy_dir, args.model)
    except PolicyError as exc:
        print(f"shell: {exc}", file=sys.stderr)
        return 2
    with service.node("shell", args) as node:
        daemon = ShellDaemon(node, policy, state_dir(args.state_dir))
        node.start()
        daemon.settle()
        node.run()
        daemon.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shell", description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-dir", metavar="DIR", help="bus runtime directory (default: $LENS_RUNTIME_DIR)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    add_options(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
