"""Self-check: one student's notebook, graded as the batch would, told in the terminal.

:func:`check_notebook` runs it under the same sandbox and rubric (quick mode unless
asked otherwise) but only the visible checks: a ``hidden = true`` check runs in batch
grading alone, and no word of it reaches the student. :func:`check_static` gives in
well under a second what reading the code can prove, each verdict marked as such.
:func:`checklist` turns the outcome into the lines printed by ``grader check``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from grader.checks.accuracy import CHECK_ACCURACY
from grader.checks.dispatch import decide
from grader.checks.facts import Facts
from grader.checks.notes import find_notes
from grader.errors import UsageError
from grader.intake.notebooks import load_submission
from grader.outputs.names import self_check_report_path
from grader.results import (
    SOURCE_NONE,
    SOURCE_STATIC,
    STATUS_INVALID,
    CheckResult,
    SubmissionResult,
    encodable,
)
from grader.rubric.schema import CheckSpec, Rubric, load_rubric
from grader.static.facts import analyze_notebook

if TYPE_CHECKING:
    from grader.batch.pipeline import GradingContext

MODE_STATIC = "static"
"""Status and mode of a ``--static`` result: nothing ran."""
MSG_NOT_STATIC = "Not checked without running the notebook (run `grader check` without --static)."
MSG_HIDDEN = "{n} hidden check(s) not run here: your instructor runs them when grading."
MSG_ALL_PASSED = "All {n} checks passed."
MSG_SOME_FAILED = "{failed} of {n} checks not passed."
MSG_NOT_ALL_RUN = "{passed} of {n} checks passed; {skipped} not run here."
MSG_RAN_PASSED = "The {n} automatic checks passed."
MSG_NOTHING = "No check could be run on this notebook."
MSG_NO_NOTEBOOK = "{path}: no such notebook"
MSG_RUNNING_REFERENCE = "Reference solution ({mode} mode): stored figures, or running it once"
MSG_PRE_SCORED = "{n} written answer(s) pre-scored: your instructor reviews them."
PASS_MARK, FAIL_MARK, SKIP_MARK, REVIEW_MARK = "PASS", "FAIL", "----", "NOTE"


@dataclass
class CheckRequest:
    """One ``grader check`` invocation."""

    notebook: Path
    """The student's saved notebook."""
    rubric: Path
    """The rubric file."""
    full: bool = False
    """No caps: as long as the real grading (else the self-check's own caps)."""
    static: bool = False
    """Read the code only; run nothing, write no report."""
    out: Path | None = None
    """Folder for the HTML report (None: next to the notebook)."""
    cache: Path | None = None
    """Cache folder for the kit and the reference's figures."""


@dataclass
class SelfCheck:
    """What ``grader check`` found."""

    result: SubmissionResult
    """The verdicts of the visible checks (hidden ones are not in it)."""
    hidden: int
    """How many rubric checks are hidden and were not run."""
    static_only: bool
    """True for ``--static``: nothing was executed."""
    report: Path | None = None
    """The HTML report written (None for ``--static``)."""

    @property
    def not_run(self) -> list[CheckResult]:
        return [c for c in self.result.checks if c.source == SOURCE_NONE and self.static_only]

    @property
    def failed(self) -> list[CheckResult]:
        return [
            c for c in self.result.checks if not c.passed and not c.review and c not in self.not_run
        ]

    @property
    def pre_scored(self) -> list[CheckResult]:
        """Written answers: pre-scored here, decided by the instructor."""
        return [c for c in self.result.checks if c.review]

    @property
    def ok(self) -> bool:
        """No visible check that ran failed (the exit status of ``grader check``)."""
        return self.result.status != STATUS_INVALID and not self.failed

    @property
    def all_passed(self) -> bool:
        """Every check passed and none was left out: the only case that says "all passed"."""
        return self.ok and not self.not_run and not self.hidden and not self.pre_scored


PRIVATE_FIELDS = ("identity", "provenance")
"""What a self-check's JSON leaves out of the stored record (nothing a student needs)."""


def as_json(outcome: SelfCheck) -> str:
    """``grader check --format json``: the outcome and the visible checks' record."""
    record = {k: v for k, v in outcome.result.to_record().items() if k not in PRIVATE_FIELDS}
    summary = {
        "ok": outcome.ok,
        "all_passed": outcome.all_passed,
        "static": outcome.static_only,
        "hidden_not_run": outcome.hidden,
        "failed": [c.id for c in outcome.failed],
        "not_run": [c.id for c in outcome.not_run],
        "pre_scored": [c.id for c in outcome.pre_scored],
        "report": str(outcome.report) if outcome.report else None,
        "result": record,
    }
    return json.dumps(summary, ensure_ascii=False, indent=1)


def self_check(
    request: CheckRequest,
    say: Callable[[str], None] = print,
    warn: Callable[[str], None] | None = None,
) -> SelfCheck:
    """What ``grader check`` does: the rubric, then the static verdicts, or a run in the
    sandbox (quick caps unless ``full``) with its HTML report written.

    Raises :class:`~grader.errors.UsageError` for a missing rubric or notebook, and
    (``static`` only) :class:`~grader.errors.SubmissionError` for a notebook that
    cannot be read; a run turns that into the result instead.
    """
    rubric = load_rubric(request.rubric)
    if not request.notebook.is_file():
        raise UsageError(MSG_NO_NOTEBOOK.format(path=request.notebook))
    if request.static:
        return check_static(request.notebook, rubric)
    return _run_and_report(request, rubric, say, warn or say)


