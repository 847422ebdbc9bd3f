"""canvas.csv read back under Canvas's own importer rules, not grader's writer.

:func:`canvas_import` follows canvas-lms's ``lib/gradebook_importer.rb`` as published:
the number converter run on every field (``/^-?[0-9.,]+%?$/``, the last ``,``/``.``
group the decimals), lines of only ``;``, ``,`` and spaces skipped, ``;`` chosen only
when it splits the first three lines into more, equal fields; the header's first cell
containing ``Student`` and its second ``ID`` (``row_has_student_headers?``), the
identity block counted from ``SIS Login ID`` / ``SIS User ID`` + ``SIS Login ID`` and
ending in a cell containing ``Section`` (``update_column_count``, ``header?``), total
columns dropped by substring (``NON_ASSIGNMENT_COLUMN_HEADERS``); an assignment column
matched by ``Title (id)`` (``Assignment.title_and_id``), else by its whole title, else
created; a row whose first cell contains ``Points Possible`` setting the points; a
student matched by ``ID``, then ``SIS User ID``, then ``SIS Login ID``, then the name
or sortable name (``process_student``), else created.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from grader.errors import RubricError
from grader.intake.lms import gather
from grader.outputs.canvas import canvas_csv, read_roster, score_text
from grader.results import SubmissionResult
from grader.rubric.schema import load_rubric

NUMBER = re.compile(r"^-?[0-9.,]+%?$")
TITLE_AND_ID = re.compile(r"\A(.*)\s\((\d+)\)\Z")
TOTALS = re.compile(
    "Current Score|Current Points|Current Grade|Final Score|Final Points|Final Grade"
    "|Override Score|Override Grade|Override Status"
)
POSTING = re.compile(r"^\s*(Muted|Manual Posting.*)?\s*$", re.IGNORECASE)
TITLE = "Week 6: Transfer learning"


@dataclass
class User:
    id: int
    name: str
    sortable_name: str
    login: str
    sis_user_id: str = ""


@dataclass
class Imported:
    """What Canvas would do with the file."""

    assignments: list[tuple[str, int | None]] = field(default_factory=list)
    """Each grade column's header and the assignment it lands on (None: a new one)."""
    points: dict[str, str] = field(default_factory=dict)
    grades: dict[int | str, dict[str, str]] = field(default_factory=dict)
    """User id (or ``new:<name>``, a student Canvas would create) -> header -> grade."""


COURSE_USERS = [
    User(101, "An Nguyen", "Nguyen, An", "anguyen", "S-101"),
    User(102, "Bea Okafor", "Okafor, Bea", "bokafor", "S-102"),
    User(103, "Chen Li", "Li, Chen", "cli", "S-103"),
]
COURSE_ASSIGNMENTS = {4242: "Week 6: Transfer Learning"}  # a capital L more than the rubric


def _converted(cell: str) -> str:
    if not NUMBER.match(cell):
        return cell
    parts = re.split(r"[,.]", cell)
    last = parts.pop()
    return "".join(parts) + "." + last if parts else last


def _rows(text: str) -> list[list[str]]:
    lines = text.splitlines()[:3]
    counts = {sep: {len(next(csv.reader([ln], delimiter=sep))) for ln in lines} for sep in ";,"}
    semicolon = len(counts[";"]) == 1 == len(counts[","]) and max(counts[";"]) > max(counts[","])
    rows = csv.reader(io.StringIO(text), delimiter=";" if semicolon else ",")
    return [
        [_converted(c) for c in row] for row in rows if not re.match(r"^[;, ]*$", ",".join(row))
    ]


def _identity_columns(header: list[str]) -> int:
    assert len(header) > 3 and "Student" in header[0] and "ID" in header[1], "Invalid header row"
    count = 3
    if re.search(r"SIS\s+Login\s+ID", header[2]):
        count += 1
    elif re.search(r"SIS\s+User\s+ID", header[2]) and re.search(r"SIS\s+Login\s+ID", header[3]):
        count += 2
        if re.search(r"Integration\s+ID", header[4]):
            count += 1
    assert "Section" in header[count - 1], "Invalid header row"
    return count


