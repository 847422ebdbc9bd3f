"""Running a batch: which submissions still need grading, where they run, what is kept.

:func:`run_batch` asks the results store which jobs are already finished, hands the
rest to a runner - local worker processes (:class:`LocalRunner`) or a Dask cluster
(:class:`grader.batch.cluster.DaskRunner`) - never more at once than the runner can start,
stores each result the moment it arrives and reports progress. What a worker runs for
one job is :func:`grade_task`: the pipeline, then the executed notebook kept under the
output folder (``executed/``), so the pipeline itself writes nothing.

Whatever goes wrong with one job becomes that student's ``error`` result, never the
batch's. A worker that dies (the OOM killer, a crash) takes every job in flight on its
pool with it; those jobs are run again one at a time, so that the one that kills its
worker is found and the others are graded. A grader failure is not stored: the next
run tries that student again.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import nbformat

from grader.batch.pipeline import (
    FLAG_GRADER_FAILED,
    GradingContext,
    grade_guarded,
    internal_error,
)
from grader.batch.progress import Progress
from grader.batch.store import BatchKey, ResultsStore
from grader.files import atomic_write_text
from grader.intake.lms import Intake
from grader.intake.notebooks import file_digest
from grader.outputs.names import executed_path
from grader.results import SubmissionResult, encodable

WORKERS_PER_CPU = 1.0
"""Workers per core by default: more workers than cores grade no faster on this
workload (``bench/batch_speed.py``, ``bench/workers.py``) and take more memory."""
WORKER_MEMORY_MB = 4096
"""A worker's peak: a training kernel (up to 2.4 GB measured) plus its evaluator."""
MSG_WORKER_DIED = "the grading worker died while grading this notebook alone ({detail})"
MSG_RUNNER_FAILED = "grading this notebook failed outside grader's own code ({detail})"
FLAG_WORKER_DIED = "worker_died"
"""The notebook's worker died with it running alone: stored like any verdict."""
FLAG_EXECUTED_NOT_WRITTEN = "executed_not_written"
"""Where a batch keeps each student's executed notebook, under the output folder."""
PR_SET_PDEATHSIG = 1


@dataclass
class Job:
    """One submission to grade."""

    path: Path
    """The notebook file."""
    student: str
    """The student's id (from intake: the LMS file name, or the file name)."""
    key: str = ""
    """The results store's key for this submission (see :mod:`grader.batch.store`)."""
    notes: list[str] = field(default_factory=list)
    """What intake noticed (several files from this student, ...)."""
    tries: int = 0
    """How many times a worker took this job."""
    alone: bool = False
    """Its worker died while it ran with others: run it again with nothing beside it."""
    identity: dict[str, str] = field(default_factory=dict)
    """Who the LMS's file name says submitted it (:attr:`grader.intake.lms.Entry.identity`)."""


class WorkerLost(Exception):
    """The process running a job died; ``retry`` says whether to run the job again."""

    def __init__(self, detail: str, retry: bool = True) -> None:
        super().__init__(detail)
        self.retry = retry


class Runner(Protocol):
    """Where jobs run: local worker processes or a Dask cluster."""

    capacity: int
    """How many jobs it can run at once."""

    def submit(self, job: Job, ctx: GradingContext) -> Any:
        """Start grading ``job``; returns a future."""
        ...

    def wait(self, futures: Iterable[Any]) -> set[Any]:
        """Block until at least one of ``futures`` is done; return the done ones."""
        ...

    def result(self, future: Any) -> SubmissionResult:
        """The job's result; :class:`WorkerLost` when its worker died."""
        ...

    def close(self) -> None:
        """Release the workers."""
        ...


