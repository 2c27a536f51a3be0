"""Logging for lensos processes: one format, and what others said never forges a line.

Daemons log what apps and peers sent them (a refused request's reason, a fault's text). Written raw, a
string with a newline, a carriage return or a terminal escape would print as a line of its own, a
forged "shell: INFO granted ..." in the journal, or rewrite the terminal of whoever reads it. Every
message is therefore escaped as it is formatted (control characters and Unicode's line separators as
\\xNN / \\uNNNN); tracebacks, which are this process's own text, keep their lines.
"""

from __future__ import annotations

import logging

# C0 and C1 controls, DEL, and the separators that some viewers break lines at.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7f, 0xa0))}
_ESCAPES.update({c: f"\\u{c:04x}" for c in (0x2028, 0x2029)})


def escaped(text: str) -> str:
    return text.translate(_ESCAPES)


class EscapingFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escaped(record.message)
        return super().formatMessage(record)


def configure(name: str, level: int = logging.INFO) -> None:
    """The root logger of process ``name``: ``name: LEVEL message`` on stderr (the journal adds the time)."""
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter(f"{name}: %(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
