"""The live view in a real headless Chromium (Debian's, driven by Playwright; nothing is downloaded), in a
wide window (1400x1000) and a phone's (390x844) at once: the page loads, the display image follows the panel,
a click on 'tap' reaches the bus and the page says what it woke, pulling a battery shows the swap card, and
nothing on the page overlaps anything else or runs out of the window, whatever the rows say. On the
display-less G1 the page asks for no picture at all."""

from __future__ import annotations

import copy
import io
import shutil
import urllib.error
import urllib.request

import pytest
from PIL import Image

from bus.envelope import Message
from webview.reactions import Aftermath, Reactions, of_gesture
from tests.conftest import DEADLINE_S
from tests.system import FAST, System

CHROMIUM = shutil.which("chromium")
# As the machine's notes say: no background networking, no first-run, no sandbox as root.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WINDOWS = {"wide": (1400, 1000), "phone": (390, 844)}

# Every element the page shows that has no shown element inside it (a cell, a button, the picture, a line of
# the spoken list): none may overlap another, stick out of the window, or have text running out of its box;
# nor may the page be wider than the window. Returns what is wrong, in words.
LAYOUT_PROBLEMS = """() => {
  const root = document.documentElement, problems = [];
  if (root.scrollWidth > root.clientWidth)
    problems.push(`the page is ${root.scrollWidth} px wide in a ${root.clientWidth} px window`);
  const name = (el) => el.id ? "#" + el.id :
    el.tagName.toLowerCase() + " '" + (el.textContent || el.alt || "").trim().slice(0, 24) + "'";
  const shown = (el) => { const r = el.getBoundingClientRect();
                          return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== "hidden"; };
  const leaves = [...document.body.querySelectorAll("*")].filter((el) => shown(el) && ![...el.children].some(shown));
  const boxes = leaves.map((el) => [el, el.getBoundingClientRect()]);
  for (const [el, r] of boxes) {
    if (r.left < -0.5 || r.right > root.clientWidth + 0.5)
      problems.push(`${name(el)} sticks out of the window (x ${r.left}..${r.right})`);
    if (getComputedStyle(el).overflowX === "visible" && el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1)
      problems.push(`${name(el)}: its text is ${el.scrollWidth} px wide in a ${el.clientWidth} px box`);
  }
  boxes.forEach(([a, p], i) => boxes.slice(i + 1).forEach(([b, q]) => {
    const wide = Math.min(p.right, q.right) - Math.max(p.left, q.left);
    const high = Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top);
    if (wide > 0.5 && high > 0.5) problems.push(`${name(a)} overlaps ${name(b)} (${wide} x ${high} px)`);
  }));
  return problems;
}"""


def open_pages(browser, port: int, missing: list[str] | None = None) -> dict:
    """The page in each window; every request that fails or finds nothing is added to ``missing``."""
    pages = {}
    for name, (width, height) in WINDOWS.items():
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(DEADLINE_S * 1000)
        if missing is not None:
            page.on("response", lambda response: response.status >= 400 and missing.append(response.url))
            page.on("requestfailed", lambda request: missing.append(request.url))
        page.goto(f"http://127.0.0.1:{port}/")
        pages[name] = page
    return pages


def assert_laid_out(pages: dict, when: str, tmp_path) -> None:
    for name, page in pages.items():
        page.screenshot(path=str(tmp_path / f"{when}-{name}.png"), full_page=True)  # kept, to look at
        assert page.evaluate(LAYOUT_PROBLEMS) == [], f"{when}, {name} window"


def result_of(page, button: str, starts: str) -> str:
    """Click a button and wait for the page's account of what followed (it says '…' meanwhile)."""
    page.click(button)
    page.wait_for_function(f"document.getElementById('result').textContent.startsWith({starts!r}) && "
                           "!document.getElementById('result').textContent.endsWith('…')")
    return page.text_content("#result")


def sniffed_times(page) -> list[str]:
    return [line[:8] for line in (page.text_content("#sniffer") or "").splitlines()]


