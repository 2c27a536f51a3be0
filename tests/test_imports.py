"""What the daemons without numpy load: issue 6 holds them to 20 MiB each, and these modules alone cost
1.1 MiB (dataclasses with inspect and ast), 0.5 MiB (shutil with bz2 and lzma, which argparse pulls in to
measure the terminal) or 15 MiB (numpy). bench/system.py prints the resident sizes themselves."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

HEAVY = ("numpy", "PIL", "dataclasses", "inspect", "ast", "shutil", "difflib", "bz2", "lzma")

PROBE = """
import contextlib, io, json, sys
import {module} as process
from policies.schema import load
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    process.main(["--help"])  # argparse's help, the formatter and all
load()
print(json.dumps(sorted(set(sys.modules) & set({heavy!r}))))
"""


@pytest.mark.parametrize("module", ["daemons.power.__main__", "daemons.led.__main__", "daemons.input.__main__",
                                    "bus.broker"])
def test_a_daemon_without_numpy_loads_none_of_the_heavy_modules(module):
    probe = subprocess.run([sys.executable, "-c", PROBE.format(module=module, heavy=HEAVY)], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout) == [], f"{module} loads {probe.stdout.strip()}"
