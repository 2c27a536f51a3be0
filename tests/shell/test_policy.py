"""The policy files: the shipped ones load for every model; each kind of mistake names file, key and line."""

import json
import shutil

import pytest

from policies.checker import PolicyError
from policies.loader import DEFAULT_DIR, load
from policies.names import load_checking_names


@pytest.fixture
def pdir(tmp_path):
    target = tmp_path / "policies"
    shutil.copytree(DEFAULT_DIR, target)
    return target


def edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def line_of(path, needle):
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@pytest.mark.parametrize("model", ["s1", "g1"])
def test_shipped_policies_load(model):
    policy = load(model=model)
    assert policy.model == model
    assert policy.has_display == (model == "s1")
    assert policy.priority("call") > policy.priority("foreground") > policy.priority("background")
    assert isinstance(policy.system.boot.deadline_s, float)


@pytest.mark.parametrize("file, old, new, needle, message", [
    ("system.toml", "deadline_s = 10.0", "deadline_s = -1.0", "deadline_s", "boot.deadline_s: -1.0 is out of range"),
    ("system.toml", "low_percent = 15", 'low_percent = "low"', "low_percent", "power.low_percent: must be int"),
    ("system.toml", "bridge_low_s = 15.0", "bridge_low_s = 15.0\nbridge_hi_s = 3", "bridge_hi_s",
     "swap.bridge_hi_s: unknown key"),
    ("system.toml", "recover_percent = 20", "recover_percent = 10", "recover_percent",
     "needs critical_percent < low_percent < recover_percent"),
    ("focus.toml", 'assistantd = "assistant"', 'assistantd = "wizard"', "assistantd",
     "roles.assistantd: class 'wizard' is not in [priorities]"),
    ("privacy.toml", "hold_s = 3.0", "hold_s = true", "hold_s", "led.hold_s: must be float"),
    ("models/s1.toml", '"camera"]', '"camera", "laser"]', "resources", "unknown 'laser'"),
    ("focus.toml", "level = 0.3", "level = 0.3 0.4", "level = 0.3", "not valid TOML"),
    ("assistant.toml", 'stt = "pocketsphinx"', 'stt = "whisper"', "stt", "listen.stt: unknown 'whisper'"),
    ("assistant.toml", '"long_press"]', '"long_press", "wink"]', "gestures =",
     "trigger.gestures: unknown 'wink'"),
    ("assistant.toml", 'listen = "development"', 'listen = "always"', "listen =",
     "wake.listen: unknown 'always'"),
    ("assistant.toml", "answer instead.\ntimeout_s = 8.0", "answer instead.\ntimeout_s = 0.0", "timeout_s = 0.0",
     "llm.timeout_s: 0.0 is out of range"),
    ("hardware.toml", 'voice = "espeak-ng"', 'voice = "festival"', "voice =", "audio.voice: unknown 'festival'"),
    ("hardware.toml", 'media_dir = ""', 'media_dir = "/media/my photos"', "media_dir =",
     "camera.media_dir: must be an absolute path with no spaces and no '%'"),
    ("hardware.toml", 'media_dir = ""', 'media_dir = "/media/%H"', "media_dir =",
     "camera.media_dir: must be an absolute path"),
    ("hardware.toml", "out_rate = 24000", "out_rate = 100", "out_rate", "audio.out_rate: 100 is out of range"),
    ("privacy.toml", 'out = ["shell.state",', 'out = ["camera", "shell.state",', "out =",
     "bridge.out: 'camera' would send camera.frame off the glasses"),
    ("privacy.toml", 'out = ["shell.state",', 'out = ["audio", "shell.state",', "out =",
     "bridge.out: 'audio' would send audio.mic, audio.wake.mic off the glasses"),
    ("privacy.toml", 'out = ["shell.state",', 'out = ["notifications.state", "shell.state",', "out =",
     "bridge.out: 'notifications.state' covers notifications.state, which only displayd, home, webview read"),
    ("privacy.toml", 'in = ["phone.notification"', 'in = ["privacy", "phone.notification"', "in =",
     "bridge.in: 'privacy' covers privacy.indicator, privacy.capture, privacy.violation, which only the glasses' own processes"),
    ("privacy.toml", 'in = ["phone.notification"', 'in = ["phone.call", "phone.notification"', "in =",
     "bridge.in: 'phone.call' names no topic of bus/topics.py"),
    ("privacy.toml", 'in = ["phone.notification"', 'in = ["input.sim", "phone.notification"', "in =",
     "bridge.in: 'input.sim' covers input.sim.request, which drive the simulated hardware"),
])
def test_a_bad_value_names_file_key_and_line(pdir, file, old, new, needle, message):
    path = pdir / file
    edit(path, old, new)
    with pytest.raises(PolicyError) as err:
        load(pdir, "s1")
    assert str(err.value).startswith(f"{path}:{line_of(path, needle)}: "), str(err.value)
    assert message in str(err.value)