def _die_with_parent() -> None:
    """A pool worker's initializer: killed with the orchestrator, never orphaned."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def grade_task(path: Path, ctx: GradingContext, student: str) -> SubmissionResult:
    """What a worker runs for one job: grade it, then keep its executed notebook in
    ``ctx.out`` (a failure to write it is noted on the result, never raised)."""
    graded = grade_guarded(path, ctx, student)
    if ctx.out is None or graded.executed is None:
        return graded.result
    return keep_executed(graded.result, graded.executed, ctx.out)


def keep_executed(
    result: SubmissionResult, nb: nbformat.NotebookNode, out: Path
) -> SubmissionResult:
    """Write the executed notebook under ``out``; the result, flagged if that failed."""
    try:
        write_executed(nb, out, result.student)
    except OSError as exc:
        result.flags.append(FLAG_EXECUTED_NOT_WRITTEN)
        result.message = "; ".join(filter(None, [result.message, str(exc)]))
    return result


def write_executed(nb: nbformat.NotebookNode, out: Path, student: str) -> Path:
    """``out/executed/STUDENT.ipynb``, replaced whole: a batch killed mid-write leaves the
    old file or the new one."""
    path = executed_path(out, student)
    atomic_write_text(path, encodable(nbformat.writes(nb)))  # kernel text: always writable
    return path


class LocalRunner:
    """Worker processes on this machine (spawned: nothing leaks from the orchestrator)."""

    def __init__(self, workers: int) -> None:
        self.capacity = workers
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(self.capacity, context, initializer=_die_with_parent)

    def submit(self, job: Job, ctx: GradingContext) -> Future[SubmissionResult]:
        """Grade ``job`` in a worker; a pool broken by an earlier death is replaced."""
        try:
            return self._pool.submit(grade_task, job.path, ctx, job.student)
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(grade_task, job.path, ctx, job.student)

    def wait(self, futures: Iterable[Future[SubmissionResult]]) -> set[Any]:
        """The futures done so far (at least one)."""
        done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
        return set(done)

    def result(self, future: Future[SubmissionResult]) -> SubmissionResult:
        """The worker's result; :class:`WorkerLost` when the pool broke under it."""
        try:
            return future.result()
        except BrokenProcessPool as exc:
            raise WorkerLost(str(exc) or "a worker process ended abruptly") from exc

    def close(self) -> None:
        """Stop the workers (each closes its evaluator as it exits)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def default_workers(cpus: int | None = None, memory_mb: int | None = None) -> int:
    """Workers for this machine: :data:`WORKERS_PER_CPU` per core, as memory allows."""
    affinity = getattr(os, "sched_getaffinity", None)  # Linux only
    cpus = cpus or (len(affinity(0)) if affinity else os.cpu_count() or 1)
    memory_mb = memory_mb or _memory_mb()
    by_memory = max(1, memory_mb // WORKER_MEMORY_MB)
    return max(1, min(round(cpus * WORKERS_PER_CPU), by_memory))


def _memory_mb() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return WORKER_MEMORY_MB


def plan_jobs(intake: Intake, key: BatchKey) -> list[Job]:
    """One job per student intake found, with its results-store key."""
    jobs = []
    for entry in intake.entries:
        try:
            digest = file_digest(entry.path)
        except OSError:
            digest = ""  # unreadable: graded (as an error) every time
        file_key = key.for_submission(entry.student, encodable(entry.path.name), digest)
        job = Job(entry.path, entry.student, file_key, list(entry.notes))
        job.identity = dict(entry.identity)
        jobs.append(job)
    return jobs


def run_batch(
    jobs: list[Job],
    ctx: GradingContext,
    runner_factory: Callable[[], Runner],
    store: ResultsStore,
    progress: Progress,
    force: bool = False,
    provenance: dict[str, str] | None = None,
) -> list[SubmissionResult]:
    """Every job's result: stored ones reused (unless ``force``), the rest graded now,
    each stored with ``provenance`` (what graded it) and its job's LMS identity."""
    stored = {} if force else store.finished(job.key for job in jobs)
    results = [stored[job.key] for job in jobs if job.key in stored]
    pending = [job for job in jobs if job.key not in stored]
    progress.skipped(len(results))
    try:
        if pending:
            runner = runner_factory()
            progress.workers = runner.capacity
            try:
                results += _drive(pending, ctx, runner, store, progress, provenance or {})
            finally:
                runner.close()
    finally:
        progress.close()
    return sorted(results, key=lambda r: (r.student, r.file))


def _drive(
    pending: list[Job],
    ctx: GradingContext,
    runner: Runner,
    store: ResultsStore,
    progress: Progress,
    provenance: dict[str, str],
) -> list[SubmissionResult]:
    """Keep the runner full; store and report each result as it comes."""
    queue = list(reversed(pending))
    in_flight: dict[Any, Job] = {}
    results: list[SubmissionResult] = []
    while queue or in_flight:
        _fill(queue, in_flight, runner, ctx, progress)
        for future in runner.wait(in_flight):
            job = in_flight.pop(future)
            result = _outcome(future, job, runner, ctx)
            if result is None:
                job.alone = True  # its worker died beside others: find out alone
                queue.append(job)
                continue
            result.provenance, result.identity = dict(provenance), dict(job.identity)
            result = result.encodable()  # as stored and written, whatever the kernel said
            if FLAG_GRADER_FAILED not in result.flags:
                store.put(job.key, result)
            progress.finish(result)
            results.append(result)
    return results


def _fill(
    queue: list[Job],
    in_flight: dict[Any, Job],
    runner: Runner,
    ctx: GradingContext,
    progress: Progress,
) -> None:
    """Submit jobs while there is room; a job to run alone waits for an empty runner."""
    while queue and len(in_flight) < runner.capacity:
        if any(job.alone for job in in_flight.values()):
            return
        if queue[-1].alone and in_flight:
            return
        job = queue.pop()
        job.tries += 1
        in_flight[runner.submit(job, ctx)] = job
        if job.tries == 1:
            progress.start(job.student)
        if job.alone:
            return


def _outcome(future: Any, job: Job, runner: Runner, ctx: GradingContext) -> SubmissionResult | None:
    """The job's result, an ``error`` result, or None to run it again alone."""
    try:
        return runner.result(future)
    except WorkerLost as exc:
        if exc.retry and not job.alone:
            return None
        detail = str(exc)
    except Exception as exc:  # the runner's failure is this student's error
        return internal_error(job.path, ctx, MSG_RUNNER_FAILED.format(detail=exc), job.student)
    message = MSG_WORKER_DIED.format(detail=detail)
    return internal_error(job.path, ctx, message, job.student, flag=FLAG_WORKER_DIED)
