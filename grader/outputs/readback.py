"""A stored result read back as data, not trusted: one bad record is one student's row.

Results come back from the results store and from ``results.jsonl``, which grader wrote
but which sit on disk between runs. :func:`well_formed` re-reads a result's model tree
as the probe's typed tree (:func:`grader.checks.facts.model_record`: a parameter count
that is a string reads as zero) and turns a result whose own fields have the wrong types
into that student's ``error`` row (:func:`damaged`), so that no page or export of the
class fails on it. No heavy imports: the pages, the spreadsheets and the self-check use it.
"""

from __future__ import annotations

from typing import Any

from grader.checks.facts import model_record
from grader.results import STATUS_ERROR, SubmissionResult, encodable

MSG_DAMAGED = "the stored result cannot be shown ({detail}); grade this student again (--force)"
FLAG_DAMAGED = "result_damaged"
TEXT_FIELDS = ("student", "file", "sha256", "status", "message", "mode", "graded_at")
NUMBER_FIELDS = ("score", "max_score", "duration_s")


def damaged(student: Any, file: Any, problem: str, sha256: Any = "") -> SubmissionResult:
    """The ``error`` row of a student whose stored result cannot be shown, saying why."""
    result = SubmissionResult.without_results(
        _text(student) or "unknown",
        _text(file),
        _text(sha256),
        STATUS_ERROR,
        MSG_DAMAGED.format(detail=encodable(problem)[:300]),
    )
    result.flags.append(FLAG_DAMAGED)
    return result


def _text(value: Any) -> str:
    return encodable(value) if isinstance(value, str) else ""


def well_formed(result: SubmissionResult) -> SubmissionResult:
    """``result`` with its model tree re-read as typed (wrong fields absent or zero), or,
    when its own fields have the wrong types, that student's :func:`damaged` row."""
    problem = _type_problem(result)
    if problem:
        return damaged(result.student, result.file, problem, result.sha256)
    result.model = model_record(result.model)
    return result


def _type_problem(result: SubmissionResult) -> str | None:
    """What is of the wrong type in ``result`` (None: what the outputs read is sound)."""
    for name in TEXT_FIELDS:
        if not isinstance(getattr(result, name), str):
            return f"{name} is not text"
    for name in NUMBER_FIELDS:
        if not _number(getattr(result, name)):
            return f"{name} is not a number"
    lists = (result.flags, result.remarks, result.checks, result.errors, result.cell_times)
    if not all(isinstance(items, list) for items in lists):
        return "a list field is not a list"
    if not all(isinstance(text, str) for text in [*result.flags, *result.remarks]):
        return "a flag or remark is not text"
    if not isinstance(result.accuracy, dict) or not isinstance(result.late, dict):
        return "accuracy or late is not an object"
    for name in ("provenance", "identity"):
        table = getattr(result, name)
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            return f"{name} is not an object of text"
    for check in result.checks:
        numbers = _number(check.score) and _number(check.max_score)
        texts = all(isinstance(t, str) for t in (check.id, check.message, check.title, check.hint))
        if not (numbers and texts and isinstance(check.passed, bool)):
            return f"check {check.id!r} has a field of the wrong type"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
