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


def test_a_burst_of_changes_costs_one_fsync_now_and_one_after_yet_each_is_on_disk_at_once(tmp_path, monkeypatch):
    """A flood of notifications was an fsync of the file and its directory each (20 ms and more here): the app
    fell behind its socket and grew by 117 MiB. A crash must still lose nothing: every change is written
    (replaced atomically) at once; only the fsync, for a power cut, is coalesced."""
    import os

    from bus import kept as kept_module

    synced, timers = [], []
    real_fsync = os.fsync
    monkeypatch.setattr(kept_module.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    kept = Kept(tmp_path, "notes", SCHEMA, survives_reboot=True, later=lambda s, f: timers.append((s, f)))
    for i in range(100):
        kept.save({"items": [f"n{i}"], "unread": i})
        assert Kept(tmp_path, "notes", SCHEMA, survives_reboot=True).load()["unread"] == i, "on disk at once"
    assert len(synced) == 2, "the first change synced (file and directory), the rest wait"
    assert len(timers) == 1 and 0 < timers[0][0] <= kept_module.SYNC_S, "one timer for the rest"
    timers[0][1]()
    assert len(synced) == 4 and not kept.unsynced
    kept.sync()  # nothing new: nothing to do
    assert len(synced) == 4
    quick = Kept(tmp_path, "quick", SCHEMA)  # dies with the boot: never synced
    quick.save({"items": [], "unread": 0})
    assert len(synced) == 4


@pytest.mark.fault
def test_a_process_killed_right_after_a_save_loses_nothing(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    script = ("import os, sys; from bus.kept import Kept\n"
              "k = Kept(sys.argv[1], 'notes', {'items': 'list[str]', 'unread': 'int'}, survives_reboot=True,"
              " later=lambda s, f: None)\n"
              "for i in range(50): k.save({'items': ['a'] * i, 'unread': i})\n"
              "os.kill(os.getpid(), 9)\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, timeout=60)
    assert done.returncode == -9
    assert Kept(tmp_path, "notes", SCHEMA, survives_reboot=True).load() == {"items": ["a"] * 49, "unread": 49}


def test_a_state_that_cannot_be_written_is_said_once_and_again_when_it_can(tmp_path, caplog):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the kept directory would be")
    kept = Kept(blocked, "notes", SCHEMA)
    with caplog.at_level(logging.INFO):
        for i in range(5):
            kept.save({"items": [], "unread": i})  # no exception: the process keeps its state in memory
    assert caplog.text.count("keeping state in") == 1


def test_the_boot_comes_from_systemd_where_proc_sys_is_hidden_and_an_unknown_boot_keeps_nothing(tmp_path,
                                                                                              monkeypatch):
    """A board's unit hides /proc/sys (ProcSubset=pid) and says the boot's id in $LENS_BOOT_ID (systemd's %b):
    the file had read "" at every boot, and a state kept in an earlier boot passed for this one's."""
    import bus.runtime
    monkeypatch.setenv("LENS_BOOT_ID", "boot-one")
    Kept(tmp_path, "notes", SCHEMA).save({"items": ["a"], "unread": 1})
    assert Kept(tmp_path, "notes", SCHEMA).load() == {"items": ["a"], "unread": 1}
    monkeypatch.setenv("LENS_BOOT_ID", "boot-two")
    assert Kept(tmp_path, "notes", SCHEMA).load() is None
    monkeypatch.delenv("LENS_BOOT_ID")
    monkeypatch.setattr(bus.runtime, "Path", lambda _: tmp_path / "hidden")  # /proc/sys as ProcSubset=pid has it
    assert bus.runtime.boot_id() is None
    unknown = Kept(tmp_path, "notes", SCHEMA)
    unknown.save({"items": ["b"], "unread": 0})
    assert Kept(tmp_path, "notes", SCHEMA).load() is None  # perhaps an earlier boot's: not taken for this one's


def test_systemds_spelling_of_the_boot_and_the_kernels_are_one_boot(monkeypatch):
    import bus.runtime
    monkeypatch.setenv("LENS_BOOT_ID", "0e6f3952974a49749ad685942cf0f3a0")  # %b
    from_systemd = bus.runtime.boot_id()
    monkeypatch.delenv("LENS_BOOT_ID")
    monkeypatch.setattr(bus.runtime.Path, "read_text", lambda self: "0e6f3952-974a-4974-9ad6-85942cf0f3a0\n")
    assert bus.runtime.boot_id() == from_systemd


def test_a_state_kept_before_boot_ids_lost_their_dashes_is_this_boots(tmp_path, monkeypatch):
    """Kept state written with the kernel's spelling (dashes) is this boot's after the upgrade, not lost once."""
    monkeypatch.setenv("LENS_BOOT_ID", "0e6f3952974a49749ad685942cf0f3a0")
    kept = Kept(tmp_path, "notes", SCHEMA)
    kept.path.parent.mkdir()
    kept.path.write_text(json.dumps({"version": 1, "boot": "0e6f3952-974a-4974-9ad6-85942cf0f3a0",
                                     "state": {"items": ["a"], "unread": 1}}))
    again = Kept(tmp_path, "notes", SCHEMA)
    assert again.load() == {"items": ["a"], "unread": 1} and again.this_boot
