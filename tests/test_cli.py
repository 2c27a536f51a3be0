"""The `lens` command line: help everywhere, clear errors, machine-readable output, and `lens up`."""

import json
import os
import signal
import socket
import subprocess

import pytest

from bus import sdnotify
from bus.errors import RuntimeDirError
from bus.runtime import Runtime
from shell.cli import build_parser, main
from shell.processes import PROCESSES
from tests.conftest import DEADLINE_S, children_of, drain_lines, read_json_lines, wait_for, wait_line


def all_command_paths(parser, prefix=()):
    yield prefix
    for action in parser._actions:
        if hasattr(action, "choices") and isinstance(action.choices, dict):
            for name, sub in action.choices.items():
                yield from all_command_paths(sub, (*prefix, name))


@pytest.mark.parametrize("path", list(all_command_paths(build_parser())), ids=" ".join)
def test_every_command_has_help(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    assert exit_info.value.code == 0
    assert "usage: lens" in capsys.readouterr().out


def test_pub_rejects_a_payload_that_does_not_match_the_table(procs):
    result = procs.run_lens("bus", "pub", "demo.tick", "n=many", "text=x")
    assert result.returncode == 2
    assert "field 'n' must be int, got 'many'" in result.stderr
    result = procs.run_lens("bus", "pub", "demo.tick", "n=1")
    assert result.returncode == 2
    assert "missing required field 'text'" in result.stderr
    result = procs.run_lens("bus", "pub", "demo.tick", "n=1", "text=x", "colour=red")
    assert "unknown field(s) colour" in result.stderr


def test_sniff_refuses_a_prefix_no_topic_has(procs):
    result = procs.run_lens("bus", "sniff", "powr")
    assert result.returncode == 2
    assert "no topic in bus/topics.py matches the prefix 'powr'" in result.stderr


def test_top_once_json_reports_rates_and_publishers(broker, procs):
    procs.start_ready("-m", "bus.demo")
    result = procs.run_lens("bus", "top", "--once", "--json", "--window", "1.5")
    assert result.returncode == 0, result.stderr
    topics = json.loads(result.stdout)["topics"]
    wave = topics["demo.wave"]
    assert wave["publishers"] == ["demo"] and wave["hz"] > 0 and wave["bytes_per_s"] > 0
    assert wave["drops"] == 0 and wave["nominal_hz"] == 10


def test_top_refreshes_the_table_until_interrupted(broker, procs):
    procs.start_ready("-m", "bus.demo")
    top = procs.lens("bus", "top", "--window", "1", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_line(top.stdout, "demo.wave")
    wait_line(top.stdout, "\x1b[2J")  # a second screen: the table refreshes by itself
    wait_line(top.stdout, "demo.wave")
    top.send_signal(signal.SIGINT)
    drain_lines(top.stdout)
    assert top.wait(DEADLINE_S) == 0


def test_list_json_shows_the_table_and_who_publishes(broker, procs):
    procs.start_ready("-m", "bus.demo")
    result = procs.run_lens("bus", "list", "--json", "--listen", "1.5")
    rows = {row["topic"]: row for row in json.loads(result.stdout)["topics"]}
    assert rows["demo.status"]["kind"] == "state" and rows["demo.status"]["has_latched"]
    assert rows["demo.tick"]["publishers"] == ["demo"]
    assert rows["demo.echo.reply"]["owner"] == "demo"


def test_runtime_dir_must_be_safe_and_short(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(RuntimeDirError, match="world-writable"):
        Runtime.resolve(shared)
    with pytest.raises(RuntimeDirError, match="too long for ipc://"):
        Runtime.resolve(tmp_path / ("x" * 120))


def test_sd_notify_reaches_a_real_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sdnotify.notify("READY=1", "STATUS=hi")
        assert sock.recv(100) == b"READY=1\nSTATUS=hi"
    abstract = f"@lens-test-{id(path)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + abstract[1:])
        monkeypatch.setenv("NOTIFY_SOCKET", abstract)
        assert sdnotify.notify("WATCHDOG=1")
        assert sock.recv(100) == b"WATCHDOG=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert sdnotify.notify("READY=1") is False


def test_watchdog_period_is_half_the_supervisors_timeout(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert sdnotify.watchdog_period() == 1.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # watching someone else
    assert sdnotify.watchdog_period() is None


def test_a_supervised_process_beats_once_every_few_watchdog_pings(monkeypatch):
    from bus.service import HEARTBEAT_S, SUPERVISED_BEATS, heartbeat_period
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert heartbeat_period() == HEARTBEAT_S  # nobody restarts it if it hangs: the shell must hear it
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")  # the table's 10 s: a ping every 5 s
    assert heartbeat_period() == 5.0 * SUPERVISED_BEATS
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # a ping every 0.5 s: never faster than HEARTBEAT_S
    assert heartbeat_period() == HEARTBEAT_S and (HEARTBEAT_S / 0.5).is_integer()


def test_lens_up_boots_to_all_ready_serves_the_bus_and_stops_cleanly(procs, runtime):
    up = procs.lens("up", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_line(up.stdout, "processes ready in")

    def latched_state():
        result = procs.run_lens("bus", "sniff", "shell.state", "--json", "--count", "1", "--timeout", str(DEADLINE_S))
        state = read_json_lines(result.stdout)[0]
        return state if state["source"] == "shell" and state["payload"]["state"] != "booting" else None
    state = wait_for(latched_state, DEADLINE_S, "the shell running (its latched state, read by `lens bus sniff`)")
    # Every daemon was heard at boot, however their starts and the shell's interleaved: none is missing
    # (each beats only every 30 s under lens up, so one missed would stay missing well past the deadline).
    assert state["payload"]["running"] and state["payload"]["degraded"] == [], state["payload"]
    children = children_of(up.pid)
    assert sorted(children_of(up.pid, "-m")) == sorted(children) and len(children) == len([p for p in PROCESSES if not p.dev_only])
    up.send_signal(signal.SIGINT)
    rest = drain_lines(up.stdout)
    up.wait(DEADLINE_S)
    assert up.returncode == 0, rest
    assert "lensos: stopped" in rest
    # no stale sockets, lock, cache or notify sockets; the development keys stay for the next boot
    assert sorted(p.name for p in runtime.dir.iterdir()) == ["appkeys", "keys"]
    assert list(runtime.path("appkeys").iterdir()) == []  # no app's key outlives its app
    assert [pid for pid in children if os.path.exists(f"/proc/{pid}")] == []  # no orphans


def test_lens_up_restarts_a_crashed_process(procs, runtime):
    up = procs.lens("up", "--only", "ledd", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_line(up.stdout, "processes ready in")
    [ledd_pid] = children_of(up.pid, "daemons.led")
    os.kill(ledd_pid, signal.SIGKILL)
    wait_line(up.stdout, "ledd exited with status -9; restarting")
    result = procs.run_lens("bus", "sniff", "led.state", "--live", "--json", "--count", "1",
                            "--timeout", str(DEADLINE_S))
    assert result.returncode == 0, result.stderr
    up.send_signal(signal.SIGINT)
    drain_lines(up.stdout)
    up.wait(DEADLINE_S)
    assert up.returncode == 0


def test_lens_up_aborts_and_restarts_a_process_whose_loop_hangs(procs, runtime):
    up = procs.lens("up", "--only", "ledd", "--watchdog", "1", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_line(up.stdout, "processes ready in")
    [ledd_pid] = children_of(up.pid, "daemons.led")
    os.kill(ledd_pid, signal.SIGSTOP)  # its loop stops: no more WATCHDOG=1
    wait_line(up.stdout, "ledd sent no WATCHDOG=1 for 1 s; aborting it")
    wait_line(up.stdout, "ledd did not abort in")  # a stopped process cannot take SIGABRT: SIGKILL follows
    wait_line(up.stdout, "ledd exited with status -9; restarting")
    result = procs.run_lens("bus", "sniff", "led.state", "--live", "--json", "--count", "1",
                            "--timeout", str(DEADLINE_S))
    assert result.returncode == 0, result.stderr
    [new_pid] = children_of(up.pid, "daemons.led")
    assert new_pid != ledd_pid
    up.send_signal(signal.SIGINT)
    drain_lines(up.stdout)
    assert up.wait(DEADLINE_S) == 0


def test_lens_up_checks_its_choices_against_the_table(procs):
    result = procs.run_lens("up", "--backend", "shell=real")
    assert result.returncode == 2 and "shell is not a process with backends" in result.stderr
    result = procs.run_lens("up", "--backend", "displayd=fast")
    assert result.returncode == 2 and "displayd has backends real, none, sim" in result.stderr
    result = procs.run_lens("up", "--block", "broker")
    assert result.returncode == 2 and "the broker cannot be blocked" in result.stderr


def test_lens_up_only_starts_the_named_processes_and_the_broker(procs, runtime):
    up = procs.lens("up", "--only", "broker", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_line(up.stdout, "processes ready in")
    children = children_of(up.pid)
    assert len(children) == 1 and children == children_of(up.pid, "bus.broker")
    up.send_signal(signal.SIGTERM)
    drain_lines(up.stdout)
    assert up.wait(DEADLINE_S) == 0


def test_lens_up_only_refuses_a_process_it_does_not_know(procs):
    result = procs.run_lens("up", "--only", "camerad,nosuch,ghostd")
    assert result.returncode == 2
    assert "unknown process(es): ghostd, nosuch" in result.stderr


@pytest.mark.parametrize("module", ["bus.broker", "daemons.led"])
def test_processes_ping_the_watchdog_from_their_loop_after_ready(procs, runtime, module, tmp_path):
    if module != "bus.broker":
        procs.start_broker()
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(DEADLINE_S)
        procs.start("-m", module, env=procs.env(NOTIFY_SOCKET=path, WATCHDOG_USEC="200000"))
        said = []
        while said.count(b"WATCHDOG=1") < 3:
            said += sock.recv(4096).split(b"\n")
        assert said.index(b"READY=1") < said.index(b"WATCHDOG=1")


@pytest.mark.skipif(os.getuid() != 0, reason="giving the directory to another group needs root")
def test_a_bus_directory_shared_through_a_group_is_accepted_and_anyone_elses_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "bus"
    shared.mkdir(mode=0o770)
    os.chown(shared, 0, 4242)  # the broker's directory, group-shared (RuntimeDirectoryMode=0770, Group=lensos)
    shared.chmod(0o770)
    monkeypatch.setattr(os, "getuid", lambda: 65534)  # a daemon's own (dynamic) user
    monkeypatch.setattr(os, "getgid", lambda: 65534)
    monkeypatch.setattr(os, "getgroups", lambda: [4242])  # SupplementaryGroups=lensos
    Runtime.resolve(shared)
    monkeypatch.setattr(os, "getgroups", lambda: [])
    with pytest.raises(RuntimeDirError, match="is not shared with a group of ours"):
        Runtime.resolve(shared)
    shared.chmod(0o750)  # the group may read but not connect: not shared
    monkeypatch.setattr(os, "getgroups", lambda: [4242])
    with pytest.raises(RuntimeDirError, match="is not shared with a group of ours"):
        Runtime.resolve(shared)


def test_keys_generate_makes_a_directory_every_unit_may_read_and_secrets_only_root_may(tmp_path):
    """The first boot under a real systemd: every unit but the broker failed with "no broker key at
    /etc/lensos/keys/broker.key", the directory being 0700 root's and each unit a dynamic user of its own."""
    directory = tmp_path / "keys"
    assert main(["keys", "generate", str(directory)]) == 0
    assert os.stat(directory).st_mode & 0o777 == 0o755
    assert os.stat(directory / "broker.key").st_mode & 0o777 == 0o644
    assert os.stat(directory / "shell.key_secret").st_mode & 0o777 == 0o600
