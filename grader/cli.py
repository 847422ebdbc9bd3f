"""The ``grader`` command: thin click commands over the library."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from grader import __version__
from grader.assets import course_kit, default_cache_dir, ensure_kit, kit_digest
from grader.errors import GraderError, UsageError
from grader.execute import RunSettings
from grader.export import RESULTS_FILE, read_results_jsonl
from grader.intake import find_submissions
from grader.outputs import write_outputs
from grader.pipeline import GradingContext, grade_batch
from grader.probe import ProbeConfig
from grader.reference import load_or_run
from grader.results import SubmissionResult
from grader.rubric import Rubric, load_rubric

DEFAULT_RUBRIC = "rubrics/transfer_learning.toml"
MODE_QUICK, MODE_FULL = "quick", "full"

rubric_option = click.option(
    "--rubric",
    "rubric_path",
    type=click.Path(path_type=Path),
    default=DEFAULT_RUBRIC,
    show_default=True,
    help="Rubric TOML file.",
)
quick_option = click.option(
    "--quick", is_flag=True, help="Cap epochs and steps through the probe (student code unchanged)."
)
cache_option = click.option(
    "--cache",
    type=click.Path(path_type=Path),
    default=None,
    help="Cache folder for the asset kit and reference figures "
    "[default: $GRADER_CACHE or ~/.cache/grader].",
)


def _fail(exc: GraderError) -> None:
    click.echo(f"grader: {exc}", err=True)
    sys.exit(2 if isinstance(exc, UsageError) else 1)


@click.group()
@click.version_option(__version__)
def main() -> None:
    """Grade students' transfer-learning notebooks: run them, inspect the model, report.

    Example: grader grade submissions/ --rubric rubrics/transfer_learning.toml --out out/
    """


def _settings(rubric: Rubric, quick: bool, cache: Path | None, workers: int) -> tuple:
    kit = (
        course_kit(rubric.keras_home, rubric.holdout)
        if rubric.keras_home
        else ensure_kit(cache, progress=click.echo)
    )
    q = rubric.quick
    probe = ProbeConfig(
        dir=Path("."),
        quick=quick,
        max_epochs=q.max_epochs,
        max_steps=q.max_steps_per_epoch,
        max_validation_steps=q.max_validation_steps,
        model_variable=next((c.model_variable for c in rubric.checks if c.model_variable), None),
    )
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    settings = RunSettings(
        kit=kit,
        cell_timeout_s=rubric.limits.cell_timeout_s,
        notebook_timeout_s=rubric.limits.notebook_timeout_s,
        probe=probe,
        threads=threads,
    )
    return settings, kit_digest(kit)


@main.command()
@click.argument("submissions", type=click.Path(path_type=Path))
@rubric_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("out"),
    show_default=True,
    help="Output folder.",
)
@quick_option
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Notebooks graded at once.",
)
@cache_option
def grade(
    submissions: Path, rubric_path: Path, out: Path, quick: bool, workers: int, cache: Path | None
) -> None:
    """Grade every notebook in SUBMISSIONS (a folder or one .ipynb).

    Writes results.jsonl, grades.csv, reports/<student>.html, index.html and
    executed/<student>.ipynb under --out. Exit 0 when the batch completed.

    Example: grader grade submissions/ --rubric rubrics/transfer_learning.toml --out out --quick
    """
    try:
        rubric = load_rubric(rubric_path)
        paths = [
            p
            for p in find_submissions(submissions)
            if not p.resolve().is_relative_to(out.resolve())
        ]
        if not paths:
            raise UsageError(f"{submissions}: no .ipynb notebooks found")
        mode = MODE_QUICK if quick else MODE_FULL
        settings, digest = _settings(rubric, quick, cache, workers)
        click.echo(f"Running the reference solution ({mode} mode) unless its figures are cached")
        figures = load_or_run(rubric, settings, cache or default_cache_dir(), digest, mode)
        click.echo(f"Reference accuracy: {figures.accuracy:.3f}")
        ctx = GradingContext(
            rubric=rubric,
            settings=settings,
            reference_accuracy=figures.accuracy,
            out=out,
            mode=mode,
        )
        click.echo(f"Grading {len(paths)} notebook(s) with {workers} worker(s)")
        start = time.monotonic()
        results = grade_batch(paths, ctx, workers=workers, on_result=_echo_result)
        written = write_outputs(results, rubric.check_ids, out, figures.accuracy)
    except GraderError as exc:
        _fail(exc)
        return
    click.echo(f"Done in {time.monotonic() - start:.0f} s. Class page: {written['index']}")
    click.echo(f"Spreadsheet: {written['grades']}  Results: {written['results']}")


def _echo_result(result: SubmissionResult) -> None:
    note = f" ({result.message})" if result.message else ""
    click.echo(
        f"  {result.student}: {result.score:g}/{result.max_score:g} {result.status} "
        f"in {result.duration_s:.0f} s{note}"
    )


@main.command()
@rubric_option
@quick_option
@cache_option
@click.option("--force", is_flag=True, help="Run even when fresh figures are stored.")
def reference(rubric_path: Path, quick: bool, cache: Path | None, force: bool) -> None:
    """Run the rubric's reference solution and store its figures.

    Example: grader reference --rubric rubrics/transfer_learning.toml --quick
    """
    try:
        rubric = load_rubric(rubric_path)
        settings, digest = _settings(rubric, quick, cache, 1)
        mode = MODE_QUICK if quick else MODE_FULL
        figures = load_or_run(rubric, settings, cache or default_cache_dir(), digest, mode, force)
    except GraderError as exc:
        _fail(exc)
        return
    click.echo(
        f"Reference accuracy ({mode}): {figures.accuracy:.4f} "
        f"(ran in {figures.duration_s:.0f} s; key {figures.key})"
    )


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@rubric_option
def report(out: Path, rubric_path: Path) -> None:
    """Rebuild grades.csv, the reports and index.html from OUT/results.jsonl (no notebook runs).

    Example: grader report out --rubric rubrics/transfer_learning.toml
    """
    try:
        rubric = load_rubric(rubric_path)
        path = out / RESULTS_FILE
        if not path.exists():
            raise UsageError(f"{path}: no results to report on (run `grader grade` first)")
        results = read_results_jsonl(path)
        reference_accuracy = next(
            (
                r.accuracy.get("reference")
                for r in results
                if r.accuracy.get("reference") is not None
            ),
            None,
        )
        written = write_outputs(results, rubric.check_ids, out, reference_accuracy)
    except (GraderError, ValueError) as exc:
        _fail(exc if isinstance(exc, GraderError) else UsageError(str(exc)))
        return
    click.echo(f"Rebuilt {len(results)} report(s); class page: {written['index']}")


@main.group()
def assets() -> None:
    """The offline asset kit (synthetic data and MobileNetV2 weights).

    Example: grader assets build
    """


@assets.command("build")
@cache_option
def assets_build(cache: Path | None) -> None:
    """Build the offline asset kit once (reused afterwards).

    Example: grader assets build --cache /tmp/grader-cache
    """
    try:
        kit = ensure_kit(cache, progress=click.echo)
    except GraderError as exc:
        _fail(exc)
        return
    click.echo(f"Asset kit ready: {kit.keras_home.parent}")
