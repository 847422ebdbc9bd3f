"""The pipeline: intake -> static analysis -> execution -> checks -> scores -> outputs.

:func:`grade_one` reads as that line. A submission that cannot be graded becomes a
result with a status and a message; :func:`grade_guarded` never raises, so a batch
(:mod:`grader.batch.runners`) never loses a row.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import nbformat

from grader.checks.accuracy import (
    accuracy_flags,
    decide,
    printed_accuracy,
    self_reported_accuracy,
)
from grader.checks.notes import advise, find_notes
from grader.checks.review import finalize, record_submission_time
from grader.checks.structural import Facts
from grader.errors import SubmissionError
from grader.intake.notebooks import Submission, file_digest, load_submission, student_id
from grader.measure.client import measure_model, prestart
from grader.results import (
    PRECEDENCE,
    STATUS_ERROR,
    STATUS_GRADED,
    STATUS_KERNEL_DIED,
    STATUS_OUT_OF_MEMORY,
    STATUS_STDIN,
    STATUS_TIMEOUT,
    STATUS_TRUNCATED,
    CheckResult,
    SubmissionResult,
)
from grader.rubric.schema import Rubric
from grader.run.execute import Execution, RunSettings, run_notebook
from grader.static.facts import analyze_notebook

EXECUTED_DIR = "executed"
FLAG_GRADER_FAILED = "grader_failed"
"""grader itself failed on this submission: the result is not stored, the next run retries."""
MSG_INTERNAL = "grader failed on this submission (a grader bug, please report): {error}"
MSG_CELL_ERROR = "cell {cell} raised {ename}: {evalue}"


@dataclass(frozen=True)
class GradingContext:
    """What every submission of a batch is graded against."""

    rubric: Rubric
    settings: RunSettings
    reference_accuracy: float | None
    out: Path | None
    mode: str


def grade_one(path: Path, ctx: GradingContext, student: str | None = None) -> SubmissionResult:
    """Grade one notebook file: load, analyse, execute, check, score, write.

    ``student`` is the id intake gave the file (an LMS name); by default, the file name.
    """
    start = time.monotonic()
    try:
        submission = load_submission(path, student)
    except SubmissionError as exc:
        result = _without_results(path, exc.status, str(exc), start, ctx.mode)
        result.max_score = ctx.rubric.max_score
        result.student = student or result.student
        return result
    facts = Facts(static=analyze_notebook(submission.nb), notebook=submission.nb)
    prestart(ctx.settings.kit.holdout, ctx.settings.threads)
    run = run_notebook(submission.nb, path.name, ctx.settings)
    try:
        gather_runtime(facts, run, ctx)
        checks = [decide(spec, facts) for spec in ctx.rubric.checks]
        result = assemble(submission, checks, run, ctx.mode)
        result.flags += flags_for(ctx.rubric, facts)
        result.accuracy = accuracy_figures(facts)
        result.notes = find_notes(submission.nb)
        for error in result.errors:
            error.advice = advise(error)
        record_submission_time(result, path, ctx.rubric.late)
        finalize(result, ctx.rubric.late)
        if ctx.out is not None:
            try:
                write_executed(run.nb, ctx.out, result.student)
            except OSError as exc:
                result.flags.append("executed_not_written")
                result.message = "; ".join(filter(None, [result.message, str(exc)]))
    finally:
        run.cleanup()
    result.duration_s = round(time.monotonic() - start, 2)
    return result


def gather_runtime(facts: Facts, run: Execution, ctx: GradingContext) -> None:
    """Runtime and measured evidence: the probe's records, then the trusted evaluator."""
    facts.events = run.events
    facts.reference_accuracy = ctx.reference_accuracy
    facts.reported = self_reported_accuracy(run.events)
    facts.printed = printed_accuracy(run.nb)
    if run.model_path is not None:
        facts.measured = measure_model(run.model_path, run.events, ctx.settings)


def flags_for(rubric: Rubric, facts: Facts) -> list[str]:
    spec = next((c for c in rubric.checks if c.id == "accuracy"), None)
    return accuracy_flags(spec, facts) if spec is not None else []


def accuracy_figures(facts: Facts) -> dict[str, float | str | None]:
    figures: dict[str, float | str | None] = {
        "measured": (facts.measured or {}).get("accuracy"),
        "self_reported": facts.reported,
        "printed": facts.printed,
        "reference": facts.reference_accuracy,
    }
    if facts.measured and facts.measured.get("error"):
        figures["measured_error"] = facts.measured["error"]
    return figures


