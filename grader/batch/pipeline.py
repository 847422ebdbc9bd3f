"""The pipeline: submission -> static facts -> run -> measurement -> evidence -> verdicts -> score.

:func:`grade` reads as that line, each step a function returning the next step's input.
It writes nothing: the executed notebook comes back beside the result
(:class:`Graded`) and the batch keeps it (:mod:`grader.batch.runners`). A submission
that cannot be graded becomes a result with a status and a message; :func:`grade_guarded`
never raises, so a batch never loses a row.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nbformat

from grader.checks.accuracy import (
    CHECK_ACCURACY,
    accuracy_flags,
    bar_for,
    printed_accuracy,
    self_reported_accuracy,
)
from grader.checks.dispatch import decide
from grader.checks.facts import (
    Facts,
    FitEndEvent,
    FitEvent,
    ProbeEvent,
    history_record,
    parse_events,
)
from grader.checks.measured import Measurement, ReferenceBand
from grader.checks.notes import advise, find_notes
from grader.checks.order import CellOrder
from grader.checks.review import finalize, submission_late
from grader.errors import SubmissionError
from grader.intake.notebooks import Submission, file_digest, load_submission, student_id
from grader.measure.client import start_measuring
from grader.results import (
    PRECEDENCE,
    SOURCE_MEASURED,
    STATUS_ERROR,
    STATUS_GRADED,
    STATUS_KERNEL_DIED,
    STATUS_OUT_OF_MEMORY,
    STATUS_STDIN,
    STATUS_TIMEOUT,
    STATUS_TRUNCATED,
    CheckResult,
    SubmissionResult,
    encodable,
    total_score,
)
from grader.rubric.schema import Rubric
from grader.run.execute import Execution, RunSettings, run_notebook
from grader.static.evidence import StaticFacts
from grader.static.facts import analyze_notebook

FLAG_GRADER_FAILED = "grader_failed"
"""grader itself failed on this submission: the result is not stored, the next run retries."""
FLAG_UPGRADED = "nbformat_upgraded"
FLAG_PROBE_FAILED = "probe_failed"
FLAG_NO_TRAINING = "no_training"
FLAG_EVIDENCE_FORGED = "evidence_forged"
"""Records or a model in the probe's folder that the probe did not write (ignored)."""
FLAG_EVIDENCE_REFUTED = "evidence_refuted"
"""A structural verdict the trusted evaluator's measurement decided against the records."""
MSG_INTERNAL = "grader failed on this submission (a grader bug, please report): {error}"
MSG_CELL_ERROR = "cell {cell} raised {ename}: {evalue}"


@dataclass(frozen=True)
class GradingContext:
    """What every submission of a batch is graded against."""

    rubric: Rubric
    settings: RunSettings
    reference_accuracy: float | None
    out: Path | None
    """The batch's output folder (the batch keeps executed notebooks there); None: none."""
    mode: str
    reference_band: ReferenceBand | None = None
    """The reference's figures over its seeds, per basis (None: ``reference_accuracy``
    alone)."""


@dataclass(frozen=True)
class Graded:
    """What grading one submission produced."""

    result: SubmissionResult
    """The result (whatever happened to the submission)."""
    executed: nbformat.NotebookNode | None = None
    """The executed notebook, probe cells removed; None when the notebook never ran."""


@dataclass(frozen=True)
class RunCondition:
    """Something a run can hit: the flag it sets and the status it leads to."""

    flag: str
    status: str
    hit: Callable[[Execution], bool]


RUN_CONDITIONS = (
    RunCondition("cell_timeout", STATUS_TIMEOUT, lambda run: bool(run.timed_out)),
    RunCondition("notebook_timeout", STATUS_TIMEOUT, lambda run: run.notebook_timeout),
    RunCondition("kernel_died", STATUS_KERNEL_DIED, lambda run: run.kernel_died is not None),
    RunCondition("out_of_memory", STATUS_OUT_OF_MEMORY, lambda run: run.out_of_memory),
    RunCondition("stdin_requested", STATUS_STDIN, lambda run: bool(run.stdin_requested)),
    RunCondition("cell_errors", STATUS_ERROR, lambda run: bool(run.errors)),
    RunCondition("output_truncated", STATUS_TRUNCATED, lambda run: bool(run.truncated)),
    RunCondition("kernel_output_unreadable", STATUS_ERROR, lambda run: bool(run.unreadable)),
    # A full disk fails the student's writes; what the code did not handle is a cell error.
    RunCondition("disk_full", STATUS_GRADED, lambda run: run.disk_full is not None),
)
"""Every condition a run can hit, in the order of its flags; several may apply, and the
status is the first of :data:`~grader.results.PRECEDENCE` among those hit."""


