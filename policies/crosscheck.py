"""Values that are each in range but contradict one another, and the bridge's lists against the topic table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bus.topics import ANY_NODE, TOPICS, Kind, matches
from policies.checker import PolicyError, TomlFile
from policies.rules import REQUIRED_CLASSES

if TYPE_CHECKING:
    from policies.loader import Policy
    from policies.settings import Section


def cross_check(policy: Policy, files: dict[str, TomlFile], profile: TomlFile) -> list[str]:
    """Values that are each in range but contradict one another, and names that must refer to something
    that exists: every finding, not the first."""
    system, focus, hardware = files["system.toml"], files["focus.toml"], files["hardware.toml"]
    found: list[PolicyError] = []
    power = policy.system.power
    if not power.critical_percent < power.low_percent < power.recover_percent:
        found.append(system.fail("power", "recover_percent",
                                 "needs critical_percent < low_percent < recover_percent "
                                 f"(got {power.critical_percent}, {power.low_percent}, "
                                 f"{power.recover_percent})"))
    priorities = policy.focus.priorities
    found += [focus.fail("priorities", None, f"missing class '{cls}'") for cls in REQUIRED_CLASSES
              if cls not in priorities]
    found += [focus.fail("roles", role, f"class {cls!r} is not in [priorities]")
              for role, cls in policy.focus.roles.items() if cls not in priorities]
    batteries = policy.hardware.power.batteries
    if len(batteries) != policy.profile.batteries:
        found.append(hardware.fail("power", "batteries",
                                   f"names {len(batteries)} batteries; the model has {policy.profile.batteries}"))
    model = policy.profile
    if model.display and min(model.panel_width, model.panel_height, model.refresh_hz) < 1:
        found.append(profile.fail("model", "panel_width", "a model with a display needs panel_width, panel_height "
                                                          "and refresh_hz above 0"))
    if policy.hardware.display.fb_bits_per_pixel not in (16, 32):
        found.append(hardware.fail("display", "fb_bits_per_pixel", "must be 16 (RGB565) or 32 (XRGB8888)"))
    touch = policy.hardware.input
    if not touch.slop < touch.swipe_min:
        found.append(hardware.fail("input", "swipe_min", "must be more than slop (a swipe moves, a tap does not)"))
    if not touch.tap_max_s < touch.long_s:
        found.append(hardware.fail("input", "long_s", "must be more than tap_max_s"))
    if model.display != ("display" in model.resources):
        found.append(profile.fail("model", "resources", "lists 'display' exactly when display = true"))
    media = policy.hardware.camera.media_dir
    if media and (not media.startswith("/") or any(c.isspace() or c == "%" for c in media)):
        # systemd's units and tmpfiles.d name it (manager.units): a space splits a path list, % is a specifier
        found.append(hardware.fail("camera", "media_dir", "must be an absolute path with no spaces and no '%' "
                                                          f"(got {media!r})"))
    found += check_bridge(policy.privacy.bridge, files["privacy.toml"])
    return [error for found_error in found for error in found_error.errors]


def check_bridge(bridge: Section, file: TomlFile) -> list[PolicyError]:
    """What may leave the glasses and what may come in: names in the topic table, never a capture's data,
    never a topic the peer could only publish by speaking for one of the glasses' own processes."""
    found = []
    for direction, prefixes in (("out", bridge.out), ("in", bridge.in_)):
        for prefix in prefixes:
            covered = [t for t in TOPICS.values() if matches(prefix, t.name) and t.kind is not Kind.REPLY]
            if not covered:
                found.append(file.fail("bridge", direction, f"{prefix!r} names no topic of bus/topics.py"))
                continue
            private = [t.name for t in covered if t.permission]
            if direction == "out" and private:
                found.append(file.fail("bridge", direction,
                                       f"{prefix!r} would send {', '.join(private)} off the glasses"))
            # A topic read by named processes alone (not the bridge): the broker never sends it to the bridge,
            # which would ask in vain and be reported for it at every start.
            unread = [t.name for t in covered if not t.permission and t.kind is not Kind.REQUEST and t.readers
                      and not any(r.startswith("@") or r == "bridge" for r in t.readers)]
            if direction == "out" and unread:
                readers = sorted({r for name in unread for r in TOPICS[name].readers})
                found.append(file.fail("bridge", direction, f"{prefix!r} covers {', '.join(unread)}, which only "
                                                            f"{', '.join(readers)} read"))
            owned = [t.name for t in covered if t.owner != ANY_NODE and t.kind is not Kind.REQUEST]
            if direction == "in" and owned:
                found.append(file.fail("bridge", direction, f"{prefix!r} covers {', '.join(owned)}, which only "
                                                            f"the glasses' own processes publish"))
            # The simulated hardware is driven by the developer's tools alone: a peer pressing the simulated
            # capture button would be a capture nobody on the glasses started.
            simulated = [t.name for t in covered if ".sim." in t.name]
            if direction == "in" and simulated:
                found.append(file.fail("bridge", direction, f"{prefix!r} covers {', '.join(simulated)}, which "
                                                            f"drive the simulated hardware (developer tools only)"))
    return found
