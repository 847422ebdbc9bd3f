"""``canvas.csv``: a gradebook import Canvas accepts as it is written.

Canvas's importer (``lib/gradebook_importer.rb`` in canvas-lms) reads the first row as
the header: ``Student``, ``ID``, then optionally ``SIS User ID`` and ``SIS Login ID``,
then ``Section``; every later column is an assignment, matched by the id in
``Title (12345)``, else by its exact title, else created as a new assignment. A row
whose first cell holds ``Points Possible`` sets the points. A student row is matched by
``ID`` (the Canvas user id), then ``SIS User ID``, then ``SIS Login ID``, then the name.

So each row's ``ID`` is the Canvas user id wherever grader knows it: from the intake
(a Canvas bulk download names each file with the user id, which is grader's student id)
or from a roster, Canvas's own gradebook export as it downloads (``--roster``), which
also gives the assignment's id when its column is there. Scores are written as Canvas
writes them, with two decimals and a ``.``.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from grader.errors import InvalidInput, map_dependency_errors
from grader.intake.lms import LMS_CANVAS
from grader.outputs.records import neutralise_cell, unreadable
from grader.results import SubmissionResult

IDENTITY = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
POINTS_POSSIBLE = "Points Possible"
ID_COLUMN = "ID"
MATCH_ORDER = (ID_COLUMN, "SIS User ID", "SIS Login ID", "Student")
"""Canvas's own order for matching a row to a student."""
TITLE_AND_ID = re.compile(r"\A(?P<title>.*)\s\((?P<id>\d+)\)\Z")
"""An assignment column as Canvas exports it (``Assignment.title_and_id``)."""
POSTING_CELL = re.compile(r"^\s*(Muted|Manual Posting.*)?\s*$", re.IGNORECASE)
"""A cell of the export's posting row (or an empty one): a row of only these is no one."""
MSG_ROSTER = "a Canvas roster needs a header with {columns} (Canvas's gradebook export has them)"


@dataclass
class Roster:
    """Canvas's gradebook export (or any CSV with its identity columns), read."""

    people: list[dict[str, str]] = field(default_factory=list)
    """One row per student: the identity columns as Canvas wrote them."""
    assignments: dict[str, str] = field(default_factory=dict)
    """Assignment title -> Canvas assignment id, from ``Title (12345)`` columns."""

    def find(self, result: SubmissionResult) -> dict[str, str] | None:
        """The roster row of ``result``'s student, matched in Canvas's order: ``ID`` by
        the Canvas user id a Canvas download gave (never by grader's own id, which may
        be another person's Canvas id), the other columns by grader's student id. A key
        that two rows share matches neither: no grade lands on a guess."""
        student = result.student.strip().casefold()
        canvas_id = ""
        if result.identity.get("lms") == LMS_CANVAS:
            canvas_id = result.identity.get("user_id", "").strip().casefold()
        for column in MATCH_ORDER:
            wanted = canvas_id if column == ID_COLUMN else student
            found = [
                p for p in self.people if wanted and p.get(column, "").strip().casefold() == wanted
            ]
            if found:
                return found[0] if len(found) == 1 else None
        return None


def read_roster(path: Path) -> Roster:
    """A roster CSV as Canvas's gradebook export downloads it (BOM, ``Points Possible``
    and ``Manual Posting`` rows, read-only totals all allowed); :class:`InvalidInput`
    when it cannot be read or names no identity column."""
    with (
        map_dependency_errors("read back", lambda exc: unreadable(path, exc)),
        open(path, newline="", encoding="utf-8-sig") as handle,
    ):
        text = handle.read()
    delimiter = ";" if _semicolons(text) else ","
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    header = [cell.strip() for cell in rows[0]] if rows else []
    if not set(MATCH_ORDER) & set(header):
        raise InvalidInput(MSG_ROSTER.format(columns=" or ".join(MATCH_ORDER)), str(path))
    assignments = {}
    for cell in header:
        match = TITLE_AND_ID.match(cell)
        if match:
            assignments.setdefault(match["title"], match["id"])
    people = []
    for row in rows[1:]:
        if not row or POINTS_POSSIBLE in row[0] or all(POSTING_CELL.match(c) for c in row):
            continue
        people.append({name: value.strip() for name, value in zip(header, row, strict=False)})
    return Roster(people, assignments)


def _semicolons(text: str) -> bool:
    """Canvas's own test: ``;`` when it splits the first lines into more, equal fields."""
    lines = text.splitlines()[:3]
    counts = {sep: {len(next(csv.reader([line], delimiter=sep))) for line in lines} for sep in ";,"}
    return len(counts[";"]) == 1 and len(counts[","]) == 1 and max(counts[";"]) > max(counts[","])


def assignment_header(title: str, canvas_id: str | None) -> str:
    """The grade column: ``Title (id)`` when the id is known, so a title that differs
    by a character from the course's still lands on its assignment."""
    return f"{title} ({canvas_id})" if canvas_id else title


def canvas_csv(
    results: list[SubmissionResult],
    title: str,
    roster: Roster | None = None,
    canvas_id: str | None = None,
) -> str:
    """Canvas's gradebook import CSV: the identity columns, one grade column."""
    roster = roster or Roster()
    canvas_id = canvas_id or roster.assignments.get(title)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*IDENTITY, neutralise_cell(assignment_header(title, canvas_id))])
    possible = max((r.max_score for r in results), default=0.0)
    writer.writerow([POINTS_POSSIBLE, "", "", "", "", score_text(possible)])
    for result in sorted(results, key=lambda r: r.student):
        who = identity(result, roster)
        writer.writerow([neutralise_cell(who[k]) for k in IDENTITY] + [score_text(result.score)])
    return buffer.getvalue()


def identity(result: SubmissionResult, roster: Roster) -> dict[str, str]:
    """The identity columns of one row: the roster's, else what the intake knew."""
    person = roster.find(result)
    if person is not None:
        return {key: person.get(key, "") for key in IDENTITY}
    if result.identity.get("lms") == LMS_CANVAS and result.identity.get("user_id"):
        name = result.identity.get("login") or result.student
        return {"Student": name, "ID": result.identity["user_id"], "SIS User ID": "",
                "SIS Login ID": "", "Section": ""}  # fmt: skip
    return {"Student": result.student, "ID": "", "SIS User ID": "",
            "SIS Login ID": result.student, "Section": ""}  # fmt: skip


def score_text(score: float) -> str:
    """A score as Canvas exports one: two decimals, ``.`` (never ``1e-05``)."""
    return f"{round(score, 2):.2f}"
