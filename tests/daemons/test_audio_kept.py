"""What audiod keeps across its crash (daemons.audio.playing): where each sound had got to, and what not."""

import numpy as np

from daemons.audio.mixer import Stream
from daemons.audio.playing import resumed, saved


def test_a_kept_sound_goes_on_from_where_it_had_got_to_unless_held_and_speech_is_not_kept():
    rate = 1000
    song = Stream("music", "song", np.zeros(10 * rate, np.float32), "sound", sound="/m/a.wav", start_s=30.0)
    song.pos = 2 * rate  # two seconds into the part it was asked from: 32 s into the file
    held = Stream("radio", "r", np.zeros(5 * rate, np.float32), "music", loop=True, sound="beep", hold=True)
    held.pos = 7 * rate  # a loop of 5 s, 7 s on: 2 s in
    speech = Stream("assistantd", "s1", np.zeros(rate, np.float32), "speech")
    ending = Stream("music", "old", np.zeros(rate, np.float32), sound="chime", ending="stopped")
    state = saved([song, held, speech, ending], rate, now=100.0)
    assert [(s["id"], s["position_s"], s["held"]) for s in state["sounds"]] == [("song", 32.0, False), ("r", 2.0, True)]
    assert state["speaking"] == [{"owner": "assistantd", "id": "s1"}], "a sentence is not said again from its middle"
    song_kept, held_kept = state["sounds"]
    assert resumed(song_kept, 40.0, now=103.0) == 35.0, "it played on while audiod was down"
    assert resumed(song_kept, 40.0, now=109.0) is None, "a sound that ended meanwhile is over"
    assert resumed(held_kept, 5.0, now=150.0) == 2.0, "a held sound stood still"
    assert resumed({**held_kept, "held": False}, 5.0, now=104.0) == 1.0, "a loop goes round"
