"""How a `lens` command gets onto the bus: a node named for the command, only where a broker is there."""

from __future__ import annotations

import os

from bus.errors import BusNotRunning
from bus.node import Node
from bus.runtime import Runtime


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
