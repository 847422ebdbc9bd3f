"""IPython magics, shell and help lines in a code cell, replaced by ``pass`` for :mod:`ast`.

Line numbers are kept, so facts found in the parsed code point at the student's lines.
Which lines are IPython's is defined once, in :mod:`grader.run.kernel.habits` (the kernel
side makes the shell ones harmless by the same grammar).
"""

from __future__ import annotations

from grader.run.kernel.habits import CELL_MAGIC, PYTHON_CELL_MAGICS, is_ipython_line, scan_line


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def neutralise_magics(source: str) -> tuple[str, list[int]]:
    """Replace IPython magics, shell and help lines by ``pass``, keeping line numbers."""
    lines = source.split("\n")
    replaced: list[int] = []
    first = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    cell_magic = CELL_MAGIC.match(lines[first].strip()) if first < len(lines) else None
    if cell_magic and cell_magic.group(1) not in PYTHON_CELL_MAGICS:
        replaced = [i + 1 for i, line in enumerate(lines) if line.strip()]
        return "\n".join("pass" if line.strip() else line for line in lines), replaced
    depth, quote, continued, magic_indent = 0, None, False, None
    for i, line in enumerate(lines):
        at_start = depth == 0 and quote is None and not continued
        if (
            (cell_magic and i == first)
            or magic_indent is not None
            or (at_start and is_ipython_line(line))
        ):
            indent = _indent(line) if magic_indent is None else magic_indent
            magic_indent = indent if line.endswith("\\") else None
            lines[i] = indent + "pass"
            replaced.append(i + 1)
            continue
        depth, quote, continued = scan_line(line, depth, quote)
    return "\n".join(lines), replaced
