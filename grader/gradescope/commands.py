"""``grader gradescope``: the autograder bundle, and what runs inside Gradescope.

Thin click commands over :mod:`grader.gradescope.bundle` and
:mod:`grader.gradescope.autograder`, imported inside each command.
"""

from __future__ import annotations

from pathlib import Path

import click

from grader.clishared import fail, rubric_option, warn
from grader.errors import GraderError


@click.group()
def gradescope() -> None:
    """Gradescope's autograder, run by grader itself.

    Example: grader gradescope build --rubric rubrics/transfer_learning.toml --out autograder.zip
    """


@gradescope.command("build")
@rubric_option
@click.option(
    "--out",
    "target",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("autograder.zip"),
    show_default=True,
    help="The zip to upload to Gradescope.",
)
@click.option("--full", is_flag=True, help="Grade uncapped (default: quick mode).")
@click.option("--leaderboard", is_flag=True, help="Put the measured accuracy on a leaderboard.")
def gradescope_build(rubric_path: Path, target: Path, full: bool, leaderboard: bool) -> None:
    """Write the autograder zip (setup.sh, run_autograder, the rubric, the reference, grader).

    Example: grader gradescope build --rubric rubrics/transfer_learning.toml --out autograder.zip
    """
    from grader.gradescope.bundle import build_bundle

    try:
        path = build_bundle(rubric_path, target, "full" if full else "quick", leaderboard, warn)
    except GraderError as exc:
        fail(exc)
        return
    click.echo(f"Autograder bundle: {path} (upload it under the assignment's Configure Autograder)")


@gradescope.command("setup")
@click.option("--root", type=click.Path(path_type=Path), default=Path("/autograder"))
def gradescope_setup(root: Path) -> None:
    """setup.sh's grading part, in the image: the kit and the reference's figures.

    Example: grader gradescope setup --root /autograder
    """
    from grader.gradescope.autograder import setup_autograder

    try:
        setup_autograder(root, say=click.echo)
    except GraderError as exc:
        fail(exc)


@gradescope.command("run")
@click.option("--root", type=click.Path(path_type=Path), default=Path("/autograder"))
def gradescope_run(root: Path) -> None:
    """What run_autograder runs: grade ROOT/submission, write ROOT/results/results.json.

    Example: grader gradescope run --root /autograder
    """
    from grader.gradescope.autograder import run_autograder

    try:
        path = run_autograder(root, say=warn)
    except GraderError as exc:
        fail(exc)
        return
    click.echo(f"Results: {path}")
