"""The orchestrator's side of the trusted evaluator (no TensorFlow imported here).

:class:`EvaluatorProcess` keeps one ``python -m grader.measure.evaluator --serve HOLDOUT``
process and sends it one model at a time. :func:`shared_evaluator` gives each grading
process its own, started early (:meth:`EvaluatorProcess.start`) so that it imports
TensorFlow while the student's notebook runs. A model that crashes or hangs the
evaluator costs that student a measurement (an ``error`` in the answer) and the next
model a fresh evaluator; it never raises. It runs in a sandbox of its own
(:mod:`grader.measure.jail`). While it measures, it is held to a time limit
(:data:`EVALUATE_TIMEOUT_S`) and a memory limit (:data:`EVALUATOR_MEMORY_MB`: its
resident memory read from ``/proc``, and its sandbox's memory cgroup where there is
one): past either it is killed, that model is not measured, and the answer says which
limit it hit.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from grader.checks.facts import CompileEvent, FitEvent, ProbeEvent
from grader.checks.measured import Measurement, parse_measurement
from grader.kit.assets import CUSTOM_KIT, KIT_SIDE
from grader.measure.evaluator import ANSWER_PREFIX, SERVE_FLAG
from grader.measure.jail import EvaluatorJail
from grader.run import cgroups
from grader.run.threads import thread_env
from grader.static.keras_names import CROSSENTROPY_LOSSES

if TYPE_CHECKING:
    from grader.run.execute import RunSettings

MSG_NO_HOLDOUT = "no holdout split configured"
MSG_EVALUATOR_FAILED = "the evaluator failed: {detail}"
EVALUATE_TIMEOUT_S = 300.0
EVALUATOR_MEMORY_MB = 4096
"""TensorFlow and the decoded holdout take about 1.1 GB; a model may add what the
rubric's default memory limit gives a kernel, and no more."""
MEMORY_POLL_S = 0.2
MSG_OVER_MEMORY = "it used more than {limit} MB measuring this model"
MSG_UNREADABLE = "the saved model cannot be read ({why})"
EVALUATOR_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0", "CUDA_VISIBLE_DEVICES": ""}


