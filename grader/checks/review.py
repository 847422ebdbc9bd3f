"""After the automatic verdicts: instructor overrides, late penalties, the final score.

* ``OUT/overrides.csv`` (``student,check,points,comment``) is applied by ``grader report
  OUT`` (and by ``grader grade`` when it exists): the check's points become the
  instructor's, the comment is shown, the check is marked reviewed, and the automatic
  points are kept beside the final ones. Changing the file and running ``grader report``
  again starts from the automatic points, so an override can be changed or removed.
* Lateness: the submission time comes from the LMS file name (the rubric's pattern),
  else the file's modification time; every started day after the deadline (and its
  grace minutes) costs ``penalty_per_day`` of the maximum score, up to ``max_penalty``.
* :func:`finalize` sums it up: ``auto_score`` (automatic), ``score`` (final).
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.errors import UsageError
from grader.intake.lms import CANVAS_PATTERN, MOODLE_PATTERN
from grader.results import SubmissionResult, total_score
from grader.rubric.schema import LatePolicy

OVERRIDES_FILE = "overrides.csv"
OVERRIDE_COLUMNS = ("student", "check", "points", "comment")
FLAG_REVIEW = "review_suggested"
FLAG_LATE = "late"
SOURCE_NAME, SOURCE_FILE_TIME = "file_name", "file_time"
NO_TIME_NAMES = (CANVAS_PATTERN, MOODLE_PATTERN)
"""LMS names that carry no time: the student's own file name follows their prefix."""
MSG_COLUMNS = "{path}: expected the columns {columns}"
MSG_POINTS = "{path}, line {line}: points must be a number, got {value!r}"
MSG_UNKNOWN = "{path}, line {line}: no {what} {name!r} in the results"


@dataclass(frozen=True)
class Override:
    """One row of ``overrides.csv``."""

    student: str
    check: str
    points: float
    comment: str
    line: int


def read_overrides(path: Path) -> list[Override]:
    """The instructor's overrides; a malformed file is a usage error naming the line."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not set(OVERRIDE_COLUMNS[:3]) <= set(reader.fieldnames):
            raise UsageError(MSG_COLUMNS.format(path=path, columns=",".join(OVERRIDE_COLUMNS)))
        overrides = []
        for line, row in enumerate(reader, start=2):
            try:
                points = float(row["points"])
            except (TypeError, ValueError) as exc:
                message = MSG_POINTS.format(path=path, line=line, value=row["points"])
                raise UsageError(message) from exc
            if not math.isfinite(points):
                raise UsageError(MSG_POINTS.format(path=path, line=line, value=row["points"]))
            comment = (row.get("comment") or "").strip()
            overrides.append(
                Override(row["student"].strip(), row["check"].strip(), points, comment, line)
            )
    return overrides


def apply_overrides(results: list[SubmissionResult], overrides: list[Override], path: Path) -> None:
    """Reset every check to its automatic points, then apply ``overrides`` (the last row wins)."""
    by_student = {r.student: r for r in results}
    for result in results:
        for check in result.checks:
            if check.auto_score is not None:
                check.score, check.auto_score = check.auto_score, None
                check.passed = check.score >= check.max_score and not check.review
            check.reviewed, check.comment = False, ""
    for override in overrides:
        result = by_student.get(override.student)
        if result is None:
            raise UsageError(MSG_UNKNOWN.format(path=path, line=override.line, what="student",
                                                name=override.student))  # fmt: skip
        check = next((c for c in result.checks if c.id == override.check), None)
        if check is None:
            raise UsageError(MSG_UNKNOWN.format(path=path, line=override.line, what="check",
                                                name=override.check))  # fmt: skip
        if check.auto_score is None:
            check.auto_score = check.score
        check.score = max(0.0, min(override.points, check.max_score))
        check.passed = check.score >= check.max_score
        check.reviewed, check.comment = True, override.comment


def submission_time(path: Path, policy: LatePolicy) -> tuple[_dt.datetime, str]:
    """When the file was submitted: from the part of its name an LMS wrote when that carries
    a time (the pattern is matched from the start; Canvas and Moodle names carry none, so
    what follows their prefix, the student's own name, is never read), else its mtime."""
    written_by_lms = not any(re.match(p, path.name) for p in NO_TIME_NAMES)
    match = re.match(policy.name_time_pattern, path.name) if written_by_lms else None
    if match and match.groupdict().get("time"):
        try:
            moment = _dt.datetime.strptime(match.group("time"), policy.name_time_format)
            return moment.replace(tzinfo=_dt.timezone.utc), SOURCE_NAME
        except ValueError:
            pass
    return _dt.datetime.fromtimestamp(os.stat(path).st_mtime, _dt.timezone.utc), SOURCE_FILE_TIME


def lateness(submitted: _dt.datetime, policy: LatePolicy, max_score: float) -> tuple[int, float]:
    """(started days late, points lost): zero up to the deadline plus its grace."""
    assert policy.due is not None
    late_by = submitted - policy.due - _dt.timedelta(minutes=policy.grace_minutes)
    if late_by <= _dt.timedelta(0):
        return 0, 0.0
    days = math.ceil(late_by / _dt.timedelta(days=1))
    share = min(days * policy.penalty_per_day, policy.max_penalty)
    return days, round(share * max_score, 2)


def submission_late(path: Path, policy: LatePolicy | None) -> dict[str, Any]:
    """When the file was submitted (``submitted_at``, ``source``), for a rubric with a
    deadline; empty without one or when the file's time cannot be read."""
    if policy is None or policy.due is None:
        return {}
    try:
        moment, source = submission_time(path, policy)
    except OSError:
        return {}
    return {"submitted_at": moment.isoformat(timespec="seconds"), "source": source}


def finalize(result: SubmissionResult, policy: LatePolicy | None) -> SubmissionResult:
    """The final score: checks (after overrides) less the late penalty; flags to match."""
    result.auto_score = round(total_score(result.checks, automatic=True), 2)
    total = total_score(result.checks)
    penalty = 0.0
    result.flags = [f for f in result.flags if f not in (FLAG_REVIEW, FLAG_LATE)]
    if policy is not None and policy.due is not None and result.late.get("submitted_at"):
        submitted = _dt.datetime.fromisoformat(result.late["submitted_at"])
        days, penalty = lateness(submitted, policy, result.max_score)
        result.late.update(due=policy.due.isoformat(timespec="seconds"), days_late=days,
                           penalty=penalty)  # fmt: skip
        if days:
            result.flags.append(FLAG_LATE)
    if any(c.review and not c.reviewed for c in result.checks):
        result.flags.append(FLAG_REVIEW)
    result.score = round(max(0.0, total - penalty), 2)
    return result
