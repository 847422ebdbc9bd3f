"""Intake from an LMS: a folder or a ``.zip`` of submissions, one entry per student.

``gather(source, work, patterns)`` accepts a folder (searched recursively, hidden
folders skipped), a single notebook, or a ``.zip`` (an LMS bulk download), and returns
one :class:`Entry` per student, sorted by student id.

**Student ids** come from each file's path relative to the source root (the folder,
or the archive's root), written with ``/`` separators, e.g.
``Jane Smith_12345_assignsubmission_file_/week6.ipynb``. Patterns are Python regexes
with a named group ``student``, tried in order with ``re.search``; the first that
matches with a non-empty ``student`` wins:

1. the rubric's ``[intake] patterns``;
2. Canvas bulk downloads: ``{login}[_LATE]_{user id}_{submission id}_{file name}``,
   e.g. ``smithjane_LATE_12345_67890_week6-1.ipynb`` gives ``12345`` (the user id);
3. Moodle: ``{full name}_{participant id}_assignsubmission_file_`` as a folder name
   (``Jane Smith_12345_assignsubmission_file_/week6.ipynb``; ``..._file/`` since Moodle
   4.1) or as the start of a file
   name (``Jane Smith_12345_assignsubmission_file_week6.ipynb``) gives ``12345``;
4. otherwise the file name without ``.ipynb`` (:func:`grader.intake.notebooks.student_id`).

**Several files from one student**: the latest is graded (by modification time, then
by a Canvas resubmission suffix ``-1``, ``-2`` ..., then by name); the entry notes
the graded file and the ignored ones.

**Zip archives** are extracted into ``work/intake`` (extracting the same archive again
overwrites the same files). Only ``.ipynb`` files are extracted; ``__MACOSX/`` and
hidden files are skipped. An entry is rejected, with a line in ``Intake.problems``
and nothing written, when its name is absolute, has a drive letter or a ``..``
component (``/`` or ``\\`` separated), is a symbolic link, would land outside the
target folder, or is too large; an archive with too many entries is refused whole.
Each file's modification time is the entry's date in the archive.

**File names that are not UTF-8** are graded under a printable name: a folder's
undecodable bytes read as Latin-1 (:func:`grader.results.encodable`), an archive's names
that claim UTF-8 and are not read as CP437 (:mod:`grader.intake.zipnames`).
"""

from __future__ import annotations

import calendar
import os
import re
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from grader.errors import SubmissionsError, map_dependency_errors, strerror
from grader.files import atomic_path
from grader.intake.notebooks import NOTEBOOK_SUFFIX, STUDENT_UNSAFE, find_submissions, student_id
from grader.intake.zipnames import open_zip
from grader.results import encodable

ZIP_SUFFIX = ".zip"
INTAKE_FOLDER = "intake"
MAX_ENTRIES = 10_000
MAX_TOTAL_BYTES = 2 * 1024**3
MAX_ENTRY_BYTES = 1024**3
CHUNK_BYTES = 1024**2
ZIP_EPOCH = 315_532_800  # 1980-01-01, the earliest date a zip entry can carry
SYMLINK_MODE, FILE_TYPE_MASK = 0o120000, 0o170000

CANVAS_PATTERN = (
    r"(?:^|/)(?P<login>[^/_]+)(?:_LATE)?_(?P<student>\d{3,})_(?P<submission>\d{3,})_[^/]+$"
)
"""Canvas ids have several digits: ``week_6_1_final.ipynb`` is not a Canvas name."""
MOODLE_PATTERN = r"(?:^|/)(?P<name>[^/]+?)_(?P<student>\d+)_assignsubmission_file(?:_|/)"
"""Folders end ``_file_/`` before Moodle 4.1 and ``_file/`` since; flat names ``_file_``."""
DEFAULT_PATTERNS = (CANVAS_PATTERN, MOODLE_PATTERN)
LMS_CANVAS, LMS_MOODLE = "canvas", "moodle"
RESUBMISSION = re.compile(r"-(?P<number>\d+)\.ipynb$", re.IGNORECASE)
DRIVE = re.compile(r"^[A-Za-z]:")
SKIPPED_PARTS = ("__MACOSX",)

