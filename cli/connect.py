"""How a `lens` command gets onto the bus: a node named for the command, only where a broker is there."""

from __future__ import annotations

import logging
import os

from bus.errors import BusNotRunning
from bus.node import Node
from bus.runtime import Runtime

log = logging.getLogger(__name__)


def need_bus(runtime: Runtime | str | None) -> Runtime:
    """The runtime of a `lens` command that needs the bus. With no broker there it fails at once with
    BusNotRunning, the same words for every command (said by `lens`'s main), rather than waiting out a
    timeout and guessing why."""
    runtime = runtime if isinstance(runtime, Runtime) else Runtime.resolve(runtime)
    if runtime.broker_gone():
        raise BusNotRunning(runtime.dir)
    return runtime


def tool_node(role: str, runtime: Runtime | str | None, name: str | None = None, **kwargs) -> Node:
    """The node of one `lens` command: named for it and this process (or ``name``), no heartbeat (tools
    come and go); only where the bus is up (need_bus)."""
    return Node(name or f"lens-{role}-{os.getpid()}", need_bus(runtime), **kwargs)


def watching_node(args, role: str) -> Node:
    """The node of a tool that only watches (sniff, top), which must not slow what it watches. As a
    watcher it reads the broker's tap (bus.tap) rather than taking copies from the broker's sockets. At
    SCHED_IDLE it runs on CPU nobody else wants: when it falls behind, the ring laps it and its sequence
    gaps count what it missed. Set before the node exists: libzmq's I/O thread, made with the node's
    context, inherits it."""
    if not args.normal_priority and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError as exc:  # a sandbox that forbids it: watch at normal priority, and say so
            log.warning("cannot lower this tool's priority (%s); it competes for CPU with the system", exc)
    return tool_node(role, args.runtime, watcher=True)
