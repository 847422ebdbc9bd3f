"""Regrades keep the class: the store's roll, whole-class outputs, provenance (no kernels).

The end-to-end test with real kernels (grade a class, regrade one file, then
``--student``) is ``tests/test_resume.py::test_a_regrade_keeps_the_whole_class``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from grader.batch.classout import whole_class
from grader.batch.classrun import GradeRequest, chosen
from grader.batch.pipeline import FLAG_GRADER_FAILED
from grader.batch.runners import Job
from grader.batch.store import BatchKey, Member, ResultsStore
from grader.errors import UsageError
from grader.intake.lms import Entry, Intake
from grader.outputs.provenance import UNRECORDED, label, settings
from grader.outputs.write import ClassInfo, write_outputs
from tests.test_batch import result

FIRST = BatchKey(rubric="r1", reference="ref:0.9", kit="kit", mode="quick", grader="g")
SECOND = BatchKey(rubric="r2", reference="ref:0.9", kit="kit", mode="quick", grader="g")


def graded(student: str, key: BatchKey, score: float = 1.0):
    """A result as a batch stores it: with what graded it."""
    made = result(student, score)
    made.provenance = key.provenance()
    return made


def batch(store: ResultsStore, key: BatchKey, students: list[str], score: float = 1.0):
    """One batch's jobs and results, stored as run_batch stores them; then the class."""
    jobs, results = [], []
    for student in students:
        job = Job(Path(f"/nowhere/{student}.ipynb"), student, f"{key.rubric}:{student}")
        jobs.append(job)
        results.append(graded(student, key, score))
        store.put(job.key, results[-1])
    return whole_class(store, jobs, results, say=lambda _: None)


def test_a_regrade_of_one_student_keeps_everyone(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "results.sqlite") as store:
        batch(store, FIRST, ["ann", "bob", "cat"])
        jobs, results = batch(store, FIRST, ["bob"], score=2.0)
        assert [r.student for r in results] == ["ann", "bob", "cat"]
        assert [j.student for j in jobs] == ["bob", "ann", "cat"]  # this batch's first
        assert {r.student: r.score for r in results} == {"ann": 1.0, "bob": 2.0, "cat": 1.0}
        assert [m.student for m in store.roll()] == ["ann", "bob", "cat"]
    with ResultsStore(tmp_path / "results.sqlite") as again:  # the roll survives reopening
        assert again.roll()[1] == Member("bob", "r1:bob", Path("/nowhere/bob.ipynb"), [])


def test_a_grader_failure_is_shown_now_and_leaves_the_stored_result_in_the_class(
    tmp_path: Path,
) -> None:
    with ResultsStore(tmp_path / "results.sqlite") as store:
        batch(store, FIRST, ["ann", "bob"])
        failed = result("bob", 0.0)
        failed.flags.append(FLAG_GRADER_FAILED)
        job = Job(Path("/nowhere/bob.ipynb"), "bob", "other-key")
        _, now = whole_class(store, [job], [failed], say=lambda _: None)
        assert [(r.student, r.score) for r in now] == [("ann", 1.0), ("bob", 0.0)]
        _, later = batch(store, FIRST, ["ann"])  # bob's last stored row stands
        assert [(r.student, r.score) for r in later] == [("ann", 1.0), ("bob", 1.0)]


def test_only_the_named_students_are_regraded_and_an_unknown_name_is_refused() -> None:
    entries = [Entry(Path(f"{s}.ipynb"), s) for s in ("ann", "bob", "cat")]
    intake = Intake(entries, [], None)
    request = GradeRequest(Path("subs"), Path("r.toml"), Path("out"), students=["cat", "ann"])
    assert [e.student for e in chosen(intake, request).entries] == ["ann", "cat"]
    request.students = ["ann", "zed"]
    with pytest.raises(UsageError, match="no submission from zed"):
        chosen(intake, request)
    with pytest.raises(UsageError, match="no .ipynb"):
        chosen(Intake([], [], None), request)


def test_a_class_graded_under_two_settings_says_so_in_the_page_and_the_sheets(
    tmp_path: Path,
) -> None:
    with ResultsStore(tmp_path / "results.sqlite") as store:
        batch(store, FIRST, ["ann", "bob", "cat"])
        _, results = batch(store, SECOND, ["bob"])  # the rubric changed in between
    found = settings(results)
    assert [(s.label, s.students) for s in found] == [
        (label(FIRST.provenance()), ["ann", "cat"]),
        (label(SECOND.provenance()), ["bob"]),
    ]
    out = tmp_path / "out"
    write_outputs(results, ClassInfo(["c"]), out)
    page = (out / "index.html").read_text()
    assert "Graded under different settings" in page
    assert "rubric r1" in page and "rubric r2" in page
    with open(out / "grades.csv", newline="", encoding="utf-8") as handle:
        rows = {row["student"]: row["graded_under"] for row in csv.DictReader(handle)}
    assert rows == {
        "ann": label(FIRST.provenance()),
        "bob": label(SECOND.provenance()),
        "cat": label(FIRST.provenance()),
    }


def test_one_setting_is_not_flagged_and_an_old_row_is_unrecorded(tmp_path: Path) -> None:
    same = [graded("ann", FIRST), graded("bob", FIRST)]
    write_outputs(same, ClassInfo(["c"]), tmp_path)
    assert "Graded under different settings" not in (tmp_path / "index.html").read_text()
    assert label({}) == UNRECORDED
    assert len(settings([*same, result("old")])) == 2
