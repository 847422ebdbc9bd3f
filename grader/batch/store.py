"""The results store: one SQLite file in the output folder, one row per graded submission.

A row is written in one transaction when a submission finishes, with the whole result
(every verdict and its evidence) as JSON, so a batch stopped at any instant - Ctrl-C,
SIGKILL, a power cut - leaves only whole rows. Started again, the batch grades what
has no row and re-runs nothing that has one.

A row is found by its key: the notebook's bytes, the student and file name, the
rubric, the reference's figures, the asset kit, the mode and grader itself (version
and source). Change any of them and the submission is graded again; ``--force`` does
so regardless.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from grader import __version__
from grader.errors import StoreError
from grader.files import PACKAGE, source_digest
from grader.outputs.readback import FLAG_DAMAGED, well_formed
from grader.results import SubmissionResult, encodable

STORE_FILE = "results.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    student TEXT NOT NULL,
    file TEXT NOT NULL,
    status TEXT NOT NULL,
    record TEXT NOT NULL,
    stored_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)
"""
META_SCHEMA = "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
ROLL_SCHEMA = """
CREATE TABLE IF NOT EXISTS roll (
    student TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    path TEXT NOT NULL,
    notes TEXT NOT NULL DEFAULT '[]'
)
"""
"""The class: each student's current submission (its key, file and intake notes), so a
regrade of a few students writes every export from the whole class."""
MSG_STORE = "{path}: the results store cannot be used ({detail})"
BUSY_TIMEOUT_S = 30.0
MOUNTINFO = Path("/proc/self/mountinfo")
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "gpfs"}
    | {"beegfs", "davfs", "fuse.sshfs", "fuse.glusterfs", "fuse.s3fs", "fuse.ceph"}
)
"""Where SQLite's WAL shared memory cannot be trusted (a Dask shared folder often is one)."""
RUNTIME_PACKAGES = ("tensorflow", "tensorflow-cpu", "keras")
"""What trains and measures the models: a new version may change any figure."""


