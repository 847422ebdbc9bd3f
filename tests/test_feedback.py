"""``grader feedback``: the zips read back under the LMSs' own import rules.

:func:`canvas_reupload` follows canvas-lms's ``app/models/assignment.rb``
(``generate_comments_from_files``, ``infer_comment_context_from_filename``) as
published: each unzipped file's base name split on ``_``, the first two parts matching
``/^\\d+$/`` the user id and the attachment id, the attachment dropped when the last part
starts ``link`` or the name starts ``._``, and the file ignored unless that user has an
active submission to the assignment among whose attachments the id is; the files kept
are attached, per user, as one comment.

:func:`moodle_feedback_import` follows Moodle's ``mod/assign/feedback/file/importziplib.php``
(``is_valid_filename_for_import``, 4.1 and later): directories and names starting ``.``
or ``~`` skipped; the path split on ``/``, each part split on ``_`` at most four times;
a part of fewer than four pieces, or whose second is not numeric or not a participant,
or whose third and fourth name no plugin of the assignment, is passed over; the first
that matches gives the participant, and the rest of the path the file's name.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import nbformat
from click.testing import CliRunner

from grader.cli import main
from grader.intake.copies import MSG_PREFIX
from grader.intake.lms import gather
from grader.outputs.names import executed_path
from grader.outputs.write import ClassInfo, write_outputs
from grader.results import CheckResult, SubmissionResult

CANVAS_FILES = {  # user id: the attachment ids of the submission Canvas holds now
    101: {1101},
    102: {1102},
    103: {99999},  # the late resubmission replaced 1103
}
MOODLE_PLUGINS = {("assignsubmission", "file"), ("assignfeedback", "file")}
HIDDEN_TITLE = "Secret holdout check"
SPY = "zhangwei"


def canvas_reupload(archive: Path, submissions: dict[int, set[int]]) -> dict[int, list[str]]:
    """The files Canvas attaches, per user id, from a re-upload zip."""
    attached: dict[int, list[str]] = {}
    with zipfile.ZipFile(archive) as bundle:
        for name in bundle.namelist():
            if name.endswith("/"):
                continue
            filename = name.rsplit("/", 1)[-1]
            parts = filename.split("_")
            ids = [int(part) for part in parts if re.fullmatch(r"\d+", part)][:2]
            user = ids[0] if ids else None
            attachment = ids[1] if len(ids) > 1 else None
            if parts[-1].startswith("link") or filename.startswith("._"):
                attachment = None
            if user is None or attachment is None or attachment not in submissions.get(user, ()):
                continue
            attached.setdefault(user, []).append(filename)
    return attached


def moodle_feedback_import(archive: Path, participants: set[int]) -> dict[int, list[str]]:
    """The feedback files Moodle keeps, per participant id, from a feedback-files zip."""
    imported: dict[int, list[str]] = {}
    with zipfile.ZipFile(archive) as bundle:
        for name in bundle.namelist():
            base = name.rsplit("/", 1)[-1]
            if name.endswith("/") or base.startswith((".", "~")):
                continue
            found = _moodle_participant(("/" + name).split("/"), participants)
            if found:
                imported.setdefault(found[0], []).append(found[1])
    return imported


def _moodle_participant(parts: list[str], participants: set[int]) -> tuple[int, str] | None:
    while parts:
        info = parts.pop(0).split("_", 4)
        if len(info) < 4 or not info[1].isdigit() or int(info[1]) not in participants:
            continue
        if (info[2], info[3]) not in MOODLE_PLUGINS:
            continue
        return int(info[1]), "/".join([info[4] if len(info) == 5 else "", *parts])
    return None


def graded(entries: list, out: Path) -> list[SubmissionResult]:
    """A class as a batch leaves it: results.jsonl, reports, executed notebooks; the
    first student flagged as a copy of the second, every student with a hidden check."""
    results = []
    for entry in entries:
        visible = CheckResult("base_frozen", True, 2.0, 2.0, "frozen", title="Base frozen")
        hidden = CheckResult("holdout", False, 0.0, 1.0, "no", title=HIDDEN_TITLE, hidden=True)
        result = SubmissionResult(entry.student, entry.path.name, "0" * 64, "graded", 2.0, 3.0)
        result.checks, result.identity = [visible, hidden], entry.identity
        results.append(result)
        nbformat.write(nbformat.v4.new_notebook(), str(executed_path(out, entry.student)))
    results[0].flags.append("possible_copy")
    results[0].remarks.append(f"{MSG_PREFIX}identical to {SPY}'s file")
    write_outputs(results, ClassInfo(["base_frozen", "holdout"], "Week 6"), out)
    return results


def _zip(tmp_path: Path, names: list[str]) -> Path:
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in names:
            bundle.writestr(name, "{}")
    return archive


def _feedback(out: Path) -> str:
    run = CliRunner().invoke(main, ["feedback", str(out)])
    assert run.exit_code == 0, run.output
    return run.output


def _out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    (out / "executed").mkdir(parents=True)
    return out


def test_canvas_attaches_each_report_to_its_students_submission(tmp_path: Path) -> None:
    archive = _zip(
        tmp_path,
        [
            "nguyenan_101_1101_week6.ipynb",
            f"{SPY}_102_1102_week6.ipynb",
            "lichen_103_1103_week6.ipynb",
            "lichen_LATE_103_99999_week6-1.ipynb",
        ],
    )
    out = _out(tmp_path)
    results = graded(gather(archive, tmp_path / "work").entries, out)
    printed = _feedback(out)
    assert "canvas_reupload.zip" in printed and "Moodle" not in printed
    attached = canvas_reupload(out / "feedback" / "canvas_reupload.zip", CANVAS_FILES)
    assert sorted(attached) == [101, 102, 103]
    assert all(len(files) == 1 for files in attached.values())
    with zipfile.ZipFile(out / "feedback" / "canvas_reupload.zip") as bundle:
        assert_student_facing(bundle.read(attached[101][0]).decode())  # the one flagged
    assert len(list((out / "feedback" / "students").glob("*.zip"))) == len(results)


def test_moodle_imports_each_report_as_its_participants_feedback_file(tmp_path: Path) -> None:
    archive = _zip(
        tmp_path,
        [
            "Jane Doe_31_assignsubmission_file/week6.ipynb",
            "Ahmed Ali_7_assignsubmission_file_/week6.ipynb",
            "Mary_Ann Lee_112_assignsubmission_file_week6.ipynb",  # a name with "_"
        ],
    )
    out = _out(tmp_path)
    graded(gather(archive, tmp_path / "work").entries, out)
    assert "moodle_feedback_files.zip" in _feedback(out)
    imported = moodle_feedback_import(out / "feedback" / "moodle_feedback_files.zip", {7, 31, 112})
    assert imported == {7: ["grading_report.html"], 31: ["grading_report.html"]} | {
        112: ["grading_report.html"]
    }
    assert not (out / "feedback" / "canvas_reupload.zip").exists()


def test_each_students_zip_holds_their_report_and_notebook_and_nothing_for_staff(
    tmp_path: Path,
) -> None:
    out = _out(tmp_path)
    folder = tmp_path / "plain"
    folder.mkdir()
    for student in ("s1001", SPY):
        (folder / f"{student}.ipynb").write_text("{}")
    graded(gather(folder, tmp_path / "work").entries, out)
    printed = _feedback(out)
    assert "Canvas" not in printed and "Moodle" not in printed
    with zipfile.ZipFile(out / "feedback" / "students" / "s1001.zip") as bundle:
        assert sorted(bundle.namelist()) == ["s1001.ipynb", "s1001_report.html"]
        assert_student_facing(bundle.read("s1001_report.html").decode())
        assert json.loads(bundle.read("s1001.ipynb"))["nbformat"] == 4
    staff = (out / "reports" / "s1001.html").read_text()
    assert "possible_copy" in staff and SPY in staff  # the instructor's page keeps both


def test_feedback_without_results_is_a_usage_error(tmp_path: Path) -> None:
    run = CliRunner().invoke(main, ["feedback", str(tmp_path)])
    assert run.exit_code == 2 and "grader grade" in run.output


def assert_student_facing(page: str) -> None:
    """No copy flag, no other student's name, no hidden check's text; its points stay."""
    assert "possible_copy" not in page and SPY not in page
    assert HIDDEN_TITLE not in page and "A hidden check" in page
    assert "Base frozen" in page
