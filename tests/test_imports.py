"""What the daemons load: issue 6 holds those without numpy to 20 MiB each and those with it to 35, and
these modules alone cost 1.1 MiB (dataclasses with inspect and ast), 0.5 MiB (shutil with bz2 and lzma,
which argparse pulls in to measure the terminal), 3.4 MiB (_hashlib, OpenSSL's libcrypto, which the
secrets module brings for a random string), 0.2 MiB (concurrent.futures, which assistantd needs only to
ask a remote LLM), 0.15 MiB (ctypes, which only the broker's C loop and numpy need) or 12 MiB (numpy).
bench/system.py prints the sizes themselves."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

HEAVY = ("numpy", "PIL", "dataclasses", "inspect", "ast", "shutil", "difflib", "bz2", "lzma", "_hashlib",
         "concurrent.futures")

PROBE = """
import contextlib, io, json, sys
import {module} as process
from policies.loader import load
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    process.main(["--help"])  # argparse's help, the formatter and all
load()
print(json.dumps(sorted(set(sys.modules) & set({heavy!r}))))
"""


def loaded(module: str, heavy: tuple[str, ...]) -> list[str]:
    probe = subprocess.run([sys.executable, "-c", PROBE.format(module=module, heavy=heavy)], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    return json.loads(probe.stdout)


@pytest.mark.parametrize("module", ["daemons.power.__main__", "daemons.led.__main__", "daemons.input.__main__",
                                    "daemons.assistant.__main__", "broker.broker"])
def test_a_daemon_without_numpy_loads_none_of_the_heavy_modules(module):
    assert loaded(module, HEAVY) == []


@pytest.mark.parametrize("module", ["daemons.power.__main__", "daemons.led.__main__", "daemons.input.__main__",
                                    "daemons.assistant.__main__", "shell.__main__"])
def test_a_process_without_numpy_leaves_ctypes_to_the_broker(module):
    # bus.tap's writer, the broker's, takes the ring's address with it; every node imports bus.tap.
    assert loaded(module, ("ctypes",)) == []


@pytest.mark.parametrize("module", ["daemons.camera.__main__", "daemons.audio.__main__",
                                    "daemons.display.__main__", "daemons.assistant.__main__", "shell.__main__"])
def test_no_process_loads_openssl_for_a_random_number(module):
    assert loaded(module, ("_hashlib",)) == []


def test_camerad_loads_pillow_only_once_a_frame_becomes_a_picture():
    assert loaded("daemons.camera.__main__", ("PIL",)) == []


def test_displayd_writes_its_pngs_without_pillows_image_plugins():
    probe = subprocess.run([sys.executable, "-c", "import sys, numpy\n"
                            "from daemons.display.panels import png\n"
                            "png(numpy.zeros((4, 4, 3), numpy.uint8))\n"
                            "print(sorted(m for m in sys.modules if m.endswith('ImagePlugin')))"],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"
