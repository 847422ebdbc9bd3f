"""The class as its pages and exports see it: who is in it, and what is written for it.

A batch into an output folder enrols its students in the folder's class (the results
store's roll); the pages and exports are always written for the whole class, so that
regrading one late notebook, or ``--student ID``, updates those students and keeps
everyone else. Intake notes, copy flags, overrides and late penalties are applied here,
to the whole class, every time the outputs are written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from grader.batch.pipeline import FLAG_GRADER_FAILED
from grader.batch.runners import Job
from grader.batch.store import Member, ResultsStore, outputs_digest
from grader.errors import UsageError, map_dependency_errors
from grader.intake.copies import FLAG_POSSIBLE_COPY, copy_message, find_copies
from grader.measure.reference import ReferenceFigures
from grader.outputs.names import CLASS_OUTPUTS, RESULTS_FILE
from grader.results import SubmissionResult
from grader.rubric.schema import Rubric

if TYPE_CHECKING:
    from grader.outputs.feedback import FeedbackFiles

OUTPUTS_META = "outputs"
"""The results store's record of what the outputs were last written from."""
MSG_NO_RESULTS = "{path}: no results to report on (run `grader grade` first)"
FLAG_MULTIPLE_FILES = "multiple_files"
MSG_KEPT = (
    "The class: {graded} student(s) from this intake and {n} kept as an earlier batch into"
    " this folder graded them"
)


def whole_class(
    store: ResultsStore,
    jobs: list[Job],
    results: list[SubmissionResult],
    say: Callable[[str], None],
) -> tuple[list[Job], list[SubmissionResult]]:
    """This batch's students enrolled in the class, and the whole class: them and every
    student an earlier batch into the same folder graded (from the results store)."""
    stored = {r.student for r in results if FLAG_GRADER_FAILED not in r.flags}
    store.enrol(
        Member(job.student, job.key, job.path, list(job.notes))
        for job in jobs
        if job.student in stored
    )
    current = {job.student for job in jobs}
    kept = [member for member in store.roll() if member.student not in current]
    found = store.finished(member.key for member in kept)
    kept_jobs = [Job(m.path, m.student, m.key, list(m.notes)) for m in kept if m.key in found]
    if kept_jobs:
        say(MSG_KEPT.format(n=len(kept_jobs), graded=len(jobs)))
    everyone = results + [found[job.key] for job in kept_jobs]
    return jobs + kept_jobs, sorted(everyone, key=lambda r: (r.student, r.file))


def note_intake(results: list[SubmissionResult], jobs: list[Job]) -> None:
    """What intake noticed (older files from the same student) as each result's remarks."""
    notes = {job.student: job.notes for job in jobs if job.notes}
    for result in results:
        if notes.get(result.student) and FLAG_MULTIPLE_FILES not in result.flags:
            result.flags.append(FLAG_MULTIPLE_FILES)
            result.remarks.extend(notes[result.student])


def flag_copies(
    results: list[SubmissionResult], jobs: list[Job], threshold: float, max_mb: int | None = None
) -> int:
    """Flag ``possible_copy`` on each result whose notebook matches another student's
    (a file over ``max_mb``, refused at intake, is not read)."""
    notebooks: dict[str, bytes] = {}
    for job in jobs:
        try:
            if max_mb is None or job.path.stat().st_size <= max_mb * 2**20:
                notebooks[job.student] = job.path.read_bytes()
        except OSError:
            continue
    matches = find_copies(notebooks, threshold)
    for result in results:
        found = matches.get(result.student)
        if found and FLAG_POSSIBLE_COPY not in result.flags:
            result.flags.append(FLAG_POSSIBLE_COPY)
            result.remarks.append(copy_message(found))
    return len(matches)


def write_class_outputs(
    results: list[SubmissionResult],
    jobs: list[Job],
    rubric: Rubric,
    figures: ReferenceFigures,
    out: Path,
    roster: Path | None,
    say: Callable[[str], None],
) -> dict[str, Path]:
    """Copy flags, overrides and late penalties, then every page and export."""
    from grader.outputs.write import ClassInfo, write_outputs

    note_intake(results, jobs)
    flag_copies(results, jobs, rubric.intake.copy_threshold, rubric.limits.max_notebook_mb)
    apply_review(results, rubric, out, say)
    info = ClassInfo(rubric.check_ids, rubric.title, figures.accuracy, figures.history, roster)
    info.canvas_id = rubric.canvas_id
    return write_outputs(results, info, out)


def apply_review(
    results: list[SubmissionResult], rubric: Rubric, out: Path, say: Callable[[str], None]
) -> None:
    """Apply ``OUT/overrides.csv`` when there is one, then each final score and late penalty."""
    from grader.checks.review import OVERRIDES_FILE, apply_overrides, finalize, read_overrides

    path = out / OVERRIDES_FILE
    if path.exists():
        apply_overrides(results, read_overrides(path), path)
        say(f"Applied {path}")
    for result in results:
        if result.checks:
            finalize(result, rubric.late)


def outputs_key(jobs: list[Job], out: Path, roster: Path | None, figures: ReferenceFigures) -> str:
    """What the class's outputs are made from (:func:`grader.batch.store.outputs_digest`)."""
    from grader.checks.review import OVERRIDES_FILE

    keys = [job.key for job in jobs] + [f"{job.student}:{n}" for job in jobs for n in job.notes]
    keys.append(f"reference:{figures.key}:{figures.accuracy!r}")
    return outputs_digest(keys, out / OVERRIDES_FILE, roster)


def outputs_current(store: ResultsStore, out: Path, key: str) -> bool:
    """True when the pages and exports were written from exactly these results and inputs
    and are all still there."""
    written = all((out / name).exists() for name in CLASS_OUTPUTS)
    return written and store.meta(OUTPUTS_META) == key


def write_feedback_of(out: Path) -> FeedbackFiles:
    """What ``grader feedback`` does: the feedback files of :mod:`grader.outputs.feedback`
    from ``OUT/results.jsonl`` and ``OUT/reference.json`` as last written."""
    from grader.outputs.feedback import write_feedback
    from grader.outputs.readback import well_formed
    from grader.outputs.records import read_results_jsonl
    from grader.outputs.write import ClassInfo, unwritable

    path = out / RESULTS_FILE
    if not path.exists():
        raise UsageError(MSG_NO_RESULTS.format(path=path))
    results = [well_formed(result) for result in read_results_jsonl(path)]
    info = ClassInfo([])
    info.load_reference(out)
    with map_dependency_errors("outputs", lambda exc: unwritable(out, exc)):
        return write_feedback(results, out, info)
