"""How the checkout's C libraries (loaded with ctypes, so libc's headers only) are compiled: one command line for
`make install` and for the wheel (setup.py), which must not import pyzmq to know it. Its first library was the
broker's C loop (broker/fastpath.c); the frame ring's fences (bus/seqlock.c) are built by the same line:

    python broker/fastpath_build.py bus/seqlock.c bus/_seqlock.so

$CC picks the compiler: the arm64 image's wheel is built with CC=aarch64-linux-gnu-gcc (board/build-image)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).with_name("fastpath.c")
LIBRARY_NAME = "_fastpath.so"
# Every C library the wheel carries: its source and where it goes, relative to the checkout.
LIBRARIES = {"broker/fastpath.c": "broker/_fastpath.so", "bus/seqlock.c": "bus/_seqlock.so"}


def command(output: Path, source: Path = SOURCE) -> list[str]:
    """$CC (else cc) building ``source`` into the shared library ``output``."""
    return [os.environ.get("CC", "cc"), "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o", str(output), str(source)]


def build(source: Path, output: Path) -> None:
    """Compile ``source`` into ``output`` (replaced whole: a process starting meanwhile loads the old library
    or the new, never half); CalledProcessError with the compiler's words if it fails."""
    partial = output.with_suffix(".so.part")
    subprocess.run(command(partial, source), check=True, capture_output=True, text=True)
    os.replace(partial, output)


if __name__ == "__main__":
    source, output = map(Path, sys.argv[1:3])
    try:
        build(source, output)
    except FileNotFoundError as exc:
        sys.exit(f"lensos: no C compiler ({exc.filename}) for {source}")
    except subprocess.CalledProcessError as exc:
        sys.exit(f"lensos: building {source} failed:\n{exc.stderr}")
    print(f"built {output}")
