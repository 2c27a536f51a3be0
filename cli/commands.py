"""`lens policy ...`, `lens shell ...`, `lens units ...`, `lens status`: the shell's commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from policies.loader import DEFAULT_DIR, resolve_dir
from policies.rules import MODELS


def add_parsers(commands) -> None:
    pol = commands.add_parser("policy", help="check the policy files",
                              description="The shell's rules and numbers, kept in policies/*.toml.")
    pol_cmds = pol.add_subparsers(dest="policy_command", metavar="COMMAND", required=True)
    check = pol_cmds.add_parser("check", help="validate a policy directory for every model, start nothing",
                                description="Load every policy file for every model (S1, G1) and report "
                                            "each error as file:line: key: why. Exit 1 when any is wrong.")
    check.add_argument("directory", nargs="?", help=f"default: $LENS_POLICY_DIR or {DEFAULT_DIR}")
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
    run = shell_cmds.add_parser("run", help="run the shell daemon in the foreground (as `python -m shell`)",
                                description="Run the shell on the bus until SIGTERM or Ctrl-C.")
    from bus import service
    from shell.__main__ import STATE_DIR
    service.add_options(run, state_dir=STATE_DIR)
    run.set_defaults(func=cmd_shell_run)

    units = commands.add_parser("units", help="the systemd units of the board, from the process table",
                                description="Write or show the systemd units (one service per process, "
                                            "lensos.target, the lensos group) generated from manager/processes.py.")
    units_cmds = units.add_subparsers(dest="units_command", metavar="COMMAND", required=True)
    install = units_cmds.add_parser("install", help="write every unit into a directory (an image build's)",
                                    description="Write lensos-*.service, lensos.target, lensos.sysusers.conf and lensos.tmpfiles.conf.")
    install.add_argument("--prefix", required=True, metavar="DIR", help="where to write them")
    install.add_argument("--python", default=sys.executable, metavar="PATH",
                         help="the interpreter the units run (default: this one)")
    install.add_argument("--json", action="store_true", help="the written paths as a JSON list")
    install.set_defaults(func=cmd_units_install)
    show = units_cmds.add_parser("show", help="print one process's unit", description="Print the unit of NAME.")
    show.add_argument("name")
    show.add_argument("--python", default=sys.executable, metavar="PATH")
    show.set_defaults(func=cmd_units_show)

    key = commands.add_parser("keys", help="the bus's CURVE keys: one per process",
                              description="Every process proves who it is to the broker with a CURVE key; the "
                                          "broker admits only the public keys of its keys directory.")
    key_cmds = key.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    gen = key_cmds.add_parser("generate", help="write a key pair per process (an image build's keys directory)",
                              description="Write NAME.key (public, 0644) and NAME.key_secret (0600) for every "
                                          "process of the table and the bridge (lens bus bridge), or for the "
                                          "NAMEs given; keys already there are kept unless --replace. On the "
                                          "board each unit loads its secret with LoadCredential=, so only its "
                                          "own user can read it.")
    gen.add_argument("directory", metavar="DIR")
    gen.add_argument("names", nargs="*", metavar="NAME", help="default: every process of manager/processes.py (the development-only ones with --developer) "
                          "and bridge")
    gen.add_argument("--developer", action="store_true",
                     help="also the developer's key (lens tools: may publish anything) and the development-only "
                          "processes' (development images only)")
    gen.add_argument("--replace", action="store_true", help="new keys even where there are some")
    gen.add_argument("--json", action="store_true", help="the names written as a JSON list")
    gen.set_defaults(func=cmd_keys_generate)

    app = commands.add_parser("app", help="the apps: their manifests and whether they run",
                              description="Apps are declared by apps/<id>/manifest.toml ($LENS_APPS_DIR).")
    app_cmds = app.add_subparsers(dest="app_command", metavar="COMMAND", required=True)
    listing = app_cmds.add_parser("list", help="every app: name, state, permissions, models",
                                  description="Every app's manifest with its state as the shell tells it "
                                              "(stopped, starting, running, stopping, failed, or hidden on this "
                                              "model, with why) and which is in front; wrong manifests too.")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--timeout", type=float, default=2.0, metavar="S", help="how long to wait for the bus")
    listing.set_defaults(func=cmd_app_list)
    for action, words in (("start", "start an app and bring it to the front (once it is on the bus)"),
                          ("stop", "stop an app: it saves what it must, gives back its focus and exits")):
        sub = app_cmds.add_parser(action, help=words, description=f"Ask the shell to {words}; wait until done. "
                                  "Exit 1 with the shell's reason when refused or not done in time.")
        sub.add_argument("app", metavar="ID")
        sub.add_argument("--json", action="store_true", help="the shell's answer and the app's state as JSON")
        sub.add_argument("--timeout", type=float, default=10.0, metavar="S", help="how long to wait")
        sub.set_defaults(func=cmd_app_action, action=action)

    status = commands.add_parser("status", help="the system in one screen: state, focus, LED, batteries",
                                 description="What the shell last published (latched on the bus): system state, "
                                             "focus owner per resource, the capture LED, batteries, ready daemons.")
    status.add_argument("--json", action="store_true", help="the latched messages as one JSON object")
    status.add_argument("--timeout", type=float, default=3.0, metavar="S", help="how long to wait for the bus")
    status.add_argument("--timers", action="store_true",
                        help="every periodic timer in the system instead: who runs it, how often, while what and "
                             "why (from cli/timers.py and where each period is declared; needs no bus)")
    status.set_defaults(func=cmd_status)

    where = commands.add_parser("paths", help="where photos, recordings, the privacy log and state are kept",
                                description="Where lensos keeps what it makes, as `lens up` from this shell "
                                            "would ($LENS_STATE_DIR, $LENS_RUNTIME_DIR), or on the board.")
    where.add_argument("--board", action="store_true", help="the board's places (systemd's directories)")
    where.add_argument("--json", action="store_true", help="{name: path} as one JSON object")
    where.set_defaults(func=cmd_paths)

    privacy = commands.add_parser("privacy", help="the capture audit log",
                                  description="Every camera and mic capture session: who, what, why, when, how long.")
    privacy_cmds = privacy.add_subparsers(dest="privacy_command", metavar="COMMAND", required=True)
    plog = privacy_cmds.add_parser("log", help="print the audit log",
                                   description="Print the append-only capture audit log, one row per session.")
    plog.add_argument("--state-dir", metavar="DIR", help="default: $LENS_STATE_DIR or the bus's own state dir")
    plog.add_argument("--json", action="store_true", help="one JSON object per session")
    plog.set_defaults(func=cmd_privacy_log)


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
    from policies.names import check_all  # the process and app tables: only this command reads them
    directory = str(resolve_dir(args.directory))
    errors = check_all(args.directory)
    if args.json:
        print(json.dumps({"directory": directory, "models": list(MODELS), "errors": errors}))
    else:
        for error in errors:
            print(error)
        if not errors:
            print(f"{directory}: ok for {', '.join(m.upper() for m in MODELS)}")
    return 1 if errors else 0


def cmd_shell_run(args: argparse.Namespace) -> int:
    from shell.__main__ import run

    return run(args)


def cmd_status(args: argparse.Namespace) -> int:
    from cli import status

    if args.timers:
        from cli import timers

        found = timers.rows()
        print(json.dumps(found) if args.json else timers.render(found))
        return 0
    found = status.gather(args.runtime_dir, args.timeout)
    print(json.dumps(found, sort_keys=True) if args.json else status.render(found))
    return 0


def cmd_paths(args: argparse.Namespace) -> int:
    from cli import paths
    from policies.checker import PolicyError

    try:
        found = paths.paths(args.runtime_dir, board=args.board)
    except PolicyError as exc:  # photos and recordings go where the policy says: it must be read
        print(f"lens paths: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({name: place["path"] for name, place in found.items()}) if args.json else paths.render(found))
    return 0


def cmd_privacy_log(args: argparse.Namespace) -> int:
    from bus.runtime import state_dir
    from cli import status
    from shell.daemon import AUDIT_FILE
    from bus.audit import AuditLog

    sessions = AuditLog(state_dir(args.state_dir, args.runtime_dir) / AUDIT_FILE).sessions()
    if args.json:
        for session in sessions:
            print(json.dumps(session, sort_keys=True))
    else:
        print(status.render_log(sessions))
    return 0


def cmd_units_install(args) -> int:
    from manager.units import install

    written = [str(path) for path in install(Path(args.prefix), args.python)]
    print(json.dumps(written) if args.json else "\n".join(written))
    return 0


def cmd_keys_generate(args) -> int:
    from bus import keys
    from manager.processes import PROCESSES

    # the development-only processes (the live view, Foxglove) are never units on a board: a product image has
    # no key for them, so nothing there can speak as them
    names = args.names or [p.name for p in PROCESSES if args.developer or not p.dev_only] + [keys.BRIDGE]
    names += [keys.DEVELOPER] if args.developer else []
    try:
        # 0755: every unit, each its own dynamic user, reads the broker's public key there and the broker all
        # of them; the secret halves stay root's (0600) and reach each unit alone through LoadCredential=
        written = keys.generate(Path(args.directory), names, replace=args.replace, dir_mode=0o755)
    except (ValueError, OSError) as exc:
        print(f"lens keys generate: error: {exc}", file=sys.stderr)
        return 2
    kept = [name for name in names if name not in written]
    if args.json:
        print(json.dumps({"written": written, "kept": kept}))
    else:
        print(f"{args.directory}: wrote {', '.join(written) or 'nothing'}" + (f"; kept {', '.join(kept)}" if kept else ""))
    return 0


def cmd_units_show(args) -> int:
    from manager.processes import by_name
    from manager.units import render_all, service_name

    process = by_name().get(args.name)
    if process is None:
        print(f"lens units: no process {args.name!r} (known: {', '.join(by_name())})", file=sys.stderr)
        return 2
    print(render_all(args.python, (process,)).get(service_name(process.name), ""), end="")  # the policy's too
    return 0


def _apps_state(node, timeout: float) -> dict:
    """The shell's latched word on the apps ({} when no shell has said it)."""
    state: dict = {}

    def keep(msg) -> None:
        state.update(msg.payload, seen=state.get("seen", 0) + 1)
    node.subscribe("shell.apps", keep)
    node.start(timeout=timeout)
    return state


