"""A TOML file checked against a schema of rules, every finding named by file, key and line.

The policy files (policies.rules), app manifests (apps.sdk.manifest) and the lens catalog are all read
through it: a mistake is a PolicyError whose ``errors`` are every finding, each ``file:line: key: why``,
never only the first.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Callable, NamedTuple


class PolicyError(ValueError):
    """Policy files are wrong: ``errors`` lists every finding, each starting with file:line; the message is
    them all, one a line."""

    def __init__(self, errors: str | list[str]):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))


class Rule(NamedTuple):
    kind: str  # int, float, bool, str, list[str]
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    doc: str = ""


class Tables(NamedTuple):
    """A section written as an array of tables ([[item]] ...), each checked against ``rules``."""
    rules: dict[str, Rule]
    doc: str = ""


def read_checked(path: Path, schema: dict) -> dict:
    """Any TOML file checked against a schema of Rules (app manifests and the lens catalog use it too); PolicyError
    with every finding."""
    file = TomlFile.read(path, schema)
    if file.errors:
        raise PolicyError(file.errors)
    return file.data


class TomlFile:
    """One TOML file read and checked; ``errors`` holds every finding (a file that cannot be read or parsed
    has that one)."""

    def __init__(self, path: Path, text: str, data: dict):
        self.path, self.text, self.data = path, text, data
        self.errors: list[str] = []

    @classmethod
    def read(cls, path: Path, schema: dict) -> "TomlFile":
        file = cls(path, "", {})
        try:
            file.text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            file.errors.append(f"{path}: missing (every policy file is required)")
            return file
        except (OSError, UnicodeDecodeError) as exc:
            file.errors.append(f"{path}: cannot be read: {exc}")
            return file
        try:
            file.data = tomllib.loads(file.text)
        except tomllib.TOMLDecodeError as exc:
            line = re.search(r"line (\d+)", str(exc))
            file.errors.append(f"{path}:{line.group(1) if line else 1}: not valid TOML: {exc}")
            return file
        file._check(schema)
        return file

    def note(self, error: PolicyError) -> None:
        self.errors.extend(error.errors)

    def fail(self, section: str, key: str | None, why: str) -> PolicyError:
        where = f"{section}.{key}" if key else f"[{section}]"
        return PolicyError(f"{self.path}:{self.line_of(section, key)}: {where}: {why}")

    def line_of(self, section: str, key: str | None) -> int:
        """The line of ``key`` in ``[section]`` (or of the header); 1 when it is not written at all."""
        current, header_line = None, 1
        for number, line in enumerate(self.text.splitlines(), 1):
            stripped = line.strip()
            header = re.fullmatch(r"\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?", stripped)
            if header:
                current = header.group(1)
                if current == section:
                    header_line = number
                    if key is None:
                        return number
                continue
            if current == section and key is not None and re.match(rf'"?{re.escape(key)}"?\s*=', stripped):
                return number
        return header_line

    def _check(self, schema: dict) -> None:
        for section in self.data:
            if section not in schema:
                self.note(self.fail(section, None, f"unknown section (known: {', '.join(schema)})"))
        for section, rules in schema.items():
            table = self.data.get(section)
            if isinstance(rules, Tables):
                self._check_tables(section, table, rules)
                continue
            if not isinstance(table, dict):
                self.note(self.fail(section, None, "missing section" if table is None else "must be a table"))
                continue

            def fail(key: str | None, why: str, section=section) -> PolicyError:
                return self.fail(section, key, why)
            if isinstance(rules, Rule):  # open table
                for key in table:
                    self._check_value(table, key, rules, fail)
                continue
            self._check_keys(table, rules, fail)

    def _check_tables(self, section: str, tables: Any, spec: Tables) -> None:
        if not isinstance(tables, list) or not tables:
            self.note(self.fail(section, None, f"missing: at least one [[{section}]] ({spec.doc})"))
            return
        lines = self.text.splitlines()
        headers = [n for n, line in enumerate(lines, 1)
                   if re.fullmatch(rf"\[\[\s*{re.escape(section)}\s*\]\]\s*(#.*)?", line.strip())]
        for index, table in enumerate(tables):
            first = headers[index] if index < len(headers) else 1
            last = headers[index + 1] if index + 1 < len(headers) else len(lines) + 1

            def fail(key: str | None, why: str, first=first, last=last, index=index) -> PolicyError:
                line = next((n for n in range(first, last) if key and re.match(rf'"?{re.escape(key)}"?\s*=',
                                                                                  lines[n - 1].strip())), first)
                return PolicyError(f"{self.path}:{line}: {section}[{index + 1}]{'.' + key if key else ''}: {why}")
            if not isinstance(table, dict):
                self.note(fail(None, f"must be a table ([[{section}]]), got {type(table).__name__}"))
                continue
            self._check_keys(table, spec.rules, fail)

    def _check_keys(self, table: dict, rules: dict[str, Rule], fail: Callable[[str | None, str], PolicyError]) -> None:
        """Unknown keys, missing keys, then each value: alike for a [section] and each [[section]]."""
        for key in table:
            if key not in rules:
                self.note(fail(key, f"unknown key (known: {', '.join(rules)})"))
        for key, rule in rules.items():
            if key not in table:
                self.note(fail(None, f"missing key '{key}' ({rule.kind}: {rule.doc})"))
                continue
            self._check_value(table, key, rule, fail)

    def _check_value(self, table: dict, key: str, rule: Rule, fail: Callable[[str | None, str], PolicyError]) -> None:
        try:
            self._check_one(table, key, rule, fail)
        except PolicyError as error:
            self.note(error)

    @staticmethod
    def _check_one(table: dict, key: str, rule: Rule, fail: Callable[[str | None, str], PolicyError]) -> None:
        value = table[key]
        ok = {
            "int": type(value) is int,
            "float": type(value) in (int, float),
            "bool": type(value) is bool,
            "str": type(value) is str,
            "list[str]": type(value) is list and all(type(v) is str for v in value),
        }[rule.kind]
        if not ok:
            raise fail(key, f"must be {rule.kind}, got {type(value).__name__} {value!r:.40}")
        if rule.kind == "float":
            table[key] = float(value)
        if rule.low is not None and not rule.low <= value <= rule.high:
            raise fail(key, f"{value} is out of range {rule.low:g}..{rule.high:g}")
        for item in value if rule.kind == "list[str]" else [value] if rule.kind == "str" else ():
            if rule.choices and item not in rule.choices:
                raise fail(key, f"unknown {item!r} (known: {', '.join(rule.choices)})")