@pytest.fixture
def chromium():
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make install adds it)")
def test_the_live_view_in_a_real_browser(procs, runtime, tmp_path, chromium):
    changes = copy.deepcopy(FAST)
    changes["system.toml"]["idle"] = {"dim_after_s": 1.0, "sleep_after_s": 1.0}
    system = System(procs, runtime, tmp_path, changes)
    system.watcher.node.subscribe("input.gesture", system.watcher._keep)
    for module in ("daemons.display", "daemons.input"):
        procs.start_ready("-m", module)
    procs.start_ready("-m", "webview", "--port", "0")
    port = int(runtime.path("webview.port").read_text())
    for path, body in (("/api/launch-missiles", b"{}"), ("/api/gesture", b"not json"), ("/api/power", b"{}")):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", body, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=DEADLINE_S)
        assert refused.value.code == 400 and b"unknown action or bad body" in refused.value.read()
        refused.value.close()
    pages = open_pages(chromium, port)
    page = pages["wide"]

    def shown(element_id: str) -> str:
        return page.text_content(f"#{element_id}") or ""
    page.wait_for_function("document.getElementById('state').textContent.startsWith('sleep')")
    # The panel goes off when displayd has seen the shell's sleep: a message later, not the same one.
    page.wait_for_function("document.getElementById('panel').textContent.includes('off')")
    assert "left" in shown("batteries") and shown("screeninfo") == "panel off"
    asleep = int(page.get_attribute("#display", "data-frame"))
    assert_laid_out(pages, "asleep", tmp_path)

    # The page says what the tap did: it woke the glasses (nothing else here takes a tap).
    told = result_of(page, "button[data-gesture=tap]", "after tap:")
    assert "shell: state sleep → " in told, told
    page.wait_for_function(f"Number(document.getElementById('display').dataset.frame) > {asleep}")
    page.wait_for_function("document.getElementById('display').complete && "
                           "document.getElementById('display').naturalWidth === 640")
    watcher = system.watcher
    watcher.wait(lambda: [m for m in watcher.log if m.topic == "input.gesture"
                          and m.payload["gesture"] == "tap"], "the tap on the bus")

    # A battery swap: the long alert row wraps inside the status, which stays beside the screen.
    assert "s left" not in shown("bridge"), "no bridge time while both batteries are in"
    watcher.ask("display.brightness.request", level=0.5)  # the wearer's half, times the swap's 0.2: 10 %
    told = result_of(page, "button[data-power=pull][data-battery=left]", "after pull left:")
    assert "powerd: battery-left in → out" in told and "battery_swap" in told, told
    page.wait_for_function("document.getElementById('state').textContent.startsWith('battery_swap')")
    page.wait_for_function("document.getElementById('panel').textContent.includes('Swap battery')")
    assert "OUT" in shown("batteries")
    # One number everywhere: the alert's m:ss is the live view's seconds, both powerd's latest.
    page.wait_for_function("""(() => {
        const view = document.getElementById('bridge').textContent.match(/, (\\d+) s left$/);
        const alert = document.getElementById('panel').textContent.match(/ (\\d+):(\\d\\d) left /);
        return view && alert && Number(view[1]) === Number(alert[1]) * 60 + Number(alert[2]);
    })()""")
    screen, status = (page.locator(f"#{element}").bounding_box() for element in ("screen", "status"))
    assert status["y"] == screen["y"] and status["x"] >= screen["x"] + screen["width"], (screen, status)

    # At 10 % the picture is lifted to be read, and the level is said in words.
    page.wait_for_function("document.getElementById('screeninfo').textContent.includes('10 % brightness')")
    lift = page.evaluate("document.getElementById('display').style.filter")
    assert lift.startswith("brightness(") and float(lift[11:-1]) == pytest.approx(10), lift
    assert_laid_out(pages, "battery-swap", tmp_path)
    picture = Image.open(io.BytesIO(page.locator("#display").screenshot())).convert("L")
    assert picture.getextrema()[1] > 180, "the picture at 10 % brightness is as dark as the panel"

    # The bus pane: newest first, so what just happened is at the top, not below the fold.
    times = sniffed_times(page)
    assert len(set(times)) > 1 and times == sorted(times, reverse=True), times[:5] + times[-5:]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make install adds it)")
