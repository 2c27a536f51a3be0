"""The translate app: tap, say a phrase, see (S1) or hear (G1) it in another language; swipe to change it.

The assistant listens and translates: with an LLM endpoint configured any
phrase, offline the phrasebook's. The app asks for a listening session
whose words become "translate <words> to <language>"; the microphone, the
LED and the focus are the assistant's, as for any question. The mic
permission is declared because the app makes the wearer's words heard.
"""

from __future__ import annotations

import logging
from collections import deque

from apps.sdk.app import App, Refused
from bus.envelope import Message
from bus.errors import BusError

log = logging.getLogger("translate")
LANGUAGES = ("spanish", "french", "german", "chinese")  # the offline phrasebook's; an LLM knows more
KEEP = 5


class Translate(App):
    def __init__(self, app_id: str, runtime=None, apps=None):
        super().__init__(app_id, runtime, apps)
        self.language = 0
        self.session: str | None = None
        self.history: deque[str] = deque(maxlen=KEEP)
        self.node.subscribe("assistant.answer", self.on_answer)

    @property
    def target(self) -> str:
        return LANGUAGES[self.language]

    def on_foreground(self) -> None:
        try:
            self.take_display("translations")
        except (Refused, BusError) as exc:
            log.warning("no display: %s", exc)
        self.show("Tap and say a phrase. Swipe for another language.")

    def on_gesture(self, gesture: str) -> None:
        if gesture in ("swipe_forward", "swipe_back"):
            self.language = (self.language + (1 if gesture == "swipe_forward" else -1)) % len(LANGUAGES)
            self.show(f"Now into {self.target.title()}. Tap and say a phrase.")
        elif gesture == "tap":
            self.listen()

    def listen(self) -> None:
        try:
            self.session = self.ask("assistant.listen.request",
                                    template=f"translate {{heard}} to {self.target}")["session"]
        except (Refused, BusError) as exc:
            self.show(f"Cannot listen: {exc}")

    def on_answer(self, msg: Message) -> None:
        p = msg.payload
        if p["session"] != self.session:
            return
        self.session = None
        if p["status"] == "answered" and p["action"] in ("translate", None):
            self.history.appendleft(p["text"])
        if self.has_display:  # on G1 the assistant has just said it: once is enough
            self.show(p["text"] or f"No translation ({p['status']}).")

    def show(self, body: str) -> None:
        try:
            items = list(self.history)[1:] if self.has_display else None
            self.card("translate", f"Into {self.target.title()}", body, items=items or None)
        except (Refused, BusError) as exc:
            log.warning("cannot show: %s", exc)


def main() -> int:
    Translate("translate").run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
