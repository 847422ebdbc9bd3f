"""Grading on an existing Dask cluster: ``grader grade --dask ADDRESS``.

Each submission is one task, ``grade_task(path, ctx, student)``, run by a Dask worker
exactly as a local worker process runs it; results come back to the orchestrator,
which stores and reports them as for a local batch.

What the workers need (checked before the first task is sent):

* the same grader (version and source) and TensorFlow installed;
* the asset kit and the reference's holdout at the same paths (a shared folder, or the
  kit built with ``grader assets build --cache`` pointing at the shared folder);
* the submissions and the output folder at the same paths (shared): workers read the
  notebooks and write ``executed/`` notebooks there.

The sandbox is applied on each worker as it is locally; a worker that cannot enforce a
limit grades anyway, like a local run, and says so in its own log.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from grader.batch.pipeline import GradingContext
from grader.batch.runners import Job, WorkerLost, grade_task
from grader.batch.store import grader_fingerprint
from grader.errors import ClusterError
from grader.measure.client import close_shared
from grader.results import SubmissionResult

CONNECT_TIMEOUT_S = 30
MSG_NO_DASK = "--dask needs the distributed package: pip install 'grader[dask]' ({detail})"
MSG_CONNECT = "cannot reach the Dask scheduler at {address}: {detail}"
MSG_NO_WORKERS = "the Dask cluster at {address} has no workers"
MSG_MISMATCH = "Dask worker {worker}: {problem}"
PROBLEM_GRADER = "runs another grader ({theirs}, here {ours}): install the same version"
PROBLEM_PATH = "cannot see {path}: share it at the same path on every worker"


def worker_view(paths: list[str]) -> dict[str, Any]:
    """Run on each worker: its grader fingerprint and which of ``paths`` it can see."""
    return {
        "grader": grader_fingerprint(),
        "missing": [p for p in paths if not Path(p).exists()],
    }


class DaskRunner:
    """Submissions as tasks on a Dask cluster, at most one per worker thread at a time."""

    def __init__(self, address: str, needed: list[Path]) -> None:
        try:
            from distributed import Client
        except ImportError as exc:
            raise ClusterError(MSG_NO_DASK.format(detail=exc)) from exc
        try:
            self.client = Client(address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(MSG_CONNECT.format(address=address, detail=exc)) from exc
        threads = self.client.nthreads()
        if not threads:
            self.client.close()
            raise ClusterError(MSG_NO_WORKERS.format(address=address))
        self.capacity = sum(threads.values())
        self._run = uuid.uuid4().hex[:8]  # keys of an earlier run's tasks are not reused
        self._check_workers([str(p) for p in needed])

    def _check_workers(self, paths: list[str]) -> None:
        ours = grader_fingerprint()
        for worker, view in self.client.run(worker_view, paths).items():
            problem = ""
            if view["grader"] != ours:
                problem = PROBLEM_GRADER.format(theirs=view["grader"], ours=ours)
            elif view["missing"]:
                problem = PROBLEM_PATH.format(path=view["missing"][0])
            if problem:
                self.client.close()
                raise ClusterError(MSG_MISMATCH.format(worker=worker, problem=problem))

    def submit(self, job: Job, ctx: GradingContext) -> Any:
        """One task on the cluster: :func:`~grader.batch.runners.grade_task` for this job."""
        key = f"grade-{self._run}-{job.student}-{job.key[:12]}-{job.tries}"
        return self.client.submit(grade_task, job.path, ctx, job.student, key=key, pure=False)

    def wait(self, futures: Iterable[Any]) -> set[Any]:
        """The futures done so far (at least one)."""
        from distributed import wait

        done, _ = wait(list(futures), return_when="FIRST_COMPLETED")
        return set(done)

    def result(self, future: Any) -> SubmissionResult:
        """The task's result; :class:`WorkerLost` (not retried: the scheduler already
        tried the task on other workers) when workers died running it."""
        try:
            return future.result()
        except Exception as exc:  # KilledWorker, CommClosedError, ...
            raise WorkerLost(f"{type(exc).__name__}: {exc}", retry=False) from exc

    def close(self) -> None:
        """Stop the workers' evaluators (they keep running otherwise), then disconnect."""
        try:
            self.client.run(close_shared)
        finally:
            self.client.close()
