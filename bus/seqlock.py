"""The seqlock's loads and stores with the fences a weakly ordered CPU needs, for the frame ring (frames.ring)
and the bus's tap (bus.tap); here, in the lowest layer, so both may use it.

bus/seqlock.c (built into bus/_seqlock.so by `make install` and into the wheel) has the four
ordering points, called through ctypes with the address of a slot's generation:

    writer: write_begin (odd, release fence) -> pixels -> write_end (release store of even)
    reader: read_begin (acquire load) -> pixels -> read_end (acquire fence, load again)

The bus's tap (bus/tap.py) is a ring of shared memory with the same two sides and uses the same library:
its writer's `reserved` word by store_then_fence, its `head` by store_release, its reader's by read_begin
and read_end.

Without the library the order of numpy's plain stores and loads is the CPU's: on x86 (TSO) that is the
order the seqlock needs, so a ring works there and says once in the log that it runs without fences; on any
other CPU (arm64: the glasses' board) a ring refuses to open (``NoFences``) rather than hand out torn frames.
"""

from __future__ import annotations

import ctypes
import logging
import platform
from pathlib import Path

log = logging.getLogger(__name__)

LIBRARY = Path(__file__).with_name("_seqlock.so")
# CPUs whose memory model keeps stores in order and loads in order (TSO): the seqlock holds without fences.
TSO_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686"})
_FUNCTIONS = ("write_begin", "write_end", "read_begin", "read_end")
_STORES = ("store_then_fence", "store_release")  # (address, value): the tap's writer


class NoFences(RuntimeError):
    """bus/_seqlock.so is missing on a CPU that reorders memory: a reader could accept a torn frame."""


class Fences:
    """bus/_seqlock.so's functions; each takes a generation's address and returns the value it stored or read."""

    name = "fences"

    def __init__(self, library: Path = LIBRARY):
        lib = ctypes.CDLL(str(library))
        for name in _FUNCTIONS:
            function = getattr(lib, f"lens_seq_{name}")
            function.argtypes, function.restype = [ctypes.c_void_p], ctypes.c_uint64
            setattr(self, name, function)
        for name in _STORES:
            function = getattr(lib, f"lens_seq_{name}")
            function.argtypes, function.restype = [ctypes.c_void_p, ctypes.c_uint64], ctypes.c_uint64
            setattr(self, name, function)


class PlainTso:
    """Plain loads and stores, in program order: enough on x86 (TSO) only. The calls are still calls, so no
    compiler reorders the pixels' memcpy across them; the CPU does not either, there."""

    name = "tso"

    @staticmethod
    def write_begin(address: int) -> int:
        generation = ctypes.c_uint64.from_address(address)
        generation.value += 1
        return generation.value

    write_end = write_begin  # odd -> even is the same step as even -> odd

    @staticmethod
    def read_begin(address: int) -> int:
        return ctypes.c_uint64.from_address(address).value

    read_end = read_begin

    @staticmethod
    def store_then_fence(address: int, value: int) -> int:
        ctypes.c_uint64.from_address(address).value = value
        return value

    store_release = store_then_fence


_chosen: Fences | PlainTso | None = None


def fences(library: Path = LIBRARY, machine: str | None = None) -> Fences | PlainTso:
    """The seqlock's loads and stores for this process: the library's, else on x86 plain ones (said once in
    the log); NoFences on any other CPU without the library."""
    global _chosen
    default = library == LIBRARY and machine is None
    if default and _chosen is not None:
        return _chosen
    machine = machine or platform.machine()
    try:
        chosen = Fences(library)
    except OSError as exc:
        if machine.lower() not in TSO_MACHINES:
            raise NoFences(f"{library} did not load ({exc}): on {machine} the frame ring's seqlock needs its "
                           "fences, or a reader can accept a torn frame; `make install` (or the wheel) builds it") \
                from None
        log.warning("the frame ring runs without fences (%s did not load: %s); correct on %s (TSO) only; "
                    "`make install` builds it", library, exc, machine)
        chosen = PlainTso()
    if default:
        _chosen = chosen
    return chosen
