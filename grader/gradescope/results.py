"""One submission's ``results.json``, as Gradescope's autograder specification has it.

Top level: ``score`` (the total; Gradescope takes it over the tests' sum),
``execution_time`` (seconds), ``output`` (text for the whole submission),
``output_format``, ``stdout_visibility``, ``tests`` and, when the bundle asks,
``leaderboard``. Each test: ``name``, ``number``, ``score``, ``max_score``, ``status``
(``passed`` / ``failed``), ``output`` and ``visibility`` (``visible``; a hidden check
``after_published``, its name and text withheld).
"""

from __future__ import annotations

from typing import Any

from grader.results import STATUS_GRADED, SubmissionResult

VISIBLE, HIDDEN = "visible", "after_published"
STATUSES = ("passed", "failed")
VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")
"""The visibilities Gradescope knows."""
HIDDEN_NAME = "Hidden check"
LEADERBOARD_NAME = "Measured accuracy"
TEXT = "text"
MSG_STATUS = "Status: {status}"
MSG_NOT_GRADED = "The notebook did not run to the end ({status}): {message}"


def gradescope_results(
    result: SubmissionResult, leaderboard: bool = False, notes: list[str] | None = None
) -> dict[str, Any]:
    """``results.json`` for ``result`` (hidden checks after publishing); with
    ``leaderboard``, the measured accuracy as a leaderboard entry; ``notes`` go first in
    the submission's output."""
    tests = [_test(index, check) for index, check in enumerate(result.checks, start=1)]
    data: dict[str, Any] = {
        "score": result.score,
        "execution_time": round(result.duration_s),
        "output": "\n".join([*(notes or []), _summary(result)]),
        "output_format": TEXT,
        "test_output_format": TEXT,
        "stdout_visibility": "hidden",
        "tests": tests,
    }
    measured = result.accuracy.get("measured")
    if leaderboard and isinstance(measured, (int, float)):
        data["leaderboard"] = [{"name": LEADERBOARD_NAME, "value": measured, "order": "desc"}]
    return data


def no_notebook_results(message: str) -> dict[str, Any]:
    """``results.json`` for a submission with nothing to grade: 0 points, saying why."""
    return {"score": 0.0, "execution_time": 0, "output": message, "output_format": TEXT,
            "test_output_format": TEXT, "stdout_visibility": "hidden", "tests": []}  # fmt: skip


def _test(index: int, check: Any) -> dict[str, Any]:
    return {
        "name": HIDDEN_NAME if check.hidden else (check.title or check.id),
        "number": str(index),
        "score": check.score,
        "max_score": check.max_score,
        "status": STATUSES[0] if check.passed else STATUSES[1],
        "output": "" if check.hidden else " ".join(filter(None, [check.message, check.hint])),
        "visibility": HIDDEN if check.hidden else VISIBLE,
    }


def _summary(result: SubmissionResult) -> str:
    if result.status != STATUS_GRADED:
        return MSG_NOT_GRADED.format(status=result.status, message=result.message or "")
    return MSG_STATUS.format(status=result.status)