@dataclass(frozen=True)
class BatchKey:
    """What every submission's key shares: everything but the notebook itself."""

    rubric: str
    """The rubric's digest."""
    reference: str
    """The reference figures' key (notebook, rubric, kit, mode, caps, measuring code) and
    the accuracy stored under it: a re-run reference scores the class again."""
    kit: str
    """The asset kit's digest."""
    mode: str
    """``quick`` or ``full``."""
    grader: str = ""
    """grader's version and a digest of its source (set by :func:`grader_fingerprint`)."""

    def provenance(self) -> dict[str, str]:
        """What graded a result under this key, as each row carries it."""
        return {
            "rubric": self.rubric,
            "mode": self.mode,
            "kit": self.kit,
            "reference": self.reference,
            "grader": self.grader or grader_fingerprint(),
        }

    def for_submission(self, student: str, file: str, sha256: str) -> str:
        """The key of one notebook (its bytes' SHA-256) submitted as ``file`` by ``student``."""
        parts = [sha256, student, file, self.rubric, self.reference, self.kit, self.mode]
        parts.append(self.grader or grader_fingerprint())
        text = "\0".join(parts)  # a name's surrogates are kept apart, never refused
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def outputs_digest(keys: Iterable[str], *files: Path | None) -> str:
    """What a batch's pages and exports are made from: its results' keys, the files that
    change them (overrides, roster) and grader's templates. Same digest, same outputs."""
    digest = hashlib.sha256(grader_fingerprint().encode())
    for key in sorted(keys):
        digest.update(key.encode() + b"\0")
    for path in files:
        digest.update(path.read_bytes() if path and path.is_file() else b"-")
    for template in sorted((PACKAGE / "outputs" / "templates").glob("*")):
        digest.update(template.read_bytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def grader_fingerprint() -> str:
    """grader's version and source, and the TensorFlow and Keras the kernels run: change
    any and every submission is graded again (templates only change the pages)."""
    digest = hashlib.sha256(__version__.encode())
    digest.update(source_digest().encode())
    for name in RUNTIME_PACKAGES:
        try:
            digest.update(f"{name}={metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name}=none".encode())
    return f"{__version__}+{digest.hexdigest()[:12]}"


def filesystem_type(path: Path, mountinfo: str | None = None) -> str | None:
    """The type of the filesystem ``path`` is on (``ext4``, ``nfs4``...), None if unknown."""
    try:
        text = MOUNTINFO.read_text() if mountinfo is None else mountinfo
    except OSError:
        return None
    target, best, kind = str(path.resolve()), "", None
    for line in text.splitlines():
        fields, _, after = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not after:
            continue
        point = parts[4].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, after.split()[0]
    return kind


@dataclass(frozen=True)
class Member:
    """One student of the class, as the roll keeps them."""

    student: str
    """The student's id."""
    key: str
    """The key of their current submission's result."""
    path: Path
    """Their submitted notebook (read again for copy detection, when still there)."""
    notes: list[str]
    """What intake noticed about their files."""


class ResultsStore:
    """Finished submissions, keyed; on a local disk, safe to read while the grader writes.

    On a network filesystem the one grader that holds the output folder also holds the
    database exclusively: SQLite's WAL then needs no shared memory, which such
    filesystems do not share reliably. ``exclusive`` overrides the detection.
    """

    def __init__(self, path: Path, exclusive: bool | None = None) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if exclusive is None:
                exclusive = filesystem_type(path.parent) in NETWORK_FILESYSTEMS
            self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            if exclusive:  # before WAL is first used: no -shm file is ever made
                self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(SCHEMA)
            self._db.execute(META_SCHEMA)
            self._db.execute(ROLL_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(MSG_STORE.format(path=path, detail=exc)) from exc

    def finished(self, keys: Iterable[str]) -> dict[str, SubmissionResult]:
        """The stored result of each key that has one."""
        wanted = list(keys)
        found: dict[str, SubmissionResult] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, record FROM results WHERE key IN ({marks})", chunk
            ).fetchall()
            for key, record in rows:
                try:
                    result = well_formed(SubmissionResult.from_record(json.loads(record)))
                except (ValueError, TypeError):
                    continue  # written by another grader version: grade again
                if FLAG_DAMAGED not in result.flags:  # a damaged row: graded again too
                    found[key] = result
        return found

    def put(self, key: str, result: SubmissionResult) -> None:
        """Store one finished submission (one transaction: all of it or nothing).

        Every string is written encodable (:func:`~grader.results.encodable`): text a
        kernel made (a lone surrogate) can cost neither the row nor the batch."""
        record = encodable(json.dumps(result.to_record(), ensure_ascii=False))
        student, file = encodable(result.student), encodable(result.file)
        status = encodable(result.status)
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT OR REPLACE INTO results (key, student, file, status, record)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (key, student, file, status, record),
                )
        except sqlite3.Error as exc:
            raise StoreError(MSG_STORE.format(path=self.path, detail=exc)) from exc

    def meta(self, name: str) -> str | None:
        """A value the batch keeps between runs (e.g. what its outputs were written from)."""
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_meta(self, name: str, value: str) -> None:
        """Keep ``value`` under ``name`` for the next run."""
        try:
            with self._db:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value)
                )
        except sqlite3.Error as exc:
            raise StoreError(MSG_STORE.format(path=self.path, detail=exc)) from exc

    def enrol(self, members: Iterable[Member]) -> None:
        """Make each member the current submission of its student (one transaction)."""
        rows = [
            (encodable(m.student), m.key, encodable(str(m.path)), json.dumps(m.notes))
            for m in members
        ]
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT OR REPLACE INTO roll (student, key, path, notes) VALUES (?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.Error as exc:
            raise StoreError(MSG_STORE.format(path=self.path, detail=exc)) from exc

    def roll(self) -> list[Member]:
        """The class as enrolled so far, by student."""
        rows = self._db.execute("SELECT student, key, path, notes FROM roll ORDER BY student")
        members = []
        for student, key, path, notes in rows.fetchall():
            try:
                kept = [str(n) for n in json.loads(notes)]
            except (ValueError, TypeError):
                kept = []
            members.append(Member(student, key, Path(path), kept))
        return members

    def count(self) -> int:
        """How many results are stored."""
        return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
