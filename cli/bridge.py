"""`lens bus bridge` and `lens bus sniff --remote`: the bus over TCP to a phone or a laptop (bustools.bridge, bustools.relay)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from bus import keys
from bustools.bridge import Bridge, RemoteBus
from bus.errors import KeyMissing
from bus.node import Node
from bustools.textform import message_json, message_line
from bus.wakeup import interrupt_on_stop_signals


def add_parsers(commands) -> None:
    p = commands.add_parser("bridge", help="the bus over TCP to a phone or laptop (CURVE, allow-lists)",
                            description="On the glasses, --listen serves paired peers what privacy.toml "
                                        "[bridge] out allows and takes in what [bridge] in allows, encrypted "
                                        "and authenticated (CURVE). Peers' public keys are in --peers. On a "
                                        "laptop, --connect republishes what the glasses let out on this "
                                        "machine's bus, and sends them what is published here under --send.")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen", metavar="ADDR", help="e.g. tcp://0.0.0.0:7450 (port * picks one)")
    where.add_argument("--connect", metavar="ADDR", help="the glasses' bridge, e.g. tcp://glasses.local:7450")
    p.add_argument("--peers", metavar="DIR", help="with --listen: public keys of the peers it admits "
                                                  "(default <keys dir>/peers)")
    p.add_argument("--policy-dir", metavar="DIR", help="with --listen: default $LENS_POLICY_DIR or the shipped "
                                                       "policies")
    p.add_argument("--topics", nargs="*", default=[""], metavar="PREFIX",
                   help="with --connect: what to bring here (default all the glasses let out)")
    p.add_argument("--send", nargs="*", default=[], metavar="PREFIX",
                   help="with --connect: what published here goes to the glasses (their [bridge] in decides)")
    add_peer_keys(p, "with --connect")
    p.add_argument("--json", action="store_true", help="what it serves or sees as JSON, first; stats at the end")
    p.set_defaults(func=cmd_bridge)


def add_peer_keys(parser, when: str) -> None:
    parser.add_argument("--key", metavar="FILE", help=f"{when}: this peer's secret key (default: yours)")
    parser.add_argument("--server-key", metavar="KEY",
                        help=f"{when}: the bridge's public key, its .key file or z85 text (write "
                             "--server-key=KEY: z85 may begin with '-')")


def add_remote_options(sniff) -> None:
    sniff.add_argument("--remote", metavar="ADDR", help="sniff the glasses at ADDR through their bridge instead")
    add_peer_keys(sniff, "with --remote")


def cmd_bridge(args) -> int:
    if args.connect:
        return connect(args)
    from policies.checker import PolicyError
    from policies.loader import load

    try:
        allow = load(args.policy_dir).privacy.bridge
    except PolicyError as exc:
        print(f"lens bus bridge: {exc}", file=sys.stderr)
        return 2
    peers = Path(args.peers) if args.peers else keys.keys_dir(args.runtime) / "peers"
    from cli.connect import need_bus

    need_bus(args.runtime)
    try:
        key = bridge_key(args.runtime)
    except KeyMissing as exc:
        print(f"lens bus bridge: {exc}", file=sys.stderr)
        return 2
    with Node(keys.BRIDGE, args.runtime, key=key) as node:
        try:
            bridge = Bridge(node, args.listen, allow.out, allow.in_, peers)
        except (KeyMissing, OSError) as exc:
            print(f"lens bus bridge: {exc}", file=sys.stderr)
            return 2
        public_file = Path(str(node.key_pair.path).removesuffix("_secret"))
        info = {"address": bridge.address, "public_key": bridge.public_key,
                "key_file": str(public_file) if public_file.is_file() else None, "peers": str(peers),
                "out": list(allow.out), "in": list(allow.in_)}
        print(json.dumps(info) if args.json else f"lens bus bridge: listening on {bridge.address}, key "
              f"{info['key_file'] or bridge.public_key}; admitting the keys in {peers}", flush=True)
        try:
            node.run()
        finally:
            bridge.close()
    return 0


def bridge_key(runtime) -> Path:
    """The bridge's own secret key, never the developer's: what a peer says comes in as ``bridge``, judged
    like an app with no permissions. A board provisions it (`lens keys generate`); a development keys
    directory gets one the first time a bridge listens, as `lens up` gives each process its own."""
    directory = keys.keys_dir(runtime)
    path = directory / f"{keys.BRIDGE}.key_secret"
    if not path.exists() and not os.environ.get("LENS_KEYS_DIR"):
        keys.ensure_development_keys(runtime)
        keys.generate(directory, [keys.BRIDGE])
    if not path.exists():
        raise KeyMissing(f"no key for the bridge in {directory}: provision one with `lens keys generate "
                         f"{directory} {keys.BRIDGE}`")
    return path


def server_key(value: str) -> bytes:
    """A bridge's public key given as z85 text or as the path of its .key file."""
    if Path(value).is_file():
        return keys.load_public(Path(value))
    if len(value) != 40:
        raise KeyMissing(f"--server-key {value!r}: neither a key file nor a 40-character z85 key")
    return value.encode()


