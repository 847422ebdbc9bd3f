"""IPython magics, shell and help lines in a code cell, replaced by ``pass`` for :mod:`ast`.

Line numbers are kept, so facts found in the parsed code point at the student's lines.
"""

from __future__ import annotations

import re

PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})

_CELL_MAGIC = re.compile(r"%%(\w+)")
_MAGIC_START = re.compile(r"[!%?]")
_MAGIC_ASSIGN = re.compile(r"[\w.\[\], ]+=\s*[!%]")
_HELP_SUFFIX = re.compile(r"[\w.]+\?{1,2}$")


def _scan_line(line: str, depth: int, quote: str | None) -> tuple[int, str | None, bool]:
    """Bracket depth, open string quote and backslash continuation after ``line``."""
    i = 0
    while i < len(line):
        if quote:
            if line.startswith(quote, i):
                i, quote = i + len(quote), None
            else:
                i += 2 if line[i] == "\\" else 1
            continue
        char = line[i]
        if char == "#":
            return depth, None, False
        if char in "'\"":
            quote = char * 3 if line.startswith(char * 3, i) else char
            i += len(quote)
            continue
        depth = max(0, depth + (char in "([{") - (char in ")]}"))
        i += 1
    continued = line.endswith("\\")
    if quote and len(quote) == 1 and not continued:
        quote = None
    return depth, quote, continued


def _is_magic_line(line: str) -> bool:
    stripped = line.strip()
    return bool(
        _MAGIC_START.match(stripped)
        or _MAGIC_ASSIGN.match(stripped)
        or _HELP_SUFFIX.fullmatch(stripped)
    )


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def neutralise_magics(source: str) -> tuple[str, list[int]]:
    """Replace IPython magics, shell and help lines by ``pass``, keeping line numbers."""
    lines = source.split("\n")
    replaced: list[int] = []
    first = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    cell_magic = _CELL_MAGIC.match(lines[first].strip()) if first < len(lines) else None
    if cell_magic and cell_magic.group(1) not in PYTHON_CELL_MAGICS:
        replaced = [i + 1 for i, line in enumerate(lines) if line.strip()]
        return "\n".join("pass" if line.strip() else line for line in lines), replaced
    depth, quote, continued, magic_indent = 0, None, False, None
    for i, line in enumerate(lines):
        at_start = depth == 0 and quote is None and not continued
        if (
            (cell_magic and i == first)
            or magic_indent is not None
            or (at_start and _is_magic_line(line))
        ):
            indent = _indent(line) if magic_indent is None else magic_indent
            magic_indent = indent if line.endswith("\\") else None
            lines[i] = indent + "pass"
            replaced.append(i + 1)
            continue
        depth, quote, continued = _scan_line(line, depth, quote)
    return "\n".join(lines), replaced
