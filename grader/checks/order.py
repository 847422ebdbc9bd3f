"""Cells run out of order: the advice for a ``NameError`` the student never saw.

A student runs cells in whatever order the session took; the notebook they save
carries the counts (``[7]`` above ``[3]``), and it worked for them. The grader runs the
cells top to bottom in a fresh kernel, so a name defined only in a later cell is not
defined yet. For such an error the advice names the later cell that defines the name,
and, when the saved counts show it, that the student's own session ran that cell first.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grader.static.magics import neutralise_magics

UNDEFINED = re.compile(r"name '([A-Za-z_][A-Za-z0-9_]*)' is not defined")
MSG_LATER = (
    "`{name}` is only defined in cell {later}, below this one: the grader runs the cells "
    "from the top in a fresh kernel. Move cell {later} above cell {cell}."
)
MSG_RAN_FIRST = (
    " In your own session cell {later} ran before this one (its count [{later_count}], "
    "this cell's [{count}]), so it worked there."
)


MAX_PARSED_CHARS = 2_000_000
"""Source read for names, all cells together: past it, later cells are not parsed (a
hostile notebook's huge cells cost the grader's own process nothing more)."""


def defined_names(source: str) -> set[str]:
    """Names a cell binds at its top level or anywhere in it: assignments, ``def``,
    ``class``, imports, loop and ``with`` targets (empty when it does not parse)."""
    try:
        tree = ast.parse(neutralise_magics(source)[0])
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


@dataclass(frozen=True)
class CellOrder:
    """What each cell of the submitted notebook defines, and its saved execution count:
    read once per notebook, whatever the number of errors."""

    names: tuple[frozenset[str] | None, ...]
    """Per cell, the names it defines (None: not a code cell, or past the parsed budget)."""
    counts: tuple[int | None, ...]

    @classmethod
    def of(cls, cells: Sequence[Any]) -> CellOrder:
        names: list[frozenset[str] | None] = []
        budget = MAX_PARSED_CHARS
        for cell in cells:
            source = str(cell.get("source", ""))
            code = cell.get("cell_type") == "code" and len(source) <= budget
            budget -= len(source) if code else 0
            names.append(frozenset(defined_names(source)) if code else None)
        counts = [c.get("execution_count") for c in cells]
        return cls(tuple(names), tuple(c if isinstance(c, int) else None for c in counts))


def out_of_order_advice(cell: int, ename: str, evalue: str, order: CellOrder) -> str:
    """The advice for cell ``cell``'s (0-based) ``NameError`` when a later code cell of
    the submitted notebook defines the name; "" otherwise."""
    match = UNDEFINED.search(evalue) if ename == "NameError" else None
    if match is None or not 0 <= cell < len(order.names):
        return ""
    name = match.group(1)
    if name in (order.names[cell] or ()):
        return ""  # defined here, but after its use: not an ordering problem
    later = next(
        (i for i in range(cell + 1, len(order.names)) if name in (order.names[i] or ())), None
    )
    if later is None:
        return ""
    advice = MSG_LATER.format(name=name, later=later + 1, cell=cell + 1)
    count, later_count = order.counts[cell], order.counts[later]
    if count is not None and later_count is not None and later_count < count:
        advice += MSG_RAN_FIRST.format(later=later + 1, later_count=later_count, count=count)
    return advice
