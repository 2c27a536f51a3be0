"""What displayd draws, read off the composed frames: a toast or an alert over a card shows its own text
and nothing of what is under it, and no part of a layer is drawn over another part's text.

Each element's box is found by drawing the same layer twice, with and without that element, and taking
the pixels that differ: a box in pixels, whatever the font."""

from __future__ import annotations

import numpy as np
import pytest

from daemons.display.render import Painter, compose

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
WIDTH, HEIGHT = 640, 480
LONG_BODY = ("Left: out · Right 99%, 0 h 29\nNext: a meeting with the design team at 14:00 in room 3\n"
             "Weather: sunny, 21 degrees, a light wind from the west")


def card(**fields) -> dict:
    return {"title": "Title", "body": "", "icon": None, "items": [], "selected": None, "progress": None} | fields


@pytest.fixture(scope="module")
def painter() -> Painter:
    return Painter(WIDTH, HEIGHT, FONT)


def changed(a: np.ndarray, b: np.ndarray) -> tuple[slice, slice]:
    """The rows and columns where two frames differ (the box of what one draws and the other does not)."""
    rows, cols = np.nonzero((a != b).any(axis=2))
    assert rows.size, "the two frames are the same: the element was not drawn"
    return slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)


def box_of(layer) -> tuple[slice, slice]:
    h, w = layer.pixels.shape[:2]
    return slice(layer.y, layer.y + h), slice(layer.x, layer.x + w)


def covered(layer) -> np.ndarray:
    """Where the layer's panel is: every pixel it draws on (its rounded corners are not)."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[box_of(layer)] = layer.pixels[..., 3] > 0
    return mask


def apart(a: tuple[slice, slice], b: tuple[slice, slice]) -> bool:
    return any(p.stop <= q.start or q.stop <= p.start for p, q in zip(a, b))


def test_a_toast_hides_what_is_under_it_and_draws_its_own_progress_below_its_body(painter):
    hud = painter.hud("13:04", ["L 99%", "R 99%"], None, None)
    top = hud.bottom + painter.u(6)
    toast = painter.toast(card(title="Thinking…", body="what is the weather like this afternoon", progress=0.5))
    # The card beneath (the music player's) has a progress bar of its own where the toast sits.
    with_bar = compose([hud, painter.card(card(title="Song", progress=0.3), top), toast], WIDTH, HEIGHT)
    without = compose([hud, painter.card(card(title="Song"), top), toast], WIDTH, HEIGHT)
    inside = covered(toast)
    assert inside.sum() > 0.9 * toast.pixels[..., 3].size
    assert np.array_equal(with_bar[inside], without[inside]), "the card's progress bar shows through the toast"

    def alone(**fields) -> np.ndarray:
        return compose([painter.toast(card(**fields))], WIDTH, HEIGHT)
    body = changed(alone(title="Thinking…", body="what is the weather like", progress=0.5),
                   alone(title="Thinking…", body="", progress=0.5))
    bar = changed(alone(title="Thinking…", body="what is the weather like", progress=1.0),
                  alone(title="Thinking…", body="what is the weather like", progress=0.0))
    assert apart(body, bar), f"the toast's progress bar (rows {bar[0]}) overlaps its body text (rows {body[0]})"
    panel = box_of(painter.toast(card(title="Thinking…", body="what is the weather like", progress=0.5)))
    assert panel[0].start <= bar[0].start and bar[0].stop <= panel[0].stop, "the bar is inside the toast"


def test_an_alert_shows_only_its_own_text_and_dims_the_card_under_it(painter):
    hud = painter.hud("13:04", ["L --", "R 99%"], None, None)
    top = hud.bottom + painter.u(6)
    content = painter.card(card(title="13:04", body=LONG_BODY), top)
    alert = painter.alert("Swap battery", "Insert a charged battery. 2:58 left on the internal battery.")
    both = compose([hud, content, alert], WIDTH, HEIGHT)
    alert_alone = compose([hud, alert], WIDTH, HEIGHT)
    card_alone = compose([hud, content], WIDTH, HEIGHT)
    inside = covered(alert)
    assert inside.sum() > 0.9 * alert.pixels[..., 3].size
    assert np.array_equal(both[inside], alert_alone[inside]), "the card's text shows through the alert"
    assert np.array_equal(both[: hud.bottom], card_alone[: hud.bottom]), "the HUD stays as it is"
    # Around the alert the card is still there, but faint: no line of it reads as loud as the alert's.
    around = both.copy()
    around[inside] = 0
    around[: hud.bottom] = 0
    assert card_alone[top:].max() > 200 and 0 < around.max() <= 0.3 * card_alone[top:].max()


def test_a_cards_picture_is_drawn_under_its_text_with_its_outline_and_stays_inside_the_card(painter):
    picture = np.full((180, 240, 3), 70, np.uint8)
    text = painter.card(card(body="4.40 CNY"), 50)
    plain = painter.card(card(body="4.40 CNY", image=picture), 50)
    outlined = painter.card(card(body="4.40 CNY", image=picture, outline=((20, 20), (220, 20), (220, 160))), 50)
    body_rows = changed(compose([painter.card(card(), 50)], WIDTH, HEIGHT), compose([text], WIDTH, HEIGHT))[0]
    rows, cols = changed(compose([text], WIDTH, HEIGHT), compose([plain], WIDTH, HEIGHT))
    assert rows.start >= body_rows.stop and (rows.stop - rows.start, cols.stop - cols.start) == (180, 240)
    line = changed(compose([plain], WIDTH, HEIGHT), compose([outlined], WIDTH, HEIGHT))
    assert line[0].start >= rows.start + 18 and line[1].stop <= cols.stop - 18  # over the picture, where it says
    low = card(body=LONG_BODY)
    rows, cols = changed(compose([painter.card(low, 150)], WIDTH, HEIGHT),
                         compose([painter.card(dict(low, image=picture), 150)], WIDTH, HEIGHT))
    assert 0 < rows.stop - rows.start < 180 and rows.stop <= HEIGHT  # shrunk to the room left under the text
    assert (cols.stop - cols.start) / (rows.stop - rows.start) == pytest.approx(240 / 180, abs=0.05)