def _assignment(header: str) -> int | None:
    title, found = header, TITLE_AND_ID.match(header)
    if found and int(found[2]) in COURSE_ASSIGNMENTS:
        return int(found[2])
    return next((i for i, t in COURSE_ASSIGNMENTS.items() if t == title), None)


def _student(row: list[str], columns: dict[str, int]) -> int | str:
    def cell(name: str) -> str:
        return row[columns[name]].strip() if name in columns else ""

    digits = re.match(r"\d+", cell("ID"))
    for user in COURSE_USERS:
        if digits and user.id == int(digits[0]):
            return user.id
    for key, attribute in (("SIS User ID", "sis_user_id"), ("SIS Login ID", "login")):
        for user in COURSE_USERS:
            if cell(key) and getattr(user, attribute) == cell(key):
                return user.id
    name = row[0]
    for user in COURSE_USERS:
        if name in (user.name, user.sortable_name):
            return user.id
    return f"new:{name}"


def canvas_import(text: str) -> Imported:
    """The file as Canvas's importer reads it into :data:`COURSE_USERS`' course."""
    rows = _rows(text)
    header = rows[0]
    count = _identity_columns(header)
    columns = {name: i for i, name in enumerate(header[:count])}
    grade_columns = [i for i in range(count, len(header)) if not TOTALS.search(header[i])]
    imported = Imported(assignments=[(header[i], _assignment(header[i])) for i in grade_columns])
    for row in rows[1:]:
        if "Points Possible" in row[0]:
            imported.points = {header[i]: row[i] for i in grade_columns}
        elif not all(POSTING.match(c) for c in row):
            who = _student(row, columns)
            imported.grades[who] = {header[i]: row[i].strip() for i in grade_columns}
    return imported


def canvas_class(tmp_path: Path) -> list[SubmissionResult]:
    """A class from a Canvas bulk download, through grader's real intake."""
    archive = tmp_path / "submissions.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for user, name in ((101, "nguyenan"), (102, "okaforbea"), (103, "lichen")):
            bundle.writestr(f"{name}_{user}_{900 + user}_week6.ipynb", "{}")
        bundle.writestr("lichen_LATE_103_99999_week6-1.ipynb", "{}")  # a late resubmission
    entries = gather(archive, tmp_path / "work").entries
    scores = {"101": 14.0, "102": 9.5, "103": 11.25}
    return [
        SubmissionResult(
            e.student, e.path.name, "0" * 64, "graded", scores[e.student], 14.0, identity=e.identity
        )  # fmt: skip
        for e in entries
    ]


def test_a_canvas_class_without_a_roster_lands_on_every_student_by_id(tmp_path: Path) -> None:
    imported = canvas_import(canvas_csv(canvas_class(tmp_path), TITLE, canvas_id="4242"))
    assert imported.assignments == [(f"{TITLE} (4242)", 4242)]  # by id, despite the title
    assert imported.points == {f"{TITLE} (4242)": "14.00"}
    assert imported.grades == {
        101: {f"{TITLE} (4242)": "14.00"},
        102: {f"{TITLE} (4242)": "9.50"},
        103: {f"{TITLE} (4242)": "11.25"},
    }


def test_without_the_assignment_id_a_title_off_by_a_character_is_a_new_assignment(
    tmp_path: Path,
) -> None:
    imported = canvas_import(canvas_csv(canvas_class(tmp_path), TITLE))
    assert imported.assignments == [(TITLE, None)]  # why the README asks for canvas_id
    exact = canvas_import(canvas_csv(canvas_class(tmp_path), COURSE_ASSIGNMENTS[4242]))
    assert exact.assignments == [(COURSE_ASSIGNMENTS[4242], 4242)]


