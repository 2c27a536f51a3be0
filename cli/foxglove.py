"""`lens bus foxglove`: serve the bus live to Foxglove (bustools.foxglove_live)."""

from __future__ import annotations

import json
import sys


def add_parsers(commands) -> None:
    p = commands.add_parser("foxglove", help="serve the bus live to Foxglove (WebSocket, 127.0.0.1 by default)",
                            description="Every topic a channel with its JSON Schema from the topic table, the "
                                        "display and (with --include-capture) the camera as foxglove."
                                        "CompressedImage; open Foxglove and connect to ws://HOST:PORT. Camera "
                                        "frames and mic audio stay out unless --include-capture.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765, Foxglove's; 0: any free one)")
    p.add_argument("--allow-publish", action="store_true",
                   help="let clients publish events and states this process's key may publish")
    p.add_argument("--include-capture", action="store_true",
                   help="camera frames and mic audio too: only for an identity that may see them, and written "
                        "into the privacy log, as `lens bus record --include-capture`")
    p.add_argument("--max-rate", type=float, default=200.0, metavar="HZ",
                   help="at most this many messages a second per channel (default 200; the rest are counted)")
    p.add_argument("--normal-priority", action="store_true",
                   help="compete for CPU like the glasses' own processes (by default it runs at idle priority)")
    p.add_argument("--json", action="store_true", help="say where it serves as JSON on stdout")
    p.set_defaults(func=cmd_foxglove)


def cmd_foxglove(args) -> int:
    from cli.connect import watching_node
    from bustools.foxglove_live import FoxgloveLive

    node = watching_node(args, "foxglove")
    consent = None
    if args.include_capture:
        from cli.bag import consent_for
        consent = consent_for(node, "lens bus foxglove", f"served on {args.host}:{args.port}")
        if consent is None:
            node.close()
            return 2
    try:
        live = FoxgloveLive(node, args.host, args.port, args.allow_publish, consent, args.max_rate)
    except RuntimeError as exc:  # the SDK's words for a port in use or an address it cannot take
        print(f"lens bus foxglove: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        node.close()
        return 2
    try:
        node.start()
        where = {"url": f"ws://{args.host}:{live.port}", "host": args.host, "port": live.port,
                 "publish": args.allow_publish, "capture": consent is not None}
        if args.json:
            print(json.dumps(where), flush=True)
        print(f"lens bus foxglove: serving {where['url']} (open Foxglove, connect to it)"
              f"{'; clients may publish' if args.allow_publish else ''}; Ctrl-C stops", file=sys.stderr, flush=True)
        try:
            node.run()
        except KeyboardInterrupt:
            pass
    finally:
        live.close()
        node.close()
        if consent is not None:
            consent.close("lens bus foxglove stopped")
    print(f"lens bus foxglove: {live.counts['sent']} messages sent, {live.counts['skipped']} held back by "
          f"--max-rate, {live.counts['published']} published, "
          f"{live.counts['refused']} refused", file=sys.stderr)
    return 0
