"""Written answers, instructor overrides and late penalties (no kernel needed)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader.checks.review import (
    apply_overrides,
    finalize,
    lateness,
    read_overrides,
    submission_time,
)
from grader.checks.written import check_written
from grader.cli import main
from grader.errors import RubricError, UsageError
from grader.outputs.records import read_results_jsonl, write_results_jsonl
from grader.results import CheckResult, SubmissionResult
from grader.rubric.schema import LatePolicy, load_rubric

ROOT = Path(__file__).parent.parent
RUBRIC = ROOT / "rubrics" / "transfer_learning.toml"
UTC = dt.timezone.utc


def written_specs() -> dict[str, object]:
    return {c.id: c for c in load_rubric(RUBRIC).checks if c.kind == "written"}


def notebook(*markdown: str) -> nbformat.NotebookNode:
    cells = [new_code_cell("import tensorflow as tf")] + [new_markdown_cell(m) for m in markdown]
    return new_notebook(cells=cells)


GOOD_Q3 = (
    "## 3. Why freeze the convolutional base?\n"
    "Freezing keeps the pre-trained features (edges, textures) unchanged: the weights are not "
    "updated, so the large gradients from the random new classifier cannot destroy them, and "
    "there is less overfitting."
)
REWORDED_Q3 = (
    "**Freezing the base** - we stop the ImageNet weights from changing; otherwise the "
    "randomly initialised Dense layer would wreck the learned features. Fewer parameters train, "
    "so it is faster."
)


def test_a_good_answer_covers_every_concept_and_is_still_left_for_review() -> None:
    verdict = check_written(written_specs()["q3_freezing"], notebook(GOOD_Q3))
    assert verdict.score == 1.0 and verdict.review and not verdict.passed
    assert "4 of 4" in verdict.message and verdict.evidence[0].kind == "text"


def test_other_words_and_another_heading_style_still_count() -> None:
    verdict = check_written(written_specs()["q3_freezing"], notebook(REWORDED_Q3))
    assert verdict.score == 1.0, verdict.message


def test_order_of_answers_does_not_matter() -> None:
    specs = written_specs()
    q4 = "### Q4: Data augmentation\nRandom flips and rotations add variety, reduce overfitting."
    forward = notebook(GOOD_Q3, q4)
    backward = notebook(q4, GOOD_Q3)
    for nb in (forward, backward):
        assert check_written(specs["q3_freezing"], nb).score == 1.0
        assert check_written(specs["q4_augmentation"], nb).score == 0.75


def test_a_thin_answer_scores_low_and_says_it_is_short() -> None:
    nb = notebook("### Questions\n3. Freeze so the weights don't change.")
    verdict = check_written(written_specs()["q3_freezing"], nb)
    assert verdict.score == 0.25 and "short" in verdict.message


def test_a_missing_answer_scores_zero_and_says_so() -> None:
    nb = notebook("## 1. Concept of transfer learning\nReusing a pre-trained model.")
    verdict = check_written(written_specs()["q3_freezing"], nb)
    assert verdict.score == 0 and verdict.message.startswith("No answer found")


def test_code_section_headings_are_not_answers() -> None:
    nb = notebook(
        "## Data augmentation", "## 4. Why use data augmentation?\nFlips reduce overfitting."
    )
    verdict = check_written(written_specs()["q4_augmentation"], nb)
    assert "Flips reduce overfitting" in verdict.evidence[0].text


def test_rubric_refuses_a_written_check_without_concepts(tmp_path: Path) -> None:
    text = RUBRIC.read_text().replace('notebook = "../', f'notebook = "{ROOT}/')
    broken = text.replace(
        'concepts = [\n    ["pre-trained"', 'concepts_x = [\n    ["pre-trained"', 1
    )
    path = tmp_path / "rubric.toml"
    path.write_text(broken)
    with pytest.raises(RubricError, match="checks"):
        load_rubric(path)


# --- overrides -------------------------------------------------------------------------


def results() -> list[SubmissionResult]:
    def one(student: str) -> SubmissionResult:
        checks = [
            CheckResult("base_frozen", True, 2, 2, "ok", "runtime", "Frozen"),
            CheckResult("q3_freezing", False, 0.5, 1, "2 of 4", "static", "Q3", review=True),
        ]
        result = SubmissionResult(student, f"{student}.ipynb", "0" * 64, "graded", 2.5, 3, checks)
        return finalize(result, None)

    return [one("s1"), one("s2")]


def write_overrides(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "check", "points", "comment"])
        writer.writerows(rows)
    return path


def test_an_override_applies_and_keeps_the_automatic_score(tmp_path: Path) -> None:
    batch = results()
    assert "review_suggested" in batch[0].flags
    path = write_overrides(tmp_path / "overrides.csv", [("s1", "q3_freezing", "1", "Good answer")])
    apply_overrides(batch, read_overrides(path), path)
    first = finalize(batch[0], None)
    q3 = first.checks[1]
    assert (q3.score, q3.auto_score, q3.reviewed, q3.comment) == (1.0, 0.5, True, "Good answer")
    assert (first.score, first.auto_score) == (3.0, 2.5)
    assert "review_suggested" not in first.flags
    assert "review_suggested" in finalize(batch[1], None).flags


def test_overrides_round_trip_through_grader_report_and_can_change(tmp_path: Path) -> None:
    write_results_jsonl(results(), tmp_path / "results.jsonl")
    runner = CliRunner()
    write_overrides(tmp_path / "overrides.csv", [("s1", "q3_freezing", "1", "Full marks")])
    assert runner.invoke(main, ["report", str(tmp_path), "--rubric", str(RUBRIC)]).exit_code == 0
    write_overrides(tmp_path / "overrides.csv", [("s1", "base_frozen", "0", "Copied code")])
    outcome = runner.invoke(main, ["report", str(tmp_path), "--rubric", str(RUBRIC)])
    assert outcome.exit_code == 0, outcome.output
    s1 = read_results_jsonl(tmp_path / "results.jsonl")[0]
    frozen, q3 = s1.checks
    assert (q3.score, q3.reviewed, q3.auto_score) == (0.5, False, None)  # the old override is gone
    assert (frozen.score, frozen.auto_score, frozen.comment) == (0.0, 2.0, "Copied code")
    assert (s1.score, s1.auto_score) == (0.5, 2.5)
    with open(tmp_path / "grades.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    assert (row["student"], float(row["score"])) == ("s1", 0.5)
    page = (tmp_path / "reports" / "s1.html").read_text()
    assert "Reviewed by your instructor" in page and "Copied code" in page


def test_a_bad_override_names_the_line(tmp_path: Path) -> None:
    path = write_overrides(tmp_path / "o.csv", [("s1", "q3_freezing", "lots", "")])
    with pytest.raises(UsageError, match="line 2"):
        read_overrides(path)
    path = write_overrides(tmp_path / "o.csv", [("s9", "q3_freezing", "1", "")])
    with pytest.raises(UsageError, match="no student 's9'"):
        apply_overrides(results(), read_overrides(path), path)


# --- late submissions ------------------------------------------------------------------

DUE = dt.datetime(2026, 11, 20, 23, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("submitted", "grace", "days", "penalty"),
    [
        (DUE, 0, 0, 0.0),  # exactly on the deadline: on time
        (DUE + dt.timedelta(seconds=1), 0, 1, 1.0),  # one second late: one started day
        (DUE + dt.timedelta(minutes=10), 15, 0, 0.0),  # inside the grace minutes
        (DUE + dt.timedelta(days=1), 0, 1, 1.0),
        (DUE + dt.timedelta(days=1, seconds=1), 0, 2, 2.0),
        (DUE + dt.timedelta(days=30), 0, 30, 5.0),  # capped at max_penalty
    ],
)
def test_late_penalty_on_the_boundaries(
    submitted: dt.datetime, grace: int, days: int, penalty: float
) -> None:
    policy = LatePolicy(due=DUE, grace_minutes=grace, penalty_per_day=0.1, max_penalty=0.5)
    assert lateness(submitted, policy, max_score=10) == (days, penalty)


def test_submission_time_from_the_lms_name_else_the_file_time(tmp_path: Path) -> None:
    policy = LatePolicy(due=DUE)
    named = tmp_path / "week6_s1001_attempt_2026-11-21-08-30-00.ipynb"
    named.write_text("{}")
    assert submission_time(named, policy) == (
        dt.datetime(2026, 11, 21, 8, 30, tzinfo=UTC),
        "file_name",
    )
    plain = tmp_path / "s1002.ipynb"
    plain.write_text("{}")
    stamp = DUE.timestamp() - 60
    os.utime(plain, (stamp, stamp))
    assert submission_time(plain, policy) == (DUE - dt.timedelta(minutes=1), "file_time")


def test_late_penalty_is_its_own_column_and_line(tmp_path: Path) -> None:
    text = RUBRIC.read_text().replace('notebook = "../', f'notebook = "{ROOT}/')
    text += "\n[late]\ndue = 2026-11-20T23:59:00Z\npenalty_per_day = 0.1\n"
    rubric_path = tmp_path / "rubric.toml"
    rubric_path.write_text(text)
    assert load_rubric(rubric_path).late == LatePolicy(due=DUE, penalty_per_day=0.1)
    batch = results()
    batch[0].late = {"submitted_at": "2026-11-21T10:00:00+00:00", "source": "file_name"}
    write_results_jsonl(batch, tmp_path / "results.jsonl")
    outcome = CliRunner().invoke(main, ["report", str(tmp_path), "--rubric", str(rubric_path)])
    assert outcome.exit_code == 0, outcome.output
    with open(tmp_path / "grades.csv", newline="") as handle:
        rows = {r["student"]: r for r in csv.DictReader(handle)}
    assert float(rows["s1"]["late_penalty"]) == pytest.approx(0.3)  # 10% of 3 points, 1 day
    assert float(rows["s1"]["score"]) == pytest.approx(2.2)
    assert float(rows["s2"]["late_penalty"]) == 0.0
    page = (tmp_path / "reports" / "s1.html").read_text()
    assert "1 day(s) after the deadline" in page and "late penalty" in page
    record = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0])
    assert record["late"]["days_late"] == 1 and record["auto_score"] == 2.5


WRITTEN = ROOT / "tests" / "fixtures" / "written"


def test_a_students_answer_sheet_above_the_code_is_read_as_a_reader_reads_it() -> None:
    """One real student's answers (``week6_sample_answer.md``, names redacted) pasted, one
    numbered item a cell, above the reference's code: each question's answer is found
    under the heading that asks it, not under a later one sharing its words ("7. Take a
    screenshot of the data augmentation layers") or the notebook's title."""
    nb = nbformat.read(WRITTEN / "answer_sheet_above_the_code.ipynb", as_version=4)
    seen = {}
    for spec_id, spec in written_specs().items():
        result = check_written(spec, nb)
        cell = result.evidence[0].cell if result.evidence else None
        seen[spec_id] = {"score": result.score, "message": result.message, "cell": cell}
    expected = json.loads((WRITTEN / "answer_sheet_above_the_code.expected.json").read_text())
    assert seen == expected
