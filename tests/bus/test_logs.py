"""Log lines quote what others said: a newline, a carriage return or a terminal escape in a message never
becomes a line or a command of its own; this process's own tracebacks keep their lines."""

import logging

from bus.logs import EscapingFormatter, escaped


def test_control_characters_and_line_separators_are_escaped():
    assert escaped("a\nb\rc\x1b[2J\x00\x7f\x85\u2028\u2029 é 🙂") == \
        "a\\x0ab\\x0dc\\x1b[2J\\x00\\x7f\\x85\\u2028\\u2029 é 🙂"


def test_a_formatted_record_is_one_line_but_a_traceback_keeps_its_own():
    formatter = EscapingFormatter("shell: %(levelname)s %(message)s")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "denied %s", ("app\nshell: INFO granted",), None)
    assert formatter.format(record) == "shell: INFO denied app\\x0ashell: INFO granted"
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = formatter.format(record)
    assert text.startswith("shell: ERROR failed\nTraceback (most recent call last):") and "ValueError: boom" in text
