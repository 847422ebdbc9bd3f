"""A TOML writer for the rubrics grader writes (tables of scalars and of lists, nested
or not, and arrays of such tables): what :mod:`tomllib` reads back as the same document."""

from __future__ import annotations

import math
import re
from typing import Any

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dumps(document: dict[str, Any], header: str = "") -> str:
    """``document`` as TOML: its scalars, then each table, then each array of tables;
    ``header`` (lines of text) first, as comments."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    scalars = {k: v for k, v in document.items() if not _is_table(v) and not _is_tables(v)}
    lines += _pairs(scalars)
    for key, value in document.items():
        if _is_table(value):
            lines += ["", f"[{_key(key)}]", *_pairs(value)]
        elif _is_tables(value):
            for table in value:
                lines += ["", f"[[{_key(key)}]]", *_pairs(table)]
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_table(value: Any) -> bool:
    return isinstance(value, dict)


def _is_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _pairs(table: dict[str, Any]) -> list[str]:
    return [f"{_key(key)} = {_value(value)}" for key, value in table.items()]


def _key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML has no number {value!r} here")
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list) and not any(isinstance(v, dict) for v in value):
        return "[" + ", ".join(_value(v) for v in value) + "]"  # nested lists too
    raise ValueError(f"cannot write {type(value).__name__} {value!r} as a rubric value")


def _string(text: str) -> str:
    """A basic string: quote, backslash and control characters escaped, the rest as is."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
