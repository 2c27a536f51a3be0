"""Where the developer's tools are at home: everywhere but a product image's services.

A product image's units start with systemd's INVOCATION_ID and without LENS_DEVELOPMENT; the development
image's units say LENS_DEVELOPMENT=1 (a drop-in), and so does `lens up` for what it starts. A process
anywhere else (a laptop, a test, a tool run by hand on the board) is a developer's.
"""

from __future__ import annotations

import os

DEVELOPMENT_ENV = "LENS_DEVELOPMENT"  # "1" under `lens up` (manager.launcher) and the development image's units


def declared() -> bool:
    """Said so in the environment: `lens up`, or the development image's units. A policy's "development"
    settings (the wake-phrase spotter) hold only here: they must be asked for, never assumed."""
    return os.environ.get(DEVELOPMENT_ENV) == "1"


def tools_here() -> bool:
    """The developer's traffic (bench and demo topics) is known here: anywhere but a product image's units.
    A tool run by hand still knows them; the product's broker refuses them all the same."""
    return declared() or "INVOCATION_ID" not in os.environ
