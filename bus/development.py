"""Where the developer's tools are at home: everywhere but a product image's services.

Every unit of an image says LENS_IMAGE=1 (manager/units.py); the development image's also say
LENS_DEVELOPMENT=1 (a drop-in), and so does `lens up` for what it starts. A process anywhere else (a laptop,
a test, a tool run by hand on the board) is a developer's. Not systemd's INVOCATION_ID: a desktop's terminal
is itself a user service, and every shell in it has one.
"""

from __future__ import annotations

import os

DEVELOPMENT_ENV = "LENS_DEVELOPMENT"  # "1" under `lens up` (manager.launcher) and the development image's units
IMAGE_ENV = "LENS_IMAGE"  # "1" in every unit of an image, product or development (manager.units)


def declared() -> bool:
    """Said so in the environment: `lens up`, or the development image's units. A policy's "development"
    settings (the wake-phrase spotter) hold only here: they must be asked for, never assumed."""
    return os.environ.get(DEVELOPMENT_ENV) == "1"


def tools_here() -> bool:
    """The developer's traffic (bench and demo topics) is known here: anywhere but a product image's units.
    A tool run by hand still knows them; the product's broker refuses them all the same."""
    return declared() or os.environ.get(IMAGE_ENV) != "1"
