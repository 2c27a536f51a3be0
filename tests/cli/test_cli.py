"""The `lens` command line: help everywhere, clear errors, machine-readable output, and `lens up`."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from bus import sdnotify
from bus.errors import RuntimeDirError
from bus.runtime import Runtime
from cli.main import build_parser, main
from manager.processes import PROCESSES
from tests.conftest import DEADLINE_S, REPO, children_of, drain_lines, read_json_lines, wait_for, wait_line


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
    procs.start_ready("-m", "bustools.demo")
    result = procs.run_lens("bus", "top", "--once", "--json", "--window", "1.5")
    assert result.returncode == 0, result.stderr
    topics = json.loads(result.stdout)["topics"]
    wave = topics["demo.wave"]
    assert wave["publishers"] == ["demo"] and wave["hz"] > 0 and wave["bytes_per_s"] > 0
    assert wave["drops"] == 0 and wave["nominal_hz"] == 10


def test_top_refreshes_the_table_until_interrupted(broker, procs):
    procs.start_ready("-m", "bustools.demo")
    top = procs.lens("bus", "top", "--window", "1", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_line(top.stdout, "demo.wave")
    wait_line(top.stdout, "\x1b[2J")  # a second screen: the table refreshes by itself
    wait_line(top.stdout, "demo.wave")
    top.send_signal(signal.SIGINT)
    drain_lines(top.stdout)
    assert top.wait(DEADLINE_S) == 0


def test_list_json_shows_the_table_and_who_publishes(broker, procs):
    procs.start_ready("-m", "bustools.demo")
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


def test_a_supervised_process_beats_with_each_watchdog_ping_so_its_silence_shows_before_the_watchdog(monkeypatch):
    from bus.service import HEARTBEAT_S, heartbeat_period
    from shell.census import SILENT_BEATS
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert heartbeat_period() == HEARTBEAT_S  # nobody restarts it if it hangs: the shell must hear it
    for watchdog_s in (10, 1, 60):  # the table's 10 s: a ping every 5 s, and a beat with it
        monkeypatch.setenv("WATCHDOG_USEC", str(watchdog_s * 1_000_000))
        assert heartbeat_period() == sdnotify.watchdog_period()
        assert SILENT_BEATS * heartbeat_period() < watchdog_s, "the shell calls it silent before it is killed"


def test_lens_up_boots_to_all_ready_serves_the_bus_and_stops_cleanly(procs, runtime):
    up = procs.lens("up", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_line(up.stdout, "processes ready in")

    def latched_state():
        result = procs.run_lens("bus", "sniff", "shell.state", "--json", "--count", "1", "--timeout", str(DEADLINE_S))
        state = read_json_lines(result.stdout)[0]
        return state if state["source"] == "shell" and state["payload"]["state"] != "booting" else None
    state = wait_for(latched_state, DEADLINE_S, "the shell running (its latched state, read by `lens bus sniff`)")
    # Every daemon was heard at boot, however their starts and the shell's interleaved: none is missing
    # (one missed would stay missing until its next beat, past the deadline).
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


@pytest.mark.fault
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


@pytest.mark.fault
def test_lens_up_aborts_and_restarts_a_process_whose_loop_hangs(procs, runtime):
    # 3 s, not less: the watchdog is every process's, the broker's too, and under load (CI, the boot test's VM
    # beside it) a 1 s one aborted the restarted ledd and the broker again and again before sniff heard them
    up = procs.lens("up", "--only", "ledd", "--watchdog", "3", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_line(up.stdout, "processes ready in")
    [ledd_pid] = children_of(up.pid, "daemons.led")
    os.kill(ledd_pid, signal.SIGSTOP)  # its loop stops: no more WATCHDOG=1
    wait_line(up.stdout, "ledd sent no WATCHDOG=1 for 3 s; aborting it")
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


@pytest.mark.fault
def test_under_lens_up_a_hung_daemon_is_reported_silent_before_its_watchdog_restarts_it(procs, runtime, nodes):
    """Issue 28, line 9: under the table's 10 s watchdog a SIGSTOPped daemon was listed alive under its old pid
    until it was killed; the shell never said so."""
    up = procs.lens("up", "--only", "shell,ledd", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_line(up.stdout, "processes ready in")
    [ledd_pid] = children_of(up.pid, "daemons.led")
    states: list[dict] = []
    watcher = nodes("watcher")
    watcher.subscribe("shell.state", lambda msg: states.append(msg.payload))
    watcher.start()
    wait_for(lambda: states and states[-1]["nodes"].get("ledd", {}).get("pid") == ledd_pid, DEADLINE_S,
             "ledd listed", poll=watcher.run_once)
    os.kill(ledd_pid, signal.SIGSTOP)
    wait_for(lambda: states[-1]["nodes"].get("ledd", {}).get("pid") not in (None, ledd_pid), 3 * DEADLINE_S,
             "ledd killed by its watchdog and back", poll=watcher.run_once)
    reported = [s for s in states if (s.get("silent") or {}).get("ledd", {}).get("pid") == ledd_pid]
    assert reported, "the hung ledd was never reported silent while it was there"
    assert "ledd" in reported[0]["degraded"] and reported[0]["nodes"]["ledd"]["pid"] == ledd_pid
    assert not states[-1]["silent"] and "ledd" not in states[-1]["degraded"]  # the others were never started
    up.send_signal(signal.SIGINT)
    rest = drain_lines(up.stdout)
    assert up.wait(DEADLINE_S) == 0, rest


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
    assert len(children) == 1 and children == children_of(up.pid, "-m broker")
    up.send_signal(signal.SIGTERM)
    drain_lines(up.stdout)
    assert up.wait(DEADLINE_S) == 0


def test_lens_up_only_refuses_a_process_it_does_not_know(procs):
    result = procs.run_lens("up", "--only", "camerad,nosuch,ghostd")
    assert result.returncode == 2
    assert "unknown process(es): ghostd, nosuch" in result.stderr


@pytest.mark.parametrize("module", ["broker", "daemons.led"])
def test_processes_ping_the_watchdog_from_their_loop_after_ready(procs, runtime, module, tmp_path):
    if module != "broker":
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
    # a product image's keys: none for the development-only live view and Foxglove, none for the developer
    assert not any((directory / f"{name}.key").exists() for name in ("webview", "foxglove", "developer"))

# Every command that needs the bus, as a new user would type it with nothing running.
NEEDS_THE_BUS = [("say", "hello"), ("status",), ("status", "--json"), ("app", "list"), ("app", "start", "camera"),
                 ("app", "stop", "camera"), ("bus", "sniff"), ("bus", "top", "--once"), ("bus", "list"),
                 ("bus", "call", "demo.echo.request", "text=x"), ("bus", "pub", "demo.tick", "n=1", "text=x"),
                 ("bus", "snapshot"), ("bus", "record", "-o", "/tmp/never.mcap"), ("bus", "record", "--snapshot", "5",
                 "-o", "/tmp/never"), ("bus", "check", "--live"),
                 ("bus", "bridge", "--listen", "tcp://127.0.0.1:0"),
                 ("bus", "bridge", "--connect", "tcp://127.0.0.1:9", "--key", "/nonexistent", "--server-key=x"), ("power", "pull", "left"), ("led", "mend"), ("input", "tap"),
                 ("display", "snapshot", "-o", "/tmp/never.png"), ("camera", "show"), ("notify", "hello")]
NOT_RUNNING = "lensos is not running (no broker on {}); start it with `make run` or `lens up`"


@pytest.mark.parametrize("stale", [False, True], ids=["never started", "broker died"])
def test_every_command_that_needs_the_bus_says_lensos_is_not_running_and_exits_3(procs, runtime, stale):
    if stale:  # a broker that died leaves its lock file, with a pid that is no process now
        gone = subprocess.Popen(["true"])
        gone.wait()
        runtime.lock_path.write_text(f"{gone.pid}\n")
    for command in NEEDS_THE_BUS:
        result = procs.run_lens(*command)
        assert (result.returncode, result.stdout) == (3, ""), (command, result)
        assert result.stderr.splitlines() == [f"lens {command[0]}: {NOT_RUNNING.format(runtime.dir)}"], command


def test_a_command_piped_into_a_reader_that_leaves_exits_quietly(procs, runtime):
    """`lens ... | head`: the reader closing the pipe is no error (no BrokenPipe traceback); `lens status`
    (issue 28, line 11) against a running shell, and a command that needs no bus."""
    procs.start_broker()
    procs.start_ready("-m", "shell")
    for command in (("units", "show", "broker"), ("status",)):
        read, write = os.pipe()
        os.close(read)  # the reader has gone before anything is written
        result = subprocess.run([sys.executable, "-m", "cli.main", *command], stdout=write,
                                stderr=subprocess.PIPE, text=True, cwd=REPO, env=procs.env(), timeout=DEADLINE_S)
        os.close(write)
        assert (result.returncode, result.stderr) == (0, ""), command
    head = subprocess.run(f"{sys.executable} -m cli.main status | head -1", shell=True, capture_output=True,
                          text=True, cwd=REPO, env=procs.env(), timeout=DEADLINE_S)
    assert (head.returncode, head.stderr, len(head.stdout.splitlines())) == (0, "", 1), head


def test_two_lens_up_started_together_one_wins_and_the_other_says_so_disturbing_nothing(procs, runtime):
    ups = [procs.lens("up", "--only", "ledd", stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    loser = wait_for(lambda: next((up for up in ups if up.poll() is not None), None), DEADLINE_S,
                     "one of the two to give up")
    [winner] = [up for up in ups if up is not loser]
    said = loser.stdout.read()
    assert loser.returncode != 0
    assert said.splitlines() == [f"lens up: error: lensos is already up on {runtime.dir} (lens up, pid {winner.pid}); "
                                 f"stop that one first (Ctrl-C where it runs, or kill {winner.pid})"], said
    wait_line(winner.stdout, "processes ready in")
    [ledd] = children_of(winner.pid, "daemons.led")
    result = procs.run_lens("led", "mend")  # the winner's bus and ledd answer
    assert (result.returncode, result.stdout) == (0, "LED working\n"), result.stderr
    assert children_of(winner.pid, "daemons.led") == [ledd]
    winner.send_signal(signal.SIGINT)
    rest = drain_lines(winner.stdout)
    assert winner.wait(DEADLINE_S) == 0
    assert "exited" not in rest and "aborting" not in rest and "not ready" not in rest, rest
    assert not runtime.path("up.lock").exists()
    # and one after the other, now that it is down, boots again
    again = procs.lens("up", "--only", "broker", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_line(again.stdout, "processes ready in")
    second = procs.run_lens("up", "--only", "broker")
    assert second.returncode != 0 and f"lensos is already up on {runtime.dir}" in second.stderr
    again.send_signal(signal.SIGINT)
    drain_lines(again.stdout)
    assert again.wait(DEADLINE_S) == 0


def test_lens_up_refuses_a_runtime_directory_a_broker_already_serves(procs, runtime, broker):
    result = procs.run_lens("up", "--only", "broker")
    assert result.returncode != 0
    assert f"a broker already serves {runtime.dir} (pid {broker.pid}): lensos is running there already" in result.stderr
    assert not runtime.path("up.lock").exists() and not runtime.path("notify").exists()


@pytest.mark.parametrize("activated", [False, True], ids=["as make run leaves it", "venv activated"])
def test_the_command_lens_up_suggests_works_as_copied_in_another_terminal(procs, runtime, activated):
    venv_bin = os.path.dirname(sys.executable)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p and os.path.abspath(p) != venv_bin)
    env = procs.env(PATH=f"{venv_bin}{os.pathsep}{path}" if activated else path)
    up = subprocess.Popen([os.path.join(venv_bin, "lens"), "up", "--only", "broker"], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs.children.append(up)
    banner = wait_line(up.stdout, "lensos is up")
    first = banner.split("`")[1]  # e.g. `.venv/bin/lens status`
    assert first.endswith(" status") and (first == "lens status") == activated, banner
    lens = first.removesuffix(" status")
    typed = subprocess.run(f"{lens} bus list --listen 0", shell=True, cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=DEADLINE_S)
    assert typed.returncode == 0 and "power.state" in typed.stdout, typed.stderr
    up.send_signal(signal.SIGINT)
    drain_lines(up.stdout)
    assert up.wait(DEADLINE_S) == 0


def test_lens_paths_names_where_photos_recordings_the_privacy_log_and_state_are(procs, runtime):
    result = procs.run_lens("paths", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    state = str(procs.state_dir)
    assert {k: found[k] for k in ("photos", "recordings", "privacy_log", "state", "runtime")} == {
        "photos": f"{state}/photos", "recordings": f"{state}/recordings",
        "privacy_log": f"{state}/privacy-audit.jsonl", "state": state, "runtime": str(runtime.dir)}
    board = json.loads(procs.run_lens("paths", "--board", "--json").stdout)
    assert board["photos"] == "/var/lib/lensos/camerad/photos" and board["runtime"] == "/run/lensos"
    assert board["privacy_log"] == "/var/lib/lensos/shell/privacy-audit.jsonl"
    text = procs.run_lens("paths").stdout
    assert f"{state}/photos" in text and "take a photo" in text


def test_lens_paths_names_the_policys_media_dir_for_photos_and_recordings(procs, runtime, tmp_path):
    """[camera] media_dir moves camerad's photos and recordings (daemons.camera.media_dir); lens paths named
    the state directory still."""
    from tests.conftest import tuned_policies

    media = tmp_path / "media"
    procs.use_env(LENS_POLICY_DIR=str(tuned_policies(tmp_path, {"hardware.toml": {"camera": {"media_dir": str(media)}}})))
    for board in ((), ("--board",)):
        found = json.loads(procs.run_lens("paths", *board, "--json").stdout)
        assert (found["photos"], found["recordings"]) == (f"{media}/photos", f"{media}/recordings"), board
        assert found["privacy_log"] != f"{media}/privacy-audit.jsonl"
    (tmp_path / "policies" / "hardware.toml").write_text("[camera\n")
    broken = procs.run_lens("paths")
    assert broken.returncode == 2 and "hardware.toml" in broken.stderr and "Traceback" not in broken.stderr


def test_lens_paths_follows_the_bus_it_is_given_to_that_bus_s_own_state(procs, runtime, tmp_path):
    """Without $LENS_STATE_DIR each bus keeps its own state (bus.runtime.state_dir): `lens paths --runtime-dir`
    names that bus's, where its camerad and shell write, not the default bus's."""
    from bus.runtime import state_dir

    env = procs.env(XDG_STATE_HOME=str(tmp_path / "xdg"))
    env.pop("LENS_STATE_DIR")
    env.pop("LENS_RUNTIME_DIR")
    found = json.loads(subprocess.run([sys.executable, "-m", "cli.main", "--runtime-dir",
                                       str(runtime.dir), "paths", "--json"], cwd=REPO, env=env, capture_output=True,
                                      text=True, timeout=60).stdout)
    os.environ["XDG_STATE_HOME"], before = str(tmp_path / "xdg"), os.environ.get("XDG_STATE_HOME")
    try:
        expected = state_dir(None, runtime.dir)
    finally:
        os.environ.pop("XDG_STATE_HOME") if before is None else os.environ.__setitem__("XDG_STATE_HOME", before)
    assert "buses" in str(expected) and found["photos"] == str(expected / "photos")


def test_the_readmes_shell_lines_run_as_written_after_activating_the_venv(procs, runtime):
    """The README's ```sh lines after `make`: activate, then lens commands, typed into a plain shell."""
    text = (REPO / "README.md").read_text()
    blocks = [block.split("```", 1)[0] for block in text.split("```sh\n")[1:]]
    lines = [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]
    typed = [line for line in lines if line and not line.startswith("make ")]
    assert typed[0] == ". .venv/bin/activate" and all(line.startswith("lens ") for line in typed[1:]), typed
    venv_bin = os.path.dirname(sys.executable)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p and os.path.abspath(p) != venv_bin)
    if not (REPO / ".venv" / "bin").is_dir() or not os.path.samefile(REPO / ".venv" / "bin", venv_bin):
        pytest.skip("the README's lines are for the venv `make` builds; this suite runs on another Python")
    script = "\n".join([typed[0]] + [f"{line} --help >/dev/null || exit 1" for line in typed[1:]])
    done = subprocess.run(["sh", "-c", script], cwd=REPO, env=procs.env(PATH=path), capture_output=True,
                          text=True, timeout=DEADLINE_S * 3)
    assert done.returncode == 0, done.stderr
