"""How broker/fastpath.c becomes the broker's C loop: one command line for `make install` (broker.fastpath.build)
and for the wheel (setup.py), which must not import pyzmq to know it."""

from __future__ import annotations

import os
from pathlib import Path

SOURCE = Path(__file__).with_name("fastpath.c")
LIBRARY_NAME = "_fastpath.so"


def command(output: Path, source: Path = SOURCE) -> list[str]:
    """$CC (else cc) building ``source`` into the shared library ``output``."""
    return [os.environ.get("CC", "cc"), "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o", str(output), str(source)]
