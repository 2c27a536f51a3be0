"""Payload schemas written as short type strings in the topic table.

A field type is one of ``int float str bool bytes dict any``, ``list`` or
``list[T]``, optionally followed by ``?`` meaning the field may be missing or
None. Schemas are compiled once, at import of the table, into two checks: a
quick one, a single expression over the payload that says yes to every valid
payload of the usual shapes (every message is validated twice, by its
publisher and by each receiver, so this is the hot path), and the loop that
says why not, run only when the quick one did not say yes.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from bus.errors import PayloadError

_SCALARS: dict[str, Callable[[Any], bool]] = {
    # bool is a subclass of int in Python; a bus int is never a bool.
    "int": lambda v: type(v) is int,
    "float": lambda v: (type(v) is float) or (type(v) is int),
    "str": lambda v: type(v) is str,
    "bool": lambda v: type(v) is bool,
    "bytes": lambda v: type(v) is bytes,
    "dict": lambda v: type(v) is dict,
    "any": lambda v: True,
}

# JSON Schema equivalents, for tools that describe payloads (recorder, docs).
_JSON_TYPES = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "str": {"type": "string"},
    "bool": {"type": "boolean"},
    "bytes": {"type": "string", "contentEncoding": "base64"},
    "dict": {"type": "object"},
    "any": {},
}


class Field(NamedTuple):
    name: str
    spec: str  # as written in the table, e.g. "list[int]?"
    base: str  # "int", "list", ...
    item: str | None  # element type of a typed list
    optional: bool
    check: Callable[[Any], bool]

    def describe(self, value: Any) -> str:
        return f"field '{self.name}' must be {self.spec}, got {type(value).__name__} {value!r:.60}"

    def json_schema(self) -> dict:
        if self.base == "list":
            schema: dict = {"type": "array"}
            if self.item:
                schema["items"] = _JSON_TYPES[self.item]
        else:
            schema = dict(_JSON_TYPES[self.base])
        if self.optional and "type" in schema:
            schema["type"] = [schema["type"], "null"]
        return schema


def parse_field(name: str, spec: str) -> Field:
    """Compile one ``name: spec`` pair; raises ValueError naming the bad spec."""
    text = spec.strip()
    optional = text.endswith("?")
    if optional:
        text = text[:-1]
    item = None
    if text.startswith("list[") and text.endswith("]"):
        item = text[5:-1].strip()
        if item not in _SCALARS:
            raise ValueError(f"field '{name}': unknown list element type {item!r} in {spec!r}")
        base = "list"
        item_ok = _SCALARS[item]

        def check(v: Any, item_ok=item_ok) -> bool:
            return type(v) in (list, tuple) and all(item_ok(x) for x in v)
    elif text == "list":
        base = "list"

        def check(v: Any) -> bool:
            return type(v) in (list, tuple)
    elif text in _SCALARS:
        base = text
        check = _SCALARS[text]
    else:
        raise ValueError(f"field '{name}': unknown type {spec!r} (known: {', '.join(_SCALARS)}, list, list[T], T?)")
    return Field(name, spec, base, item, optional, check)


# Types a field's value must be exactly (bool is not an int here, nor an int a bool).
_EXACT = {"int": int, "str": str, "bool": bool, "bytes": bytes, "dict": dict}


def _quick_check(fields: tuple[Field, ...], closed: bool) -> Callable[[Any], bool]:
    """One generated expression: True only for a valid payload (False may still be valid: the loop decides).

    Generated as namedtuple generates its methods, and for the same reason: a
    Python loop over the fields costs three times the expression. The source
    holds only generated names (field names and types are bound as globals of
    its own), so no text from the table is ever compiled.
    """
    env: dict[str, Any] = {"NAMES": frozenset(f.name for f in fields), "FLOAT": (float, int)}
    terms = ["type(p) is dict", f"len(p) == {len(fields)}" if closed else "p.keys() <= NAMES"]
    for i, f in enumerate(fields):
        env[f"N{i}"] = f.name
        value = f"p.get(N{i})" if not f.optional else f"v{i}"
        if f.base in _EXACT:
            env[f"T{i}"] = _EXACT[f.base]
            term = f"type({value}) is T{i}"
        elif f.base == "float":
            term = f"type({value}) in FLOAT"
        elif f.base == "any":
            term = "True" if f.optional else f"{value} is not None"
        else:
            env[f"C{i}"] = f.check
            term = f"C{i}({value})"
        terms.append(term if not f.optional else f"((v{i} := p.get(N{i})) is None or {term})")
    exec("def quick(p):\n    return " + " and ".join(terms), env)
    return env["quick"]


class Schema:
    """An ordered set of fields; validates a payload dict exactly (no unknown keys)."""

    __slots__ = ("fields", "_checks", "_required", "_names", "_closed", "quick")

    def __init__(self, fields: dict[str, str]):
        self.fields = tuple(parse_field(name, spec) for name, spec in fields.items())
        self._checks = tuple((f.name, f.check, f.optional, f) for f in self.fields)
        self._required = frozenset(f.name for f in self.fields if not f.optional)
        self._names = frozenset(f.name for f in self.fields)
        # With no optional fields, a payload that passed the field loop and has
        # exactly len(fields) keys cannot have an unknown one: the set test is skipped.
        self._closed = len(self._required) == len(self._names)
        # True: valid; False: ask validate. Compiled when first used: a process checks a few of the table's
        # hundred schemas, and each compiled check is 3-4 KiB of every process's memory.
        self.quick = self._compile_quick

    def _compile_quick(self, payload: Any) -> bool:
        self.quick = _quick_check(self.fields, self._closed)
        return self.quick(payload)

    def validate(self, topic: str, payload: Any) -> None:
        """Raise PayloadError with the topic and field named; return None when valid."""
        if not self.quick(payload):
            self._explain(topic, payload)

    def _explain(self, topic: str, payload: Any) -> None:
        """The slow check, field by field: raises saying what is wrong, or returns when nothing is."""
        if type(payload) is not dict:
            raise PayloadError(f"{topic}: payload must be a map of fields, got {type(payload).__name__}")
        get = payload.get
        for name, check, optional, field in self._checks:
            value = get(name)
            if value is None:
                if not optional:
                    raise PayloadError(f"{topic}: missing required field '{name}' ({field.spec})")
            elif not check(value):
                raise PayloadError(f"{topic}: {field.describe(value)}")
        if self._closed and len(payload) == len(self._names):
            return
        extra = [str(k) for k in payload if k not in self._names]
        if extra:
            known = ", ".join(sorted(self._names)) or "none"
            raise PayloadError(f"{topic}: unknown field(s) {', '.join(sorted(extra))} (fields: {known})")

    def json_schema(self) -> dict:
        return {
            "type": "object",
            "properties": {f.name: f.json_schema() for f in self.fields},
            "required": sorted(self._required),
            "additionalProperties": False,
        }

