"""`lens policy ...` and `lens shell ...`: the shell's commands."""

from __future__ import annotations

import argparse
import json
import sys

from shell import policy


def add_parsers(commands) -> None:
    pol = commands.add_parser("policy", help="check the policy files",
                              description="The shell's rules and numbers, kept in policies/*.toml.")
    pol_cmds = pol.add_subparsers(dest="policy_command", metavar="COMMAND", required=True)
    check = pol_cmds.add_parser("check", help="validate a policy directory for every model, start nothing",
                                description="Load every policy file for every model (S1, G1) and report "
                                            "each error as file:line: key: why. Exit 1 when any is wrong.")
    check.add_argument("directory", nargs="?", help=f"default: $LENS_POLICY_DIR or {policy.DEFAULT_DIR}")
    check.add_argument("--json", action="store_true", help="one JSON object: directory, models, errors")
    check.set_defaults(func=cmd_policy_check)

    shell = commands.add_parser("shell", help="the shell's state machine",
                                description="The system state machine declared in shell/machine.py.")
    shell_cmds = shell.add_subparsers(dest="shell_command", metavar="COMMAND", required=True)
    graph = shell_cmds.add_parser("graph", help="draw the state machine",
                                  description="Write the state machine as a diagram: FILE.svg or FILE.png "
                                              "(Graphviz), anything else as Mermaid text.")
    graph.add_argument("-o", "--output", required=True, metavar="FILE")
    graph.set_defaults(func=cmd_shell_graph)


def cmd_shell_graph(args: argparse.Namespace) -> int:
    from shell import machine

    try:
        engine = machine.draw(args.output)
    except RuntimeError as exc:
        print(f"lens shell graph: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.output}: drawn with {engine}")
    return 0


def cmd_policy_check(args: argparse.Namespace) -> int:
    directory = str(policy.resolve_dir(args.directory))
    errors = policy.check_all(args.directory)
    if args.json:
        print(json.dumps({"directory": directory, "models": list(policy.MODELS), "errors": errors}))
    else:
        for error in errors:
            print(error)
        if not errors:
            print(f"{directory}: ok for {', '.join(m.upper() for m in policy.MODELS)}")
    return 1 if errors else 0
