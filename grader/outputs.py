"""Writing a batch's outputs (the output contract of DESIGN.md)."""

from __future__ import annotations

from pathlib import Path

from grader.export import GRADES_FILE, RESULTS_FILE, write_grades_csv, write_results_jsonl
from grader.report import write_reports
from grader.results import SubmissionResult


def write_outputs(
    results: list[SubmissionResult],
    check_ids: list[str],
    out: Path,
    reference_accuracy: float | None,
) -> dict[str, Path]:
    """``results.jsonl``, ``grades.csv``, ``reports/*.html`` and ``index.html`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_results_jsonl(results, out / RESULTS_FILE)
    write_grades_csv(results, check_ids, out / GRADES_FILE)
    write_reports(results, out, check_ids, reference_accuracy=reference_accuracy)
    return {
        "results": out / RESULTS_FILE,
        "grades": out / GRADES_FILE,
        "reports": out / "reports",
        "index": out / "index.html",
    }
