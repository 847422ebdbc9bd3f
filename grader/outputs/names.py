"""The names of what a grading run writes into its output folder, and nothing heavy.

Every writer and every reader of the output folder takes its file names from here
(the output contract of DESIGN.md), so a worker that writes one executed notebook does
not import the HTML writer, and a name changed here changes everywhere::

    OUT/results.jsonl               RESULTS_FILE
    OUT/grades.csv                  GRADES_FILE
    OUT/grades.xlsx                 XLSX_FILE
    OUT/canvas.csv                  CANVAS_FILE
    OUT/moodle_grading_worksheet.csv   MOODLE_FILE (from a Moodle intake)
    OUT/reports/<name>.html         report_names()
    OUT/index.html                  INDEX_FILE
    OUT/executed/<name>.ipynb       executed_path()
    OUT/reference.json              REFERENCE_FILE
    OUT/feedback/students/<name>.zip    FEEDBACK_DIR, STUDENT_ZIPS_DIR (``grader feedback``)
    OUT/feedback/canvas_reupload.zip    CANVAS_REUPLOAD_FILE (from a Canvas intake)
    OUT/feedback/moodle_feedback_files.zip   MOODLE_FEEDBACK_FILE (from a Moodle intake)
    OUT/.grader.lock                LOCK_FILE
    <folder>/<stem>.report.html     self_check_report_path() (``grader check``)

``<name>`` is :func:`output_name` of the student id: one safe stem for every file named
after a student, and one per student: an id that is not already a safe name
(``ｖｉｃｔｉｍ``, ``nguyễn``, ``../x``) gets its folded form and a digest of itself
(``victim~1a2b3c4d``), so no two students share an executed notebook, a report or an
export folder.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

RESULTS_FILE = "results.jsonl"
GRADES_FILE = "grades.csv"
XLSX_FILE = "grades.xlsx"
CANVAS_FILE = "canvas.csv"
MOODLE_FILE = "moodle_grading_worksheet.csv"
"""Written when the intake read Moodle names (:mod:`grader.outputs.moodle`)."""
REPORTS_DIR = "reports"
REPORT_SUFFIX = ".html"
INDEX_FILE = "index.html"
EXECUTED_DIR = "executed"
EXECUTED_SUFFIX = ".ipynb"
REFERENCE_FILE = "reference.json"
"""The reference's figures, so that ``grader report`` redraws its curves."""
FEEDBACK_DIR = "feedback"
STUDENT_ZIPS_DIR = "students"
CANVAS_REUPLOAD_FILE = "canvas_reupload.zip"
MOODLE_FEEDBACK_FILE = "moodle_feedback_files.zip"
MOODLE_REPORT = "grading_report.html"
"""The report's name as a Moodle participant receives it (the feedback-files zip)."""
SELF_CHECK_SUFFIX = ".report.html"
"""``grader check``'s report: ``<notebook stem>.report.html``, next to the notebook."""
LOCK_FILE = ".grader.lock"
"""Held by the one grader writing to the folder."""
CLASS_OUTPUTS = (RESULTS_FILE, GRADES_FILE, XLSX_FILE, CANVAS_FILE, INDEX_FILE)
"""The class-wide files: when one is missing, the outputs are written again."""

FILENAME_MAX = 100
FILENAME_FALLBACK = "unnamed"
FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
FILENAME_REPLACEMENT = "_"
DIGEST_MARK = "~"
"""Never in a folded name (:data:`FILENAME_UNSAFE` replaces it): a name with it is a
folded id and its digest, a name without it is the id itself."""
DIGEST_CHARS = 8
WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{i}" for i in range(1, 10)}
    | {f"LPT{i}" for i in range(1, 10)}
)


def report_filename(student: str) -> str:
    """A safe file name stem (without a suffix) for a file named after a student.

    Accents are dropped (``é`` → ``e``); any character outside ``[A-Za-z0-9._-]``
    becomes ``_``; leading dots become ``_``; Windows device names get a ``_``
    prefix; the result is at most 100 characters and never empty.
    """
    decomposed = unicodedata.normalize("NFKD", student or "")
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    name = FILENAME_UNSAFE.sub(FILENAME_REPLACEMENT, stripped)
    dots = len(name) - len(name.lstrip("."))
    name = FILENAME_REPLACEMENT * dots + name[dots:]
    if name.split(".")[0].upper() in WINDOWS_RESERVED:
        name = FILENAME_REPLACEMENT + name
    return name[:FILENAME_MAX] or FILENAME_FALLBACK


def output_name(student: str) -> str:
    """The one file name stem of everything named after ``student``, unique per id.

    A safe id without capitals is its own name; any other gets :func:`report_filename`'s
    folded form, :data:`DIGEST_MARK` and the start of the id's SHA-256, so ids that differ
    only in case (``Alice``, ``alice``) stay apart on a case-insensitive disk too (macOS,
    Windows, a zip unpacked there)."""
    stem = report_filename(student)
    if stem == student and student == student.lower():
        return stem
    digest = hashlib.sha256(student.encode("utf-8", "surrogatepass")).hexdigest()
    return stem[: FILENAME_MAX - DIGEST_CHARS - 1] + DIGEST_MARK + digest[:DIGEST_CHARS]


def report_names(keys: Sequence[tuple[str, str]]) -> list[str]:
    """Report file names (with ``.html``) for ``(student, file)`` pairs, in their order.

    Each is :func:`output_name` of the student; names stay unique even on
    case-insensitive disks (a clash, two rows of one student, gets ``_2``, ``_3``... in
    (student, file) order, so the names do not depend on the order of ``keys``).
    """
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    used: set[str] = set()
    names = [""] * len(keys)
    for index in order:
        stem = output_name(keys[index][0])
        candidate, counter = stem, 1
        while candidate.casefold() in used:
            counter += 1
            suffix = f"_{counter}"
            candidate = stem[: FILENAME_MAX - len(suffix)] + suffix
        used.add(candidate.casefold())
        names[index] = candidate + REPORT_SUFFIX
    return names


def executed_path(out: Path, student: str) -> Path:
    """Where a student's executed notebook goes: ``OUT/executed/<name>.ipynb``."""
    return out / EXECUTED_DIR / f"{output_name(student)}{EXECUTED_SUFFIX}"


def self_check_report_path(folder: Path, notebook: Path) -> Path:
    """Where ``grader check`` writes a notebook's report: ``<stem>.report.html``."""
    return folder / f"{notebook.stem}{SELF_CHECK_SUFFIX}"
