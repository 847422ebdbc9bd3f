"""``grader publish``: thin click commands over :mod:`grader.publish.student`."""

from __future__ import annotations

from pathlib import Path

import click

from grader.clishared import cache_option, fail, modes_option, rubric_option, seeds_option
from grader.errors import GraderError
from grader.rubric.limits import STUDENT_MODES


@click.group()
def publish() -> None:
    """What an instructor hands out.

    Example: grader publish student --rubric rubrics/transfer_learning.toml --out week6-check
    """


@publish.command("student")
@rubric_option
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The folder to write (new or empty).",
)
@modes_option(STUDENT_MODES, "Modes to publish figures for (repeatable) [default: check and full].")
@seeds_option("Runs of the reference per mode [default: as many as grading uses].")
@click.option(
    "--package",
    required=True,
    help="What students pip install: the course's address for grader, e.g. "
    "'grader[tf] @ git+https://example.edu/course/grader.git' (the name grader on PyPI "
    "is another project).",
)
@cache_option
def publish_student_command(
    rubric_path: Path,
    out: Path,
    modes: tuple[str, ...],
    seeds: int | None,
    package: str,
    cache: Path | None,
) -> None:
    """Write the folder students check their notebooks with: a rubric of the visible
    checks with the reference's figures, the asset kit, a practice holdout, a README.

    The reference runs here in each mode (minutes); nothing in the folder names the
    reference, the course's holdout or a hidden check.

    Example: grader publish student --rubric rubrics/transfer_learning.toml --out week6-check
    --package "grader[tf] @ git+https://example.edu/course/grader.git"
    """
    from grader.publish.student import publish_student

    try:
        bundle = publish_student(
            rubric_path, out, modes or STUDENT_MODES, seeds, cache, package, say=click.echo
        )
    except GraderError as exc:
        fail(exc)
        return
    for mode in bundle.modes:
        runs = ", ".join(f"{v:.3f}" for v in mode.final)
        figure = f"{mode.mode}: reference {mode.accuracy:.3f}"
        click.echo(f"{figure} (runs {runs}; {mode.images} images)")
    click.echo(
        f"Wrote {out} (kit {bundle.kit_mb:.0f} MB; {bundle.hidden} hidden check(s) left out, "
        "counted). Hand the whole folder to students; its README.md says what to run."
    )
