"""Writing a batch's outputs (the output contract of DESIGN.md).

Everything here is rebuilt from ``results.jsonl`` and ``reference.json`` by
``grader report OUT``: no notebook runs to redo a page or an export.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.errors import InvalidInput, OutputError, map_dependency_errors, strerror
from grader.files import atomic_write_text
from grader.outputs.gradebooks import write_gradebooks
from grader.outputs.names import (
    GRADES_FILE,
    INDEX_FILE,
    REFERENCE_FILE,
    REPORTS_DIR,
    RESULTS_FILE,
)
from grader.outputs.readback import well_formed
from grader.outputs.records import unreadable, write_grades_csv, write_results_jsonl
from grader.outputs.report import write_reports
from grader.results import SubmissionResult

MSG_NOT_FIGURES = "expected a JSON object with the reference's accuracy and history"


@dataclass
class ClassInfo:
    """What the pages and exports need beyond the results themselves."""

    check_ids: list[str]
    """The rubric's checks, in order (the spreadsheet's columns)."""
    assignment: str = "Assignment"
    """The assignment's title (Canvas's grade column)."""
    reference_accuracy: float | None = None
    reference_history: list[dict[str, Any]] = field(default_factory=list)
    """The reference's training phases, drawn beside each student's curves."""
    roster: Path | None = None
    """A Canvas roster CSV giving each student's identity, when the instructor has one."""
    canvas_id: int | None = None
    """The assignment's Canvas id (canvas.csv's column ``Title (id)``)."""

    def save(self, out: Path) -> None:
        figures = {"accuracy": self.reference_accuracy, "history": self.reference_history}
        atomic_write_text(out / REFERENCE_FILE, json.dumps(figures, indent=1) + "\n")

    def load_reference(self, out: Path) -> None:
        """Fill the reference's figures from ``out/reference.json`` when it exists."""
        path = out / REFERENCE_FILE
        if path.exists():
            with map_dependency_errors("read back", lambda exc: unreadable(path, exc)):
                figures = json.loads(path.read_text())
            if not isinstance(figures, dict):
                raise InvalidInput(MSG_NOT_FIGURES, str(path))
            self.reference_accuracy = figures.get("accuracy", self.reference_accuracy)
            self.reference_history = figures.get("history") or []


def write_outputs(results: list[SubmissionResult], info: ClassInfo, out: Path) -> dict[str, Path]:
    """Every output under ``out``: results, spreadsheets, gradebooks, pages; an
    :class:`~grader.errors.OutputError` naming the file when one cannot be written."""
    with map_dependency_errors("outputs", lambda exc: unwritable(out, exc)):
        return _write_all(results, info, out)


def unwritable(out: Path, exc: Exception) -> OutputError:
    """The error for an output that cannot be written: the file, else the folder."""
    return OutputError(str(getattr(exc, "filename", None) or out), strerror(exc))


def _write_all(results: list[SubmissionResult], info: ClassInfo, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    results = [well_formed(result) for result in results]  # a bad record is its own row
    write_results_jsonl(results, out / RESULTS_FILE)
    info.save(out)
    write_grades_csv(results, info.check_ids, out / GRADES_FILE)
    canvas_id = str(info.canvas_id) if info.canvas_id else None
    books = write_gradebooks(results, info.check_ids, out, info.assignment, info.roster, canvas_id)
    write_reports(
        results,
        out,
        info.check_ids,
        reference_accuracy=info.reference_accuracy,
        reference_history=info.reference_history,
    )
    return {
        "results": out / RESULTS_FILE,
        "grades": out / GRADES_FILE,
        **books,
        "reports": out / REPORTS_DIR,
        "index": out / INDEX_FILE,
    }
