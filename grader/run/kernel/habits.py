"""Colab and Jupyter habits inside the student's kernel, and the one IPython line grammar.

Students write ``!pip install``, ``%%bash`` cells and ``from google.colab import drive``.
While grading those cost no crash: :func:`install` adds an IPython input transformer
that turns every shell line into a printed note (:func:`neutralise_shell`), and puts an
inert ``google.colab`` in ``sys.modules``.

This module is also the single definition of which lines IPython reads as its own
syntax rather than Python (:func:`is_ipython_line`, :data:`CELL_MAGIC`), which of them
run a shell (:data:`SHELL_LINE`, :data:`SHELL_CELL`) or a package installer
(:data:`INSTALL_LINE`), and where a line starts a statement (:func:`scan_line`): the
static analysis (:mod:`grader.static.magics`) and the notes to the student
(:mod:`grader.checks.notes`) import them from here. A line counts only at the start of
a logical line, as IPython itself reads it: not inside brackets, strings or after a
backslash.

It runs in the kernel as its file's text (the kernel cannot import grader), so it
imports nothing from grader.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Callable
from typing import Any

ASSIGN_TARGET = r"[\w.\[\], ]+=\s*"
"""The left side of ``x = !ls`` or ``a, b = %sx ls``: names, attributes, subscripts."""
SHELL_LINE = re.compile(rf"^(\s*)({ASSIGN_TARGET})?(!|%pip\b|%conda\b|%system\b|%sx\b)")
"""A line that runs a shell: groups are the indent, the assignment target, the escape."""
SHELL_CELL = re.compile(r"^\s*%%(bash|sh|script|system)\b")
"""The first line of a cell that runs in a shell."""
INSTALL_LINE = re.compile(r"^\s*(!\s*(pip|conda|apt)|%pip\b|%conda\b)")
"""A shell line that installs packages (every one is also a :data:`SHELL_LINE`)."""
CELL_MAGIC = re.compile(r"%%(\w+)")
"""The first line of a cell magic, matched on the stripped line."""
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})
"""Cell magics whose body is Python."""
MAGIC_START = re.compile(r"[!%?]")
MAGIC_ASSIGN = re.compile(rf"{ASSIGN_TARGET}[!%]")
HELP_SUFFIX = re.compile(r"[\w.]+\?{1,2}$")

SKIPPED_CELL = "print('[grader] shell cell skipped while grading')\n"
SKIPPED_LINE = "[grader] skipped while grading: "


def is_ipython_line(line: str) -> bool:
    """A magic, shell or help line (``%time f()``, ``!ls``, ``x = %sx ls``, ``len?``)."""
    stripped = line.strip()
    return bool(
        MAGIC_START.match(stripped)
        or MAGIC_ASSIGN.match(stripped)
        or HELP_SUFFIX.fullmatch(stripped)
    )


def first_code_line(lines: list[str]) -> str:
    """The first line that is not blank: where IPython looks for a cell magic."""
    return next((line for line in lines if line.strip()), "")


def scan_line(line: str, depth: int, quote: str | None) -> tuple[int, str | None, bool]:
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


def neutralise_shell(lines: list[str]) -> list[str]:
    """A cell's lines (each ending in a newline) with every shell line made harmless.

    A shell cell becomes one printed note; a shell line becomes a printed note at its
    indent, or ``target = []`` when its output was assigned; the lines it continues
    with a backslash become blank. Line numbers are kept.
    """
    if SHELL_CELL.match(first_code_line(lines)):
        return [SKIPPED_CELL]
    out: list[str] = []
    depth, quote, continued, skipping = 0, None, False, False
    for line in lines:
        text = line.rstrip("\n")
        match = None if depth or quote or continued else SHELL_LINE.match(text)
        if skipping or match:
            out.append(_replacement(match, text) if match and not skipping else "\n")
            skipping = text.endswith("\\")
            continue
        out.append(line)
        depth, quote, continued = scan_line(text, depth, quote)
    return out


def _replacement(match: re.Match[str], line: str) -> str:
    indent, target = match.group(1), match.group(2) or ""
    note = SKIPPED_LINE + line.strip()[:100]
    return indent + (target + "[]" if target else f"print({note!r})") + "\n"


def install() -> None:
    """Shell lines print a note instead of running; ``google.colab`` is inert."""
    from IPython import get_ipython

    get_ipython().input_transformers_cleanup.insert(0, neutralise_shell)
    install_colab()


def _say(text: str) -> Callable[..., dict[str, Any]]:
    def inert(*args: Any, **kwargs: Any) -> dict[str, Any]:
        print("[grader] " + text)
        return {}

    return inert


def install_colab() -> None:
    """An inert ``google.colab``: ``drive.mount`` and ``files.upload`` print a note."""
    colab = types.ModuleType("google.colab")
    drive = types.ModuleType("google.colab.drive")
    files = types.ModuleType("google.colab.files")
    unmounted = _say("Google Drive is not mounted while grading")
    vars(drive).update(mount=unmounted, flush_and_unmount=unmounted)
    vars(files).update(
        upload=_say("files.upload() returns nothing while grading"),
        download=_say("files.download() skipped while grading"),
    )
    vars(colab).update(drive=drive, files=files)
    sys.modules.update(
        {"google.colab": colab, "google.colab.drive": drive, "google.colab.files": files}
    )
    try:
        import google

        vars(google)["colab"] = colab
    except ImportError:
        pass
