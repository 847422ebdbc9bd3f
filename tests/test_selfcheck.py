"""``grader check``: the student's checklist, hidden checks, habits and Keras 2 pitfalls."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from grader import cli
from grader.batch.selfcheck import CheckRequest, checklist, self_check
from grader.checks.notes import (
    EXPERIMENTAL_FIX,
    FIT_GENERATOR_FIX,
    LEGACY_FIX,
    LR_FIX,
    SAVE_FIX,
    advise,
    find_notes,
)
from grader.cli import main
from grader.errors import UsageError
from grader.notebook import COLAB_COPY, GRADING_VARIABLE, answer_html, check_colab, check_here
from grader.results import CellError

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
HABITS = FIXTURES / "habits"
RUBRIC = ROOT / "rubrics" / "transfer_learning.toml"
FAST_RUBRIC = FIXTURES / "rubric_fast.toml"
GOOD = ROOT / "submissions" / "s1003_smith.ipynb"
NO_POOLING = ROOT / "submissions" / "s1004_chen.ipynb"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check", *args])
    return result.exit_code, result.output


def hidden_rubric(tmp_path: Path, check_id: str) -> Path:
    text = RUBRIC.read_text().replace(f'id = "{check_id}"', f'id = "{check_id}"\nhidden = true', 1)
    text = text.replace('notebook = "../', f'notebook = "{ROOT}/')
    path = tmp_path / "rubric.toml"
    path.write_text(text)
    return path


def test_static_checklist_marks_each_verdict_and_the_check_it_cannot_run() -> None:
    code, out = run(str(GOOD), "--static")
    assert code == 0  # nothing failed; accuracy simply needs a run
    lines = out.splitlines()
    assert lines[0] == "s1003_smith: 11/14 (static; status static)"  # 8 code + 3 pre-scored
    assert sum(line.startswith("[PASS]") for line in lines) == 4
    assert sum(line.startswith("[NOTE] Q") for line in lines) == 4  # written: for review
    assert "[----] Accuracy close to the reference  0/2  (none)" in lines
    assert lines[-1] == (
        "4 of 5 checks passed; 1 not run here. "
        "4 written answer(s) pre-scored: your instructor reviews them."
    )
    assert "All" not in lines[-1]


def test_static_failure_gives_hint_and_exit_1(tmp_path: Path) -> None:
    nb = nbformat.read(GOOD, as_version=4)
    for cell in nb.cells:
        cell.source = cell.source.replace("GlobalAveragePooling2D()", "Flatten()")
    broken = tmp_path / "flatten_head.ipynb"
    nbformat.write(nb, broken)
    code, out = run(str(broken), "--static")
    assert code == 1
    assert "[FAIL] Pooling classifier head  0/2  (static)" in out
    assert "Hint: Put GlobalAveragePooling2D (or pooling='avg' on the base)" in out
    assert out.splitlines()[-1].startswith("1 of 5 checks not passed.")


def test_usage_errors_exit_2_and_a_broken_notebook_exits_1(tmp_path: Path) -> None:
    assert run(str(tmp_path / "missing.ipynb"), "--static")[0] == 2
    assert run(str(GOOD), "--static", "--rubric", str(tmp_path / "none.toml"))[0] == 2
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{ not json")
    code, out = run(str(broken), "--static")
    assert code == 1 and "not valid JSON" in out


def test_grader_unable_to_run_exits_3_not_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A course's CI tells "grader could not run" (3) from "a check failed" (1)."""
    cache = tmp_path / "cache"
    cache.write_text("a file where the kit's cache folder must be")
    code, out = run(str(GOOD), "--rubric", str(FAST_RUBRIC), "--cache", str(cache))
    assert code == 3 and "cannot use this cache folder" in out

    def broken() -> None:
        raise RuntimeError("a failure nobody foresaw")

    monkeypatch.setattr(cli, "main", broken)
    with pytest.raises(SystemExit) as info:
        cli.entry()
    assert info.value.code == 3
    assert "a failure nobody foresaw" in capsys.readouterr().err


