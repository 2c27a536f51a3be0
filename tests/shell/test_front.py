"""Who is in front after the shell restarts: the app its checkpoint names keeps the front while its beat is
on its way (appd runs it), and loses it when appd does not, when it never comes, or when it was heard and left."""

from __future__ import annotations

from policies.loader import load
from shell.apps import COMING_S, Apps
from shell.core import ShellCore

POLICY = load(model="s1")


class Requests:
    """The node, as far as Apps uses it: what it asked appd."""

    def __init__(self):
        self.asked = []

    def request_async(self, topic, done, **payload):
        self.asked.append((topic, payload))


def restarted(front: str = "camera", running: tuple[str, ...] = ("home", "camera")) -> Apps:
    """A shell just started from a checkpoint that had ``front`` in front; appd runs ``running``."""
    core = ShellCore(POLICY, 0.0)
    core.foreground = front
    apps = Apps(Requests(), POLICY, core, lambda: None)
    apps.on_host({"running": {app: 100 + n for n, app in enumerate(running)}, "failed": {}, "wanted": list(running)})
    return apps


def test_the_app_in_front_keeps_the_front_while_its_beat_is_on_its_way():
    apps = restarted()
    apps.arrange({"appd", "home"}, 10.0)  # home's beat came first
    assert apps.core.foreground == "camera"
    apps.arrange({"appd", "home", "camera"}, 14.0)
    assert apps.core.foreground == "camera" and apps.front == "camera"


def test_an_app_appd_does_not_run_gives_the_front_to_home_at_once():
    apps = restarted(running=("home",))
    apps.arrange({"appd", "home"}, 10.0)
    assert apps.core.foreground == "home"


def test_an_app_that_never_comes_gives_the_front_to_home_after_a_while():
    apps = restarted()
    apps.arrange({"appd", "home"}, 10.0)
    apps.arrange({"appd", "home"}, 10.0 + COMING_S - 1)
    assert apps.core.foreground == "camera"
    apps.arrange({"appd", "home"}, 10.0 + COMING_S + 1)
    assert apps.core.foreground == "home"


def test_an_app_heard_and_then_gone_gives_the_front_to_home_at_once():
    apps = restarted()
    apps.arrange({"appd", "home", "camera"}, 10.0)
    apps.arrange({"appd", "home"}, 11.0)  # it crashed: appd runs it still (about to reap and restart it)
    assert apps.core.foreground == "home"
