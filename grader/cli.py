"""The ``grader`` command: thin click commands over the library.

Modules that pull in nbclient or pandas are imported inside the commands that use them:
``grader check --static`` must answer in well under a second.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import click

from grader import __version__
from grader.clishared import (
    cache_option,
    fail,
    modes_option,
    quick_option,
    roster_option,
    rubric_option,
    seeds_option,
    warn,
)
from grader.errors import GraderError, SubmissionError, UsageError
from grader.gradescope.commands import gradescope
from grader.publish.commands import publish
from grader.rubric.limits import MODES

EXIT_COULD_NOT_RUN = 3
"""A failure grader did not foresee: like a :class:`GraderError`, "could not run"."""


def entry() -> None:
    """The ``grader`` command: exit 0 all passed, 1 a check failed, 2 the command was
    wrong, 3 grader could not run (an unforeseen failure too, with its traceback)."""
    try:
        main()
    except Exception:  # click has already turned usage errors into exit 2
        traceback.print_exc()
        click.echo("grader: could not run (an internal error; the traceback is above)", err=True)
        sys.exit(EXIT_COULD_NOT_RUN)


@click.group()
@click.version_option(__version__)
def main() -> None:
    """Grade students' transfer-learning notebooks: run them, inspect the model, report.

    Example: grader grade submissions/ --rubric rubrics/transfer_learning.toml --out out/
    """


@main.command()
@click.argument("submissions", type=click.Path(path_type=Path))
@rubric_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("out"),
    show_default=True,
    help="Output folder (also holds the results store, results.sqlite, and grader.log).",
)
@quick_option
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Notebooks graded at once [default: 1 per core, as memory allows (4 GB each)].",
)
@click.option("--force", is_flag=True, help="Grade again what the results store already has.")
@click.option(
    "--student",
    "students",
    multiple=True,
    metavar="ID",
    help="Grade only this student of SUBMISSIONS again (repeatable); the rest of the class "
    "is kept from OUT.",
)
@click.option(
    "--dask",
    "dask_address",
    default=None,
    metavar="ADDRESS",
    help="Send each submission to this Dask scheduler (e.g. tcp://10.0.0.5:8786).",
)
@cache_option
@roster_option
def grade(
    submissions: Path,
    rubric_path: Path,
    out: Path,
    quick: bool,
    workers: int | None,
    force: bool,
    students: tuple[str, ...],
    dask_address: str | None,
    cache: Path | None,
    roster: Path | None,
) -> None:
    """Grade every notebook in SUBMISSIONS: a folder, one .ipynb, or an LMS .zip.

    Canvas and Moodle bulk-download names give the student ids. Each finished
    submission is kept in OUT/results.sqlite: run the same command again after an
    interruption and only what is missing is graded. Writes results.jsonl, grades.csv,
    grades.xlsx, canvas.csv, reports/, index.html and executed/ under
    --out, for the whole class: students graded into OUT by an earlier batch are kept,
    so one late notebook, or --student ID, regrades those students alone. Exit 0 when
    the batch completed (whatever the students scored), 2 when the command was wrong,
    3 when the batch could not run.

    Example: grader grade submissions.zip --rubric rubrics/transfer_learning.toml --out out --quick

    Example: grader grade submissions.zip --out out --quick --student 12345
    """
    from grader.batch.classrun import GradeRequest, grade_class
    from grader.rubric.limits import MODE_FULL, MODE_QUICK

    start = time.monotonic()
    mode = MODE_QUICK if quick else MODE_FULL
    request = GradeRequest(
        submissions=submissions,
        rubric=rubric_path,
        out=out,
        mode=mode,
        workers=workers,
        force=force,
        dask=dask_address,
        cache=cache,
        roster=roster,
        students=list(students),
    )
    try:
        outcome = grade_class(request, say=click.echo, warn=warn)
    except GraderError as exc:
        fail(exc)
        return
    _say_written(outcome.written, out, time.monotonic() - start)


def _say_written(written: dict[str, Path], out: Path, seconds: float) -> None:
    if not written:
        click.echo(f"Nothing changed: the outputs in {out} are up to date.")
        return
    click.echo(f"Done in {seconds:.1f} s. Class page: {written['index']}")
    click.echo(f"Spreadsheets: {written['grades']}, {written['xlsx']}, {written['canvas']}")
    click.echo(f"Results: {written['results']}")


@main.command()
@click.argument("notebook", type=click.Path(path_type=Path))
@rubric_option
@click.option("--full", is_flag=True, help="No quick-mode caps: as long as the real grading.")
@click.option("--static", "static_only", is_flag=True, help="Read the code only; run nothing.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for the HTML report [default: next to the notebook].",
)
@cache_option
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object on stdout (the record the batch stores, visible checks "
    "only); progress goes to stderr.",
)
def check(
    notebook: Path,
    rubric_path: Path,
    full: bool,
    static_only: bool,
    out: Path | None,
    cache: Path | None,
    output_format: str,
) -> None:
    """Check one notebook before you submit it, as the grader will (visible checks only).

    Prints a checklist: each check passed or not, its points, a hint and the cell to look
    at. Without --static the notebook runs in the grader's sandbox (quick mode unless
    --full) and an HTML report is written next to it. Exit 0 when every visible check
    passed, 1 when one did not, 2 when the command was wrong, 3 when grader could not
    run (the asset kit, the reference).

    Example: grader check my_week6.ipynb --static

    Example: grader check my_week6.ipynb --format json > verdict.json
    """
    from grader.batch.selfcheck import CheckRequest, as_json, checklist, self_check

    request = CheckRequest(
        notebook=notebook, rubric=rubric_path, full=full, static=static_only, out=out, cache=cache
    )
    as_text = output_format == "text"
    try:
        outcome = self_check(request, say=click.echo if as_text else warn, warn=warn)
    except SubmissionError as exc:  # --static only: the notebook cannot be read
        text = f"{notebook.name}: {exc}"
        click.echo(text if as_text else json.dumps({"ok": False, "error": text, "result": None}))
        sys.exit(exc.exit_code)
    except GraderError as exc:
        fail(exc)
        return
    lines = checklist(outcome) + ([f"Report: {outcome.report}"] if outcome.report else [])
    click.echo("\n".join(lines) if as_text else as_json(outcome))
    sys.exit(0 if outcome.ok else 1)


@main.command()
@rubric_option
@quick_option
@click.option(
    "--mode",
    type=click.Choice(list(MODES)),
    default=None,
    help="The mode to run it in: check is the self-check's caps [default: full; --quick: quick].",
)
@cache_option
@click.option("--force", is_flag=True, help="Run even when fresh figures are stored.")
def reference(
    rubric_path: Path, quick: bool, mode: str | None, cache: Path | None, force: bool
) -> None:
    """Run the rubric's reference solution and store its figures.

    Example: grader reference --rubric rubrics/transfer_learning.toml --quick

    Example: grader reference --rubric rubrics/transfer_learning.toml --mode check
    """
    from grader.batch.classrun import run_reference
    from grader.rubric.limits import MODE_FULL, MODE_QUICK

    if quick and mode not in (None, MODE_QUICK):
        fail(UsageError(f"--quick and --mode {mode} ask for two modes: give one"))
        return
    mode = mode or (MODE_QUICK if quick else MODE_FULL)
    try:
        figures = run_reference(rubric_path, mode, cache, force, say=click.echo, warn=warn)
    except GraderError as exc:
        fail(exc)
        return
    click.echo(
        f"Reference accuracy ({mode}): {figures.accuracy:.4f} "
        f"(ran in {figures.duration_s:.0f} s; key {figures.key})"
    )


@main.command()
@rubric_option
@modes_option(MODES, "Modes to calibrate (repeatable; default: quick and check).")
@seeds_option("Runs of the reference per mode (default: as many as grading uses, 3).")
@cache_option
@click.option("--force", is_flag=True, help="Run again even when stored runs exist.")
def calibrate(
    rubric_path: Path, modes: tuple[str, ...], seeds: int | None, cache: Path | None, force: bool
) -> None:
    """Run the reference under several seeds and print the accuracy check's band.

    Shows, per mode, the reference's figure for each seed, where full points start for a
    head-only and for a fine-tuned solution, and warns when the spread is wider than the
    tolerance: then the caps, not the student, decide the figure.

    Example: grader calibrate --rubric rubrics/transfer_learning.toml --mode quick --seeds 5
    """
    from grader.batch.calibrate import calibrate as run_calibration
    from grader.batch.calibrate import calibration_lines

    try:
        chosen = list(modes or ("quick", "check"))
        found = run_calibration(rubric_path, chosen, seeds, cache, force=force)
    except GraderError as exc:
        fail(exc)
        return
    for calibration in found:
        for line in calibration_lines(calibration):
            click.echo(line)


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@rubric_option
@roster_option
def report(out: Path, rubric_path: Path, roster: Path | None) -> None:
    """Rebuild every page and export from OUT/results.jsonl (no notebook runs).

    Example: grader report out --rubric rubrics/transfer_learning.toml --roster roster.csv
    """
    from grader.batch.classrun import rebuild_outputs

    try:
        outcome = rebuild_outputs(out, rubric_path, roster, say=click.echo)
    except GraderError as exc:
        fail(exc)
        return
    click.echo(f"Rebuilt {len(outcome.results)} report(s); class page: {outcome.written['index']}")


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
def feedback(out: Path) -> None:
    """Write what an LMS takes back in bulk into OUT/feedback/: a zip per student (their
    report and executed notebook), Canvas's re-upload zip and Moodle's feedback-files zip
    when the intake read those names. Made from OUT/results.jsonl as the last grade or
    report wrote it; students' copies never show copy flags or other students' names.

    Example: grader feedback out
    """
    from grader.batch.classout import write_feedback_of

    try:
        written = write_feedback_of(out)
    except GraderError as exc:
        fail(exc)
        return
    click.echo(f"Feedback for {len(written.students)} student(s): {out / 'feedback'}")
    for label, path in (("Canvas re-upload", written.canvas), ("Moodle", written.moodle)):
        if path:
            click.echo(f"  {label}: {path}")
    for note in written.notes:
        click.echo(f"  {note}")


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
    from grader.kit.assets import ensure_kit

    try:
        kit = ensure_kit(cache, progress=click.echo)
    except GraderError as exc:
        fail(exc)
        return
    click.echo(f"Asset kit ready: {kit.keras_home.parent}")


main.add_command(gradescope)
main.add_command(publish)
