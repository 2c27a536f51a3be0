"""The live view in a real headless Chromium (Debian's, driven by Playwright; nothing is downloaded):
the page loads, the display image follows the panel, a click on 'tap' reaches the bus and wakes the
glasses, and pulling a battery shows the swap card."""

from __future__ import annotations

import copy
import shutil
import urllib.error
import urllib.request

import pytest

from tests.conftest import DEADLINE_S
from tests.system import FAST, System

CHROMIUM = shutil.which("chromium")
# As the machine's notes say: no background networking, no first-run, no sandbox as root.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make install adds it)")
def test_the_live_view_in_a_real_browser(procs, runtime, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    changes = copy.deepcopy(FAST)
    changes["system.toml"]["idle"] = {"dim_after_s": 1.0, "sleep_after_s": 1.0}
    system = System(procs, runtime, tmp_path, changes)
    system.watcher.node.subscribe("input.gesture", system.watcher._keep)
    for module in ("daemons.display", "daemons.input"):
        procs.start_ready("-m", module)
    procs.start_ready("-m", "shell.web", "--port", "0")
    port = int(runtime.path("webview.port").read_text())
    for path, body in (("/api/launch-missiles", b"{}"), ("/api/gesture", b"not json"), ("/api/power", b"{}")):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", body, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=DEADLINE_S)
        assert refused.value.code == 400 and b"unknown action or bad body" in refused.value.read()
        refused.value.close()
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(DEADLINE_S * 1000)
            page.goto(f"http://127.0.0.1:{port}/")

            def shown(element_id: str) -> str:
                return page.text_content(f"#{element_id}") or ""
            page.wait_for_function("document.getElementById('state').textContent.startsWith('sleep')")
            # The panel goes off when displayd has seen the shell's sleep: a message later, not the same one.
            page.wait_for_function("document.getElementById('panel').textContent.includes('off')")
            assert "left" in shown("batteries")
            asleep = int(page.get_attribute("#display", "data-frame"))

            page.click("button[data-gesture=tap]")
            page.wait_for_function("!document.getElementById('state').textContent.startsWith('sleep')")
            page.wait_for_function(f"Number(document.getElementById('display').dataset.frame) > {asleep}")
            page.wait_for_function("document.getElementById('display').complete && "
                                   "document.getElementById('display').naturalWidth === 640")
            watcher = system.watcher
            watcher.wait(lambda: [m for m in watcher.log if m.topic == "input.gesture"
                                  and m.payload["gesture"] == "tap"], "the tap on the bus")

            assert "s left" not in shown("bridge"), "no bridge time while both batteries are in"
            page.click("button[data-power=pull][data-battery=left]")
            page.wait_for_function("document.getElementById('state').textContent.startsWith('battery_swap')")
            page.wait_for_function("document.getElementById('panel').textContent.includes('Swap battery')")
            assert "OUT" in shown("batteries")
            # One number everywhere: the alert's m:ss is the live view's seconds, both powerd's latest.
            page.wait_for_function("""(() => {
                const view = document.getElementById('bridge').textContent.match(/, (\\d+) s left$/);
                const alert = document.getElementById('panel').textContent.match(/ (\\d+):(\\d\\d) left /);
                return view && alert && Number(view[1]) === Number(alert[1]) * 60 + Number(alert[2]);
            })()""")
            page.screenshot(path=str(tmp_path / "live-view.png"))  # kept with the test's files, to look at
        finally:
            browser.close()
