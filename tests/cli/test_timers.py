"""The table of periodic timers (cli/timers.py) against the code: every repeating timer has a row, every
row's period is read from where it is declared."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from cli.timers import REPO, TIMERS, rows

PRODUCT = ("bus", "shell", "daemons", "apps", "broker", "shellclient", "apphost", "manager", "frames")
API = {"bus/timers.py", "bus/node.py"}  # they define every() (and show it in a docstring); they arm nothing


def test_every_file_that_arms_a_repeating_timer_has_a_row_and_every_row_names_a_real_one():
    arming = {str(path.relative_to(REPO)) for package in PRODUCT for path in (REPO / package).rglob("*.py")
              if re.search(r"\.every\(", path.read_text())} - API
    declared = {t.declared_in for t in TIMERS}
    assert arming - declared == set(), "repeating timers with no row in cli/timers.py"
    for timer in TIMERS:  # the file arms timers, or runs its own loop to the named deadline (the broker)
        text = (REPO / timer.declared_in).read_text()
        name = timer.period.split(":")[-1].split(".")[-1]
        assert re.search(r"\.(every|after)\(", text) or name in text, f"{timer.declared_in} arms no timer"


def test_every_period_resolves_from_its_declaration():
    for row in rows():
        if not row["declared"].startswith("--"):
            assert row["period_s"] and row["period_s"] > 0, row


def test_lens_status_timers_lists_them_without_a_bus():
    out = subprocess.run([sys.executable, "-m", "cli.main", "status", "--timers", "--json"], capture_output=True,
                         text=True, check=True, cwd=REPO, timeout=60).stdout
    listed = json.loads(out)
    assert len(listed) == len(TIMERS) and {"who", "what", "period_s", "when", "why"} <= set(listed[0])
