"""The reference run: the reference solution graded under the students' conditions.

Its figures are stored under the cache, keyed by everything that could change them
(reference notebook, rubric, asset kit, mode, grader version), and reused until stale.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import nbformat

from grader import __version__
from grader.checks.accuracy import self_reported_accuracy
from grader.checks.facts import FitEndEvent, history_record, parse_events
from grader.checks.measured import BASE_UNCHANGED, Measurement, ReferenceBand
from grader.errors import ReferenceRunError
from grader.files import atomic_write_text, source_digest
from grader.measure.client import close_shared, start_measuring
from grader.rubric.schema import Rubric
from grader.run.execute import Execution, RunSettings, run_notebook
from grader.run.probe import FIT_MODEL_FILE, SEED, ProbeConfig

REFERENCE_DIR = "reference"
MSG_NO_NOTEBOOK = "the rubric names no reference notebook ([reference] notebook = ...)"
MSG_REFERENCE_FAILED = (
    "the reference notebook did not run cleanly, so it cannot set the bar: {detail}"
)
MSG_NO_ACCURACY = "the reference notebook ran but recorded no accuracy ({detail})"
NOT_MEASURED = Measurement(error="no saved model")
REFERENCE_SEEDS = 3
"""Runs of the reference, each under another seed: its figure is a distribution."""


@dataclass
class ReferenceFigures:
    """What the reference run produced."""

    key: str
    """The cache key these figures belong to."""
    accuracy: float | None
    """The figure students are scored against: measured on the holdout when there is one
    (None only for a rubric without a reference notebook or a published figure)."""
    self_reported: float | None
    """The reference notebook's own evaluate figure."""
    measured: float | None
    """The trusted evaluator's holdout accuracy."""
    duration_s: float
    """Seconds the reference notebook took to run."""
    history: list[dict]
    """Training history per phase, for reports (the first seed's run)."""
    seeds: list[dict] = field(default_factory=list)
    """One per run of the reference: ``seed``, ``final`` (measured after its last
    ``fit``) and ``head`` (measured after its first: the head trained on the frozen
    base, before fine-tuning)."""

    def band(self) -> ReferenceBand | None:
        """The figures students are compared with, per basis (None: one figure only)."""
        final = tuple(s["final"] for s in self.seeds if s.get("final") is not None)
        if not final:
            return None
        head = tuple(s["head"] for s in self.seeds if s.get("head") is not None)
        return ReferenceBand(final=final, head=head if len(head) == len(final) else ())