def test_a_missing_key_names_its_section(pdir):
    path = pdir / "privacy.toml"
    edit(path, "confirm_timeout_s = 1.0", "")
    with pytest.raises(PolicyError, match=r"privacy.toml:\d+: \[led\]: missing key 'confirm_timeout_s'"):
        load(pdir)


def test_a_missing_file_is_named(pdir):
    (pdir / "models" / "g1.toml").unlink()
    with pytest.raises(PolicyError, match="g1.toml: missing"):
        load(pdir, "g1")


def test_lens_policy_check(pdir, procs):
    ok = procs.run_lens("policy", "check", str(pdir), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"directory": str(pdir), "models": ["s1", "g1"], "errors": []}
    edit(pdir / "system.toml", "sleep_after_s = 40.0", "sleep_after_s = 0")
    bad = procs.run_lens("policy", "check", str(pdir))
    assert bad.returncode == 1
    assert f"{pdir / 'system.toml'}:{line_of(pdir / 'system.toml', 'sleep_after_s')}: idle.sleep_after_s" in bad.stdout


@pytest.mark.parametrize("file, old, new, needle, message", [
    ("system.toml", 'required = ["powerd",', 'required = ["nosuchd", "powerd",', "required =",
     "boot.required: unknown process 'nosuchd'"),
    ("system.toml", 'boot = ["home",', 'boot = ["nosuchapp", "home",', 'boot = ["', "apps.boot: unknown app 'nosuchapp'"),
    ("system.toml", 'home = "home"', 'home = "hom"', 'home = "hom"', "apps.home: unknown app 'hom'"),
    ("focus.toml", 'assistantd = "assistant"', 'assistand = "assistant"', "assistand",
     "roles.assistand: unknown process or app 'assistand'"),
])
def test_a_name_that_refers_to_nothing_is_named(pdir, file, old, new, needle, message):
    path = pdir / file
    edit(path, old, new)
    with pytest.raises(PolicyError) as err:
        load_checking_names(pdir, "s1")
    assert str(err.value).startswith(f"{path}:{line_of(path, needle)}: "), str(err.value)
    assert message in str(err.value)


def test_every_error_in_every_file_is_reported(pdir, procs):
    """Three mistakes in two files, and two cross-check findings in a third: `lens policy check` names each,
    not only the first."""
    edit(pdir / "system.toml", "sleep_after_s = 40.0", "sleep_after_s = 0")
    edit(pdir / "system.toml", "low_percent = 15", 'low_percent = "low"')
    edit(pdir / "privacy.toml", "hold_s = 3.0", "hold_s = true")
    bad = procs.run_lens("policy", "check", str(pdir), "--json")
    assert bad.returncode == 1
    errors = json.loads(bad.stdout)["errors"]
    assert len(errors) == 3, errors
    assert [e.split(": ", 2)[1] for e in errors] == ["idle.sleep_after_s", "power.low_percent", "led.hold_s"]

    shutil.rmtree(pdir)
    shutil.copytree(DEFAULT_DIR, pdir)
    edit(pdir / "focus.toml", 'assistantd = "assistant"', 'assistantd = "wizard"')
    edit(pdir / "system.toml", 'boot = ["home",', 'boot = ["nosuchapp", "home",')
    with pytest.raises(PolicyError) as err:
        load_checking_names(pdir, "s1")
    assert len(err.value.errors) == 2, err.value.errors
    assert "roles.assistantd: class 'wizard'" in str(err.value) and "unknown app 'nosuchapp'" in str(err.value)


def test_lens_shell_graph_draws_every_state_as_mermaid(tmp_path, procs):
    out = tmp_path / "shell.mmd"
    result = procs.run_lens("shell", "graph", "-o", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert text.count("-->") >= 20
    for state in ("booting", "active", "idle", "sleep", "low_power", "battery_swap", "critical", "shutdown"):
        assert f'"{state}"' in text


def test_a_process_refuses_an_unknown_model_by_name_as_the_policies_know_them(tmp_path):
    """The models are written once (policies.rules.MODELS): a daemon's --model is checked by the loader."""
    import subprocess
    import sys

    from tests.conftest import REPO
    done = subprocess.run([sys.executable, "-m", "daemons.led", "--model", "x3", "--backend", "sim",
                           "--runtime-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "ledd: unknown model 'x3' (known: s1, g1)" in done.stderr, done.stderr