def grade(path: Path, ctx: GradingContext, student: str | None = None) -> Graded:
    """Grade one notebook file, step by step; ``student`` is the id intake gave the file
    (an LMS name), by default its file name."""
    start = time.monotonic()
    try:
        submission = load_submission(path, student, ctx.rubric.limits)
        return graded(submission, path, ctx, start)
    except SubmissionError as exc:  # this student's doing: stored like any verdict
        return Graded(refused(path, ctx, exc.status, str(exc), student, start))


def graded(submission: Submission, path: Path, ctx: GradingContext, start: float) -> Graded:
    """:func:`grade` past intake: run, measure, decide, assemble."""
    static = analyze_notebook(submission.nb)
    measuring = start_measuring(ctx.settings)  # its evaluator loads while the notebook runs
    run = run_notebook(submission.nb, encodable(path.name), ctx.settings)
    try:
        events = parse_events(run.events)
        measured = measuring.measure(run.model_path, events)
    finally:
        run.cleanup()
    facts = evidence(submission, static, run, events, measured, ctx)
    checks = [decide(spec, facts) for spec in ctx.rubric.checks]
    result = assemble(submission, run, facts, checks, ctx, start)
    return Graded(finalize(result, ctx.rubric.late), run.nb)


def grade_one(path: Path, ctx: GradingContext, student: str | None = None) -> SubmissionResult:
    """:func:`grade`'s result alone, for a caller that keeps no executed notebook."""
    return grade(path, ctx, student).result


def evidence(
    submission: Submission,
    static: StaticFacts,
    run: Execution,
    events: list[ProbeEvent],
    measured: Measurement | None,
    ctx: GradingContext,
) -> Facts:
    """All the evidence: the code, the probe's records, the measurement, the printed
    figure, and the reference's figures to compare with."""
    return Facts(
        static=static,
        notebook=submission.nb,
        events=events,
        reference_accuracy=ctx.reference_accuracy,
        reference_band=ctx.reference_band,
        measured=measured,
        printed=printed_accuracy(run.nb),
        reported=self_reported_accuracy(events),
    )


def assemble(
    submission: Submission,
    run: Execution,
    facts: Facts,
    checks: list[CheckResult],
    ctx: GradingContext,
    start: float,
) -> SubmissionResult:
    """The result of a submission that ran (whatever happened while it ran), before the
    final score (:func:`~grader.checks.review.finalize`)."""
    order = CellOrder.of(submission.nb.cells) if run.errors else None
    return SubmissionResult(
        student=submission.student,
        file=encodable(submission.path.name),
        sha256=submission.sha256,
        status=run_status(run),
        score=round(total_score(checks), 2),
        max_score=sum(c.max_score for c in checks),
        checks=checks,
        errors=[dataclasses.replace(e, advice=advise(e, order)) for e in run.errors],
        flags=result_flags(submission, run, facts, ctx.rubric, checks),
        message=run_message(run),
        mode=ctx.mode,
        graded_at=_now(),
        cell_times=run.cell_times,
        accuracy=accuracy_figures(facts, ctx.rubric),
        training=training_phases(facts.events),
        model=last_model(facts.events),
        notes=find_notes(submission.nb),
        peak_memory_mb=run.peak_memory_mb,
        late=submission_late(submission.path, ctx.rubric.late),
        duration_s=round(time.monotonic() - start, 2),
    )


def run_status(run: Execution) -> str:
    """The worst condition the run hit (``graded`` when none)."""
    hit = {c.status for c in RUN_CONDITIONS if c.hit(run)}
    return next(s for s in PRECEDENCE if s in hit or s == STATUS_GRADED)


def run_flags(run: Execution) -> list[str]:
    """One flag per condition the run hit (several may apply; the status names the worst)."""
    return [c.flag for c in RUN_CONDITIONS if c.hit(run)]


def run_message(run: Execution) -> str:
    """What went wrong while it ran, or the first cell error."""
    message = "; ".join(run.messages)
    if not message and run.errors:
        first = run.errors[0]
        message = MSG_CELL_ERROR.format(
            cell=first.cell + 1, ename=first.ename, evalue=first.evalue[:200]
        )
    return message


