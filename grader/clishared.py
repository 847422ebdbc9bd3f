"""What every ``grader`` command shares: its options, and how it fails and warns.

Imports click alone, so that ``grader --help`` stays fast wherever the commands live
(:mod:`grader.cli`, :mod:`grader.gradescope.commands`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from grader.errors import GraderError

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_RUBRIC = "rubrics/transfer_learning.toml"

roster_option = click.option(
    "--roster",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Canvas's gradebook export (as downloaded): each student's identity in canvas.csv.",
)
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


def modes_option(choices: tuple[str, ...], help: str) -> Callable[[F], F]:
    """``--mode`` (repeatable) into ``modes``: the modes a command runs the reference in."""
    return click.option(
        "--mode", "modes", type=click.Choice(list(choices)), multiple=True, help=help
    )


def seeds_option(help: str) -> Callable[[F], F]:
    """``--seeds``: how many runs of the reference per mode (default: as grading uses)."""
    return click.option("--seeds", type=click.IntRange(2, 50), default=None, help=help)


def fail(exc: GraderError) -> None:
    """One line on stderr, and the error's own exit code (2 for a usage error)."""
    click.echo(f"grader: {exc}", err=True)
    sys.exit(exc.exit_code)


def warn(message: str) -> None:
    click.echo(message, err=True)