def reference_key(rubric: Rubric, kit_digest: str, mode: str, caps: str = "") -> str:
    if rubric.reference_notebook is None:
        raise ReferenceRunError(MSG_NO_NOTEBOOK)
    notebook = rubric.reference_notebook.read_bytes()
    parts = [
        hashlib.sha256(notebook).hexdigest(),
        rubric.digest,
        kit_digest,
        mode,
        caps,
        __version__,
        _measuring_code_digest(),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def caps_text(settings: RunSettings) -> str:
    """The probe's caps as text: figures measured under other caps are someone else's."""
    probe = settings.probe
    if not probe.quick:
        return ""
    return (
        f"{probe.max_epochs},{probe.max_steps_per_epoch},{probe.max_validation_steps},"
        f"{probe.later_steps},{probe.eager_steps},{settings.holdout_images}"
    )


MEASURING_CODE = ("run/kernel", "run/probe.py", "measure", "checks/facts.py")
"""What decides a measured figure: the kernel side (the probe), the probe's injection
and caps, and the evaluator."""


def _measuring_code_digest() -> str:
    """The probe and the evaluator decide the figures: a change to either makes them stale."""
    return source_digest(*MEASURING_CODE)[:12]


def load_or_run(
    rubric: Rubric,
    settings: RunSettings,
    cache: Path,
    kit_digest: str,
    mode: str,
    force: bool = False,
    seeds: int = REFERENCE_SEEDS,
) -> ReferenceFigures:
    """Stored figures when fresh, else run the reference now (``seeds`` times) and store
    them."""
    caps = caps_text(settings) + ("" if seeds == REFERENCE_SEEDS else f"|seeds={seeds}")
    key = reference_key(rubric, kit_digest, mode, caps)
    stored = cache / REFERENCE_DIR / f"{key}.json"
    if stored.exists() and not force:
        try:
            return ReferenceFigures(**json.loads(stored.read_text()))
        except (ValueError, TypeError):
            pass  # a damaged record: run again
    figures = run_reference(rubric, settings, key, seeds)
    atomic_write_text(stored, json.dumps(asdict(figures), indent=2))
    return figures


def run_reference(
    rubric: Rubric, settings: RunSettings, key: str, seeds: int = REFERENCE_SEEDS
) -> ReferenceFigures:
    """Run the reference notebook ``seeds`` times, each under its own seed, and measure
    its model like a student's, after its first ``fit`` and after its last. The figure
    students are scored against is the median of the last; the band uses them all."""
    assert rubric.reference_notebook is not None
    nb = nbformat.read(rubric.reference_notebook, as_version=4)
    try:
        runs = [_run_once(nb, rubric, _seeded(settings, SEED + i)) for i in range(seeds)]
    finally:
        close_shared()  # the reference is run once: its evaluator is not kept
    first = runs[0]
    finals = [r["final"] for r in runs if r["final"] is not None]
    accuracy = statistics.median(finals) if finals else first["reported"]
    return ReferenceFigures(
        key=key,
        accuracy=accuracy,
        self_reported=first["reported"],
        measured=statistics.median(finals) if finals else None,
        duration_s=first["duration_s"],
        history=first["history"],
        seeds=[{k: r[k] for k in ("seed", "final", "head")} for r in runs],
    )


def _seeded(settings: RunSettings, seed: int) -> RunSettings:
    probe = settings.probe or ProbeConfig(dir=Path("."))
    return replace(settings, probe=replace(probe, seed=seed, keep_fits=True))


def _run_once(nb: nbformat.NotebookNode, rubric: Rubric, settings: RunSettings) -> dict:
    """One run of the reference: its figures, or :class:`ReferenceRunError`."""
    assert rubric.reference_notebook is not None and settings.probe is not None
    measuring = start_measuring(settings)
    run = run_notebook(nb, rubric.reference_notebook.name, settings)
    try:
        problems = run.messages + [f"cell {e.cell + 1}: {e.ename}: {e.evalue}" for e in run.errors]
        if problems or run.probe_error:
            detail = "; ".join(problems[:3]) or str(run.probe_error)
            raise ReferenceRunError(MSG_REFERENCE_FAILED.format(detail=detail))
        events = parse_events(run.events)
        reported = self_reported_accuracy(events)
        measured = measuring.measure(run.model_path, events) or NOT_MEASURED
        final = measured.accuracy
        if final is None and (settings.kit.holdout is not None or reported is None):
            raise ReferenceRunError(MSG_NO_ACCURACY.format(detail=_failure(run, measured)))
        first_fit = run.root / "probe" / FIT_MODEL_FILE.format(n=1)
        head = measuring.measure(first_fit, events) if first_fit.exists() else None
        return {
            "seed": settings.probe.seed,
            "final": final,
            "head": head.accuracy if head is not None and head.base == BASE_UNCHANGED else None,
            "reported": reported,
            "duration_s": run.duration_s,
            "history": [
                {"history": history_record(e.history)} for e in events if isinstance(e, FitEndEvent)
            ],
        }
    finally:
        run.cleanup()


def _failure(run: Execution, measured: Measurement) -> str:
    errors = "; ".join(f"cell {e.cell + 1}: {e.ename}: {e.evalue}" for e in run.errors[:3])
    return "; ".join(run.messages) or errors or run.probe_error or str(measured.error)
