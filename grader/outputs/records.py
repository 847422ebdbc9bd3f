"""Machine-readable outputs of a grading run: ``results.jsonl`` and ``grades.csv``.

``results.jsonl`` holds one :meth:`SubmissionResult.to_record` object per line and is
the output contract other tools read back with :func:`read_results_jsonl`.
``grades.csv`` is the class spreadsheet: one row per student, one column per check.
A result whose fields have the wrong types is that student's ``error`` row
(:mod:`grader.outputs.readback`), never the end of ``grader report``.
Every text cell of the spreadsheet goes through :func:`neutralise_cell` so that a
student id or flag such as ``=HYPERLINK(...)`` is never evaluated as a formula.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from grader.errors import InvalidInput, map_dependency_errors, strerror
from grader.files import atomic_write_text
from grader.outputs.provenance import label as provenance_label
from grader.outputs.readback import well_formed
from grader.results import SubmissionResult

ENCODING = "utf-8"
FLAG_SEPARATOR = ";"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula."""
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
"""Not allowed in an XLSX cell (openpyxl refuses them); tab, LF and CR are."""
FORMULA_ESCAPE = "'"

LEADING_COLUMNS = ("student", "file")
TRAILING_COLUMNS = (
    "score",
    "max_score",
    "late_penalty",
    "status",
    "flags",
    "remarks",
    "graded_under",
)

MSG_MALFORMED_JSON = "malformed JSON ({detail})"
MSG_NOT_OBJECT = "expected a JSON object, got {kind}"
MSG_BAD_RECORD = "not a submission result ({detail})"
MSG_UNREADABLE = "cannot be read ({detail})"
MSG_COLUMN_CLASH = "check ids clash with the grades table's own columns: {ids}"
MSG_DUPLICATE_IDS = "duplicate check ids: {ids}"


def _sorted(results: Iterable[SubmissionResult]) -> list[SubmissionResult]:
    """Results in a stable order: by student, then by file name."""
    return sorted(results, key=lambda r: (r.student, r.file))


def write_results_jsonl(results: list[SubmissionResult], path: Path) -> None:
    """Write one JSON object per result (sorted by student) to ``path``, atomically."""
    lines = [
        json.dumps(result.to_record(), ensure_ascii=False, sort_keys=False) + "\n"
        for result in _sorted(results)
    ]
    atomic_write_text(Path(path), "".join(lines))


def _parse_line(text: str, path: Path, line: int) -> SubmissionResult:
    """One ``results.jsonl`` line as a result; :class:`InvalidInput` naming file and line."""
    where = {"path": str(path), "line": line}
    with map_dependency_errors(
        "read back", lambda exc: InvalidInput(MSG_MALFORMED_JSON.format(detail=exc), **where)
    ):
        record = json.loads(text)
    if not isinstance(record, dict):
        raise InvalidInput(MSG_NOT_OBJECT.format(kind=type(record).__name__), **where)
    with map_dependency_errors(
        "read back", lambda exc: InvalidInput(MSG_BAD_RECORD.format(detail=exc), **where)
    ):
        return well_formed(SubmissionResult.from_record(record))


def unreadable(path: Path, exc: Exception) -> InvalidInput:
    """The error for a file grader reads back that cannot be read at all."""
    return InvalidInput(MSG_UNREADABLE.format(detail=strerror(exc)), str(path))


def read_results_jsonl(path: Path) -> list[SubmissionResult]:
    """Read the results written by :func:`write_results_jsonl` (blank lines are skipped).

    Raises :class:`~grader.errors.InvalidInput` (a ``ValueError``) naming the file and the
    1-based line number of the first line that is not valid JSON or not a submission
    result, or why the file cannot be read.
    """
    path = Path(path)
    results = []
    with (
        map_dependency_errors(
            "read back",
            lambda exc: InvalidInput(MSG_UNREADABLE.format(detail=strerror(exc)), str(path)),
        ),
        path.open(encoding=ENCODING) as handle,
    ):
        for number, text in enumerate(handle, start=1):
            if text.strip():
                results.append(_parse_line(text, path, number))
    return results


def _check_columns(check_ids: list[str]) -> None:
    """Refuse check ids that would overwrite a fixed column or each other
    (:class:`~grader.errors.InvalidInput`)."""
    clash = sorted(set(check_ids) & set(LEADING_COLUMNS + TRAILING_COLUMNS))
    if clash:
        raise InvalidInput(MSG_COLUMN_CLASH.format(ids=", ".join(clash)))
    duplicates = sorted({c for c in check_ids if check_ids.count(c) > 1})
    if duplicates:
        raise InvalidInput(MSG_DUPLICATE_IDS.format(ids=", ".join(duplicates)))


def _grades_row(result: SubmissionResult, check_ids: list[str]) -> dict[str, Any]:
    """One spreadsheet row: identity, points per check (None when absent), totals."""
    earned = {check.id: check.score for check in result.checks}
    row: dict[str, Any] = {"student": result.student, "file": result.file}
    for check_id in check_ids:
        row[check_id] = earned.get(check_id)
    row["score"] = result.score
    row["max_score"] = result.max_score
    row["late_penalty"] = result.late.get("penalty", 0.0)
    row["status"] = result.status
    row["flags"] = FLAG_SEPARATOR.join(result.flags)
    row["remarks"] = FLAG_SEPARATOR.join(result.remarks)
    row["graded_under"] = provenance_label(result.provenance)
    return row


def grades_table(results: list[SubmissionResult], check_ids: list[str]) -> pd.DataFrame:
    """The class spreadsheet as a DataFrame, one row per student (sorted by student).

    Columns: ``student``, ``file``, one per check id (points earned; blank/NaN when
    the check is absent from that result), ``score``, ``max_score``, ``status``,
    ``flags`` and ``remarks`` (each joined with ``;``), and ``graded_under``: a short
    label of what graded the row (:mod:`grader.outputs.provenance`; rows with different
    labels were graded under different rubrics, modes, kits, references or graders).
    """
    check_ids = list(check_ids)
    _check_columns(check_ids)
    columns = [*LEADING_COLUMNS, *check_ids, *TRAILING_COLUMNS]
    rows = [_grades_row(result, check_ids) for result in _sorted(results)]
    table = pd.DataFrame(rows, columns=columns)
    for check_id in check_ids:
        table[check_id] = pd.to_numeric(table[check_id]).astype("float64")
    return table


def neutralise_cell(value: Any) -> Any:
    """A cell value a spreadsheet will not evaluate as a formula.

    Strings starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return get a
    leading ``'``; control characters a spreadsheet cannot hold become ``?``; anything
    else (numbers included) is returned unchanged.
    """
    if not isinstance(value, str):
        return value
    value = CONTROL_CHARACTERS.sub("?", value)
    return FORMULA_ESCAPE + value if value.startswith(FORMULA_PREFIXES) else value


def neutralise_table(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` with every cell and column name run through :func:`neutralise_cell`."""
    safe = table.map(neutralise_cell)
    safe.columns = [neutralise_cell(str(column)) for column in table.columns]
    return safe


def write_grades_csv(results: list[SubmissionResult], check_ids: list[str], path: Path) -> None:
    """Write :func:`grades_table` as CSV (UTF-8, formula-like text neutralised), atomically."""
    table = neutralise_table(grades_table(results, check_ids))
    atomic_write_text(Path(path), table.to_csv(index=False, lineterminator="\n"))
