"""Errors raised by grader's library code, and the one place dependency errors become them.

One root class; everything grader raises on purpose derives from it, and each class
carries the exit code the CLI ends with (``exit_code``): 1 for "a check failed" (a
notebook that cannot be graded is one), 2 for "the command was wrong", 3 for "grader
could not run" (so a course's CI can tell them apart)::

    GraderError               exit 3: grader could not do what was asked
    ├── UsageError            exit 2: the caller's mistake, told as a one-line reason
    │   ├── RubricError       a rubric file that is missing, not TOML, or has a wrong key/type
    │   ├── SubmissionsError  a submissions path or archive that cannot be read
    │   └── InvalidInput      a results.jsonl, roster or reference.json that cannot be read
    │                         back, or check ids that clash with the spreadsheet's columns
    ├── AssetKitError         the offline asset kit could not be built or is incomplete
    ├── ReferenceRunError     the reference solution did not produce its figures
    ├── StoreError            the output folder's results store cannot be opened or written
    ├── ClusterError          the Dask scheduler cannot be reached or lacks what grading needs
    ├── OutputError           the pages and exports could not be written (disk, template)
    └── SubmissionError       exit 1: one student's notebook cannot be graded (a result)
        ├── InvalidNotebook   not JSON, not a notebook, no cells, another language, too large
        └── KernelOutputError what the student's kernel left (its probe's records, its
                              folders) cannot be read: the kernel's doing, stored as such

A :class:`SubmissionError` never stops a batch: the pipeline turns it into a
:class:`grader.results.SubmissionResult` with a status and the message.

Exceptions of dependencies (the standard library's OSError, json, tomllib, zipfile,
sqlite3, re, RecursionError; nbformat, jinja2, openpyxl, distributed) become grader's own in one way
only: inside :func:`map_dependency_errors`, which catches exactly the classes that
:data:`DEPENDENCY_ERRORS` lists for what is being done and raises the grader error made
from it, chained (``raise ... from exc``). This module imports nothing of grader and
no dependency: the table names classes as ``module:Name``, looked up only when an
exception is caught (a module that raised one is imported by then).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass


class GraderError(Exception):
    """Root of every error grader raises on purpose."""

    exit_code = 3
    """What ``grader`` exits with when this error ends a command."""


class UsageError(GraderError):
    """The caller asked for something impossible (exit code 2)."""

    exit_code = 2


class RubricError(UsageError):
    """A rubric is missing, unreadable or invalid; names the file and the key."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}: " if key else f"{path}: "
        super().__init__(f"{where}{problem}")


class SubmissionsError(UsageError):
    """The submissions folder, file or archive cannot be read."""


