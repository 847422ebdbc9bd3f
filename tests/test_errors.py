"""grader.errors: one tree, an exit code on every error, every dependency error mapped."""

from __future__ import annotations

import importlib
import sqlite3
import zipfile
from pathlib import Path

import pytest

from grader import errors
from grader.errors import (
    DEPENDENCY_ERRORS,
    GraderError,
    InvalidInput,
    InvalidNotebook,
    OutputError,
    RubricError,
    StoreError,
    SubmissionError,
    SubmissionsError,
    UsageError,
    map_dependency_errors,
)
from grader.results import SubmissionResult


def all_errors(root: type[GraderError] = GraderError) -> list[type[GraderError]]:
    found = [root]
    for sub in root.__subclasses__():
        found += all_errors(sub)
    return found


def resolve(name: str) -> type[BaseException]:
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


@pytest.mark.parametrize("error", all_errors(), ids=lambda e: e.__name__)
def test_every_grader_error_has_an_exit_code_and_is_in_the_tree(error: type) -> None:
    usage, submission = issubclass(error, UsageError), issubclass(error, SubmissionError)
    assert error.exit_code == (2 if usage else 1 if submission else 3)
    tree = errors.__doc__.split("::", 1)[1]
    assert f" {error.__name__} " in tree.replace("\n", " \n")


@pytest.mark.parametrize("what", DEPENDENCY_ERRORS)
def test_every_mapped_dependency_exception_exists_and_becomes_a_grader_error(what: str) -> None:
    mapping = DEPENDENCY_ERRORS[what]
    assert issubclass(mapping.error, GraderError) and mapping.error.exit_code in (1, 2, 3)
    assert mapping.dependencies
    for name in mapping.dependencies:
        cls = resolve(name)
        assert isinstance(cls, type) and issubclass(cls, Exception), name
    assert len(errors.dependency_classes(what)) == len(mapping.dependencies)


def test_a_mapped_exception_is_raised_as_the_grader_error_from_it() -> None:
    with (
        pytest.raises(StoreError) as info,
        map_dependency_errors("store", lambda e: StoreError(str(e))),
    ):
        sqlite3.connect(":memory:").execute("not sql")
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    with pytest.raises(SubmissionsError) as zipped:
        with map_dependency_errors("submissions", lambda e: SubmissionsError(f"zip: {e}")):
            raise zipfile.BadZipFile("truncated")
    assert str(zipped.value) == "zip: truncated"


def test_what_the_table_does_not_list_passes_unchanged() -> None:
    with pytest.raises(ZeroDivisionError), map_dependency_errors("store", StoreError):
        _ = 1 / 0
    with pytest.raises(InvalidNotebook), map_dependency_errors("store", StoreError):
        raise InvalidNotebook("grader's own errors are never wrapped")


def test_a_maker_of_the_wrong_error_is_a_bug_said_as_such() -> None:
    with (
        pytest.raises(TypeError, match="must make a"),
        map_dependency_errors("store", lambda e: UsageError(str(e))),
    ):
        raise sqlite3.OperationalError("locked")
    with (
        pytest.raises(TypeError, match="must make a"),
        map_dependency_errors("output folder", lambda e: StoreError(str(e))),
    ):
        raise OSError(28, "No space left on device")


def test_errors_carry_their_fields() -> None:
    rubric = RubricError("r.toml", "checks[0].points", "expected a number")
    assert (rubric.path, rubric.key, rubric.problem) == (
        "r.toml",
        "checks[0].points",
        "expected a number",
    )
    assert str(rubric) == "r.toml: checks[0].points: expected a number"
    line = InvalidInput("malformed JSON", "out/results.jsonl", 3)
    assert (line.path, line.line, str(line)) == (
        "out/results.jsonl",
        3,
        "out/results.jsonl, line 3: malformed JSON",
    )
    assert isinstance(line, ValueError) and line.exit_code == 2
    assert str(InvalidInput("duplicate check ids: a")) == "duplicate check ids: a"
    written = OutputError("out/grades.xlsx", "No space left on device")
    assert str(written) == "out/grades.xlsx: cannot write (No space left on device)"
    assert (SubmissionError.status, InvalidNotebook.status) == ("error", "invalid")


def test_an_unwritable_output_is_one_error_naming_the_file(tmp_path: Path) -> None:
    from grader.outputs.write import ClassInfo, write_outputs

    class_info = ClassInfo(check_ids=["base_frozen"])
    one = [SubmissionResult("s1", "s1.ipynb", "0" * 64, "graded")]
    (tmp_path / "reports").write_text("a file where a folder must be")
    with pytest.raises(OutputError) as info:
        write_outputs(one, class_info, tmp_path)
    assert "reports" in str(info.value) and info.value.exit_code == 3


def test_an_unusable_kit_cache_is_an_asset_kit_error(tmp_path: Path) -> None:
    from grader.errors import AssetKitError
    from grader.kit.assets import ensure_kit

    (tmp_path / "cache").write_text("a file where the cache folder must be")
    with pytest.raises(AssetKitError, match="cannot use this cache folder") as info:
        ensure_kit(tmp_path / "cache", progress=lambda _: None)
    assert isinstance(info.value.__cause__, OSError) and info.value.exit_code == 3
