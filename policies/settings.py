"""The checked policy as read-only typed views: ``policy.hardware.camera.fps``, not a dict's ["camera"]["fps"].

Why: every key is declared once, in policies.rules, and a key renamed there (and in the TOML files) but not in
the code should fail when the policy is loaded or before, never in a daemon on the glasses at run time. A view's
attributes are exactly the declared keys, so a read of any other fails at once with an AttributeError naming
the file, the section, the key and the keys there are; tests/policies/test_settings.py checks every
``<policy>.<file>.<section>.<key>`` written in the code against the rules without running it. Nothing is
declared here: the views are made from SCHEMA and MODEL_SCHEMA (policies.loader builds them after its checks).

A section is a ``Section`` (read-only; lists are tuples); an open table (a Rule in place of the section's keys,
such as focus.toml [priorities] and [roles], whose keys are data) is a read-only mapping; a file is a ``File``
whose attributes are its sections. A key that is a Python keyword reads with a trailing underscore (PEP 8):
privacy.toml [bridge] ``in`` is ``bridge.in_``.
"""

from __future__ import annotations

import keyword
from types import MappingProxyType
from typing import Any, Mapping

from policies.checker import Rule

METHODS = ("as_dict", "replace")  # a Section's own names: no policy key may be one of these


class Section:
    """One [section]: its declared keys as attributes, read-only."""

    __slots__ = ("_where", "_values")
    _kind = "key"

    def __init__(self, where: str, values: Mapping[str, Any]):
        object.__setattr__(self, "_where", where)
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:  # only for names that are not the class's own
        if name.startswith("_"):
            raise AttributeError(name)
        values = self._values
        if name not in values and name.endswith("_") and keyword.iskeyword(name[:-1]):
            name = name[:-1]
        try:
            return values[name]
        except KeyError:
            raise AttributeError(f"{self._where}: no {self._kind} {name!r} "
                                 f"(known: {', '.join(map(attribute, values))})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self._where}: read-only ({name!r} is set in the policy file)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{self._where}: read-only ({name!r} is set in the policy file)")

    def __dir__(self) -> list[str]:
        return [*map(attribute, self._values), *METHODS]

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._values == self._values

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._where!r}, {self._values!r})"

    def __reduce__(self):
        return type(self), (self._where, self._values)

    def as_dict(self) -> dict[str, Any]:
        """A plain copy, key -> value (a File's: section -> view), to pass on or iterate."""
        return dict(self._values)

    def replace(self, **changes: Any) -> "Section":
        """A copy with ``changes`` (declared keys only; not checked against the rules): for tests."""
        for name in changes:
            getattr(self, name)
        return type(self)(self._where, {**self._values, **{declared(n, self._values): v for n, v in changes.items()}})


class File(Section):
    """One policy file: its sections as attributes (a Section, or a read-only mapping for an open table)."""

    __slots__ = ()
    _kind = "section"


def attribute(key: str) -> str:
    """The attribute a key reads as: itself, or with a trailing underscore when it is a Python keyword."""
    return f"{key}_" if keyword.iskeyword(key) else key


def declared(name: str, keys) -> str:
    """The key an attribute name reads (the inverse of ``attribute``)."""
    return name[:-1] if name not in keys and name.endswith("_") and keyword.iskeyword(name[:-1]) else name


def frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def section_view(where: str, rules: dict[str, Rule] | Rule, table: dict[str, Any]) -> Section | Mapping[str, Any]:
    if isinstance(rules, Rule):  # an open table: its keys are data
        return MappingProxyType({key: frozen(value) for key, value in table.items()})
    clash = set(rules) & set(METHODS)
    if clash:
        raise ValueError(f"{where}: {', '.join(sorted(clash))} would hide a Section method; rename the key")
    return Section(where, {key: frozen(table[key]) for key in rules})


def file_view(name: str, schema: dict[str, dict[str, Rule] | Rule], data: dict[str, dict[str, Any]]) -> File:
    """The view of one checked file: ``data`` as TomlFile read it (every declared key present, checked)."""
    return File(name, {section: section_view(f"{name} [{section}]", rules, data[section])
                       for section, rules in schema.items()})