class InvalidInput(UsageError, ValueError):
    """A file grader reads back (``results.jsonl``, a roster, ``reference.json``) is not
    what it must be, or check ids clash with the spreadsheet's own columns. Names the file
    and, when known, the 1-based line. Also a ``ValueError``, as these always were."""

    def __init__(self, problem: str, path: str = "", line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        where = f"{path}, line {line}: " if line else (f"{path}: " if path else "")
        super().__init__(f"{where}{problem}")


class AssetKitError(GraderError):
    """The offline asset kit could not be built or is incomplete."""


class ReferenceRunError(GraderError):
    """The reference solution ran but did not yield the figures grading needs."""


class StoreError(GraderError):
    """The results store (SQLite in the output folder) cannot be opened or written."""


class ClusterError(GraderError):
    """The Dask scheduler cannot be reached, or its workers cannot grade."""


class OutputError(GraderError):
    """A page or export could not be written; names the file."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: cannot write ({problem})")


class SubmissionError(GraderError):
    """One submission cannot be graded; carries the result status to record."""

    status = "error"
    """The ``status`` of the submission's result."""
    exit_code = 1


class InvalidNotebook(SubmissionError):
    """The file is not a gradable Python notebook."""

    status = "invalid"


class KernelOutputError(SubmissionError):
    """What the student's kernel wrote cannot be read (a records file made a folder, JSON
    nested past any depth): that student's ``error``, never a grader failure retried."""


@dataclass(frozen=True)
class ErrorMapping:
    """Which dependency exceptions mean that one kind of work failed, and as what."""

    error: type[GraderError]
    """The grader error they become."""
    dependencies: tuple[str, ...]
    """Exception classes as ``module:Name`` (subclasses count too)."""


DEPENDENCY_ERRORS: dict[str, ErrorMapping] = {
    "rubric": ErrorMapping(
        RubricError,
        ("builtins:OSError", "builtins:UnicodeDecodeError", "tomllib:TOMLDecodeError",
         "builtins:ValueError", "re:error"),
    ),
    "notebook": ErrorMapping(
        InvalidNotebook,
        ("builtins:UnicodeDecodeError", "json:JSONDecodeError", "nbformat:ValidationError",
         "builtins:ValueError", "builtins:KeyError", "builtins:TypeError",
         "builtins:AttributeError"),
    ),
    "submissions": ErrorMapping(
        SubmissionsError,
        ("builtins:OSError", "re:error", "zipfile:BadZipFile", "zipfile:LargeZipFile",
         "builtins:EOFError", "builtins:ValueError"),
    ),
    "kernel output": ErrorMapping(
        KernelOutputError,
        ("builtins:OSError", "builtins:RecursionError", "builtins:UnicodeDecodeError",
         "builtins:ValueError"),
    ),
    "output folder": ErrorMapping(UsageError, ("builtins:OSError",)),
    "read back": ErrorMapping(
        InvalidInput,
        ("builtins:OSError", "builtins:UnicodeDecodeError", "json:JSONDecodeError",
         "builtins:TypeError", "builtins:KeyError", "builtins:AttributeError"),
    ),
    "outputs": ErrorMapping(
        OutputError,
        ("builtins:OSError", "jinja2:TemplateError",
         "openpyxl.utils.exceptions:IllegalCharacterError"),
    ),
    "store": ErrorMapping(StoreError, ("sqlite3:Error", "builtins:OSError")),
    "cluster": ErrorMapping(
        ClusterError, ("builtins:ImportError", "builtins:OSError", "builtins:TimeoutError")
    ),
    "kit": ErrorMapping(AssetKitError, ("builtins:OSError", "zipfile:BadZipFile")),
}  # fmt: skip
"""What each kind of work may raise from its dependencies, and the grader error it becomes."""

MSG_WRONG_ERROR = "map_dependency_errors({what!r}) must make a {expected}, not a {made}"


def dependency_classes(what: str) -> tuple[type[BaseException], ...]:
    """The exception classes :data:`DEPENDENCY_ERRORS` lists for ``what`` whose modules
    are imported now (an exception of a module not imported cannot have been raised)."""
    classes = []
    for name in DEPENDENCY_ERRORS[what].dependencies:
        module, _, attribute = name.partition(":")
        found = getattr(sys.modules.get(module), attribute, None)
        if isinstance(found, type) and issubclass(found, BaseException):
            classes.append(found)
    return tuple(classes)


@contextlib.contextmanager
def map_dependency_errors(what: str, make: Callable[[Exception], GraderError]) -> Iterator[None]:
    """Inside the block, a dependency exception listed for ``what`` becomes ``make(exc)``,
    raised from it; grader's own errors and anything not listed pass unchanged.

    ``make`` words the message (it knows the file and the key); the table decides which
    exceptions are caught and which grader error they must become.
    """
    expected = DEPENDENCY_ERRORS[what].error
    try:
        yield
    except GraderError:
        raise
    except Exception as exc:
        if not isinstance(exc, dependency_classes(what)):
            raise
        error = make(exc)
        if not isinstance(error, expected):
            made = type(error).__name__
            raise TypeError(
                MSG_WRONG_ERROR.format(what=what, expected=expected.__name__, made=made)
            ) from exc
        raise error from exc


def strerror(exc: BaseException) -> str:
    """An OSError's reason without its errno and path; any other exception's text."""
    return str(getattr(exc, "strerror", None) or exc)
