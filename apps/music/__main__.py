"""The music app: a now-playing card; tap to play or pause, swipe for the next or previous track; by
voice too ("play music", "pause", "next song"). It keeps playing in the background.

It plays under audio_out focus, so a notification's chime ducks it and a
call or the assistant's answer on G1 takes the speaker and gives it back;
when another app takes the speaker for good, the song is paused where it
was, and play resumes it there (audiod's start_s).

The track, the place in it and whether it plays are kept (``bus.kept``) at
each change: a music app started again after a crash, or after appd's (which
takes every app with it), plays on from where the song had got to.
"""

from __future__ import annotations

import logging
import os
import time

from apps.music.library import Track, tracks
from apps.sdk.app import App, Refused
from bus.envelope import Message
from bus.errors import BusError

log = logging.getLogger("music")
RESTART_AFTER_S = 3.0  # swipe back further into a track than this starts it again instead
TICK_S = 1.0  # now playing shows its position in seconds
# position_s as of since_wall (wall clock: a new process's monotonic clock is not the last one's)
KEPT = {"title": "str", "index": "int", "position_s": "float", "playing": "bool", "since_wall": "float"}


def clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


class Music(App):
    def __init__(self, app_id: str, runtime=None, apps=None):
        super().__init__(app_id, runtime, apps)
        self.tracks: list[Track] = tracks(self.node.runtime.dir)
        self.index = 0
        self.playing = False
        self.position = 0.0  # seconds into the track when it was last started or paused
        self.started: float | None = None
        self.plays = 0  # each play has its own sound id: a late word about the last one is not about this one
        self.ticker = None
        self.node.subscribe("audio.played", self.on_played)
        self.host = os.getppid()  # appd: a stop on its death is not the wearer's
        self.store = self.kept(KEPT)
        self.resume = self.restore(self.store.load())

    def restore(self, kept: dict | None) -> bool:
        """Where the last music app was (the track found by title, the library may have changed); True when
        it was playing when it crashed (this boot: after a power cut the wearer starts the music again)."""
        if not kept:
            return False
        titles = [t.title for t in self.tracks]
        if kept["title"] not in titles:
            return False
        self.index = titles.index(kept["title"])
        gone = max(0.0, time.time() - kept["since_wall"]) if kept["playing"] else 0.0
        self.position = min(max(0.0, kept["position_s"] + gone), self.track.length_s)
        if self.position >= self.track.length_s - 0.5:
            self.index, self.position = (self.index + 1) % len(self.tracks), 0.0
        return kept["playing"] and self.store.this_boot

    @property
    def sound_id(self) -> str:
        return f"song-{self.plays}"

    @property
    def track(self) -> Track:
        return self.tracks[self.index]

    def at(self) -> float:
        return self.position + (time.monotonic() - self.started if self.playing and self.started else 0.0)

    # --- what the wearer does --------------------------------------------------------------
    def on_start(self) -> None:
        self.publish_state()
        if self.resume:
            self.play()

    def on_foreground(self) -> None:
        try:
            self.take_display("now playing")
        except (Refused, BusError) as exc:
            log.warning("no display: %s", exc)
        self.show()
        if self.has_display:
            self.ticker = self.node.every(TICK_S, lambda: self.playing and self.show())

    def on_background(self) -> None:
        if self.ticker is not None:
            self.ticker.cancel()
            self.ticker = None

    def on_gesture(self, gesture: str) -> None:
        {"tap": self.toggle, "swipe_forward": self.next, "swipe_back": self.previous}.get(gesture, lambda: None)()

    def on_assistant(self, action: str, args: dict) -> str | None:
        if action == "music_pause" and not self.playing:
            return "The music is not playing."
        if action == "music_play" and self.playing:
            return f"Already playing {self.track.title}."
        {"music_play": self.play, "music_pause": self.pause, "music_next": self.next}.get(action, lambda: None)()
        return None  # the now-playing card (G1: the title said) is the answer

    def toggle(self) -> None:
        self.pause() if self.playing else self.play()

    def next(self) -> None:
        self.skip(1)

    def previous(self) -> None:
        if self.at() > RESTART_AFTER_S:
            self.skip(0)
        else:
            self.skip(-1)

    # --- playing -------------------------------------------------------------------------------
    def play(self) -> None:
        if self.playing:
            return
        try:
            self.focus("audio_out", "exclusive", "music")
            self.plays += 1
            self.ask("audio.play.request", id=self.sound_id, sound=str(self.track.path), start_s=self.position)
        except (Refused, BusError) as exc:
            self._release_quietly("audio_out")
            self.show(f"Cannot play: {exc}")
            return
        self.playing, self.started = True, time.monotonic()
        self.publish_state()
        self.show(announce=True)

    def pause(self, why: str = "") -> None:
        if not self.playing:
            return
        self.position, self.playing = min(self.at(), self.track.length_s), False
        try:
            self.ask("audio.stop.request", id=self.sound_id)
        except (Refused, BusError) as exc:
            log.warning("stopping the song: %s", exc)
        self._release_quietly("audio_out")
        self.publish_state()
        self.show(why)

    def skip(self, step: int) -> None:
        was_playing = self.playing
        if was_playing:
            self.pause()
        self.index, self.position = (self.index + step) % len(self.tracks), 0.0
        if was_playing:
            self.play()
        else:
            self.publish_state()
            self.show()

    def on_played(self, msg: Message) -> None:
        p = msg.payload
        if p["owner"] != self.id or p["id"] != self.sound_id or not self.playing:
            return
        if p["status"] == "finished":
            self.playing = False
            self.index, self.position = (self.index + 1) % len(self.tracks), 0.0
            self.play()  # on to the next, as any player does
        elif p["status"] in ("stopped", "interrupted", "failed"):
            self.pause(f"Paused: {p['status']}")

    def on_focus(self, notice: dict) -> None:
        if notice["resource"] == "audio_out" and notice["status"] == "lost" and self.playing:
            self.pause(f"Paused: {notice['reason']}")

    def on_stop(self) -> None:
        if os.getppid() != self.host:
            return  # appd died and took this app with it: kept as playing, the next one plays on
        self.pause()

    # --- telling -----------------------------------------------------------------------------------
    def show(self, note: str = "", announce: bool = False) -> None:
        """The now-playing card (S1); on G1 only what is worth hearing: a new track's title, or the note."""
        track, mark = self.track, "▶" if self.playing else "❚❚"
        try:
            if self.has_display:
                self.card("music", f"{mark} {track.title}",
                          note or f"{clock(self.at())} / {clock(track.length_s)}   ·   "
                                  f"track {self.index + 1} of {len(self.tracks)}",
                          progress=min(1.0, self.at() / max(track.length_s, 0.1)))
            elif announce or note:
                self.card("music", note or track.title)
        except (Refused, BusError) as exc:
            log.warning("cannot show: %s", exc)

    def publish_state(self) -> None:
        self.store.save({"title": self.track.title, "index": self.index, "position_s": round(self.at(), 2),
                         "playing": self.playing, "since_wall": time.time()})
        self.node.publish("music.state", title=self.track.title, index=self.index, count=len(self.tracks),
                          playing=self.playing, position_s=round(self.at(), 2), length_s=self.track.length_s)


def main() -> int:
    Music("music").run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
