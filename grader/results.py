"""The result model: what grading one submission produces.

A failed grading is still a :class:`SubmissionResult` with a status and a message;
no submission is ever lost from a batch. ``to_record`` gives the JSON object of the
output contract (``results.jsonl``); ``from_record`` reads it back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

STATUS_GRADED = "graded"
STATUS_ERROR = "error"
STATUS_TIMEOUT = "timeout"
STATUS_INVALID = "invalid"
STATUS_KERNEL_DIED = "kernel_died"
STATUS_OUT_OF_MEMORY = "out_of_memory"
STATUS_STDIN = "stdin_requested"
STATUS_TRUNCATED = "output_truncated"
STATUSES = (
    STATUS_GRADED,
    STATUS_ERROR,
    STATUS_TIMEOUT,
    STATUS_INVALID,
    STATUS_KERNEL_DIED,
    STATUS_OUT_OF_MEMORY,
    STATUS_STDIN,
    STATUS_TRUNCATED,
)
"""Every status. A run that hit several conditions gets the first of :data:`PRECEDENCE`."""
PRECEDENCE = (
    STATUS_OUT_OF_MEMORY,
    STATUS_KERNEL_DIED,
    STATUS_TIMEOUT,
    STATUS_STDIN,
    STATUS_ERROR,
    STATUS_TRUNCATED,
    STATUS_GRADED,
)

SURROGATE = re.compile("[\ud800-\udfff]")
"""A code point no UTF-8 file, SQLite row or terminal can hold on its own."""
ESCAPED_BYTES = range(0xDC80, 0xDD00)
"""How Python's ``surrogateescape`` keeps an undecodable byte (a Linux file name)."""
REPLACEMENT = "\ufffd"

SOURCE_MEASURED = "measured"
SOURCE_RUNTIME = "runtime"
SOURCE_STATIC = "static"
SOURCE_NONE = "none"


@dataclass
class Evidence:
    """One piece of proof shown beside a verdict."""

    kind: str
    """``code`` (lines of a cell) or ``fact`` (a runtime or measured statement)."""
    text: str
    """The code lines, or the fact in words."""
    cell: int | None = None
    """Index of the notebook cell the code comes from (0-based, as in the file)."""
    line: int | None = None
    """First line of ``text`` within that cell (1-based)."""


@dataclass
class CheckResult:
    """The verdict of one rubric check."""

    id: str
    """The rubric's check id, e.g. ``base_frozen``."""
    passed: bool
    """True when the check earned full points."""
    score: float
    """Points earned."""
    max_score: float
    """Points available."""
    message: str
    """One sentence saying why, in words a student understands."""
    source: str = SOURCE_NONE
    """Which evidence decided: ``measured``, ``runtime``, ``static`` or ``none``."""
    title: str = ""
    """The rubric's title for the check."""
    hint: str = ""
    """The rubric's hint; shown when the check did not pass."""
    evidence: list[Evidence] = field(default_factory=list)
    """What proved the verdict (code lines or facts)."""
    hidden: bool = False
    """A hidden check: run only in batch grading; student pages show its score only."""
    review: bool = False
    """A pre-score (a written answer): flagged ``review_suggested`` until an override."""
    reviewed: bool = False
    """An instructor set this check's points (``overrides.csv``)."""
    auto_score: float | None = None
    """The automatic points, kept when an override replaced ``score``."""
    comment: str = ""
    """The instructor's comment from ``overrides.csv``."""


def encodable(text: str) -> str:
    """``text`` made safe to write as UTF-8: each lone surrogate becomes a character.

    An undecodable byte of a file name (``surrogateescape``) is read as Windows-1252 /
    Latin-1, what tools that do not write UTF-8 names use (``caf\\udce9`` -> ``café``);
    any other surrogate becomes U+FFFD. Text that is already encodable is returned as is.
    """
    if SURROGATE.search(text) is None:
        return text
    return SURROGATE.sub(_surrogate_char, text)


def _surrogate_char(match: re.Match[str]) -> str:
    point = ord(match.group())
    if point not in ESCAPED_BYTES:
        return REPLACEMENT
    char = bytes([point - 0xDC00]).decode("cp1252", errors="replace")
    return char if char.isprintable() else REPLACEMENT


def total_score(checks: Iterable[CheckResult], automatic: bool = False) -> float:
    """Points earned over ``checks``, not rounded (``automatic``: before any override)."""
    if automatic:
        return sum(c.auto_score if c.auto_score is not None else c.score for c in checks)
    return sum(c.score for c in checks)


@dataclass
class CellError:
    """An exception raised by a cell of the student's notebook."""

    cell: int
    """Index of the cell in the notebook (0-based, probe cells not counted)."""
    ename: str
    """Exception class name, e.g. ``ValueError``."""
    evalue: str
    """The exception's message."""
    traceback: str = ""
    """The traceback as plain text (ANSI codes removed)."""
    advice: str = ""
    """The fix, when the error is a known Keras 2 to 3 or Colab pitfall."""


