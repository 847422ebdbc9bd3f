"""``moodle_grading_worksheet.csv``: Moodle's offline grading worksheet, filled in.

Moodle's assignment exports this worksheet (Grading action: "Download grading
worksheet") and imports it back ("Upload grading worksheet"; its
``mod/assign/feedback/offline/importgradeslib.php``). The importer needs the exact
headers ``Identifier``, ``Grade`` and ``Last modified (grade)``; it cuts the
identifier's first 12 characters (``"Participant "``) and looks the rest up among the
assignment's participant ids, the number Moodle also puts in its bulk-download names
(``Jane Doe_12345_assignsubmission_file_``); it parses the grade as a number in the
site's language, skips a grade outside ``[0, Maximum Grade]``, and skips a row whose
grade was changed in Moodle more than a minute after its ``Last modified (grade)``.

So the worksheet is written only for students whose file name carried a Moodle
participant id, with the id as Moodle wrote it; every row has the worksheet's columns
in Moodle's order; the grade has two decimals and a ``.`` (an English-language site:
a site whose language writes decimals with ``,`` needs the grade column converted);
``Last modified (grade)`` is when grader graded that student (``graded_at``; when the
file was written where a result has none), so a grade an instructor changed in Moodle
after that is kept, not overwritten, however often the worksheet is written again.
The feedback comment is a short text of grader's own (no student text: Moodle shows it
as HTML) naming the report as the student receives it (``grader feedback``'s
``grading_report.html``). ``Full name`` is the name in the file name (Moodle ignores it
on import), neutralised like every spreadsheet cell.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

from grader.intake.lms import LMS_MOODLE
from grader.outputs.names import MOODLE_REPORT
from grader.outputs.records import neutralise_cell
from grader.results import SubmissionResult

COLUMNS = (
    "Identifier",
    "Full name",
    "Email address",
    "Status",
    "Grade",
    "Maximum Grade",
    "Grade can be changed",
    "Last modified (grade)",
    "Feedback comments",
)
"""The worksheet's columns as Moodle exports them (an assignment with comments feedback)."""
IDENTIFIER_PREFIX = "Participant "
"""Moodle's ``hiddenuser`` string: the importer cuts exactly this many characters."""
STATUS_TEXT = "Graded by grader"
COMMENT = "{passed} of {checks} checks passed ({score} of {possible} points). Report: {report}"
COMMENT_NOT_GRADED = "Not graded automatically: {status}. Report: {report}"


def moodle_rows(results: list[SubmissionResult]) -> list[SubmissionResult]:
    """The results a worksheet can carry: those whose file name gave a participant id."""
    return [
        r
        for r in results
        if r.identity.get("lms") == LMS_MOODLE and r.identity.get("participant", "").isdigit()
    ]


def moodle_worksheet(results: list[SubmissionResult], now: datetime | None = None) -> str:
    """The worksheet for ``results`` that came from a Moodle intake (others are left out)."""
    written = (now or datetime.now(timezone.utc)).replace(microsecond=0).isoformat()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for result in sorted(moodle_rows(results), key=lambda r: int(r.identity["participant"])):
        possible = max(result.max_score, 0.0)
        grade = min(max(result.score, 0.0), possible)
        writer.writerow(
            [
                IDENTIFIER_PREFIX + result.identity["participant"],
                neutralise_cell(result.identity.get("name", "")),  # ignored on import
                "",
                STATUS_TEXT,
                f"{grade:.2f}",
                f"{possible:.2f}",
                "Yes",
                _graded_at(result) or written,
                feedback_comment(result),
            ]
        )
    return buffer.getvalue()


def _graded_at(result: SubmissionResult) -> str:
    """When ``result`` was graded, as an ISO time in UTC, or "" when it does not say."""
    try:
        moment = datetime.fromisoformat(result.graded_at)
    except (TypeError, ValueError):
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def feedback_comment(result: SubmissionResult) -> str:
    """A short comment in grader's words only, naming the report as the student gets it."""
    report = MOODLE_REPORT
    visible = [c for c in result.checks if not c.hidden]
    if not visible:
        return COMMENT_NOT_GRADED.format(status=result.status, report=report)
    return COMMENT.format(
        passed=sum(c.passed for c in visible),
        checks=len(visible),
        score=f"{round(result.score, 2):g}",
        possible=f"{round(result.max_score, 2):g}",
        report=report,
    )
