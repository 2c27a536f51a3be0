"""bus.kept: a process's own state read back after its crash, and refused (named, starting afresh) when bad."""

from __future__ import annotations

import json
import logging

import pytest

from bus.errors import PayloadError
from bus.kept import MAX_BYTES, Kept

SCHEMA = {"items": "list[str]", "unread": "int"}


def test_what_is_saved_comes_back_and_only_a_change_is_written(tmp_path):
    kept = Kept(tmp_path, "notes", SCHEMA)
    assert kept.load() is None  # nothing kept yet: a first start
    kept.save({"items": ["a"], "unread": 1})
    written = kept.path.stat().st_mtime_ns
    kept.save({"items": ["a"], "unread": 1})
    assert kept.path.stat().st_mtime_ns == written
    assert kept.path.stat().st_mode & 0o777 == 0o600
    again = Kept(tmp_path, "notes", SCHEMA)
    assert again.load() == {"items": ["a"], "unread": 1} and again.this_boot
    with pytest.raises(PayloadError):  # what could not be read back is never written
        again.save({"items": "a", "unread": 1})


@pytest.mark.parametrize("content", [b'{"version": 1, "boot"', b"\xff\xfe", b"[]",
                                     b'{"version": 2, "boot": "", "state": {}}'])
def test_a_torn_or_foreign_file_is_named_and_the_process_starts_afresh(tmp_path, caplog, content):
    kept = Kept(tmp_path, "notes", SCHEMA)
    kept.path.parent.mkdir()
    kept.path.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        assert kept.load() is None
    assert str(kept.path) in caplog.text


def test_state_against_its_schema_an_earlier_boots_and_an_oversized_file_are_not_used(tmp_path, caplog):
    kept = Kept(tmp_path, "notes", SCHEMA)
    kept.save({"items": ["a"], "unread": 1})
    top = json.loads(kept.path.read_bytes())
    kept.path.write_text(json.dumps(dict(top, state={"items": [1], "unread": 1})))
    with caplog.at_level(logging.WARNING):
        assert Kept(tmp_path, "notes", SCHEMA).load() is None
    assert "items" in caplog.text
    kept.path.write_text(json.dumps(dict(top, boot="another boot")))
    assert Kept(tmp_path, "notes", SCHEMA).load() is None  # died with its boot
    surviving = Kept(tmp_path, "notes", SCHEMA, survives_reboot=True)
    assert surviving.load() == {"items": ["a"], "unread": 1} and not surviving.this_boot
    kept.path.write_bytes(b" " * (MAX_BYTES + 1))
    assert Kept(tmp_path, "notes", SCHEMA).load() is None