def _run_and_report(
    request: CheckRequest, rubric: Rubric, say: Callable[[str], None], warn: Callable[[str], None]
) -> SelfCheck:
    from grader.batch.classrun import grading_context, reference_figures, run_settings
    from grader.files import atomic_write_text
    from grader.outputs.report import render_report
    from grader.rubric.limits import MODE_CHECK, MODE_FULL
    from grader.run.machine import tell_student

    tell_student(warn)
    visible, hidden = visible_rubric(rubric)
    mode = MODE_FULL if request.full else MODE_CHECK
    inputs = [request.notebook, *filter(None, [request.out])]
    settings, digest = run_settings(visible, mode, request.cache, 1, say, *inputs)
    figures = None
    if any(c.id == CHECK_ACCURACY for c in visible.checks):
        if visible.reference_notebook is not None:
            say(MSG_RUNNING_REFERENCE.format(mode=mode))
        figures = reference_figures(visible, settings, request.cache, digest, mode, lambda _: None)
    ctx = grading_context(visible, settings, figures, mode)
    outcome = check_notebook(request.notebook, ctx, hidden)
    outcome.report = self_check_report_path(
        request.out or request.notebook.parent, request.notebook
    )
    atomic_write_text(outcome.report, render_report(outcome.result, ctx.reference_accuracy))
    return outcome


def visible_rubric(rubric: Rubric) -> tuple[Rubric, int]:
    """The rubric without its hidden checks, and how many there were (those marked
    ``hidden`` and those a published student rubric left out)."""
    visible = tuple(c for c in rubric.checks if not c.hidden)
    hidden = len(rubric.checks) - len(visible) + rubric.hidden_checks
    return dataclasses.replace(rubric, checks=visible), hidden


def check_static(path: Path, rubric: Rubric) -> SelfCheck:
    """Verdicts from the code alone; raises :class:`~grader.errors.SubmissionError`."""
    start = time.monotonic()
    visible, hidden = visible_rubric(rubric)
    submission = load_submission(path, limits=rubric.limits)
    facts = Facts(static=analyze_notebook(submission.nb), notebook=submission.nb)
    checks = [_static_verdict(spec, facts) for spec in visible.checks]
    result = SubmissionResult(
        student=submission.student,
        file=encodable(path.name),
        sha256=submission.sha256,
        status=MODE_STATIC,
        score=sum(c.score for c in checks),
        max_score=sum(c.max_score for c in checks),
        checks=checks,
        mode=MODE_STATIC,
        notes=find_notes(submission.nb),
    )
    result.duration_s = round(time.monotonic() - start, 3)
    return SelfCheck(result=result, hidden=hidden, static_only=True)


def _static_verdict(spec: CheckSpec, facts: Facts) -> CheckResult:
    if spec.id == CHECK_ACCURACY:
        return CheckResult(
            id=spec.id, passed=False, score=0.0, max_score=spec.points,
            message=MSG_NOT_STATIC, source=SOURCE_NONE, title=spec.title,
        )  # fmt: skip
    verdict = decide(spec, facts)
    verdict.source = SOURCE_STATIC if verdict.source != SOURCE_NONE else SOURCE_NONE
    return verdict


def check_notebook(path: Path, ctx: GradingContext, hidden: int) -> SelfCheck:
    """Run the notebook like the batch does; ``ctx`` holds the visible rubric only."""
    from grader.batch.pipeline import grade_one

    return SelfCheck(result=grade_one(path, ctx), hidden=hidden, static_only=False)


def checklist(check: SelfCheck) -> list[str]:
    """The terminal lines: one per visible check, then notes, errors and the summary."""
    r = check.result
    lines = [f"{r.student}: {r.score:g}/{r.max_score:g} ({r.mode}; status {r.status})"]
    if r.message:
        lines.append(f"  {r.message}")
    for c in r.checks:
        mark = SKIP_MARK if c in check.not_run else (PASS_MARK if c.passed else FAIL_MARK)
        mark = REVIEW_MARK if c.review else mark
        where = _cell_to_look_at(c)
        lines.append(f"[{mark}] {c.title or c.id}  {c.score:g}/{c.max_score:g}  ({c.source})")
        lines.append(f"       {c.message}")
        if not c.passed and c.hint and c not in check.not_run and not c.review:
            lines.append(f"       Hint: {c.hint}" + (f" Look at cell {where}." if where else ""))
    for note in r.notes:
        lines.append(f"Note, cell {note.cell + 1} line {note.line}: {note.text}")
    for error in r.errors:
        lines.append(f"Error in cell {error.cell + 1}: {error.ename}: {error.evalue[:200]}")
        if error.advice:
            lines.append(f"       Fix: {error.advice}")
    lines.append(summary(check))
    return lines


def summary(check: SelfCheck) -> str:
    n = len(check.result.checks) - len(check.pre_scored)
    skipped = len(check.not_run)
    if check.all_passed:
        text = MSG_ALL_PASSED.format(n=n)
    elif check.failed:
        text = MSG_SOME_FAILED.format(failed=len(check.failed), n=n)
    elif n == 0:
        text = MSG_NOTHING
    elif skipped == 0:
        text = MSG_RAN_PASSED.format(n=n)
    else:
        text = MSG_NOT_ALL_RUN.format(passed=n - skipped, n=n, skipped=skipped)
    if check.pre_scored:
        text += " " + MSG_PRE_SCORED.format(n=len(check.pre_scored))
    if check.hidden:
        text += " " + MSG_HIDDEN.format(n=check.hidden)
    return text


def _cell_to_look_at(check: CheckResult) -> int | None:
    cells = [e.cell for e in check.evidence if e.cell is not None]
    return cells[0] + 1 if cells else None
