"""inputd: the evdev reader against a pipe and a plain file, and the daemon over the real bus."""

from __future__ import annotations

import os
import struct

import pytest

from bus.node import Node
from daemons.input.backends import EvdevInput, InputError, Source
from daemons.input.gestures import BTN_TOUCH, EV_KEY, EV_SYN
from tests.conftest import DEADLINE_S, tuned_policies, wait_for

EVENT = struct.Struct("llHHi")


def test_evdev_reader_decodes_kernel_input_events_in_batches():
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    try:
        reader = EvdevInput({}, "KEY_CAMERA")
        source = Source("touchpad", read_fd, (0, 1000), reader.button_code)
        assert reader.read(source) == []  # nothing there: no error, nothing invented
        os.write(write_fd, EVENT.pack(12, 500_000, EV_KEY, BTN_TOUCH, 1) + EVENT.pack(12, 500_250, EV_SYN, 0, 0)
                 + EVENT.pack(13, 0, EV_KEY, BTN_TOUCH, 0)[:10])  # a torn last event is left for later
        assert reader.read(source) == [(12.5, EV_KEY, BTN_TOUCH, 1), (pytest.approx(12.50025), EV_SYN, 0, 0)]
    finally:
        os.close(read_fd), os.close(write_fd)


def test_evdev_backend_names_a_device_it_cannot_use(tmp_path):
    with pytest.raises(InputError, match="cannot open .*missing"):
        EvdevInput({"touchpad": str(tmp_path / "missing")}, "KEY_CAMERA")
    plain = tmp_path / "event0"
    plain.write_bytes(b"")
    with pytest.raises(InputError, match="not a usable input device"):
        EvdevInput({"touchpad": str(plain)}, "KEY_CAMERA")
    with pytest.raises(InputError, match="unknown key name"):
        EvdevInput({}, "KEY_NOPE")


@pytest.mark.slow
def test_inputd_recognizes_simulated_gestures_and_a_tap_wakes_the_sleeping_glasses(procs, runtime, tmp_path):
    policies = tuned_policies(tmp_path, {"system.toml": {"boot": {"required": ["inputd"], "deadline_s": 3.0},
                                                         "idle": {"dim_after_s": 1.0, "sleep_after_s": 1.0}}})
    procs.use_env(LENS_POLICY_DIR=str(policies))
    procs.start_broker()
    procs.start_ready("-m", "shell")
    procs.start_ready("-m", "daemons.input")
    gestures, states = [], []
    with Node("watcher", runtime) as watcher:
        watcher.subscribe("input.gesture", lambda m: gestures.append((m.source, m.payload["gesture"])))
        watcher.subscribe("shell.state", lambda m: states.append(m.payload["state"]))
        watcher.start()
        for word, name in (("double", "double_tap"), ("swipe-back", "swipe_back"), ("button-long", "button_long")):
            done = procs.run_lens("input", word)
            assert done.returncode == 0, done.stderr
            wait_for(lambda: ("inputd", name) in gestures, DEADLINE_S, name, poll=watcher.run_once)
        assert [g for _, g in gestures] == ["double_tap", "swipe_back", "button_long"]  # nothing extra, nothing split

        wait_for(lambda: states and states[-1] == "sleep", DEADLINE_S, "sleep", poll=watcher.run_once)
        assert procs.run_lens("input", "tap").returncode == 0
        wait_for(lambda: states[-1] == "active", DEADLINE_S, "awake after a tap", poll=watcher.run_once)

    bad = procs.run_lens("input", "--help")
    assert bad.returncode == 0 and "swipe-fwd" in bad.stdout
