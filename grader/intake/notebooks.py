"""Intake: find submissions, identify students, read and validate notebooks.

A file that cannot be graded raises :class:`~grader.errors.InvalidNotebook` with a
message for that student; the pipeline turns it into an ``invalid`` result. So does a
notebook over the rubric's size limits (``[limits] max_notebook_mb``, ``max_cell_kb``):
a larger file is refused before it is read, a cell with more source once it is parsed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import nbformat

from grader.errors import InvalidNotebook, SubmissionsError, map_dependency_errors, strerror

NOTEBOOK_SUFFIX = ".ipynb"
PYTHON_NAMES = {"python", "python3", "ipython", "ipython3"}
STUDENT_UNSAFE = re.compile(r"[^\w.@+-]+")
MSG_NOT_JSON = "not a notebook: the file is not valid JSON ({detail})"
MSG_NOT_NOTEBOOK = "not a notebook: {detail}"
MSG_OUTPUTS_DROPPED = (
    "its saved outputs were dropped: they did not follow the notebook format ({detail}); "
    "grading runs the notebook again"
)
MSG_NO_CELLS = "the notebook has no cells"
MSG_NO_CODE = "the notebook has no code cells"
MSG_TOO_LARGE = (
    "the notebook file is {size:.1f} MB, more than the {limit} MB a submission may be"
    " ([limits] max_notebook_mb); clear large outputs and submit it again"
)
MSG_CELL_TOO_LARGE = (
    "cell {cell} holds {size:,} KB of source, more than the {limit} KB a cell may hold"
    " ([limits] max_cell_kb)"
)
MSG_LINK = "{name!r}: rejected: a symbolic link that leads outside the submissions folder"
MSG_LANGUAGE = "the notebook is for {language!r}, not Python; grader runs Python notebooks only"


@dataclass
class Submission:
    """One student's notebook, read and validated."""

    student: str
    """The student's id: the one intake mapped the file to (an LMS name, a rubric
    pattern), else :func:`student_id` of the file name."""
    path: Path
    """Where the file is."""
    sha256: str
    """SHA-256 of the file's bytes."""
    nb: nbformat.NotebookNode
    """The notebook, upgraded to nbformat 4."""
    notes: list[str]
    """What intake changed or noticed (e.g. an nbformat 3 upgrade)."""


class SizeLimits(Protocol):
    """The rubric's intake limits (:class:`grader.rubric.limits.Limits` has them)."""

    @property
    def max_notebook_mb(self) -> int: ...

    @property
    def max_cell_kb(self) -> int: ...


def find_submissions(root: Path, problems: list[str] | None = None) -> list[Path]:
    """Every ``.ipynb`` under ``root`` (or ``root`` itself), sorted; hidden folders skipped.

    A symbolic link (to the file or to a folder above it) that leads outside ``root`` is
    never read: it is left out, with a line in ``problems`` naming it."""
    problems = [] if problems is None else problems
    if not root.exists():
        raise SubmissionsError(f"{root}: no such file or folder")
    if root.is_file():
        return [root]
    with map_dependency_errors(
        "submissions",
        lambda exc: SubmissionsError(f"{root}: cannot read the folder ({strerror(exc)})"),
    ):
        paths = sorted(p for p in root.rglob(f"*{NOTEBOOK_SUFFIX}") if _visible(p, root))
        inside = root.resolve()
        kept = []
        for path in paths:
            if not path.resolve().is_relative_to(inside):
                name = path.relative_to(root).as_posix()
                problems.append(MSG_LINK.format(name=name))
            elif path.is_file():
                kept.append(path)
    return kept


def _visible(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return not any(part.startswith(".") or part == "__pycache__" for part in parts)


def student_id(path: Path) -> str:
    """The student's identifier: the file name without ``.ipynb``, made printable."""
    stem = path.name[: -len(NOTEBOOK_SUFFIX)] if path.name.endswith(NOTEBOOK_SUFFIX) else path.name
    return STUDENT_UNSAFE.sub("_", stem).strip("._") or "unnamed"


def file_digest(path: Path) -> str:
    """The file's SHA-256, read in pieces (a large file never sits in memory whole)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def load_submission(
    path: Path, student: str | None = None, limits: SizeLimits | None = None
) -> Submission:
    """Read, upgrade and validate one notebook (``student``: the id intake mapped it to;
    ``limits``: the sizes past which it is :class:`InvalidNotebook`, unread)."""
    if limits is not None:
        size, limit = path.stat().st_size, limits.max_notebook_mb
        if size > limit * 2**20:
            raise InvalidNotebook(MSG_TOO_LARGE.format(size=size / 2**20, limit=limit))
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    nb, notes = parse_notebook(raw)
    if limits is not None:
        check_cells(nb, limits.max_cell_kb)
    return Submission(
        student=student or student_id(path), path=path, sha256=digest, nb=nb, notes=notes
    )


def parse_notebook(raw: bytes) -> tuple[nbformat.NotebookNode, list[str]]:
    """Bytes to a validated nbformat-4 notebook, or :class:`InvalidNotebook`."""
    with map_dependency_errors(
        "notebook", lambda exc: InvalidNotebook(MSG_NOT_JSON.format(detail=_short(exc)))
    ):
        data = json.loads(raw.decode("utf-8-sig"))
    if not isinstance(data, dict) or "cells" not in data and "worksheets" not in data:
        raise InvalidNotebook(MSG_NOT_NOTEBOOK.format(detail="no 'cells' in the JSON"))
    notes = []
    with map_dependency_errors(
        "notebook", lambda exc: InvalidNotebook(MSG_NOT_NOTEBOOK.format(detail=_short(exc)))
    ):
        nb = nbformat.reads(json.dumps(data), as_version=4)
        if data.get("nbformat", 4) < 4:
            notes.append(f"upgraded from nbformat {data.get('nbformat')}")
        notes += _valid_or_repaired(nb)
    if not nb.cells:
        raise InvalidNotebook(MSG_NO_CELLS)
    if not any(cell.cell_type == "code" for cell in nb.cells):
        raise InvalidNotebook(MSG_NO_CODE)
    language = _language(nb)
    if language and language not in PYTHON_NAMES:
        raise InvalidNotebook(MSG_LANGUAGE.format(language=language))
    return nb, notes


def _valid_or_repaired(nb: nbformat.NotebookNode) -> list[str]:
    """Validate; where only saved outputs break the format (some editors write keys the
    schema does not allow, such as ``metadata`` on a stream), drop every code cell's
    outputs, which grading never reads, and say so. Anything else still raises."""
    try:
        nbformat.validate(nb)
        return []
    except nbformat.ValidationError as exc:
        detail = _short(exc)
    for cell in nb.cells:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nbformat.validate(nb)
    return [MSG_OUTPUTS_DROPPED.format(detail=detail)]


def check_cells(nb: nbformat.NotebookNode, max_kb: int) -> None:
    """:class:`InvalidNotebook` naming the first cell with more than ``max_kb`` KB of source."""
    for number, cell in enumerate(nb.cells, start=1):
        size = len(str(cell.get("source", "")).encode("utf-8", "surrogatepass"))
        if size > max_kb * 1024:
            raise InvalidNotebook(
                MSG_CELL_TOO_LARGE.format(cell=number, size=-(-size // 1024), limit=max_kb)
            )


def _language(nb: nbformat.NotebookNode) -> str:
    meta = nb.get("metadata", {})
    for value in (
        meta.get("kernelspec", {}).get("language"),
        meta.get("language_info", {}).get("name"),
    ):
        if isinstance(value, str) and value:
            return value.lower()
    return ""


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
