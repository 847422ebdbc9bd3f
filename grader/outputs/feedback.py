"""Feedback an LMS takes back in bulk (``grader feedback OUT``).

Everything is made from ``OUT/results.jsonl`` as the last ``grader grade`` or ``grader
report`` wrote it, and the executed notebooks under ``OUT/executed/``::

    OUT/feedback/students/<name>.zip          every student: the report and the notebook
    OUT/feedback/canvas_reupload.zip          Canvas's "Re-Upload Submissions"
    OUT/feedback/moodle_feedback_files.zip    Moodle's "Upload multiple feedback files in a zip"

Each file a student receives is the student's view of the report (:func:`student_view`):
no copy flag and no remark naming another student, no instructor-only flag; hidden
checks keep their points and hide their text, as on every report.

**Canvas** (``Assignment#infer_comment_context_from_filename``): the file name is split
on ``_``, its first two all-digit parts are the user id and the id of a file that user
submitted, and a name starting ``._`` is skipped. A report is named
``<login>_<user id>_<file id>_feedback.html`` from the name Canvas gave the submission;
Canvas attaches it to that submission as a comment ("See attached file").

**Moodle** (``assignfeedback_file_zip_importer``): a name ``<full name>_<participant
id>_<plugin type>_<plugin name>_<file>`` (split on ``_`` at most four times) gives the
participant and the plugin; the participant must be in the assignment. Reports are
``<full name>_<participant>_assignsubmission_file_grading_report.html``, the form Moodle
reads before and since 4.1 (a full name's ``_`` becomes a space: the split is from the
left).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from grader.checks.review import FLAG_REVIEW
from grader.files import atomic_write_bytes, zip_bytes
from grader.intake.copies import FLAG_POSSIBLE_COPY, MSG_PREFIX
from grader.intake.lms import LMS_CANVAS, LMS_MOODLE
from grader.outputs.names import (
    CANVAS_REUPLOAD_FILE,
    EXECUTED_SUFFIX,
    FEEDBACK_DIR,
    MOODLE_FEEDBACK_FILE,
    MOODLE_REPORT,
    REPORT_SUFFIX,
    STUDENT_ZIPS_DIR,
    executed_path,
    report_names,
)
from grader.outputs.report import guarded_page
from grader.results import SubmissionResult

if TYPE_CHECKING:
    from grader.outputs.write import ClassInfo

INSTRUCTOR_FLAGS = frozenset({FLAG_POSSIBLE_COPY, FLAG_REVIEW})
"""Flags for the instructor's eyes: the class page and the spreadsheets show them."""
CANVAS_SUFFIX = "_feedback.html"
MOODLE_PLUGIN = "assignsubmission_file"
STUDENT_REPORT = "report.html"
CANVAS_FALLBACK_LOGIN = "student"
"""Where the name Canvas gave is all digits or starts with a dot, which Canvas would
read as an id or skip as hidden."""
NOT_IN_LMS = "{count} student(s) without a {lms} name in the intake: not in {file}"


@dataclass
class FeedbackFiles:
    """What ``grader feedback`` wrote."""

    students: list[Path] = field(default_factory=list)
    """One zip per graded row: the student's report and executed notebook."""
    canvas: Path | None = None
    """The Canvas re-upload zip, when any student came from a Canvas download."""
    moodle: Path | None = None
    """The Moodle feedback-files zip, when any student came from a Moodle download."""
    notes: list[str] = field(default_factory=list)
    """Who is in no LMS zip, and why (to print)."""


def student_view(result: SubmissionResult) -> SubmissionResult:
    """``result`` as its student may read it: without instructor-only flags and without
    remarks about other students (a copy's remark names them)."""
    return replace(
        result,
        flags=[flag for flag in result.flags if flag not in INSTRUCTOR_FLAGS],
        remarks=[remark for remark in result.remarks if not remark.startswith(MSG_PREFIX)],
    )


def write_feedback(results: list[SubmissionResult], out: Path, info: ClassInfo) -> FeedbackFiles:
    """Every feedback file under ``out/feedback`` (see the module's docstring), the
    reports drawn with ``info``'s reference figures."""
    folder = out / FEEDBACK_DIR
    written = FeedbackFiles()
    canvas: dict[str, bytes] = {}
    moodle: dict[str, bytes] = {}
    stems = [name.removesuffix(REPORT_SUFFIX) for name in report_names(_keys(results))]
    for result, stem in zip(results, stems, strict=True):
        page = _page(result, info)
        notebook = executed_path(out, result.student)
        written.students.append(_student_zip(folder, stem, page, notebook))
        if name := canvas_name(result):
            canvas[name] = page
        if name := moodle_name(result):
            moodle[name] = page
    written.canvas = _lms_zip(folder / CANVAS_REUPLOAD_FILE, canvas)
    written.moodle = _lms_zip(folder / MOODLE_FEEDBACK_FILE, moodle)
    zips = (("Canvas", canvas, written.canvas), ("Moodle", moodle, written.moodle))
    for lms, entries, file in zips:
        if file and len(entries) < len(results):
            written.notes.append(
                NOT_IN_LMS.format(count=len(results) - len(entries), lms=lms, file=file.name)
            )
    return written


def canvas_name(result: SubmissionResult) -> str | None:
    """The name Canvas's re-upload reads as this student's submission, or None."""
    identity = result.identity
    user, attachment = identity.get("user_id", ""), identity.get("attachment", "")
    if identity.get("lms") != LMS_CANVAS or not (_digits(user) and _digits(attachment)):
        return None
    login = identity.get("login", "")
    if not re.fullmatch(r"[^/_.\\][^/_\\]*", login) or login.isdigit():
        login = CANVAS_FALLBACK_LOGIN
    return f"{login}_{user}_{attachment}{CANVAS_SUFFIX}"


def moodle_name(result: SubmissionResult) -> str | None:
    """The name Moodle's feedback-files import reads as this participant's, or None."""
    identity = result.identity
    participant = identity.get("participant", "")
    if identity.get("lms") != LMS_MOODLE or not _digits(participant):
        return None
    name = re.sub(r"[_/\\]+", " ", identity.get("name", "")).strip().lstrip(".~ ")
    name = name or "Participant"  # Moodle skips a name starting "." or "~" as hidden
    return f"{name}_{participant}_{MOODLE_PLUGIN}_{MOODLE_REPORT}"


def _digits(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9]+", text))


def _keys(results: list[SubmissionResult]) -> list[tuple[str, str]]:
    return [(r.student, r.file) for r in results]


def _page(result: SubmissionResult, info: ClassInfo) -> bytes:
    view = student_view(result)
    page, _ = guarded_page(view, info.reference_accuracy, info.reference_history)
    return page.encode("utf-8")


def _student_zip(folder: Path, stem: str, page: bytes, notebook: Path) -> Path:
    entries = {f"{stem}_{STUDENT_REPORT}": page}
    if notebook.is_file():
        entries[f"{stem}{EXECUTED_SUFFIX}"] = notebook.read_bytes()
    path = folder / STUDENT_ZIPS_DIR / f"{stem}.zip"
    atomic_write_bytes(path, zip_bytes(entries))
    return path


def _lms_zip(path: Path, entries: dict[str, bytes]) -> Path | None:
    if not entries:
        path.unlink(missing_ok=True)  # no stale zip from an earlier intake
        return None
    atomic_write_bytes(path, zip_bytes(entries))
    return path