def result_flags(
    submission: Submission,
    run: Execution,
    facts: Facts,
    rubric: Rubric,
    checks: Sequence[CheckResult] = (),
) -> list[str]:
    """The submission's, the run's, the evidence's and the accuracy check's flags, in
    that order."""
    flags = [FLAG_UPGRADED] if submission.notes else []
    flags += run_flags(run)
    if run.probe_error:
        flags.append(FLAG_PROBE_FAILED)
    if run.evidence_forged:
        flags.append(FLAG_EVIDENCE_FORGED)
    if any(c.source == SOURCE_MEASURED and c.id != CHECK_ACCURACY for c in checks):
        flags.append(FLAG_EVIDENCE_REFUTED)
    if not any(isinstance(e, FitEvent) for e in facts.events):
        flags.append(FLAG_NO_TRAINING)
    spec = next((c for c in rubric.checks if c.id == CHECK_ACCURACY), None)
    return flags + (accuracy_flags(spec, facts) if spec is not None else [])


def accuracy_figures(facts: Facts, rubric: Rubric) -> dict[str, float | str | None]:
    """The accuracy figures a result shows: measured, self-reported, printed, reference;
    with the reference's seeds, what the figure was compared with (the basis, the
    reference's lowest and highest seed, where full points start)."""
    figures: dict[str, float | str | None] = {
        "measured": facts.measured_accuracy,
        "self_reported": facts.reported,
        "printed": facts.printed,
        "reference": facts.reference_accuracy,
    }
    if facts.measured is not None and facts.measured.error:
        figures["measured_error"] = facts.measured.error
    if facts.measured is not None and facts.measured.base is not None:
        figures["base"] = facts.measured.base
    spec = next((c for c in rubric.checks if c.id == CHECK_ACCURACY), None)
    bar = bar_for(spec, facts) if spec is not None and facts.reference_band else None
    if bar is not None:
        figures.update(
            reference=bar.reference,
            reference_final=facts.reference_accuracy,
            basis=bar.basis,
            reference_low=bar.low,
            reference_high=bar.high,
            full_at=bar.full_at,
        )
    return figures


def training_phases(events: Sequence[ProbeEvent]) -> list[dict]:
    """One entry per fit: optimizer, learning rate, epochs asked and run, history."""
    phases: list[dict] = []
    for event in events:
        if isinstance(event, FitEvent):
            optimizer = event.optimizer
            phases.append(
                {
                    "optimizer": optimizer.class_name if optimizer else None,
                    "learning_rate": optimizer.learning_rate if optimizer else None,
                    "epochs_requested": event.epochs_requested,
                    "epochs": 0,
                    "history": {},
                    "completed": False,
                }
            )
        elif isinstance(event, FitEndEvent) and phases:
            history = history_record(event.history)
            phases[-1].update(epochs=event.epochs_run, history=history, completed=True)
    return phases


def last_model(events: Sequence[ProbeEvent]) -> dict | None:
    """The layer tree of the last model trained, as the probe recorded it at its fit."""
    fits = [e.model for e in events if isinstance(e, FitEvent) and e.model is not None]
    return fits[-1].to_record() if fits else None


def grade_guarded(path: Path, ctx: GradingContext, student: str | None = None) -> Graded:
    """:func:`grade`, with a crash inside grader turned into that student's result."""
    start = time.monotonic()
    try:
        return grade(path, ctx, student)
    except Exception as exc:  # one submission must never stop the batch
        detail = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
        return Graded(internal_error(path, ctx, MSG_INTERNAL.format(error=detail), student, start))


def internal_error(
    path: Path,
    ctx: GradingContext,
    message: str,
    student: str | None = None,
    start: float | None = None,
    flag: str = FLAG_GRADER_FAILED,
) -> SubmissionResult:
    """An ``error`` result for a submission grader itself failed on (flagged ``flag``)."""
    result = refused(path, ctx, STATUS_ERROR, message, student, start or time.monotonic())
    result.flags.append(flag)
    return result


def refused(
    path: Path, ctx: GradingContext, status: str, message: str, student: str | None, start: float
) -> SubmissionResult:
    """The result of a submission that was not graded: no checks, the rubric's maximum."""
    try:
        digest = file_digest(path)
    except OSError:
        digest = ""
    result = SubmissionResult.without_results(
        student or student_id(path), encodable(path.name), digest, status, message
    )
    result.max_score = ctx.rubric.max_score
    result.duration_s = round(time.monotonic() - start, 2)
    result.mode, result.graded_at = ctx.mode, _now()
    return result


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