MSG_NOT_ZIP = "{source}: not a readable zip archive ({detail})"
MSG_TOO_MANY = "{source}: more than {limit} entries in the archive; refusing to extract it"
MSG_PATTERN = "intake pattern {pattern!r}: {detail}"
MSG_REJECTED = "{name!r} in {archive}: rejected: {reason}"
MSG_DUPLICATE = "{name!r} in {archive}: appears more than once; the later entry is kept"
MSG_TARGET = "{target}: cannot create the folder to extract into ({detail})"
MSG_STOPPED = "{archive}: stopped extracting: the notebooks add up to more than {limit} bytes"
REASON_ABSOLUTE = "an absolute path"
REASON_DRIVE = "a path with a drive letter"
REASON_PARENT = "the path climbs out of the archive's folder ('..')"
REASON_NUL = "a NUL character in the name"
REASON_SYMLINK = "a symbolic link"
REASON_OUTSIDE = "the path resolves outside the target folder"
REASON_TOO_LARGE = "larger than {limit} bytes"
REASON_UNREADABLE = "cannot be read ({detail})"
REASON_UNWRITABLE = "cannot be written ({detail})"
NOTE_SEVERAL = "{count} files from this student: graded {graded} (the latest); ignored {ignored}"


@dataclass
class Entry:
    """One student's notebook to grade."""

    path: Path
    """The notebook file (inside the extraction folder for a zip)."""
    student: str
    """The student's id, from the file's path (see the module's notes)."""
    notes: list[str] = field(default_factory=list)
    """What intake decided for this student (e.g. which of several files is graded)."""
    ignored: list[Path] = field(default_factory=list)
    """Older files of the same student that are not graded, oldest first."""
    identity: dict[str, str] = field(default_factory=dict)
    """From a Canvas name: ``lms``, ``user_id`` (the Canvas user id, also the student id)
    and ``login``; from a Moodle name: ``lms``, ``participant`` and ``name``; else empty."""


@dataclass
class Intake:
    """Everything found in a submissions folder or archive."""

    entries: list[Entry]
    """One per student, sorted by student id."""
    problems: list[str]
    """One line per archive entry or folder entry (a link leading outside the folder)
    that was rejected, naming the entry and why."""
    extracted_to: Path | None
    """Where a zip was extracted; None for a folder or a single notebook."""


class _Rejected(Exception):
    """An archive entry that is not extracted; the message is the reason."""


def gather(source: Path, work: Path, patterns: Sequence[str] = ()) -> Intake:
    """Find the submissions in ``source`` and pick one notebook per student.

    ``work`` is where a zip is extracted (``work/intake``); ``patterns`` are the
    rubric's student-id regexes, tried before the Canvas and Moodle ones. Notebooks
    inside ``work`` (grader's own output, when it sits in the submissions folder) are
    not submissions.
    """
    source = Path(source)
    compiled = compile_patterns([*patterns, *DEFAULT_PATTERNS])
    if source.is_file() and source.suffix.lower() == ZIP_SUFFIX:
        target = Path(work) / INTAKE_FOLDER
        files, problems = extract_zip(source, target)
        return Intake(_entries(files, compiled), problems, target.resolve())
    root = source if source.is_dir() else source.parent
    own = Path(work).resolve()
    problems: list[str] = []
    files = [
        (path, encodable(path.relative_to(root).as_posix()))
        for path in find_submissions(source, problems)
        if not path.resolve().is_relative_to(own)
    ]
    return Intake(_entries(files, compiled), [encodable(p) for p in problems], None)


def compile_patterns(patterns: Sequence[str]) -> list[re.Pattern[str]]:
    """Each pattern compiled; :class:`SubmissionsError` if one is invalid or has no
    ``student`` group."""
    compiled = []
    for pattern in patterns:
        with map_dependency_errors(
            "submissions",
            lambda exc, p=pattern: SubmissionsError(MSG_PATTERN.format(pattern=p, detail=exc)),
        ):
            regex = re.compile(pattern)
        if "student" not in regex.groupindex:
            detail = "no named group 'student'"
            raise SubmissionsError(MSG_PATTERN.format(pattern=pattern, detail=detail))
        compiled.append(regex)
    return compiled


def identify(relative: str, patterns: Sequence[re.Pattern[str]]) -> str:
    """The student id for a file at ``relative`` (``/``-separated) under the root."""
    return identify_entry(relative, patterns)[0]