def test_the_live_view_of_a_display_less_g1_asks_for_no_picture(procs, runtime, tmp_path, chromium):
    procs.use_env(LENS_MODEL="g1")
    system = System(procs, runtime, tmp_path)
    for module in ("daemons.display", "daemons.input"):
        procs.start_ready("-m", module)
    procs.start_ready("-m", "webview", "--port", "0")
    port = int(runtime.path("webview.port").read_text())
    missing: list[str] = []
    pages = open_pages(chromium, port, missing)
    page = pages["wide"]
    page.wait_for_function("document.getElementById('state').textContent.startsWith('active')")
    page.wait_for_function("document.getElementById('panel').textContent.startsWith('none')")
    assert page.is_visible("text=No display on this model") and not page.is_visible("#display")
    assert_laid_out(pages, "g1", tmp_path)

    # Nothing takes a tap on glasses that are awake with no app in front: the page says so.
    told = result_of(page, "button[data-gesture=tap]", "tap:")
    assert told == "tap: nothing on the glasses reacted", told

    # What G1 says instead of showing it is listed where the picture would be.
    result_of(page, "button[data-power=pull][data-battery=left]", "after pull left:")
    page.wait_for_function("document.getElementById('spoken').textContent.includes('Swap battery')")
    system.watcher.wait_state(lambda s: s["state"] == "battery_swap", "the swap")
    assert_laid_out(pages, "g1-swap", tmp_path)
    assert missing == [], f"the page asked for what is not there: {missing}"


class Timers:
    """A node's timers, fired by hand: what the watch does at each deadline, without waiting for it."""

    class Timer:
        def __init__(self, callback):
            self.callback, self.cancelled = callback, False

        def cancel(self):
            self.cancelled = True

    def __init__(self):
        self.armed: list[Timers.Timer] = []

    def after(self, delay: float, callback):
        timer = Timers.Timer(callback)
        self.armed.append(timer)
        return timer

    def fire(self) -> None:
        """Every timer armed and not cancelled, as if its time had come."""
        for timer in [t for t in self.armed if not t.cancelled]:
            timer.cancel()
            timer.callback()


def message(topic: str, publisher: str, at_ns: int, **payload) -> Message:
    return Message(topic, publisher, 1, 1, at_ns, 0, payload, b"")


def shell_state(state: str, foreground: str | None = "home", percent: float = 90.0) -> dict:
    return {"state": state, "foreground": foreground, "power": {"percent": percent},
            "focus": {"display": {"owner": foreground}}}


def test_the_aftermath_of_a_gesture_names_who_took_it_and_nothing_else():
    node, results = Timers(), []
    reactions = Reactions(node, ignore=("webview", "inputd", "broker"))
    for msg in (message("shell.apps", "shell", 1, apps={"home": {"state": "running"}}, foreground="home", errors=[]),
                message("shell.state", "shell", 2, **shell_state("sleep"))):
        reactions.on_message(msg)
    reactions.watch(of_gesture("tap"), results.append)
    reactions.on_message(message("shell.state", "shell", 3, **shell_state("active")))  # before the gesture
    reactions.on_message(message("input.gesture", "inputd", 10, gesture="tap", source="touchpad", mono_ns=10))
    for msg in (message("shell.state", "shell", 11, **shell_state("active", percent=89.0)),  # a battery tick
                message("display.state", "displayd", 12, on=True, brightness=1.0, alert=None),  # drawing, not taking
                message("display.card.request", "home", 13, cid=1, id="home", title="Apps"),
                message("display.card.reply", "displayd", 14, to="home", cid=1, ok=True, result={}),
                message("shell.state", "shell", 15, **shell_state("active", foreground="camera"))):
        reactions.on_message(msg)
    assert results == []
    node.fire()
    took = ["home: display.card.request “Apps”", "shell: foreground home → camera, display focus home → camera"]
    assert results == [{"arrived": True, "reactions": took}]

    reactions.watch(of_gesture("swipe_back"), results.append)
    reactions.on_message(message("input.gesture", "inputd", 20, gesture="swipe_back", source="touchpad", mono_ns=20))
    node.fire()
    assert results[-1] == {"arrived": True, "reactions": []}  # the page: "nothing on the glasses reacted"
    reactions.watch(Aftermath(lambda m: False, gesture=True), results.append)
    node.fire()
    assert results[-1] == {"arrived": False, "reactions": []}  # the finger was played, no gesture came of it
    assert reactions.watches == []
