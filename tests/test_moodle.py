"""The Moodle grading worksheet read back under Moodle's own import rules.

:func:`moodle_import` follows Moodle's ``mod/assign/feedback/offline/importgradeslib.php``
and ``locallib.php`` (``process_import_grades``) and ``csv_import_reader::load_csv_content``:
the BOM removed, line ends made LF, the content trimmed, every row the header's cell
count (else ``csvweirdcolumns``); the headers ``Identifier``, ``Grade`` and ``Last
modified (grade)`` found by exact match, all three required (else
``invalidgradeimport``), ``Feedback comments`` likewise; the identifier's first
``strlen("Participant ")`` characters cut and the rest looked up among the
participant ids (no match: the row is skipped); the grade read as a number
(``unformat_float`` on an English site), skipped when empty, negative or above the
maximum, or unchanged; a row skipped when the existing grade was modified more than 60 s
after its ``Last modified (grade)`` (an unparsable date counts as 0).
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from grader.intake.lms import gather
from grader.outputs.moodle import moodle_worksheet
from grader.results import CheckResult, SubmissionResult

MAX_GRADE = 14.0


@dataclass
class Existing:
    grade: float
    modified: float
    """Unix time the grade was last changed in Moodle."""


def _load(text: str) -> list[list[str]]:
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").strip()
    rows = [row for row in csv.reader(io.StringIO(text)) if row != [""]]
    assert all(len(row) == len(rows[0]) for row in rows), "csvweirdcolumns"
    return rows


def _time(text: str) -> float:
    try:  # strtotime() reads ISO 8601; anything it cannot read is false, i.e. 0
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def moodle_import(
    text: str, participants: set[int], existing: dict[int, Existing] | None = None
) -> dict[int, tuple[float, str]]:
    """participant id -> (grade, feedback) as Moodle would import them."""
    existing = existing or {}
    header, *rows = _load(text)
    assert {"Identifier", "Grade", "Last modified (grade)"} <= set(header), "invalidgradeimport"
    at = {name: header.index(name) for name in header}
    imported = {}
    for row in rows:
        rest = row[at["Identifier"]][len("Participant ") :]
        if not rest.isdigit() or int(rest) not in participants:
            continue  # silently skipped
        who, value = int(rest), row[at["Grade"]].strip().replace(" ", "")
        if value == "":
            continue
        grade = float(value)
        old = existing.get(who)
        stale = old is not None and old.modified > _time(row[at["Last modified (grade)"]]) + 60
        if (old and old.grade == grade) or grade < 0 or stale or grade > MAX_GRADE:
            continue
        imported[who] = (grade, row[at["Feedback comments"]])
    return imported


def moodle_class(tmp_path: Path, *, folders: bool = True) -> list[SubmissionResult]:
    """A class from a Moodle bulk download through grader's real intake: folders in
    Moodle 4.1's shape and in the older one, or flat names."""
    archive = tmp_path / "moodle.zip"
    names = {
        31: "Jane Doe_31_assignsubmission_file/week6.ipynb",
        7: "Ahmed Ali_7_assignsubmission_file_/week6.ipynb",
        112: "=cmd Smith_112_assignsubmission_file_week6.ipynb",
    }
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in names.values():
            bundle.writestr(name if folders else name.replace("/", "_"), "{}")
    scores = {"7": 9.5, "31": 14.0, "112": 16.0}  # 16 of 14: grader's bonus, Moodle caps
    results = []
    for entry in gather(archive, tmp_path / "work").entries:
        score = scores[entry.student]
        check = CheckResult("c", score >= 14, min(score, 14), 14.0, "m")
        made = SubmissionResult(entry.student, entry.path.name, "0" * 64, "graded", score, 14.0)
        made.checks, made.identity = [check], entry.identity
        results.append(made)
    return results


@pytest.mark.parametrize("folders", [True, False])
def test_the_worksheet_imports_every_moodle_student(tmp_path: Path, folders: bool) -> None:
    results = moodle_class(tmp_path, folders=folders)
    assert sorted(r.student for r in results) == ["112", "31", "7"]
    text = moodle_worksheet(results)
    imported = moodle_import(text, participants={7, 31, 112, 500})
    assert {who: grade for who, (grade, _) in imported.items()} == {7: 9.5, 31: 14.0, 112: 14.0}
    assert imported[7][1] == "0 of 1 checks passed (9.5 of 14 points). Report: grading_report.html"
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:2] == ["Identifier", "Full name"] and rows[1][0] == "Participant 7"
    assert rows[3][1] == "'=cmd Smith"  # a Moodle name is neutralised like any cell


def test_a_grade_changed_in_moodle_after_grader_wrote_the_file_is_kept(tmp_path: Path) -> None:
    written = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
    text = moodle_worksheet(moodle_class(tmp_path), now=written)
    later = Existing(grade=12.0, modified=written.timestamp() + 3600)  # a manual change
    earlier = Existing(grade=3.0, modified=written.timestamp() - 3600)
    imported = moodle_import(text, {7, 31, 112}, existing={31: later, 7: earlier})
    assert 31 not in imported and imported[7][0] == 9.5


def test_a_manual_change_between_two_writes_survives_the_second(tmp_path: Path) -> None:
    """The worksheet is written again on every regrade and ``grader report``: a row's
    time is when that student was graded, so a grade changed in Moodle after it is kept
    even when the file is written later."""
    graded = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
    results = moodle_class(tmp_path)
    for result in results:
        result.graded_at = graded.isoformat()
    manual = Existing(grade=12.0, modified=graded.timestamp() + 3600)
    text = moodle_worksheet(results, now=graded.replace(day=3))  # written a day later
    assert 31 not in moodle_import(text, {7, 31, 112}, existing={31: manual})


def test_students_from_elsewhere_are_not_in_the_worksheet(tmp_path: Path) -> None:
    plain = SubmissionResult("s1001", "s1001.ipynb", "0" * 64, "graded", 3.0, MAX_GRADE)
    text = moodle_worksheet([*moodle_class(tmp_path), plain])
    assert "s1001" not in text and len(_load(text)) == 4