GRADEBOOK_EXPORT = (
    "\ufeffStudent,ID,SIS User ID,SIS Login ID,Section,"
    "Week 6: Transfer Learning (4242),Quiz 1 (4300),Current Score,Final Score\n"
    ",,,,,Manual Posting,,,\n"
    "    Points Possible,,,,,14.00,5.00,(read only),(read only)\n"
    '"Li, Chen",103,S-103,cli,Section A,,4.00,80.00,80.00\n'
    '"Nguyen, An",101,S-101,anguyen,Section A,,5.00,100.00,100.00\n'
    '"Okafor, Bea",102,S-102,bokafor,Section B,,3.00,60.00,60.00\n'
    '"Student, Test",999,,,Section A,,,,\n'
)


def test_canvas_gradebook_export_as_downloaded_is_the_roster(tmp_path: Path) -> None:
    roster_path = tmp_path / "gradebook.csv"
    roster_path.write_text(GRADEBOOK_EXPORT, encoding="utf-8")
    roster = read_roster(roster_path)
    assert [p["SIS Login ID"] for p in roster.people] == ["cli", "anguyen", "bokafor", ""]
    assert roster.assignments == {"Week 6: Transfer Learning": "4242", "Quiz 1": "4300"}
    # a class graded from plain file names: the ids are the students' logins
    results = [
        SubmissionResult("anguyen", "anguyen.ipynb", "0" * 64, "graded", 13.0, 14.0),
        SubmissionResult("cli", "cli.ipynb", "0" * 64, "graded", 7.5, 14.0),
        SubmissionResult("zed", "zed.ipynb", "0" * 64, "graded", 1.0, 14.0),
    ]
    text = canvas_csv(results, COURSE_ASSIGNMENTS[4242], roster)
    imported = canvas_import(text)
    header = f"{COURSE_ASSIGNMENTS[4242]} (4242)"  # the id taken from the export's column
    assert imported.assignments == [(header, 4242)]
    assert imported.grades == {101: {header: "13.00"}, 103: {header: "7.50"},
                               "new:zed": {header: "1.00"}}  # fmt: skip
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[2][:5] == ["Nguyen, An", "101", "S-101", "anguyen", "Section A"]


def test_a_plain_id_equal_to_someone_elses_canvas_id_grades_only_its_own_student(
    tmp_path: Path,
) -> None:
    """Plain file names carry grader's id, not a Canvas id: 102 is Bea's Canvas ``ID``
    and An's SIS User ID, and the grade is An's alone."""
    roster_path = tmp_path / "gradebook.csv"
    roster_path.write_text(GRADEBOOK_EXPORT.replace("S-101", "102"), encoding="utf-8")
    results = [SubmissionResult("102", "102.ipynb", "0" * 64, "graded", 13.0, 14.0)]
    imported = canvas_import(canvas_csv(results, TITLE, read_roster(roster_path), "4242"))
    assert imported.grades == {101: {f"{TITLE} (4242)": "13.00"}}  # An, by SIS User ID


def test_a_canvas_class_with_its_own_export_as_roster(tmp_path: Path) -> None:
    roster_path = tmp_path / "gradebook.csv"
    roster_path.write_text(GRADEBOOK_EXPORT.replace(",", ";"), encoding="utf-8")  # ; export
    roster = read_roster(roster_path)
    imported = canvas_import(canvas_csv(canvas_class(tmp_path), TITLE, roster, "4242"))
    assert sorted(imported.grades) == [101, 102, 103]


def test_scores_are_numbers_canvas_reads_as_the_same_numbers() -> None:
    for score, text in ((14.0, "14.00"), (0.00001, "0.00"), (1234.5, "1234.50"), (2 / 3, "0.67")):
        assert score_text(score) == text
        assert float(_converted(text)) == round(score, 2)


def test_the_rubric_names_the_canvas_assignment(tmp_path: Path) -> None:
    rubric = tmp_path / "rubric.toml"
    rubric.write_text(
        '[assignment]\ntitle = "W6"\ncanvas_id = 4242\n\n'
        '[[checks]]\nid = "include_top_false"\npoints = 1\n'
    )
    assert load_rubric(rubric).canvas_id == 4242
    rubric.write_text(rubric.read_text().replace("4242", '"4242"'))
    with pytest.raises(RubricError, match="canvas_id"):
        load_rubric(rubric)
