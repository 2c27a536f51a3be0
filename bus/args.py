"""The argument parser every lensos process starts with.

argparse, left to find the terminal's width, imports shutil, which brings bz2, lzma and zlib: 0.5 MiB
in every daemon for a --help it seldom prints. Told the width, it imports none of them.
"""

from __future__ import annotations

import argparse
import os
import sys


def argument_parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=_formatter)


def _formatter(prog: str) -> argparse.HelpFormatter:
    columns = os.environ.get("COLUMNS", "")
    if not columns.isdigit():
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, OSError, ValueError):  # no stdout, or not a terminal
            columns = 80
    return argparse.HelpFormatter(prog, width=max(int(columns) - 2, 20))
