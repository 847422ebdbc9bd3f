"""``grader calibrate``: does a course's accuracy check mean anything under its caps?

The reference is run under several seeds in each mode (the course's own data and
weights when the rubric names them), and the band the accuracy check will use is
printed: the reference's spread, where full points start for a head-only and for a
fine-tuned solution, and a warning when the spread is wider than the tolerance, which
means the caps leave the figure to the draw more than to the student's work. The runs
are stored like any reference run: with the default number of seeds, grading reuses them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from grader.batch.classrun import run_settings
from grader.checks.accuracy import CHECK_ACCURACY, Bar, bar_for
from grader.checks.facts import Facts
from grader.checks.measured import (
    BASE_CHANGED,
    BASE_UNCHANGED,
    BASIS_FINAL,
    BASIS_HEAD,
    Measurement,
)
from grader.errors import UsageError
from grader.kit.assets import default_cache_dir
from grader.measure.reference import REFERENCE_SEEDS, ReferenceFigures, load_or_run
from grader.rubric.schema import CheckSpec, load_rubric
from grader.static.evidence import StaticFacts

MSG_NO_ACCURACY_CHECK = "the rubric has no accuracy check: there is nothing to calibrate"
MSG_NO_REFERENCE = "calibrating needs the rubric's reference notebook ([reference] notebook)"
MSG_HEAD_UNUSED = (
    "warning: the head-only figures spread too widely to set a bar: head-only solutions "
    "are compared with the whole reference, fine-tuning included"
)
MSG_WIDE = (
    "warning: the reference's {basis} figures spread {width:.1%} over {seeds} seeds, wider "
    "than the tolerance ({tolerance:.1%}): under these caps the figure depends on the draw; "
    "give the caps more training steps, or widen the tolerance"
)


@dataclass(frozen=True)
class Calibration:
    """The band the accuracy check uses in one mode."""

    mode: str
    figures: ReferenceFigures
    """The reference's runs (``figures.seeds``: one per seed)."""
    bars: dict[str, Bar]
    """Per basis (``head``, ``final``): what a student's figure is compared with."""
    images: int
    """Holdout images each figure is measured on."""
    warnings: list[str]


def calibrate(
    rubric_path: Path,
    modes: list[str],
    seeds: int | None = None,
    cache: Path | None = None,
    say: Callable[[str], None] = print,
    force: bool = False,
) -> list[Calibration]:
    """Run (or reuse, unless ``force``) the reference ``seeds`` times per mode (None: as
    many times as grading does); the band for each."""
    seeds = seeds or REFERENCE_SEEDS
    rubric = load_rubric(rubric_path)
    spec = next((c for c in rubric.checks if c.id == CHECK_ACCURACY), None)
    if spec is None:
        raise UsageError(MSG_NO_ACCURACY_CHECK)
    if rubric.reference_notebook is None:
        raise UsageError(MSG_NO_REFERENCE)
    found = []
    for mode in modes:
        settings, digest = run_settings(rubric, mode, cache, 1, say)
        say(f"[{mode}] the reference under {seeds} seeds (stored runs are reused)")
        figures = load_or_run(
            rubric, settings, cache or default_cache_dir(), digest, mode, force, seeds
        )
        holdout = settings.kit.holdout
        images = settings.holdout_images or _count_images(holdout)
        found.append(_calibration(mode, figures, spec, images))
    return found


def _count_images(folder: Path | None) -> int:
    if folder is None or not folder.is_dir():
        return 0
    return sum(1 for path in folder.rglob("*") if path.is_file())


def _calibration(mode: str, figures: ReferenceFigures, spec: CheckSpec, images: int) -> Calibration:
    band = figures.band()
    bars: dict[str, Bar] = {}
    for basis, base in ((BASIS_HEAD, BASE_UNCHANGED), (BASIS_FINAL, BASE_CHANGED)):
        facts = Facts(
            static=StaticFacts(),
            reference_accuracy=figures.accuracy,
            reference_band=band,
            measured=Measurement(base=base, images=images),
        )
        bar = bar_for(spec, facts)
        if bar is not None and bar.basis == basis:
            bars[basis] = bar
    warnings = []
    for basis, values in (("head", band.head), ("final", band.final)) if band else ():
        width = max(values) - min(values) if values else 0.0
        if width > spec.tolerance:
            warnings.append(
                MSG_WIDE.format(
                    basis=basis, width=width, seeds=len(values), tolerance=spec.tolerance
                )
            )
    if band and band.head and BASIS_HEAD not in bars:
        warnings.append(MSG_HEAD_UNUSED)
    return Calibration(mode, figures, bars, images, warnings)


def calibration_lines(calibration: Calibration) -> list[str]:
    """What ``grader calibrate`` prints for one mode."""
    lines = [f"{calibration.mode}: reference runs, measured on {calibration.images} images"]
    for run in calibration.figures.seeds:
        head = "-" if run.get("head") is None else f"{run['head']:.3f}"
        final = "-" if run.get("final") is None else f"{run['final']:.3f}"
        lines.append(f"  seed {run['seed']}: after the first fit {head}, after the last {final}")
    for basis, bar in calibration.bars.items():
        lines.append(
            f"  {basis}: reference {bar.reference:.3f} ({bar.low:.3f}-{bar.high:.3f}, "
            f"width {bar.high - bar.low:.3f}); full points from {bar.full_at:.3f}"
        )
    return lines + calibration.warnings
