"""`python -m manager.condition NAME`: whether process NAME's run condition holds (manager.processes.CONDITIONS).

The systemd unit of a row with ``runs_if`` runs this as ExecCondition=: exit 0 starts the process, exit 1
skips the unit (not a failure: the policy turned it off), and a policy that does not pass its checks is
exit 1 too, with the error in the journal: in doubt, the process does not run.
"""

from __future__ import annotations

import sys

from manager.processes import CONDITIONS, by_name
from policies.checker import PolicyError
from policies.loader import load


def holds(name: str) -> bool:
    condition = by_name()[name].runs_if
    return not condition or CONDITIONS[condition](load())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in by_name():
        print(f"usage: python -m manager.condition NAME (one of {', '.join(by_name())})", file=sys.stderr)
        return 2
    try:
        if holds(args[0]):
            return 0
    except PolicyError as exc:
        print(f"{args[0]}: not started, the policy does not pass its checks: {exc}", file=sys.stderr)
        return 1
    print(f"{args[0]}: not started, the policy turns it off ({by_name()[args[0]].runs_if})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
