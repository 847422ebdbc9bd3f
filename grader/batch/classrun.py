"""What ``grader grade`` does, as a library: :func:`grade_class` reads as the pipeline.

intake (folder or LMS zip) -> run settings for the mode -> the reference's figures ->
one job per student, keyed -> the results store answers what it can, workers (local or
Dask) grade the rest -> copy flags, overrides, late penalties -> pages and exports,
rewritten only when something they are made from changed.

The orchestrating process imports no TensorFlow: kernels and the trusted evaluator do.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from grader.batch.classout import (
    MSG_NO_RESULTS,
    OUTPUTS_META,
    apply_review,
    outputs_current,
    outputs_key,
    whole_class,
    write_class_outputs,
)
from grader.batch.pipeline import GradingContext
from grader.batch.progress import Progress, close_log, open_log
from grader.batch.runners import LocalRunner, Runner, default_workers, plan_jobs, run_batch
from grader.batch.store import (
    STORE_FILE,
    BatchKey,
    ResultsStore,
    grader_fingerprint,
)
from grader.errors import UsageError, map_dependency_errors, strerror
from grader.files import lock_file
from grader.intake.lms import Intake, gather
from grader.kit.assets import course_kit, default_cache_dir, ensure_kit, kit_digest
from grader.measure.reference import ReferenceFigures, load_or_run
from grader.outputs.names import LOCK_FILE, RESULTS_FILE
from grader.results import SubmissionResult
from grader.rubric.limits import MODE_CHECK, MODE_FULL
from grader.rubric.schema import Rubric, load_rubric
from grader.run.execute import RunSettings
from grader.run.machine import warn_unenforced
from grader.run.probe import ProbeConfig
from grader.run.runfolders import sweep_stale
from grader.run.sandbox import paths_to_hide

MSG_NO_NOTEBOOKS = "{source}: no .ipynb notebooks found"
MSG_BUSY = "{out}: another grader is writing to this output folder (pid {pid}); wait for it"
MSG_OUT = "{out}: cannot write the output folder ({detail})"
MSG_STALE = "Removed {n} kernel folder(s) left by an interrupted grader"
MSG_REFERENCE = "Reference accuracy ({mode}): {accuracy:.3f}"
MSG_NO_REFERENCE = "No reference notebook in the rubric; published accuracy ({mode}): {accuracy}"
MSG_PEAK_RSS = "orchestrator peak RSS {mb} MB"
MSG_NO_STUDENT = "{source}: no submission from {students} (--student takes the ids grader shows)"


@dataclass
class GradeRequest:
    """One ``grader grade`` invocation."""

    submissions: Path
    """A folder, one notebook, or an LMS bulk-download ``.zip``."""
    rubric: Path
    """The rubric file."""
    out: Path
    """The output folder (results store and log included)."""
    mode: str = MODE_FULL
    """``quick`` or ``full`` (``check`` is the self-check's, :mod:`grader.batch.selfcheck`)."""
    workers: int | None = None
    """Local workers (None: :func:`grader.batch.runners.default_workers`)."""
    force: bool = False
    """Grade again what the results store already has."""
    dask: str | None = None
    """A Dask scheduler's address: grade there instead of locally."""
    cache: Path | None = None
    """Cache folder for the kit and the reference's figures."""
    roster: Path | None = None
    """A Canvas roster for canvas.csv."""
    students: list[str] = field(default_factory=list)
    """Grade only these students of ``submissions`` again (``--student``); the rest of
    the class is kept from the results store."""


@dataclass
class GradeOutcome:
    """What a batch produced."""

    results: list[SubmissionResult]
    """One per student, sorted."""
    written: dict[str, Path] = field(default_factory=dict)
    """The files written; empty when nothing changed since the last run."""
    graded: int = 0
    """Submissions graded in this run (the rest came from the results store)."""


def grade_class(
    request: GradeRequest,
    say: Callable[[str], None] = print,
    warn: Callable[[str], None] | None = None,
) -> GradeOutcome:
    """Grade a class: intake, reference, jobs, store and workers, then the outputs."""
    warn = warn or say
    warn_unenforced(warn)
    with _output_lock(request.out), ResultsStore(request.out / STORE_FILE) as store:
        rubric = load_rubric(request.rubric)
        intake = chosen(gather(request.submissions, request.out, rubric.intake.patterns), request)
        workers = request.workers or default_workers()
        settings, digest = run_settings(
            rubric, request.mode, request.cache, workers, say, request.submissions, request.out
        )
        # Only once the request is known to be good: a usage error is its one line.
        stale = sweep_stale(report=warn)
        if stale:
            warn(MSG_STALE.format(n=stale))
        figures = reference_figures(rubric, settings, request.cache, digest, request.mode, say)
        batch_key = _batch_key(rubric, figures, digest, request)
        jobs = plan_jobs(intake, batch_key)
        ctx = grading_context(rubric, settings, figures, request.mode, request.out)
        logger = open_log(request.out)
        try:
            for problem in intake.problems:
                warn(f"warning: {problem}")
                logger.warning(problem)
            runner = make_runner(request.dask, workers, settings, request.submissions, request.out)
            progress = Progress(len(jobs), workers, logger=logger)
            force = request.force or bool(request.students)
            results = run_batch(jobs, ctx, runner, store, progress, force, batch_key.provenance())
            sweep_stale(report=warn)  # what a worker killed mid-run left (its owner is gone)
            jobs, results = whole_class(store, jobs, results, say)
            outcome = GradeOutcome(results, graded=progress.graded)
            key = outputs_key(jobs, request.out, request.roster, figures)
            if progress.graded or not outputs_current(store, request.out, key):
                outcome.written = write_class_outputs(
                    results, jobs, rubric, figures, request.out, request.roster, say
                )
                store.set_meta(OUTPUTS_META, key)
            logger.info(MSG_PEAK_RSS.format(mb=peak_rss_mb()))
        finally:
            close_log(logger)
    return outcome


def chosen(intake: Intake, request: GradeRequest) -> Intake:
    """The intake, cut to ``request.students`` when named; a :class:`UsageError` when it
    holds no notebook or not every named student."""
    if not intake.entries:
        raise UsageError(MSG_NO_NOTEBOOKS.format(source=request.submissions))
    if not request.students:
        return intake
    wanted = set(request.students)
    missing = sorted(wanted - {entry.student for entry in intake.entries})
    if missing:
        raise UsageError(
            MSG_NO_STUDENT.format(source=request.submissions, students=", ".join(missing))
        )
    entries = [entry for entry in intake.entries if entry.student in wanted]
    return Intake(entries, intake.problems, intake.extracted_to)


def _batch_key(
    rubric: Rubric, figures: ReferenceFigures, digest: str, request: GradeRequest
) -> BatchKey:
    """Everything a stored result depends on besides the notebook (see
    :mod:`grader.batch.store`)."""
    return BatchKey(
        rubric=rubric.digest,
        reference=f"{figures.key}:{figures.accuracy!r}",
        kit=digest,
        mode=request.mode,
        grader=grader_fingerprint(),
    )


@contextlib.contextmanager
def _output_lock(out: Path) -> Iterator[None]:
    """One grader at a time per output folder: a second one is refused, not interleaved."""
    with map_dependency_errors(
        "output folder", lambda exc: UsageError(MSG_OUT.format(out=out, detail=strerror(exc)))
    ):
        out.mkdir(parents=True, exist_ok=True)
        handle = open(out / LOCK_FILE, "a+", encoding="ascii")  # closed by the block below
    with handle as lock:
        if not lock_file(lock, wait=False):
            lock.seek(0)
            raise UsageError(MSG_BUSY.format(out=out, pid=lock.read().strip() or "?")) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def grading_context(
    rubric: Rubric,
    settings: RunSettings,
    figures: ReferenceFigures | None,
    mode: str,
    out: Path | None = None,
) -> GradingContext:
    """What every submission of a run is graded with: the reference's figures (none for a
    rubric without an accuracy check) and ``out``, where executed notebooks go (None
    writes none)."""
    return GradingContext(
        rubric=rubric,
        settings=settings,
        reference_accuracy=figures.accuracy if figures is not None else None,
        reference_band=figures.band() if figures is not None else None,
        out=out,
        mode=mode,
    )


def run_settings(
    rubric: Rubric,
    mode: str,
    cache: Path | None,
    workers: int,
    say: Callable[[str], None],
    *inputs: Path,
) -> tuple[RunSettings, str]:
    """How every notebook of this run executes, and the asset kit's digest."""
    kit = (
        course_kit(rubric.keras_home, rubric.holdout)
        if rubric.keras_home
        else ensure_kit(cache, progress=say)
    )
    caps = rubric.selfcheck if mode == MODE_CHECK else rubric.quick
    probe = ProbeConfig(
        dir=Path("."),
        quick=mode != MODE_FULL,
        max_epochs=caps.max_epochs,
        max_steps_per_epoch=caps.max_steps_per_epoch,
        max_validation_steps=caps.max_validation_steps,
        later_steps=caps.later_fit_steps,
        eager_steps=caps.eager_steps,
        model_variable=next((c.model_variable for c in rubric.checks if c.model_variable), None),
    )
    hidden = paths_to_hide(
        Path.home(),
        Path.cwd(),
        cache or default_cache_dir(),
        rubric.path,
        rubric.reference_notebook,
        rubric.holdout,
        *inputs,
    )
    settings = RunSettings(
        kit=kit,
        limits=rubric.limits,
        hide=hidden,
        probe=probe,
        threads=max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None,
        holdout_images=caps.holdout_images if mode != MODE_FULL else 0,
        mounts=rubric.mounts,
    )
    return settings, kit_digest(kit)


def run_reference(
    rubric_path: Path,
    mode: str,
    cache: Path | None,
    force: bool,
    say: Callable[[str], None] = print,
    warn: Callable[[str], None] | None = None,
) -> ReferenceFigures:
    """What ``grader reference`` does: the reference's figures for ``mode``, run now unless
    fresh ones are stored (``force``: run anyway)."""
    warn_unenforced(warn or say)
    rubric = load_rubric(rubric_path)
    settings, digest = run_settings(rubric, mode, cache, 1, say)
    return load_or_run(rubric, settings, cache or default_cache_dir(), digest, mode, force)


def reference_figures(
    rubric: Rubric,
    settings: RunSettings,
    cache: Path | None,
    digest: str,
    mode: str,
    say: Callable[[str], None],
) -> ReferenceFigures:
    """The reference's figures (run once, then stored), or the rubric's published ones."""
    if rubric.reference_notebook is None:
        accuracy = rubric.published_accuracy.get(mode)
        say(MSG_NO_REFERENCE.format(mode=mode, accuracy=accuracy))
        runs = rubric.published_runs.get(mode, [])
        return ReferenceFigures(f"published:{accuracy}", accuracy, None, None, 0.0, [], runs)
    figures = load_or_run(rubric, settings, cache or default_cache_dir(), digest, mode)
    say(MSG_REFERENCE.format(mode=mode, accuracy=figures.accuracy))
    return figures


def make_runner(
    address: str | None, workers: int, settings: RunSettings, *shared: Path
) -> Callable[[], Runner]:
    """Local worker processes, or the Dask cluster at ``address`` (connected when needed)."""
    if address is None:
        return lambda: LocalRunner(workers)

    def connect() -> Runner:
        from grader.batch.cluster import DaskRunner

        needed = [settings.kit.keras_home, *filter(None, [settings.kit.holdout]), *shared]
        return DaskRunner(address, [p.resolve() for p in needed])

    return connect


def peak_rss_mb() -> int:
    """This process's peak resident memory (the orchestrator's; kernels are not in it)."""
    try:
        import resource
    except ModuleNotFoundError:  # Windows: not measured
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def rebuild_outputs(
    out: Path, rubric_path: Path, roster: Path | None, say: Callable[[str], None] = print
) -> GradeOutcome:
    """What ``grader report`` does: every page and export again from ``OUT/results.jsonl``
    and ``OUT/reference.json``, with the overrides and late penalties (no notebook runs)."""
    from grader.outputs.records import read_results_jsonl
    from grader.outputs.write import ClassInfo, write_outputs

    rubric = load_rubric(rubric_path)
    path = out / RESULTS_FILE
    if not path.exists():
        raise UsageError(MSG_NO_RESULTS.format(path=path))
    results = read_results_jsonl(path)
    apply_review(results, rubric, out, say)
    recorded = (r.accuracy.get("reference") for r in results)
    reference = next((a for a in recorded if a is not None), None)
    info = ClassInfo(rubric.check_ids, rubric.title, reference, roster=roster)
    info.canvas_id = rubric.canvas_id
    info.load_reference(out)
    return GradeOutcome(results, written=write_outputs(results, info, out))
