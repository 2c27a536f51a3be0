"""`lens bus check`: the privacy and safety rules (bustools.check) over a recording, or over the running bus."""

from __future__ import annotations

import json
import sys

from bustools.check import Checker, Violation

VIOLATION_TOPIC = "privacy.violation"
MONITOR = "checker"  # the monitor's identity, the owner of privacy.violation in the table


def add_parsers(commands) -> None:
    p = commands.add_parser("check", help="check a recording (or the live bus) against the privacy rules",
                            description="Check what happened against the rules the shell's model check proves: "
                                        "no camera frame or mic block without the LED confirmed lit; at most "
                                        "one owner per resource at a time; every request answered; every "
                                        "recording checkpointed before battery_swap or critical; no capture "
                                        "without the permission. Prints each violation with its time and the "
                                        "messages involved; exit status 1 on any.")
    p.add_argument("file", nargs="?", help="an MCAP recording (lens bus record)")
    p.add_argument("--live", action="store_true", help="watch the running bus instead; each violation is "
                                                      f"logged and published on {VIOLATION_TOPIC}")
    p.add_argument("--duration", type=float, metavar="S", help="with --live: stop after S seconds")
    p.add_argument("--reply-within", type=float, default=10.0, metavar="S",
                   help="a request unanswered this long is a violation (default 10)")
    p.add_argument("--checkpoint-within", type=float, default=5.0, metavar="S",
                   help="a recording not checkpointed this long after battery_swap or critical is a violation "
                        "(default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per violation, then a summary")
    p.set_defaults(func=cmd_check)


def cmd_check(args) -> int:
    if bool(args.file) == bool(args.live):
        print("lens bus check: give a FILE or --live (not both)", file=sys.stderr)
        return 2
    checker = Checker(reply_s=args.reply_within, checkpoint_s=args.checkpoint_within)
    emit = _printer(args.json)
    if args.live:
        return _live(args, checker, emit)
    from bustools.bag import BagError, Damage, iterate

    damage = None
    try:
        for item in iterate(args.file):
            if isinstance(item, Damage):
                damage = item
            elif not isinstance(item, tuple):
                for violation in checker.feed(item):
                    emit(violation)
    except BagError as exc:
        print(f"lens bus check: {exc}", file=sys.stderr)
        return 2
    for violation in checker.finish():
        emit(violation)
    _summary(args, checker, damage.why if damage else None)
    return 1 if checker.violations or damage else 0


def _live(args, checker: Checker, emit) -> int:
    from cli.connect import tool_node

    with tool_node("check", args.runtime, name=MONITOR) as node:  # the table's publisher of violations
        def judge(msg) -> None:
            for violation in checker.feed(msg):
                emit(violation)
                node.publish(VIOLATION_TOPIC, rule=violation.rule, what=violation.what,
                             mono_ns=violation.mono_ns, wall_ns=violation.wall_ns, messages=violation.messages)
        node.subscribe("", judge, from_anyone=True)
        node.start()
        if args.duration:
            node.after(args.duration, node.stop)
        print(f"lens bus check: watching {node.runtime.dir}; Ctrl-C stops", file=sys.stderr, flush=True)
        try:
            node.run()
        except KeyboardInterrupt:
            pass
        for violation in checker.finish():
            emit(violation)
    _summary(args, checker, None)
    return 1 if checker.violations else 0


def _printer(as_json: bool):
    def emit(violation: Violation) -> None:
        if as_json:
            print(json.dumps(violation.as_dict()), flush=True)
        else:
            print(f"VIOLATION {violation.rule} at {violation.mono_ns / 1e9:.3f} s: {violation.what}\n"
                  + "".join(f"    {m}\n" for m in violation.messages), end="", flush=True)
    return emit


def _summary(args, checker: Checker, damage: str | None) -> None:
    summary = {"violations": len(checker.violations), "unchecked": checker.unchecked(), **checker.counts,
               "damaged": damage}
    if args.json:
        print(json.dumps({"summary": summary}))
        return
    print(f"{summary['messages']} messages, {summary['frames']} frames, {summary['mic_blocks']} mic blocks, "
          f"{summary['requests']} requests: {summary['violations'] or 'no'} violation(s)")
    for line in summary["unchecked"]:
        print(f"unchecked: {line}")
    if damage:
        print(f"DAMAGED: {damage}")
