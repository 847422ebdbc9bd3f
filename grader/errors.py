"""Errors raised by grader's library code.

One root class; everything grader raises on purpose derives from it::

    GraderError
    ├── UsageError            the caller's mistake: the CLI exits 2 with a one-line reason
    │   ├── RubricError       a rubric file that is missing, not TOML, or has a wrong key/type
    │   └── SubmissionsError  a submissions path that does not exist or cannot be read
    ├── AssetKitError         the offline asset kit could not be built or is incomplete
    ├── ReferenceRunError     the reference solution did not produce its figures
    ├── StoreError            the output folder's results store cannot be opened or written
    ├── ClusterError          the Dask scheduler cannot be reached or lacks what grading needs
    └── SubmissionError       one student's notebook cannot be graded; it becomes a result
        └── InvalidNotebook   not JSON, not a notebook, no cells, another language

A :class:`SubmissionError` never stops a batch: the pipeline turns it into a
:class:`grader.results.SubmissionResult` with a status and the message. Errors from
dependencies (nbformat, json, tomllib, sqlite3, distributed) are mapped to these
classes where they are caught, with ``raise ... from exc``.
"""

from __future__ import annotations


class GraderError(Exception):
    """Root of every error grader raises on purpose."""


class UsageError(GraderError):
    """The caller asked for something impossible (exit code 2)."""


class RubricError(UsageError):
    """A rubric is missing, unreadable or invalid; names the file and the key."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}: " if key else f"{path}: "
        super().__init__(f"{where}{problem}")


class SubmissionsError(UsageError):
    """The submissions folder or file cannot be read."""


class AssetKitError(GraderError):
    """The offline asset kit could not be built or is incomplete."""


class ReferenceRunError(GraderError):
    """The reference solution ran but did not yield the figures grading needs."""


class StoreError(GraderError):
    """The results store (SQLite in the output folder) cannot be opened or written."""


class ClusterError(GraderError):
    """The Dask scheduler cannot be reached, or its workers cannot grade."""


class SubmissionError(GraderError):
    """One submission cannot be graded; carries the result status to record."""

    status = "error"


class InvalidNotebook(SubmissionError):
    """The file is not a gradable Python notebook."""

    status = "invalid"
