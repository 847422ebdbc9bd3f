"""Untrusted input, continued: intake limits, hostile code for copy detection, what a
kernel leaves in its folder, and names, links and ids that claim what they are not.

Real files, real rubrics; no kernel (``test_untrusted.py`` has the first part).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import time
from pathlib import Path

import nbformat
import pytest

from grader.batch.pipeline import GradingContext, run_flags, run_status
from grader.batch.runners import grade_task, keep_executed
from grader.checks.review import lateness, submission_time
from grader.errors import KernelOutputError
from grader.intake.copies import find_copies
from grader.intake.lms import gather
from grader.outputs.names import output_name, report_names
from grader.results import SubmissionResult
from grader.rubric.schema import LatePolicy, load_rubric
from grader.run.execute import Execution
from grader.run.probe import EVENTS_FILE, MAX_EVENTS_BYTES, read_events

ROOT = Path(__file__).resolve().parent.parent

NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 4})
"""A notebook with no cells: graded ``invalid`` at once, no kernel started."""


def result(student: str) -> SubmissionResult:
    return SubmissionResult(student=student, file=f"{student}.ipynb", sha256="0", status="graded")


# --- 5. intake limits, and copy detection that cannot be held up -------------------------

SMALL_LIMITS = "[limits]\nmax_notebook_mb = 1\nmax_cell_kb = 2\n"
ONE_CHECK = '[[checks]]\nid = "base_frozen"\npoints = 2\n'


def _notebook(*sources: str) -> str:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": "# Week 6"}]
    cells += [
        {"cell_type": "code", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
        for s in sources
    ]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 4})


def test_intake_limits_are_rubric_keys_with_sane_defaults(tmp_path: Path) -> None:
    (tmp_path / "default.toml").write_text(ONE_CHECK)
    (tmp_path / "small.toml").write_text(SMALL_LIMITS + ONE_CHECK)
    limits = load_rubric(tmp_path / "default.toml").limits
    assert (limits.max_notebook_mb, limits.max_cell_kb) == (25, 100)
    limits = load_rubric(tmp_path / "small.toml").limits
    assert (limits.max_notebook_mb, limits.max_cell_kb) == (1, 2)
    course = (ROOT / "rubrics" / "transfer_learning.toml").read_text()
    assert "max_notebook_mb = 25" in course and "max_cell_kb = 100" in course


def test_an_over_limit_notebook_is_an_invalid_row_saying_which_limit(tmp_path: Path) -> None:
    (tmp_path / "small.toml").write_text(SMALL_LIMITS + ONE_CHECK)
    rubric = load_rubric(tmp_path / "small.toml")
    ctx = GradingContext(rubric, None, None, None, "quick")  # type: ignore[arg-type]
    big, cell, fine = (tmp_path / f"{n}.ipynb" for n in ("big", "cell", "fine"))
    big.write_text(_notebook("x = 1", "s = '" + "x" * 1_200_000 + "'"))
    cell.write_text(_notebook("x = 1", "s = '" + "x" * 3_000 + "'"))
    fine.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    results = {p.stem: grade_task(p, ctx, p.stem) for p in (big, cell, fine)}
    assert {r.status for r in results.values()} == {"invalid"}
    assert "1.1 MB, more than the 1 MB" in results["big"].message
    assert "max_notebook_mb" in results["big"].message
    assert "cell 3 holds 3 KB of source, more than the 2 KB" in results["cell"].message
    assert "max_cell_kb" in results["cell"].message
    assert results["fine"].message == "the notebook has no cells"  # the limits pass it on


def test_copy_detection_stays_linear_on_hostile_code() -> None:
    hostile = {
        "quotes": _notebook("'\\" * 100_000),  # a string that never closes, escapes only
        "defs": _notebook("def a(" * 33_000),  # a thousand unclosed parameter lists
        "literal": _notebook("s = '" + "x" * 12_800_000 + "'"),
        "copy": _notebook("'\\" * 100_000),
    }
    start = time.monotonic()
    found = find_copies({k: v.encode() for k, v in hostile.items()})
    assert time.monotonic() - start < 10  # 200 s and more before
    assert set(found) == {"quotes", "copy"}


def test_past_its_time_budget_copy_detection_compares_bytes_only() -> None:
    code = "\n".join(f"value_{n} = compute({n}, rate=0.{n})" for n in range(40))
    notebooks = {
        "a": _notebook(code).encode(),
        "b": _notebook(code + "\n# mine").encode(),  # same code, other bytes
        "c": _notebook(code).encode(),  # the same file as a's
    }
    assert set(find_copies(notebooks)) == {"a", "b", "c"}
    assert set(find_copies(notebooks, budget_s=0)) == {"a", "c"}


# --- 6. what the kernel leaves is its doing: a result, not a grader failure --------------


def test_a_records_file_made_a_folder_is_the_students_error(tmp_path: Path) -> None:
    (tmp_path / EVENTS_FILE).mkdir()
    with pytest.raises(KernelOutputError, match="not a file") as info:
        read_events(tmp_path)
    assert info.value.status == "error"
    run = Execution(nb=nbformat.v4.new_notebook(), root=tmp_path, unreadable=str(info.value))
    assert run_status(run) == "error" and "kernel_output_unreadable" in run_flags(run)


def test_records_nested_past_any_depth_are_skipped_not_raised(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    lines = [json.dumps({"event": "compile"}), deep, '{"event": ' * 50_000, '{"event": "fit"}']
    (tmp_path / EVENTS_FILE).write_text("\n".join(lines) + "\n")
    assert [e["event"] for e in read_events(tmp_path)] == ["compile", "fit"]


def test_records_past_their_size_cap_are_refused_unread(tmp_path: Path) -> None:
    with open(tmp_path / EVENTS_FILE, "wb") as handle:
        handle.truncate(MAX_EVENTS_BYTES + 1)  # sparse: no disk used
    with pytest.raises(KernelOutputError, match="more than"):
        read_events(tmp_path)


# --- 7. integrity: what a name, a link or a look-alike id can claim ----------------------

DUE = datetime.datetime(2026, 11, 20, 23, 59, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize(
    "name",
    [
        "week6-2026-11-20-23-00-00.ipynb",  # no LMS name: the date is the student's
        "smithjane_12345_67890_week6_2026-11-20-23-00-00.ipynb",  # Canvas writes no time
        "smithjane_12345_67890_a_b_attempt_2026-11-20-23-00-00.ipynb",
        "Jane Smith_12345_assignsubmission_file_x_y_attempt_2026-11-20-23-00-00.ipynb",
    ],
)
def test_a_date_in_the_students_own_file_name_is_never_the_submission_time(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    path.write_text("{}")
    late = DUE.timestamp() + 3 * 86400
    os.utime(path, (late, late))
    policy = LatePolicy(due=DUE, penalty_per_day=0.1)
    submitted, source = submission_time(path, policy)
    assert (submitted.timestamp(), source) == (late, "file_time")
    assert lateness(submitted, policy, 10) == (3, 3.0)


def test_the_lms_time_is_read_from_its_own_part_of_the_name(tmp_path: Path) -> None:
    path = (
        tmp_path
        / "Week 6_jsmith_attempt_2026-11-22-08-30-00_mine_attempt_2026-11-01-00-00-00.ipynb"
    )
    path.write_text("{}")
    submitted, source = submission_time(path, LatePolicy(due=DUE))
    assert (submitted.day, source) == (22, "file_name")


def test_a_link_out_of_the_submissions_folder_is_refused_and_named(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "shadow.ipynb").write_text("root:$6$...")
    folder = tmp_path / "subs"
    folder.mkdir()
    (folder / "alice.ipynb").write_text(NOTEBOOK)
    (folder / "mallory.ipynb").symlink_to(secret / "shadow.ipynb")
    (folder / "eve").symlink_to(secret, target_is_directory=True)
    (folder / "bob.ipynb").symlink_to(folder / "alice.ipynb")  # inside: fine
    intake = gather(folder, tmp_path / "out")
    assert sorted(e.student for e in intake.entries) == ["alice", "bob"]
    assert intake.problems == [
        "'mallory.ipynb': rejected: a symbolic link that leads outside the submissions folder"
    ]  # a linked folder (eve/) is not entered at all


def test_ids_that_fold_alike_never_share_an_output(tmp_path: Path) -> None:
    twins = ["victim", "ｖｉｃｔｉｍ", "vict\u0131m", "victim~34074375", "Victim", "VICTIM"]
    names = [output_name(s) for s in twins]  # the fourth: the look of the second's name
    assert names[0] == "victim" and len({n.casefold() for n in names}) == len(twins)
    assert all(re.fullmatch(r"[A-Za-z0-9._~-]{1,100}", n) for n in names)
    nb = nbformat.v4.new_notebook()
    for student in twins:
        nb.metadata["who"] = student
        keep_executed(result(student), nb, tmp_path)
    executed = sorted((tmp_path / "executed").glob("*.ipynb"))
    assert len(executed) == len(twins)
    assert {nbformat.read(p, as_version=4).metadata["who"] for p in executed} == set(twins)
    assert len(set(report_names([(s, f"{s}.ipynb") for s in twins]))) == len(twins)