class EvaluatorProcess:
    """One long-lived trusted evaluator for one holdout folder, in its own sandbox
    (:mod:`grader.measure.jail`): ``hide`` is covered in its view, ``expose`` (the kit's
    weights) bound back."""

    def __init__(
        self,
        holdout: Path,
        threads: int | None = None,
        memory_mb: int = EVALUATOR_MEMORY_MB,
        hide: tuple[str, ...] = (),
        expose: tuple[str, ...] = (),
    ) -> None:
        self.holdout = holdout
        self.threads = threads
        self.memory_mb = memory_mb
        self.hide, self.expose = hide, expose
        self.over_memory = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._jail: EvaluatorJail | None = None
        self._problem: str | None = None
        """Why the last start failed, if it did."""
        self._stderr: IO[bytes] | None = None
        self._buffer = b""
        self._lock = threading.RLock()  # a Dask worker grades on several threads

    @property
    def pid(self) -> int | None:
        """The evaluator's process id while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def jail(self) -> EvaluatorJail | None:
        """The sandbox it runs in, while it runs."""
        return self._jail if self.running else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the process now (it imports TensorFlow and decodes the holdout); a start
        that fails is told by the next :meth:`measure`, never raised here."""
        with self._lock:
            try:
                self._start()
            except OSError as exc:
                self._problem = f"it could not start ({exc})"

    def _start(self) -> None:
        if self.running:
            return
        self._close()
        self._problem = None
        self._jail = EvaluatorJail(self.holdout, self.memory_mb, self.hide, self.expose)
        self._stderr = tempfile.TemporaryFile()
        holdout = str(self._jail.holdout_copy)
        command = [sys.executable, "-m", "grader.measure.evaluator", SERVE_FLAG, holdout]
        self._proc = subprocess.Popen(
            self._jail.argv(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=self._jail.env({**EVALUATOR_ENV, **thread_env(self.threads)}),
        )
        self._buffer = b""

    def measure(
        self,
        model_path: Path,
        hint: str | None = None,
        timeout_s: float = EVALUATE_TIMEOUT_S,
        limit: int = 0,
        weights: Path | None = None,
    ) -> dict[str, Any]:
        """The evaluator's answer for one saved model; an ``error`` answer on any failure.
        With ``weights`` (the Keras cache's ``models/`` folder) it also says whether the
        model's base still has the shipped weights.

        One request at a time: threads sharing this evaluator wait their turn, so no
        answer can reach another student's request. An evaluator that grew past its
        memory limit is tried once more, fresh (what it held from earlier models may have
        been the cause)."""
        request: dict[str, Any] = {"hint": hint, "limit": limit}
        if weights is not None:
            request["weights"] = str(weights.resolve())
        with self._lock:
            self.over_memory = False  # an earlier model's, not this one's
            answer = self._ask(request, model_path, timeout_s)
            if answer is None and self.over_memory:
                self._close(kill=True)
                answer = self._ask(request, model_path, timeout_s)
            if answer is None:
                detail = "timed out" if self.running else self._failure_detail()
                if self.over_memory:
                    detail = MSG_OVER_MEMORY.format(limit=self.memory_mb)
                self._close(kill=True)
                return {"accuracy": None, "error": MSG_EVALUATOR_FAILED.format(detail=detail)}
            return answer

    def _ask(
        self, request: dict[str, Any], model_path: Path, timeout_s: float
    ) -> dict[str, Any] | None:
        """One request to a running evaluator (started if need be), for the model at
        ``model_path``; None: no answer."""
        try:
            self._start()
        except OSError as exc:  # its sandbox could not be made: no evaluator, no answer
            self._problem = f"it could not start ({exc})"
            return None
        assert self._proc is not None and self._proc.stdin is not None
        assert self._jail is not None
        self.over_memory = False
        try:
            request = {**request, "model": str(self._jail.admit(model_path))}
        except OSError as exc:
            return {"accuracy": None, "error": MSG_UNREADABLE.format(why=exc.strerror or exc)}
        try:
            self._proc.stdin.write((json.dumps(request) + "\n").encode())
            self._proc.stdin.flush()
            line = self._answer(time.monotonic() + timeout_s)
        except (BrokenPipeError, OSError):
            line = None
        self.over_memory |= line is None and self._jail.out_of_memory()
        try:
            answer = json.loads(line) if line is not None else None
        except ValueError:
            answer = None
        return answer if isinstance(answer, dict) else None

    def _answer(self, deadline: float) -> str | None:
        """The next answer line, or None when the process ends or the deadline passes."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                while b"\n" in self._buffer:
                    raw, self._buffer = self._buffer.split(b"\n", 1)
                    text = raw.decode("utf-8", "replace")
                    if text.startswith(ANSWER_PREFIX):
                        return text[len(ANSWER_PREFIX) :]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._past_memory():
                    return None
                if not selector.select(min(remaining, MEMORY_POLL_S)):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    return None
                self._buffer += chunk

    def _past_memory(self) -> bool:
        used = resident_mb(self._proc.pid) if self._proc is not None else None
        killed = self._jail is not None and self._jail.out_of_memory()
        self.over_memory = killed or (used is not None and used > self.memory_mb)
        return self.over_memory

    def _failure_detail(self) -> str:
        if self._proc is None and self._problem:
            return self._problem
        code = self._proc.poll() if self._proc is not None else None
        tail = b""
        if self._stderr is not None:
            self._stderr.seek(0)
            tail = self._stderr.read()[-4000:]
        lines = tail.decode("utf-8", "replace").strip().splitlines()
        return (lines[-1] if lines else f"exit code {code}")[:300]

    def close(self, kill: bool = False) -> None:
        """Stop the process: closing stdin ends it; a stuck one, or ``kill``, kills it."""
        with self._lock:
            self._close(kill)

    def _close(self, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and kill:
            proc.kill()
        if proc is not None:
            if proc.stdin is not None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._jail is not None:
            self._jail.close(proc.pid if proc is not None else None)
            self._jail = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def resident_mb(pid: int) -> int | None:
    """Resident memory in MB of the process ``pid`` leads the session of (the launcher, its
    init and the evaluator), from ``/proc``; None where none of it can be read."""
    pages = [cgroups.rss(p) for p in cgroups.pids_of_session(pid) | {pid}]
    return sum(pages) // 2**20 if any(pages) else None


_SHARED: dict[tuple, tuple[int, EvaluatorProcess]] = {}
_SHARED_LOCK = threading.Lock()


def shared_evaluator(settings: RunSettings) -> EvaluatorProcess | None:
    """This process's evaluator for the run's holdout (one per process; a fork gets its
    own); None when the run has no holdout. Its view hides what a kernel's hides."""
    holdout, threads = settings.kit.holdout, settings.threads
    if holdout is None or not holdout.is_dir():
        return None
    key = (holdout, threads, settings.hide)
    with _SHARED_LOCK:  # a Dask worker grades on several threads
        owner, evaluator = _SHARED.get(key, (0, None))
        if evaluator is None or owner != os.getpid():
            weights = str(settings.kit.keras_home.resolve())
            evaluator = EvaluatorProcess(holdout, threads, hide=settings.hide, expose=(weights,))
            _SHARED[key] = (os.getpid(), evaluator)
            atexit.register(_close_at_exit, os.getpid(), evaluator)
    return evaluator


def _close_at_exit(owner: int, evaluator: EvaluatorProcess) -> None:
    """Its sandbox goes with the process that started it (not with a fork of that one)."""
    if owner == os.getpid():
        evaluator.close()


def close_shared() -> None:
    """Stop this process's evaluators (they also end by themselves when it exits)."""
    for owner, evaluator in list(_SHARED.values()):
        if owner == os.getpid():
            evaluator.close()
    _SHARED.clear()


@dataclass(frozen=True)
class Measurer:
    """The trusted measurement of a run's saved model, under the run's settings."""

    settings: RunSettings

    def measure(self, model_path: Path | None, events: Sequence[ProbeEvent]) -> Measurement | None:
        """The evaluator's answer for the saved model, parsed; None when the run saved none.
        Never raises for a bad model: what went wrong is the answer's ``error``."""
        if model_path is None:
            return None
        evaluator = shared_evaluator(self.settings)
        if evaluator is None:
            return parse_measurement({"accuracy": None, "error": MSG_NO_HOLDOUT})
        weights = self.settings.kit.keras_home / "models"
        limit = self.settings.holdout_images
        answer = evaluator.measure(model_path, output_hint(events), limit=limit, weights=weights)
        measured = parse_measurement(answer)
        own_kit = self.settings.kit.version != CUSTOM_KIT
        return replace(measured, made_for=KIT_SIDE) if measured and own_kit else measured


def start_measuring(settings: RunSettings) -> Measurer:
    """The measurer for a run about to start: its evaluator is started now, so that it has
    imported TensorFlow and decoded the holdout by the time the notebook has run."""
    evaluator = shared_evaluator(settings)
    if evaluator is not None:
        evaluator.start()
    return Measurer(settings)


def output_hint(events: Sequence[ProbeEvent]) -> str | None:
    """``logit`` or ``probability`` from the loss of the last compile before the last fit
    (the saved model's training; a compile after it, of another model, does not count),
    when the probe saw it: its ``from_logits``, or for a cross-entropy given by name
    (Keras's default), probabilities."""
    fits = [i for i, e in enumerate(events) if isinstance(e, FitEvent)]
    for event in reversed(events[: fits[-1]] if fits else events):
        if isinstance(event, CompileEvent):
            if event.from_logits is not None:
                return "logit" if event.from_logits else "probability"
            return "probability" if _snake(event.loss_name) in CROSSENTROPY_LOSSES else None
    return None


def _snake(name: str | None) -> str:
    """``BinaryCrossentropy`` and ``binary_crossentropy`` alike: Keras takes both by name."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name or "").lower()
