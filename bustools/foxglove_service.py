"""`python -m bustools.foxglove_service`: `lens bus foxglove` as a process of `lens up --web` (make run), so a
developer opens Foxglove on ws://127.0.0.1:8765 while the glasses run. Like the live view it is development
only (never a unit on the board), on 127.0.0.1, with no capture content and no publishing from Foxglove:
`lens bus foxglove --include-capture` or `--allow-publish` ask for those. It reads the tap at idle priority
and says READY=1 once its subscriptions are live, as every process of the table."""

from __future__ import annotations

import logging
import os

from bus import logs, service
from bus.node import Node
from manager.processes import by_module

ROW = by_module("bustools.foxglove_service")  # its name and command line, from its row of the process table


def main(argv: list[str] | None = None) -> int:
    parser = service.arguments(ROW.module, __doc__)
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765; 0: any free)")
    args = parser.parse_args(argv)
    logs.configure(ROW.name, logging.DEBUG if args.verbose else logging.INFO)
    if hasattr(os, "SCHED_IDLE"):  # before any thread exists: libzmq's and the server's inherit it
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError as exc:
            logging.getLogger(ROW.name).warning("cannot lower its priority (%s): it competes for CPU", exc)
    from bustools.foxglove_live import FoxgloveLive

    with Node(ROW.name, args.runtime_dir, heartbeat=service.heartbeat_period(), watcher=True) as node:
        live = FoxgloveLive(node, "127.0.0.1", args.port)
        node.runtime.path("foxglove.port").write_text(f"{live.port}\n")  # how tools and tests find a free port
        logging.getLogger(ROW.name).info("Foxglove: connect to ws://127.0.0.1:%d", live.port)
        try:
            node.start()
            node.run()
        finally:
            live.close()
            node.runtime.path("foxglove.port").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