def cmd_app_list(args) -> int:
    from apps.sdk.manifest import load_all
    from cli.connect import tool_node

    manifests, errors = load_all()
    with tool_node("app", args.runtime_dir) as node:  # a state without the bus would be a guess
        state = _apps_state(node, args.timeout)
    known, front = state.get("apps") or {}, state.get("foreground")
    rows = [{"id": m.id, "name": m.name, "permissions": list(m.permissions), "models": list(m.models),
             "background": m.background, "display": m.display,
             "state": known.get(m.id, {}).get("state", "unknown"), "why": known.get(m.id, {}).get("why", ""),
             "foreground": m.id == front} for m in manifests.values()]
    if args.json:
        print(json.dumps({"apps": rows, "foreground": front, "errors": errors}))
    else:
        print(f"{'ID':14} {'NAME':16} {'STATE':11} {'PERMISSIONS':24} {'MODELS':8} WHY")
        for r in rows:
            state_ = "foreground" if r["foreground"] else r["state"]
            print(f"{r['id']:14} {r['name']:16} {state_:11} {','.join(r['permissions']) or '-':24} "
                  f"{','.join(r['models']):8} {r['why']}")
        for error in errors:
            print(f"error: {error}")
    return 1 if errors else 0


def cmd_app_action(args) -> int:
    from cli.connect import tool_node
    from bus.errors import BusError, BusNotRunning
    from bus.waiting import wait_for

    def done(fresh: bool) -> bool:
        """In front (start) or stopped (stop); failed, or (start) ran and finished, when said after the answer
        (an earlier word is stale)."""
        now = state["apps"][args.app]["state"]
        if args.action == "start":
            return state["foreground"] == args.app or (fresh and now in ("failed", "stopped"))
        return now == "stopped" or (fresh and now == "failed")

    try:
        with tool_node("app", args.runtime_dir) as node:
            state = _apps_state(node, args.timeout)
            answer = node.request("shell.app.request", app=args.app, action=args.action, timeout=args.timeout)
            answered = state.get("seen", 0)
            wait_for(lambda: state and args.app in state["apps"] and done(state["seen"] > answered),
                     args.timeout, f"{args.app} to {args.action}", poll=node.run_once)
    except BusNotRunning:
        raise  # said by `lens` itself, as for every command
    except (BusError, TimeoutError) as exc:
        print(f"lens app {args.action}: {exc}", file=sys.stderr)
        return 1
    app = dict(state["apps"][args.app], foreground=state["foreground"] == args.app)
    if args.json:
        print(json.dumps({"app": args.app, "answer": answer["status"], **app}))
    else:
        where = "in front" if app["foreground"] else app["state"]
        print(f"{args.app}: {where}" + (f" ({app['why']})" if app["why"] else ""))
    return 1 if app["state"] == "failed" else 0