def identify_entry(
    relative: str, patterns: Sequence[re.Pattern[str]]
) -> tuple[str, dict[str, str]]:
    """The student id for a file at ``relative``, and who the LMS's name says it is
    (:attr:`Entry.identity`)."""
    for pattern in patterns:
        match = pattern.search(relative)
        if match and match.group("student"):
            safe = STUDENT_UNSAFE.sub("_", match.group("student")).strip("._")
            if safe:
                return safe, _lms_identity(pattern.pattern, match)
    return student_id(Path(relative)), {}


def _lms_identity(pattern: str, match: re.Match[str]) -> dict[str, str]:
    if pattern == CANVAS_PATTERN:
        return {
            "lms": LMS_CANVAS,
            "user_id": match["student"],
            "attachment": match["submission"],  # the file's id: re-uploads name it
            "login": match["login"],
        }
    if pattern == MOODLE_PATTERN:
        return {"lms": LMS_MOODLE, "participant": match["student"], "name": match["name"]}
    return {}


def _entries(files: list[tuple[Path, str]], patterns: Sequence[re.Pattern[str]]) -> list[Entry]:
    """One entry per student: the latest of that student's files."""
    groups: dict[str, list[tuple[Path, str]]] = {}
    for path, relative in files:
        groups.setdefault(identify(relative, patterns), []).append((path, relative))
    for student, group in list(groups.items()):
        if _by_name_in_several_folders(student, group):
            del groups[student]  # alice/week6.ipynb and bob/week6.ipynb: two students
            for path, relative in group:
                groups.setdefault(student_id(Path(relative.replace("/", "_"))), []).append(
                    (path, relative)
                )
    entries = []
    for student in sorted(groups):
        ordered = sorted(groups[student], key=_age)
        (latest, latest_name), older = ordered[-1], ordered[:-1]
        notes = []
        if older:
            notes.append(
                NOTE_SEVERAL.format(
                    count=len(ordered),
                    graded=latest_name,
                    ignored=", ".join(name for _, name in older),
                )
            )
        identity = identify_entry(latest_name, patterns)[1]
        entries.append(Entry(latest, student, notes, [path for path, _ in older], identity))
    return entries


def _by_name_in_several_folders(student: str, group: list[tuple[Path, str]]) -> bool:
    """Files that share only a file name (no LMS id), in different folders."""
    folders = {relative.rpartition("/")[0] for _, relative in group}
    return len(folders) > 1 and all(student_id(Path(rel)) == student for _, rel in group)


def _age(item: tuple[Path, str]) -> tuple[int, int, str]:
    """Sort key, oldest first: modification time, resubmission number, name."""
    path, relative = item
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = 0
    resubmission = RESUBMISSION.search(relative)
    return mtime, int(resubmission.group("number")) if resubmission else 0, relative


