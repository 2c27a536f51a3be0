"""Focus arbitration: who holds the display, audio out, mic and camera.

One stack per resource, top = holder, in the manner of Android's audio focus:

- ``exclusive``: the requester takes the resource for as long as it wants;
  holders it outranks (or equals: the newer one wins) lose it for good and
  leave the stack.
- ``transient``: for a while (an alert, a navigation prompt); the holder is
  pushed down, told ``suspended``, and gets focus back when this one ends.
- ``transient_may_duck``: the same, except that on audio_out the holder keeps
  playing at the ducking level (``ducked``) instead of being suspended.

A request below the holder's priority waits in the stack (``queued``) when
the holder is transient, and is ``denied`` (with why) against an exclusive
holder. Every change to anyone is returned as a Notice; the caller delivers
them, so nobody is ever dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("exclusive", "transient", "transient_may_duck")


@dataclass
class Claim:
    owner: str
    resource: str
    kind: str
    priority: int
    cls: str
    reason: str
    ducked: bool = False
    behalf: str | None = None  # the app the owner holds it for (the assistant asked by an app)

    def as_dict(self) -> dict:
        """As shell.state shows it to every process: not the reason, which is the claimant's own text (an
        assistant session's names the app it asks for, an app's may say what it records) and is no other
        app's to read (issue 27); the privacy log keeps it."""
        return {"owner": self.owner, "kind": self.kind, "class": self.cls, "ducked": self.ducked,
                "behalf": self.behalf}


@dataclass(frozen=True)
class Notice:
    """What one owner is told: status is granted, queued, denied, lost, suspended, ducked, restored."""
    owner: str
    resource: str
    status: str
    reason: str


@dataclass
class Decision:
    status: str  # granted, queued, denied
    reason: str
    notices: list[Notice] = field(default_factory=list)


class FocusError(ValueError):
    """A request the arbiter cannot even consider (unknown resource or kind)."""


class Arbiter:
    def __init__(self, resources: tuple[str, ...] | list[str]):
        self.stacks: dict[str, list[Claim]] = {r: [] for r in resources}

    def holder(self, resource: str) -> Claim | None:
        stack = self.stacks.get(resource) or []
        return stack[-1] if stack else None

    def holds(self, owner: str, resource: str) -> bool:
        top = self.holder(resource)
        return top is not None and top.owner == owner

    def request(self, owner: str, resource: str, kind: str, priority: int, cls: str, reason: str,
                behalf: str | None = None) -> Decision:
        if resource not in self.stacks:
            raise FocusError(f"no resource {resource!r} on this model (have: {', '.join(self.stacks)})")
        if kind not in KINDS:
            raise FocusError(f"unknown focus kind {kind!r} (known: {', '.join(KINDS)})")
        stack = self.stacks[resource]
        if stack and stack[-1].owner == owner:  # asking again while holding: the claim is updated
            top = stack[-1]
            top.kind, top.priority, top.cls, top.reason, top.behalf = kind, priority, cls, reason, behalf
            return Decision("granted", "already held", [])
        stack[:] = [c for c in stack if c.owner != owner]  # a queued claim is re-decided
        claim = Claim(owner, resource, kind, priority, cls, reason, behalf=behalf)
        notices: list[Notice] = []
        top = stack[-1] if stack else None
        if top is None:
            stack.append(claim)
            return Decision("granted", "free", notices)
        if priority < top.priority:
            if top.kind == "exclusive":
                return Decision("denied", f"{resource} is held by {top.owner} ({top.cls}), which outranks {cls}",
                                notices)
            # Wait under the transient holder, above everything it outranks.
            index = next((i for i, c in enumerate(stack) if c.priority > priority), len(stack) - 1)
            stack.insert(index, claim)
            return Decision("queued", f"after {top.owner} ({top.cls}) releases {resource}", notices)
        if kind == "exclusive":
            for loser in [c for c in stack if c.priority <= priority]:
                stack.remove(loser)
                notices.append(Notice(loser.owner, resource, "lost", f"taken by {owner} ({cls}): {reason}"))
        elif kind == "transient_may_duck" and resource == "audio_out":
            top.ducked = True
            notices.append(Notice(top.owner, resource, "ducked", f"{owner} ({cls}) speaks over it"))
        else:
            notices.append(Notice(top.owner, resource, "suspended", f"{owner} ({cls}) has it for a while"))
        stack.append(claim)
        return Decision("granted", "preempted" if notices else "free", notices)

    def release(self, owner: str, resource: str, why: str = "released") -> list[Notice]:
        """Give up a claim (held or queued); whoever is on top afterwards is told it has focus again."""
        stack = self.stacks.get(resource) or []
        if not any(c.owner == owner for c in stack):
            return []
        was_top = stack[-1].owner == owner
        stack[:] = [c for c in stack if c.owner != owner]
        if was_top and stack:
            return self._surface(stack, f"{owner} {why}")
        return []

    def _surface(self, stack: list[Claim], why: str) -> list[Notice]:
        """The claim now on top gets focus; if it is exclusive, those it outranks lose theirs."""
        top = stack[-1]
        notices = []
        if top.kind == "exclusive":
            for loser in [c for c in stack[:-1] if c.priority <= top.priority]:
                stack.remove(loser)
                notices.append(Notice(loser.owner, top.resource, "lost", f"taken by {top.owner} ({top.cls})"))
        if top.ducked:
            top.ducked = False
            notices.append(Notice(top.owner, top.resource, "restored", why))
        else:
            notices.append(Notice(top.owner, top.resource, "granted", why))
        return notices

    def snapshot(self) -> dict[str, dict]:
        out = {}
        for resource, stack in self.stacks.items():
            out[resource] = {
                "owner": stack[-1].owner if stack else None,
                "stack": [c.as_dict() for c in reversed(stack)],
            }
        return out
