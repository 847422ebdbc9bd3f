from __future__ import annotations

import tempfile
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from grader.cli import main
from grader.run.machine import MSG_NOT_ENFORCED
from tests.conftest import dead_pid, owned_prefix

SANDBOX_WARNING = MSG_NOT_ENFORCED.split("{")[0]


def commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append(prefix + (name,))
        if isinstance(command, click.Group):
            found += commands(command, prefix + (name,))
    return found


@pytest.mark.parametrize("path", commands(main))
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output


def test_missing_rubric_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "grade",
            str(tmp_path),
            "--rubric",
            str(tmp_path / "none.toml"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2
    assert error_lines(result.output) == [
        f"grader: {tmp_path / 'none.toml'}: cannot read the rubric (No such file or directory)"
    ]


def error_lines(output: str) -> list[str]:
    """The output's lines but the machine's own warning (limits it cannot enforce)."""
    return [line for line in output.splitlines() if not line.startswith(SANDBOX_WARNING)]


@pytest.fixture
def stale_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kernel folder left by a grader that was killed (its owner pid is gone), in a
    temporary folder of this test's own, where no other grader sweeps it first."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return Path(tempfile.mkdtemp(prefix=owned_prefix(dead_pid())))


def test_a_usage_error_is_one_line_even_after_a_killed_grader(
    tmp_path: Path, stale_run_folder: Path
) -> None:
    args = ["grade", str(tmp_path), "--rubric", str(tmp_path / "none.toml")]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert len(error_lines(result.output)) == 1, result.output
    assert "cannot read the rubric" in result.output
    assert stale_run_folder.is_dir()  # left for the next run that grades


def test_unreadable_submissions_is_a_usage_error(tmp_path: Path) -> None:
    rubric = tmp_path / "r.toml"
    rubric.write_text("[[checks]]\nid = 'base_frozen'\npoints = 1\n")
    result = CliRunner().invoke(main, ["grade", str(tmp_path / "missing"), "--rubric", str(rubric)])
    assert result.exit_code == 2
    assert "missing: no such file or folder" in result.output


def test_report_without_results_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "no results to report on" in result.output


def test_a_folder_without_notebooks_is_a_usage_error(tmp_path: Path) -> None:
    rubric = tmp_path / "r.toml"
    rubric.write_text("[[checks]]\nid = 'base_frozen'\npoints = 1\n")
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["grade", str(tmp_path / "empty"), "--rubric", str(rubric)])
    assert result.exit_code == 2
    assert "no .ipynb notebooks found" in result.output


def test_an_output_path_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "class").mkdir()
    (tmp_path / "class" / "a.ipynb").write_text("{}")
    (tmp_path / "out").write_text("not a folder")
    rubric = tmp_path / "r.toml"
    rubric.write_text("[[checks]]\nid = 'base_frozen'\npoints = 1\n")
    result = CliRunner().invoke(
        main,
        ["grade", str(tmp_path / "class"), "--rubric", str(rubric), "--out", str(tmp_path / "out")],
    )
    assert result.exit_code == 2
    assert "cannot write the output folder" in result.output


def test_report_on_a_damaged_results_file_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "results.jsonl").write_text('{"student": \n')
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert error_lines(result.output) == [
        f"grader: {tmp_path / 'results.jsonl'}, line 1: malformed JSON "
        "(Expecting value: line 2 column 1 (char 13))"
    ]