def extract_zip(archive: Path, target: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """Extract the archive's notebooks safely into ``target``.

    Returns the extracted files, each with its ``/``-separated name in the archive,
    and one problem line per rejected entry. Extracting the same archive again
    overwrites the same files.
    """
    with map_dependency_errors(
        "submissions",
        lambda exc: SubmissionsError(MSG_NOT_ZIP.format(source=archive, detail=exc)),
    ):
        bundle = open_zip(archive)
    with bundle:
        infos = bundle.infolist()
        if len(infos) > MAX_ENTRIES:
            raise SubmissionsError(MSG_TOO_MANY.format(source=archive, limit=MAX_ENTRIES))
        with map_dependency_errors(
            "submissions",
            lambda exc: SubmissionsError(MSG_TARGET.format(target=target, detail=strerror(exc))),
        ):
            target.mkdir(parents=True, exist_ok=True)
        return _extract_all(bundle, infos, archive, target.resolve())


def _extract_all(
    bundle: zipfile.ZipFile, infos: list[zipfile.ZipInfo], archive: Path, root: Path
) -> tuple[list[tuple[Path, str]], list[str]]:
    """Extract every wanted entry into ``root`` (resolved); see :func:`extract_zip`."""
    extracted: dict[str, Path] = {}
    problems: list[str] = []
    budget = MAX_TOTAL_BYTES
    for info in infos:
        if info.is_dir():
            continue
        try:
            relative = _safe_name(info)
            if not _wanted(relative):
                continue
            if budget <= 0:
                problems.append(MSG_STOPPED.format(archive=archive.name, limit=MAX_TOTAL_BYTES))
                break
            destination = _destination(root, relative)
            budget -= _extract_one(bundle, info, destination, min(budget, MAX_ENTRY_BYTES))
            if relative in extracted:
                problems.append(MSG_DUPLICATE.format(name=info.filename, archive=archive.name))
            extracted[relative] = destination
        except _Rejected as exc:
            problems.append(_rejection(info, archive, str(exc)))
    return sorted((path, name) for name, path in extracted.items()), problems


def _rejection(info: zipfile.ZipInfo, archive: Path, reason: str) -> str:
    return MSG_REJECTED.format(name=info.filename, archive=archive.name, reason=reason)


def _safe_name(info: zipfile.ZipInfo) -> str:
    """The entry's name with ``/`` separators, or :class:`_Rejected` if it is unsafe."""
    name = info.filename
    if "\x00" in name:
        raise _Rejected(REASON_NUL)
    if (info.external_attr >> 16) & FILE_TYPE_MASK == SYMLINK_MODE:
        raise _Rejected(REASON_SYMLINK)
    if name.startswith(("/", "\\")):
        raise _Rejected(REASON_ABSOLUTE)
    if DRIVE.match(name):
        raise _Rejected(REASON_DRIVE)
    parts = [part for part in re.split(r"[/\\]", name) if part not in ("", ".")]
    if ".." in parts:
        raise _Rejected(REASON_PARENT)
    return "/".join(parts)


def _wanted(relative: str) -> bool:
    """Whether an entry is a notebook to extract (not hidden, not macOS metadata)."""
    parts = relative.split("/")
    if any(part.startswith(".") or part in SKIPPED_PARTS for part in parts):
        return False
    return relative.lower().endswith(NOTEBOOK_SUFFIX)


def _destination(root: Path, relative: str) -> Path:
    """Where the entry goes; :class:`_Rejected` if that is outside ``root``."""
    destination = root / relative
    for path in (destination, destination.parent):  # an existing link may point away
        if not path.resolve().is_relative_to(root):
            raise _Rejected(REASON_OUTSIDE)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _Rejected(REASON_UNWRITABLE.format(detail=exc.strerror or exc)) from exc
    return destination.parent.resolve() / destination.name


def _extract_one(
    bundle: zipfile.ZipFile, info: zipfile.ZipInfo, destination: Path, limit: int
) -> int:
    """Copy one entry (at most ``limit`` bytes) to ``destination``; the bytes written."""
    if info.file_size > limit:
        raise _Rejected(REASON_TOO_LARGE.format(limit=limit))
    try:
        with atomic_path(destination) as temporary:
            with open(temporary, "wb") as out:
                written = _copy_bounded(bundle, info, out, limit)
            os.utime(temporary, (_timestamp(info), _timestamp(info)))
    except OSError as exc:
        raise _Rejected(REASON_UNWRITABLE.format(detail=exc.strerror or exc)) from exc
    return written


def _copy_bounded(bundle: zipfile.ZipFile, info: zipfile.ZipInfo, out: BinaryIO, limit: int) -> int:
    """Decompress the entry into ``out``, refusing more than ``limit`` bytes."""
    written = 0
    try:
        with bundle.open(info) as data:
            while chunk := data.read(CHUNK_BYTES):
                written += len(chunk)
                if written > limit:
                    raise _Rejected(REASON_TOO_LARGE.format(limit=limit))
                out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError) as exc:
        raise _Rejected(REASON_UNREADABLE.format(detail=exc)) from exc
    except OSError as exc:
        raise _Rejected(REASON_UNWRITABLE.format(detail=exc.strerror or exc)) from exc
    return written


def _timestamp(info: zipfile.ZipInfo) -> float:
    """The entry's date (stored without a zone; read as UTC so that runs agree)."""
    try:
        return float(max(calendar.timegm((*info.date_time, 0, 0, 0)), ZIP_EPOCH))
    except (ValueError, OverflowError, TypeError):
        return float(ZIP_EPOCH)