def assemble(
    submission: Submission, checks: list[CheckResult], run: Execution, mode: str
) -> SubmissionResult:
    """The result of a submission that ran (whatever happened while it ran)."""
    flags = list(submission.notes and ["nbformat_upgraded"]) + run_flags(run)
    if run.probe_error:
        flags.append("probe_failed")
    if not any(e.get("event") == "fit" for e in run.events):
        flags.append("no_training")
    conditions = {
        STATUS_OUT_OF_MEMORY: run.out_of_memory,
        STATUS_KERNEL_DIED: run.kernel_died is not None,
        STATUS_TIMEOUT: bool(run.timed_out) or run.notebook_timeout,
        STATUS_STDIN: bool(run.stdin_requested),
        STATUS_ERROR: bool(run.errors),
        STATUS_TRUNCATED: bool(run.truncated),
        STATUS_GRADED: True,
    }
    status = next(s for s in PRECEDENCE if conditions[s])
    message = "; ".join(run.messages)
    if not message and run.errors:
        first = run.errors[0]
        message = MSG_CELL_ERROR.format(
            cell=first.cell + 1, ename=first.ename, evalue=first.evalue[:200]
        )
    return SubmissionResult(
        student=submission.student,
        file=submission.path.name,
        sha256=submission.sha256,
        status=status,
        score=round(sum(c.score for c in checks), 2),
        max_score=sum(c.max_score for c in checks),
        checks=checks,
        errors=run.errors,
        flags=flags,
        message=message,
        mode=mode,
        graded_at=_now(),
        cell_times=run.cell_times,
        training=training_phases(run.events),
        peak_memory_mb=run.peak_memory_mb,
        model=next(
            (e["model"] for e in reversed(run.events) if e.get("event") == "fit" and "model" in e),
            None,
        ),
    )


def run_flags(run: Execution) -> list[str]:
    """One flag per condition the run hit (several may apply; the status names the worst)."""
    named = {
        "cell_timeout": bool(run.timed_out),
        "notebook_timeout": run.notebook_timeout,
        "kernel_died": run.kernel_died is not None,
        "out_of_memory": run.out_of_memory,
        "stdin_requested": bool(run.stdin_requested),
        "cell_errors": bool(run.errors),
        "output_truncated": bool(run.truncated),
    }
    return [flag for flag, hit in named.items() if hit]


def training_phases(events: list[dict]) -> list[dict]:
    """One entry per fit: optimizer, learning rate, epochs asked and run, history."""
    phases: list[dict] = []
    for event in events:
        if event.get("event") == "fit":
            optimizer = event.get("optimizer") or {}
            phases.append(
                {
                    "optimizer": optimizer.get("class"),
                    "learning_rate": optimizer.get("learning_rate"),
                    "epochs_requested": event.get("epochs_requested"),
                    "epochs": 0,
                    "history": {},
                    "completed": False,
                }
            )
        elif event.get("event") == "fit_end" and phases:
            phases[-1].update(
                epochs=event.get("epochs_run"), history=event.get("history", {}), completed=True
            )
    return phases


def write_executed(nb: nbformat.NotebookNode, out: Path, student: str) -> Path:
    from grader.outputs.report import report_filename

    path = out / EXECUTED_DIR / f"{report_filename(student)}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    nbformat.write(nb, partial)
    os.replace(partial, path)  # a batch killed mid-write leaves the old file or the new one
    return path


def grade_guarded(path: Path, ctx: GradingContext, student: str | None = None) -> SubmissionResult:
    """:func:`grade_one`, with a crash inside grader turned into that student's result."""
    start = time.monotonic()
    try:
        return grade_one(path, ctx, student)
    except Exception as exc:  # noqa: BLE001 - one submission must never stop the batch
        detail = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
        return internal_error(path, ctx, MSG_INTERNAL.format(error=detail), student, start)


def internal_error(
    path: Path,
    ctx: GradingContext,
    message: str,
    student: str | None = None,
    start: float | None = None,
    flag: str = FLAG_GRADER_FAILED,
) -> SubmissionResult:
    """An ``error`` result for a submission grader itself failed on (flagged ``flag``)."""
    result = _without_results(path, STATUS_ERROR, message, start or time.monotonic(), ctx.mode)
    result.max_score = ctx.rubric.max_score
    result.student = student or result.student
    result.flags.append(flag)
    return result


def _without_results(
    path: Path, status: str, message: str, start: float, mode: str
) -> SubmissionResult:
    try:
        digest = file_digest(path)
    except OSError:
        digest = ""
    result = SubmissionResult.without_results(student_id(path), path.name, digest, status, message)
    result.duration_s, result.mode, result.graded_at = (
        round(time.monotonic() - start, 2),
        mode,
        _now(),
    )
    return result


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