def remote_bus(args, address: str, prefixes: list[str], command: str) -> RemoteBus | None:
    """The glasses' bus through their bridge, with this peer's key; None (said why) when it cannot be."""
    if not args.server_key:
        print(f"lens bus {command}: the bridge's --server-key is needed (printed by `lens bus bridge --listen`)",
              file=sys.stderr)
        return None
    try:
        pair = keys.load_pair(Path(args.key)) if args.key else keys.own_pair(args.runtime, keys.DEVELOPER)
        return RemoteBus(address, pair, server_key(args.server_key), prefixes)
    except KeyMissing as exc:
        print(f"lens bus {command}: {exc}", file=sys.stderr)
        return None


def connect(args) -> int:
    from cli.connect import need_bus
    from bustools.relay import Relay

    need_bus(args.runtime)  # this machine's bus, where the glasses' is republished
    remote = remote_bus(args, args.connect, args.topics, "bridge")
    if remote is None:
        return 2
    def welcomed(sees: list[str]) -> None:
        info = {"connected": args.connect, "sees": sees, "send": args.send}
        print(json.dumps(info) if args.json else f"lens bus bridge: {args.connect} lets out "
              f"{', '.join(sees) or 'nothing'}; republished on {args.runtime.dir}", flush=True)

    with Node(keys.BRIDGE, args.runtime) as node:
        relay = Relay(node, remote, args.send, welcomed)
        try:
            node.run()
        finally:
            relay.close()
            remote.close()
        print(json.dumps(relay.stats()) if args.json else f"lens bus bridge: {relay.stats()}", flush=True)
    return 0


def sniff_remote(args, prefixes: list[str]) -> int:
    remote = remote_bus(args, args.remote, prefixes, "sniff")
    if remote is None:
        return 2
    emit = message_json if args.json else message_line
    deadline = time.monotonic() + args.timeout if args.timeout is not None else float("inf")
    printed, told = 0, False
    interrupt_on_stop_signals()
    try:
        while time.monotonic() < deadline and (args.count is None or printed < args.count):
            for msg in remote.poll(min(1.0, max(0.0, deadline - time.monotonic()))):
                if args.count is None or printed < args.count:
                    print(emit(msg), flush=True)
                    printed += 1
            if remote.welcome is not None and not told:
                told = True
                print(f"lens bus sniff: {args.remote} lets out {', '.join(remote.welcome) or 'nothing'}",
                      file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        remote.close()
    if remote.welcome is None:
        print(f"lens bus sniff: no answer from {args.remote} (a wrong key is refused without one)", file=sys.stderr)
        return 1
    if args.count is not None and printed < args.count:
        print(f"lens bus sniff: {printed} of {args.count} messages before the timeout", file=sys.stderr)
        return 1
    return 0
