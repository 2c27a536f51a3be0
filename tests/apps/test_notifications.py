"""The notifications app over the real bus: a toast and a chime that ducks the music, the count for the
HUD, and the list on demand through the assistant."""

from __future__ import annotations

import pytest

from tests.system import System, running


def song(user) -> list[str]:
    return [s["status"] for s in (user.latest.get("audio.state") or {}).get("streams", []) if s["id"] == "song"]


@pytest.mark.slow
def test_a_phone_notification_is_a_toast_and_a_chime_over_ducked_music_and_listed_on_request(procs, runtime,
                                                                                             tmp_path):
    system = System(procs, runtime, tmp_path)
    for module in ("daemons.audio", "daemons.display", "daemons.assistant", "apps.notifications"):
        procs.start_ready("-m", module)
    user = system.watcher
    for prefix in ("display.state", "notifications", "assistant"):
        user.node.subscribe(prefix, user._keep)
    user.wait_state(running, "boot")
    music = system.app("musicapp")
    music.ask("shell.foreground.request", app="musicapp")
    music.ask("shell.focus.request", resource="audio_out", kind="exclusive", cls="foreground", reason="music")
    music.ask("audio.play.request", id="song", sound="music", loop=True)
    user.wait(lambda: song(user) == ["playing"], "music playing")

    sent = procs.run_lens("notify", "Dinner at 8?", "see you there", "--from", "Messages")
    assert sent.returncode == 0, sent.stderr
    state = user.wait(lambda: (user.latest.get("notifications.state") or {}).get("count") == 1
                      and user.latest["notifications.state"], "the count for the HUD")
    assert state == {"count": 1, "unread": 1, "latest": "Messages: Dinner at 8?"}
    user.wait(lambda: "toast" in (user.latest.get("display.state") or {}).get("layers", []), "the toast")
    user.wait(lambda: user.notices("audio.played", owner="notifications", id="chime"), "the chime")
    statuses = [[s["status"] for s in m.payload["streams"] if s["id"] == "song"] for m in user.log
                if m.topic == "audio.state"]
    assert ["ducked"] in statuses, "the music ducked under the chime"
    user.wait(lambda: song(user) == ["playing"], "and came back")

    session = user.ask("assistant.say.request", text="read my notifications")["session"]
    answer = user.wait(lambda: user.notices("assistant.answer", session=session), "the assistant's hand-over")[0]
    assert answer["action"] == "notifications" and answer["status"] == "answered"
    assert answer["text"] == "1 notifications. Messages: Dinner at 8?", "the list the wearer sees"
    user.wait(lambda: user.latest["notifications.state"]["unread"] == 0, "read")
    assert user.latest["notifications.state"]["count"] == 1


@pytest.mark.fault
def test_a_restarted_app_keeps_the_unread_count_it_said_not_the_length_of_its_list():
    """1,000 unread, the newest 50 listed: a restarted app said 50 unread."""
    from collections import deque
    from types import SimpleNamespace

    from apps.notifications.__main__ import KEEP, UNREAD_MAX, Notifications

    items = [{"id": f"n{i}", "source": "flood", "title": str(i), "body": "x" * 5000} for i in range(KEEP + 5)]
    app = SimpleNamespace(items=deque(maxlen=KEEP), unread=0)
    Notifications.restore(app, {"items": items, "unread": 1000})
    assert app.unread == 1000 and len(app.items) == KEEP and app.items[0]["title"] == "0"
    assert all(len(item["body"]) <= 1000 for item in app.items), "each field cut again: the file is input too"
    Notifications.restore(app, {"items": [], "unread": 10**30})
    assert app.unread == UNREAD_MAX
