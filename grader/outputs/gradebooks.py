"""Gradebook exports: the class workbook, Canvas's import CSV, Gradescope's results.json.

* ``grades.xlsx``: the ``grades.csv`` table on a sheet with its header frozen, and a
  second sheet of per-check statistics (mean points, pass rate);
* ``canvas.csv``: Canvas's gradebook import format: the header
  ``Student,ID,SIS User ID,SIS Login ID,Section,<assignment>``, then a
  ``Points Possible`` row, then one row per student; identities come from a roster CSV
  when one is given (matched on SIS Login ID, SIS User ID, ID or the student's name)
  and otherwise from the submission's student id;
* ``gradescope/<student>/results.json``: the file a Gradescope autograder writes, so the
  same rubric can run there: ``score``, ``execution_time``, ``output`` and ``tests[]``.

Every text cell of a spreadsheet goes through :func:`grader.outputs.records.neutralise_cell`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd

from grader.errors import InvalidInput, map_dependency_errors
from grader.files import atomic_path, atomic_write_text
from grader.outputs.names import CANVAS_FILE, GRADESCOPE_DIR, XLSX_FILE, gradescope_path
from grader.outputs.records import grades_table, neutralise_cell, neutralise_table, unreadable
from grader.results import SubmissionResult

GRADES_SHEET, STATS_SHEET = "grades", "checks"
CANVAS_IDENTITY = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
POINTS_POSSIBLE = "Points Possible"
ROSTER_KEYS = ("SIS Login ID", "SIS User ID", "ID", "Student")
VISIBLE, HIDDEN = "visible", "after_published"
MSG_ROSTER = "a roster needs a header with {columns}"


def write_grades_xlsx(results: list[SubmissionResult], check_ids: list[str], path: Path) -> None:
    """The class table (header frozen) and a sheet of per-check statistics."""
    table = neutralise_table(grades_table(results, check_ids))
    stats = neutralise_table(check_statistics(results, check_ids))
    with atomic_path(path) as partial, pd.ExcelWriter(partial, engine="openpyxl") as writer:
        table.to_excel(writer, sheet_name=GRADES_SHEET, index=False, freeze_panes=(1, 0))
        stats.to_excel(writer, sheet_name=STATS_SHEET, index=False, freeze_panes=(1, 0))


def check_statistics(results: list[SubmissionResult], check_ids: list[str]) -> pd.DataFrame:
    """Per check: title, submissions with it, passed, pass rate, mean and max points."""
    rows = []
    for check_id in check_ids:
        found = [c for r in results for c in r.checks if c.id == check_id]
        passed = sum(c.passed for c in found)
        rows.append(
            {
                "check": check_id,
                "title": next((c.title for c in found if c.title), ""),
                "graded": len(found),
                "passed": passed,
                "pass_rate": round(passed / len(found), 4) if found else None,
                "mean_points": round(sum(c.score for c in found) / len(found), 3)
                if found
                else None,
                "max_points": max((c.max_score for c in found), default=None),
            }
        )
    return pd.DataFrame(rows)


def read_roster(path: Path) -> list[dict[str, str]]:
    """A Canvas-style roster CSV (any of its identity columns; extra columns ignored);
    :class:`~grader.errors.InvalidInput` when it cannot be read or names no identity."""
    with (
        map_dependency_errors("read back", lambda exc: unreadable(path, exc)),
        open(path, newline="", encoding="utf-8-sig") as handle,
    ):
        rows = list(csv.DictReader(handle))
    if rows and not set(ROSTER_KEYS) & set(rows[0]):
        raise InvalidInput(MSG_ROSTER.format(columns=" or ".join(ROSTER_KEYS)), str(path))
    return rows


def _identity(student: str, roster: list[dict[str, str]]) -> dict[str, str]:
    for row in roster:
        if any(row.get(key, "").strip().casefold() == student.casefold() for key in ROSTER_KEYS):
            return {key: row.get(key, "") for key in CANVAS_IDENTITY}
    return {"Student": student, "ID": "", "SIS User ID": "", "SIS Login ID": student, "Section": ""}


def canvas_csv(
    results: list[SubmissionResult], assignment: str, roster: list[dict[str, str]] | None = None
) -> str:
    """Canvas's gradebook import CSV for one assignment column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CANVAS_IDENTITY, neutralise_cell(assignment)])
    possible = max((r.max_score for r in results), default=0.0)
    writer.writerow([POINTS_POSSIBLE, "", "", "", "", f"{possible:g}"])
    for result in sorted(results, key=lambda r: r.student):
        who = _identity(result.student, roster or [])
        writer.writerow([neutralise_cell(who[k]) for k in CANVAS_IDENTITY] + [f"{result.score:g}"])
    return buffer.getvalue()


def gradescope_results(result: SubmissionResult) -> dict:
    """Gradescope's ``results.json`` for one submission (hidden checks after publishing)."""
    tests = [
        {
            "name": "Hidden check" if c.hidden else (c.title or c.id),
            "score": c.score,
            "max_score": c.max_score,
            "status": "passed" if c.passed else "failed",
            "output": "" if c.hidden else " ".join(filter(None, [c.message, c.hint])),
            "visibility": HIDDEN if c.hidden else VISIBLE,
        }
        for c in result.checks
    ]
    return {
        "score": result.score,
        "execution_time": round(result.duration_s),
        "output": result.message or f"Status: {result.status}",
        "tests": tests,
    }


def write_gradebooks(
    results: list[SubmissionResult],
    check_ids: list[str],
    out: Path,
    assignment: str,
    roster: Path | None = None,
) -> dict[str, Path]:
    """Every gradebook export under ``out``; returns their paths by name."""
    write_grades_xlsx(results, check_ids, out / XLSX_FILE)
    people = read_roster(roster) if roster else None
    atomic_write_text(out / CANVAS_FILE, canvas_csv(results, assignment, people))
    for result in results:
        target = gradescope_path(out, result.student)
        atomic_write_text(target, json.dumps(gradescope_results(result), indent=1) + "\n")
    return {
        "xlsx": out / XLSX_FILE,
        "canvas": out / CANVAS_FILE,
        "gradescope": out / GRADESCOPE_DIR,
    }