def test_the_json_checklist_is_the_record_without_hidden_checks(tmp_path: Path) -> None:
    rubric = hidden_rubric(tmp_path, "pooling_head")
    code, out = run(str(GOOD), "--static", "--rubric", str(rubric), "--format", "json")
    assert code == 0
    verdict = json.loads(out)
    assert (verdict["ok"], verdict["all_passed"], verdict["hidden_not_run"]) == (True, False, 1)
    checks = [c["id"] for c in verdict["result"]["checks"]]
    assert "pooling_head" not in checks and "include_top_false" in checks
    assert "pooling_head" not in out and "Pooling classifier head" not in out  # id, title
    assert verdict["not_run"] == ["accuracy"] and verdict["result"]["mode"] == "static"
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{ not json")
    code, out = run(str(broken), "--static", "--format", "json")
    assert code == 1 and json.loads(out)["ok"] is False and "not valid JSON" in out


def test_hidden_checks_are_counted_never_shown_and_never_all_passed(tmp_path: Path) -> None:
    rubric = hidden_rubric(tmp_path, "pooling_head")
    code, out = run(str(GOOD), "--static", "--rubric", str(rubric))
    assert code == 0
    assert "1 hidden check(s) not run here" in out
    assert "Pooling" not in out and "GlobalAveragePooling2D" not in out  # title, hint
    assert "All" not in out


def test_all_passed_only_when_every_check_ran(tmp_path: Path) -> None:
    from grader.batch.selfcheck import SelfCheck, check_static, summary
    from grader.rubric.schema import load_rubric

    outcome = check_static(GOOD, load_rubric(RUBRIC))
    assert not outcome.all_passed  # accuracy was not run
    assert not outcome.all_passed
    outcome.result.checks = [c for c in outcome.result.checks if c.id != "accuracy"]
    assert not outcome.all_passed  # written answers are pre-scored, never "passed" here
    outcome.result.checks = [c for c in outcome.result.checks if not c.review]
    assert outcome.all_passed and summary(outcome) == "All 4 checks passed."
    hidden = SelfCheck(result=outcome.result, hidden=1, static_only=True)
    assert not hidden.all_passed and "All" not in summary(hidden)


def test_colab_habits_are_noted_with_cell_and_line() -> None:
    notes = find_notes(nbformat.read(HABITS / "colab_habits.ipynb", as_version=4))
    assert [(n.cell, n.line, n.kind) for n in notes] == [
        (1, 1, "colab"),
        (1, 2, "colab"),
        (1, 3, "colab"),
        (2, 1, "colab"),
        (2, 2, "colab"),
        (3, 1, "colab"),
        (3, 2, "colab"),
        (3, 3, "colab"),
        (4, 2, "colab"),
        (5, 1, "colab"),
    ]
    texts = [n.text for n in notes]
    assert "Package install skipped" in texts[0] and "fine" in texts[2]
    assert "Google Drive is not mounted" in texts[6]
    assert "at the Drive path the code names" in texts[8]  # a Drive path: the course's data


def test_keras2_pitfalls_are_noted_with_the_fix() -> None:
    notes = find_notes(nbformat.read(HABITS / "keras2_pitfalls.ipynb", as_version=4))
    fixes = {(n.cell, n.line): n.text for n in notes}
    assert fixes[(2, 1)] == EXPERIMENTAL_FIX
    assert fixes[(3, 1)] == LEGACY_FIX
    assert fixes[(4, 1)] == LR_FIX
    assert fixes[(5, 2)] == FIT_GENERATOR_FIX
    assert fixes[(6, 1)] == SAVE_FIX and fixes[(7, 2)] == SAVE_FIX
    assert "image_dataset_from_directory" in fixes[(7, 1)]


@pytest.mark.parametrize(
    ("ename", "evalue", "fix"),
    [
        ("AttributeError", "module 'layers' has no attribute 'experimental'", EXPERIMENTAL_FIX),
        ("ImportError", "`keras.optimizers.legacy` is not supported in Keras 3.", LEGACY_FIX),
        ("ValueError", "Argument(s) not recognized: {'lr': 0.001}", LR_FIX),
        ("AttributeError", "'Model' object has no attribute 'fit_generator'", FIT_GENERATOR_FIX),
        ("ValueError", "Invalid filepath extension for saving. Please add", SAVE_FIX),
        ("NameError", "name 'x' is not defined", ""),
    ],
)  # fmt: skip
def test_errors_get_their_fix(ename: str, evalue: str, fix: str) -> None:
    assert advise(CellError(cell=0, ename=ename, evalue=evalue)) == fix


def test_every_command_help_has_an_example() -> None:
    result = CliRunner().invoke(main, ["check", "--help"])
    assert result.exit_code == 0 and "Example: grader check" in result.output


def test_check_here_is_inert_while_grading(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(GRADING_VARIABLE, "1")
    assert check_here("anything.ipynb") == 0
    assert "does nothing while the notebook is being graded" in capsys.readouterr().out


def test_in_colab_the_running_notebook_is_what_gets_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Colab hands the kernel the notebook as JSON (``get_ipynb``): that copy, saved in
    the working folder, is checked; outside Colab the cell says what to use instead."""
    monkeypatch.delenv(GRADING_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)
    running = json.loads(GOOD.read_text())
    code = check_colab(static=True, rubric=RUBRIC, fetch=lambda: running)
    assert code == 0 and json.loads((tmp_path / COLAB_COPY).read_text()) == running
    assert "[PASS] MobileNetV2 loaded without its ImageNet classifier" in capsys.readouterr().out
    assert check_colab(static=True, rubric=RUBRIC) == 2  # no google.colab here
    assert "runs in Google Colab" in capsys.readouterr().out


def test_check_here_shows_the_static_checklist(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(GRADING_VARIABLE, raising=False)
    monkeypatch.chdir(ROOT)
    assert check_here(GOOD, static=True) == 0
    assert "[PASS] MobileNetV2 loaded without its ImageNet classifier" in capsys.readouterr().out


@pytest.mark.kernel
def test_check_runs_habits_without_a_crash(tmp_path: Path) -> None:
    notebook = tmp_path / "colab_habits.ipynb"
    shutil.copy(HABITS / "colab_habits.ipynb", notebook)
    code, out = run(str(notebook), "--rubric", str(FAST_RUBRIC))
    assert code == 1  # no model at all: the checks fail, but nothing crashed
    assert "Error in cell" not in out, out
    assert "Note, cell 4 line 1: Google Drive is not mounted" in out
    executed = (tmp_path / "colab_habits.report.html").read_text()
    assert "Notes on the code" in executed
    assert "the last cell ran" not in out  # outputs go to the report, not the checklist


@pytest.mark.kernel
def test_check_explains_keras2_errors_next_to_them(tmp_path: Path) -> None:
    notebook = tmp_path / "keras2_pitfalls.ipynb"
    shutil.copy(HABITS / "keras2_pitfalls.ipynb", notebook)
    code, out = run(str(notebook), "--rubric", str(FAST_RUBRIC), "--out", str(tmp_path / "r"))
    assert code == 1
    lines = out.splitlines()
    for cell, fix in [(3, EXPERIMENTAL_FIX), (4, LEGACY_FIX), (5, LR_FIX), (6, FIT_GENERATOR_FIX)]:
        at = next(i for i, line in enumerate(lines) if line.startswith(f"Error in cell {cell}:"))
        assert lines[at + 1] == f"       Fix: {fix}", lines[at : at + 2]
    report = (tmp_path / "r" / "keras2_pitfalls.report.html").read_text()
    assert "How to fix:" in report


def test_check_here_shows_the_checklist_escaped_with_a_link_to_the_report() -> None:
    text = "[FAIL] <script>alert(1)</script>\nReport: /work/my week6.report.html\n"
    page = answer_html(text, 1)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.startswith('<pre style="border-left:4px solid #b3261e;padding-left:8px">')
    assert page.endswith('</pre><p><a href="my week6.report.html">Open the report</a></p>')
    assert answer_html("All 5 checks passed.", 0) == (
        '<pre style="border-left:4px solid #116329;padding-left:8px">All 5 checks passed.</pre>'
    )


def test_the_library_self_check_is_what_the_command_prints(tmp_path: Path) -> None:
    outcome = self_check(CheckRequest(notebook=GOOD, rubric=RUBRIC, static=True))
    assert outcome.report is None and outcome.static_only and outcome.ok
    assert checklist(outcome) == run(str(GOOD), "--static")[1].splitlines()
    with pytest.raises(UsageError, match="no such notebook"):
        self_check(CheckRequest(notebook=tmp_path / "none.ipynb", rubric=RUBRIC, static=True))
