"""Gradebook exports: the class workbook, Canvas's import CSV, Moodle's worksheet.

* ``grades.xlsx``: the ``grades.csv`` table on a sheet with its header frozen, and a
  second sheet of per-check statistics (mean points, pass rate);
* ``canvas.csv``: Canvas's gradebook import (:mod:`grader.outputs.canvas`);
* ``moodle_grading_worksheet.csv``: Moodle's offline grading worksheet, for a class
  from a Moodle download (:mod:`grader.outputs.moodle`);

Gradescope runs grader itself (:mod:`grader.gradescope`): its ``results.json`` is written
there, per submission, not here.

Every text cell of a spreadsheet goes through :func:`grader.outputs.records.neutralise_cell`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from grader.files import atomic_path, atomic_write_text
from grader.outputs.canvas import canvas_csv, read_roster
from grader.outputs.moodle import moodle_rows, moodle_worksheet
from grader.outputs.names import CANVAS_FILE, MOODLE_FILE, XLSX_FILE
from grader.outputs.records import grades_table, neutralise_table
from grader.results import SubmissionResult

GRADES_SHEET, STATS_SHEET = "grades", "checks"


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


def write_gradebooks(
    results: list[SubmissionResult],
    check_ids: list[str],
    out: Path,
    assignment: str,
    roster: Path | None = None,
    canvas_id: str | None = None,
) -> dict[str, Path]:
    """Every gradebook export under ``out``; returns their paths by name."""
    write_grades_xlsx(results, check_ids, out / XLSX_FILE)
    people = read_roster(roster) if roster else None
    text = canvas_csv(results, assignment, people, canvas_id)
    atomic_write_text(out / CANVAS_FILE, text)
    books = {}
    if moodle_rows(results):
        atomic_write_text(out / MOODLE_FILE, moodle_worksheet(results))
        books["moodle"] = out / MOODLE_FILE
    else:
        (out / MOODLE_FILE).unlink(missing_ok=True)  # none left from an earlier intake
    return {
        "xlsx": out / XLSX_FILE,
        "canvas": out / CANVAS_FILE,
        **books,
    }
