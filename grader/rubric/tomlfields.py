"""Typed reads of a parsed TOML file's tables, each failure a :class:`RubricError`.

Every function takes the file's ``name`` (for the message) and the dotted key it reads,
so a wrong value is reported as ``rubric.toml: limits.cell_timeout_s: expected a number``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grader.errors import RubricError

NUMBER = (int, float)


def fraction(name: str, key: str, value: Any) -> float:
    """An accuracy: a number from 0 to 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise RubricError(name, key, f"expected an accuracy between 0 and 1, got {value!r}")
    return float(value)


def count(name: str, key: str, value: Any) -> int:
    """A whole number of at least 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RubricError(name, key, f"expected a whole number of at least 0, got {value!r}")
    return value


def subtable(name: str, raw: dict[str, Any], key: str) -> dict[str, Any]:
    """The table under ``key`` (empty when absent)."""
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise RubricError(name, key, f"expected a table, got {value!r}")
    return value


def no_unknown(name: str, where: str, table: dict[str, Any], allowed: set[str]) -> None:
    """Refuse a key ``allowed`` does not name: a typo is an error, never ignored."""
    for key in table:
        if key not in allowed:
            full = f"{where}.{key}" if where else key
            raise RubricError(
                name, full, f"unknown key (expected one of: {', '.join(sorted(allowed))})"
            )


def value_of(name: str, full: str, table: dict[str, Any], key: str, kind: Any, default: Any) -> Any:
    """``table[key]`` (or ``default``) when it is of ``kind``; ``True`` is no number."""
    value = table.get(key, default)
    bad_bool = kind in (NUMBER, int) and isinstance(value, bool)
    if not isinstance(value, kind) or bad_bool:
        expected = {str: "a string", bool: "true or false", int: "an integer"}.get(kind, "a number")
        raise RubricError(name, full, f"expected {expected}, got {value!r}")
    return value


def dataclass_from(
    name: str, raw: dict[str, Any], key: str, cls: type, defaults: Any = None
) -> Any:
    """An instance of ``cls`` from the table under ``key``: each field typed like its
    default in ``defaults``, none negative, none zero unless the class default is."""
    table = subtable(name, raw, key)
    defaults = defaults if defaults is not None else cls()
    allowed = set(cls.__dataclass_fields__)
    no_unknown(name, key, table, allowed)
    values = {}
    for field_name in allowed:
        default = getattr(defaults, field_name)
        kind = int if isinstance(default, int) else NUMBER
        value = value_of(name, f"{key}.{field_name}", table, field_name, kind, default)
        if value < 0 or (value == 0 and getattr(cls(), field_name) != 0):
            raise RubricError(name, f"{key}.{field_name}", f"must be positive, got {value!r}")
        values[field_name] = value
    return cls(**values)


def strings(name: str, key: str, value: Any) -> list[str]:
    """A list of non-blank strings."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise RubricError(name, key, f"expected a list of strings, got {value!r}")
    return value


def folders(
    name: str, key: str, value: Any, refused: Callable[[str], str | None] = lambda _: None
) -> tuple[str, ...]:
    """A list of absolute folders (none of them ``/``, none climbing with ``..``, none that
    ``refused`` names a folder it overlaps)."""
    found = strings(name, key, value) if value != [] else []
    for folder in found:
        if not folder.startswith("/") or not folder.strip("/") or ".." in folder.split("/"):
            raise RubricError(name, key, f"expected absolute folders, got {folder!r}")
        if (overlap := refused(folder.rstrip("/"))) is not None:
            raise RubricError(name, key, f"{folder!r} overlaps the system folder {overlap}")
    return tuple(f.rstrip("/") for f in found)


def path_value(name: str, base: Path, key: str, value: Any) -> Path | None:
    """A path relative to ``base`` (the rubric's folder), resolved; None when absent."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise RubricError(name, key, f"expected a path string, got {value!r}")
    return (base / value).resolve()


def typed_fields(
    name: str, where: str, table: dict[str, Any], cls: type, keys: tuple[str, ...]
) -> dict[str, Any]:
    """``table``'s values for ``keys``, each typed like ``cls``'s default for that field and
    that default when absent: a default is written once, in its dataclass."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    values = {}
    for key in keys:
        default = defaults[key]
        kind = NUMBER if isinstance(default, float) else type(default)
        value = value_of(name, f"{where}.{key}", table, key, kind, default)
        values[key] = float(value) if kind is NUMBER else value
    return values