@dataclass
class Note:
    """A habit (``!pip``, Drive) or Keras 2 pitfall found in the code, and what to do."""

    cell: int
    """Index of the notebook cell (0-based, as in the file)."""
    line: int
    """Line within the cell (1-based)."""
    kind: str
    """``colab`` (a habit grader neutralised) or ``keras2`` (code to change for Keras 3)."""
    text: str
    """The explanation, in words a student understands."""
    code: str = ""
    """The line in question."""


@dataclass
class SubmissionResult:
    """Everything grading one notebook produced, whatever happened to it."""

    student: str
    """Student identifier taken from the file name (e.g. ``s1001_nguyen``)."""
    file: str
    """The submission's file name."""
    sha256: str
    """SHA-256 of the submitted bytes."""
    status: str
    """``graded``, or what went wrong: ``invalid``, ``out_of_memory``, ``kernel_died``,
    ``timeout``, ``stdin_requested``, ``error`` (a cell raised), ``output_truncated``."""
    score: float = 0.0
    """Points earned over all checks."""
    max_score: float = 0.0
    """Points available over all checks."""
    checks: list[CheckResult] = field(default_factory=list)
    """One verdict per rubric check, in rubric order."""
    errors: list[CellError] = field(default_factory=list)
    """Exceptions raised by the notebook's cells."""
    duration_s: float = 0.0
    """Wall time spent grading this submission."""
    flags: list[str] = field(default_factory=list)
    """Notable conditions, e.g. ``cell_timeout``, ``no_training``."""
    message: str = ""
    """One line on the status when it is not ``graded`` (what went wrong, where)."""
    mode: str = "full"
    """``full``, ``quick`` or ``check`` (epochs and steps capped by the probe), or
    ``static`` (nothing ran)."""
    graded_at: str = ""
    """ISO timestamp of when grading finished."""
    cell_times: list[float | None] = field(default_factory=list)
    """Execution seconds per notebook cell (None for cells not run / markdown)."""
    accuracy: dict[str, Any] = field(default_factory=dict)
    """Accuracy figures: ``self_reported``, ``reference`` (and ``measured`` when known)."""
    training: list[dict[str, Any]] = field(default_factory=list)
    """One entry per training phase: epochs run, optimizer, learning rate, history."""
    model: dict[str, Any] | None = None
    """The layer tree of the last model trained (class, name, trainable, parameter counts,
    nested models), as the probe recorded it when that training started."""
    notes: list[Note] = field(default_factory=list)
    """Colab/Jupyter habits and Keras 2 pitfalls found in the code."""
    peak_memory_mb: int | None = None
    """Most memory the notebook's kernel used (None where no memory cgroup measures it)."""
    auto_score: float | None = None
    """The automatic total before overrides and late penalty (``score`` is the final one)."""
    late: dict[str, Any] = field(default_factory=dict)
    """``submitted_at``, ``source`` (file_name, zip or file_time), ``days_late``, ``penalty``."""
    remarks: list[str] = field(default_factory=list)
    """What the batch noticed beyond this run, for the instructor: several files from the
    student (which one was graded), a possible copy (the other student named)."""
    provenance: dict[str, str] = field(default_factory=dict)
    """What graded it: the rubric's digest, the mode, the asset kit's digest, the
    reference's figures and grader's version and code digest (empty: not recorded)."""
    identity: dict[str, str] = field(default_factory=dict)
    """Who the LMS says submitted it, from its bulk-download name: ``lms`` (``canvas`` or
    ``moodle``) and the ids and name it gave (empty for a plain file name)."""

    def to_record(self) -> dict[str, Any]:
        """The JSON object written to ``results.jsonl``."""
        return asdict(self)

    def encodable(self) -> SubmissionResult:
        """This result with every string made encodable (:func:`encodable`), as it is
        stored and written: text a kernel made can break no file and no store."""
        text = json.dumps(self.to_record(), ensure_ascii=False)
        return SubmissionResult.from_record(json.loads(encodable(text)))

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SubmissionResult:
        """Rebuild a result from a ``results.jsonl`` object (unknown keys ignored)."""
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in record.items() if k in known}
        data["checks"] = [
            CheckResult(
                **{
                    **c,
                    "evidence": [Evidence(**e) for e in c.get("evidence", [])],
                }
            )
            for c in record.get("checks", [])
        ]
        data["errors"] = [CellError(**e) for e in record.get("errors", [])]
        data["notes"] = [Note(**n) for n in record.get("notes", [])]
        return cls(**data)

    @classmethod
    def without_results(
        cls, student: str, file: str, sha256: str, status: str, message: str
    ) -> SubmissionResult:
        """A result for a submission that could not be graded at all."""
        return cls(student=student, file=file, sha256=sha256, status=status, message=message)
