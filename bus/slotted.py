"""Records for the modules every process imports, without dataclasses.

``dataclasses`` imports ``inspect``, which imports ``ast`` and ``dis``: 1.1 MiB of RSS in each of a
dozen processes (measured for issue 6), paid for generated ``__init__`` methods. The bus, the policy
loader and the daemons held to 20 MiB write their own ``__init__`` and take ``__repr__`` and
``__eq__`` from ``Slotted``; immutable records are ``typing.NamedTuple`` (typing is loaded by pyzmq
anyway). tests/test_imports.py keeps them that way.
"""

from __future__ import annotations


class Slotted:
    """Equality and a readable repr over the fields its classes name in ``__slots__``."""

    __slots__ = ()

    @classmethod
    def _names(cls) -> tuple[str, ...]:
        return tuple(name for klass in reversed(cls.__mro__) for name in klass.__dict__.get("__slots__", ()))

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self._names())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # mutable, like a dataclass with eq and without frozen

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._names())
        return f"{type(self).__name__}({fields})"
