"""Tests for grader.outputs.records: results.jsonl round trip and the formula-safe grades.csv."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from grader.outputs.names import GRADES_FILE, RESULTS_FILE
from grader.outputs.records import (
    grades_table,
    neutralise_cell,
    read_results_jsonl,
    write_grades_csv,
    write_results_jsonl,
)
from grader.results import (
    SOURCE_RUNTIME,
    SOURCE_STATIC,
    STATUS_GRADED,
    STATUS_INVALID,
    CellError,
    CheckResult,
    Evidence,
    SubmissionResult,
)

CHECK_IDS = ["base_frozen", "head_added", "accuracy"]
FORMULA_STUDENT = '=HYPERLINK("http://x","y")'


def _check(check_id: str, passed: bool, score: float, max_score: float) -> CheckResult:
    return CheckResult(
        id=check_id,
        passed=passed,
        score=score,
        max_score=max_score,
        message=f"{check_id} message",
        source=SOURCE_STATIC,
        title=check_id.replace("_", " "),
        evidence=[Evidence(kind="code", text="base.trainable = False", cell=3, line=2)],
    )


def _results() -> list[SubmissionResult]:
    """Three hand-made results, deliberately not in student order."""
    zoe = SubmissionResult(
        student="s1003_zoe",
        file="s1003_zoe.ipynb",
        sha256="c" * 64,
        status=STATUS_GRADED,
        score=3.0,
        max_score=6.0,
        checks=[_check("base_frozen", True, 2.0, 2.0), _check("accuracy", False, 1.0, 2.0)],
        flags=["no_training", "cell_timeout"],
    )
    nguyen = SubmissionResult(
        student="s1001_nguyễn",
        file="s1001_nguyễn.ipynb",
        sha256="a" * 64,
        status=STATUS_GRADED,
        score=5.5,
        max_score=6.0,
        checks=[
            _check("base_frozen", True, 2.0, 2.0),
            _check("head_added", True, 2.0, 2.0),
            _check("accuracy", False, 1.5, 2.0),
        ],
        errors=[CellError(cell=4, ename="ValueError", evalue="bad shape", traceback="tb")],
        cell_times=[0.5, None, 12.25],
        accuracy={"self_reported": 0.91, "measured": 0.88},
        training=[{"epochs": 2, "optimizer": "adam", "history": {"loss": [0.9, 0.4]}}],
        graded_at="2024-05-01T10:00:00+00:00",
    )
    broken = SubmissionResult.without_results(
        "s1002_broken", "s1002_broken.ipynb", "b" * 64, STATUS_INVALID, "not a notebook"
    )
    return [zoe, nguyen, broken]


def test_output_names() -> None:
    assert RESULTS_FILE == "results.jsonl"
    assert GRADES_FILE == "grades.csv"


def test_jsonl_round_trip(tmp_path: Path) -> None:
    results = _results()
    path = tmp_path / RESULTS_FILE
    write_results_jsonl(results, path)
    back = read_results_jsonl(path)
    assert back == sorted(results, key=lambda r: r.student)
    assert [r.student for r in back] == ["s1001_nguyễn", "s1002_broken", "s1003_zoe"]
    text = path.read_text(encoding="utf-8")
    assert "nguyễn" in text  # ensure_ascii=False
    assert len(text.splitlines()) == 3
    assert [p.name for p in tmp_path.iterdir()] == [RESULTS_FILE]  # no temp file left


def test_jsonl_overwrites_existing_file(tmp_path: Path) -> None:
    path = tmp_path / RESULTS_FILE
    path.write_text("old content\n", encoding="utf-8")
    write_results_jsonl(_results()[:1], path)
    assert [r.student for r in read_results_jsonl(path)] == ["s1003_zoe"]


def test_jsonl_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / RESULTS_FILE
    write_results_jsonl(_results(), path)
    path.write_text(path.read_text(encoding="utf-8") + "\n\n", encoding="utf-8")
    assert len(read_results_jsonl(path)) == 3


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / RESULTS_FILE
    write_results_jsonl(_results()[:2], path)
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"student": "x", "file": \n')
    with pytest.raises(ValueError, match=r"line 3") as info:
        read_results_jsonl(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "line",
    ['["not", "an", "object"]', '{"student": "x"}', '{"student": "x", "bogus_only": 1}'],
)
def test_non_result_line_is_value_error(tmp_path: Path, line: str) -> None:
    path = tmp_path / RESULTS_FILE
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 1"):
        read_results_jsonl(path)


def test_grades_table_columns_and_values() -> None:
    table = grades_table(_results(), CHECK_IDS)
    assert list(table.columns) == [
        "student",
        "file",
        *CHECK_IDS,
        "score",
        "max_score",
        "late_penalty",
        "status",
        "flags",
        "remarks",
        "graded_under",
    ]
    assert list(table["student"]) == ["s1001_nguyễn", "s1002_broken", "s1003_zoe"]
    first, broken, zoe = table.to_dict("records")
    assert (first["base_frozen"], first["head_added"], first["accuracy"]) == (2.0, 2.0, 1.5)
    assert (first["score"], first["max_score"], first["flags"]) == (5.5, 6.0, "")
    assert broken["status"] == STATUS_INVALID
    assert all(math.isnan(broken[c]) for c in CHECK_IDS)
    assert (broken["score"], broken["max_score"]) == (0.0, 0.0)
    assert math.isnan(zoe["head_added"])
    assert zoe["accuracy"] == 1.0
    assert zoe["flags"] == "no_training;cell_timeout"


def test_grades_table_rejects_clashing_check_ids() -> None:
    with pytest.raises(ValueError, match="score"):
        grades_table(_results(), ["score"])
    with pytest.raises(ValueError, match="duplicate"):
        grades_table(_results(), ["a", "a"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+cmd", "'+cmd"),
        ("-2+3", "'-2+3"),
        ("@SUM(1)", "'@SUM(1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("plain", "plain"),
        ("a\x1b[31mb\x00", "a?[31mb?"),
        ("\x07=1", "?=1"),
        ("", ""),
        (-2.5, -2.5),
        (3, 3),
        (None, None),
    ],
)
def test_neutralise_cell(value: object, expected: object) -> None:
    assert neutralise_cell(value) == expected


def _read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def test_csv_neutralises_formulas(tmp_path: Path) -> None:
    hostile = SubmissionResult(
        student=FORMULA_STUDENT,
        file="@SUM(1).ipynb",
        sha256="d" * 64,
        status=STATUS_GRADED,
        score=-1.0,
        max_score=2.0,
        checks=[
            CheckResult(
                id="base_frozen",
                passed=False,
                score=-1.0,
                max_score=2.0,
                message="m",
                source=SOURCE_RUNTIME,
            )
        ],
        flags=["+cmd", "x"],
        remarks=['=HYPERLINK("http://x")'],
    )
    tabbed = SubmissionResult.without_results("\tstudent", "-2+3", "e" * 64, STATUS_INVALID, "m")
    path = tmp_path / GRADES_FILE
    write_grades_csv([hostile, tabbed], ["base_frozen", "head_added"], path)
    rows = _read_csv(path)
    assert rows[0] == [
        "student",
        "file",
        "base_frozen",
        "head_added",
        "score",
        "max_score",
        "late_penalty",
        "status",
        "flags",
        "remarks",
        "graded_under",
    ]
    assert rows[1] == [
        "'\tstudent", "'-2+3", "", "", "0.0", "0.0", "0.0", "invalid", "", "", "unrecorded",
    ]  # fmt: skip
    assert rows[2] == [
        "'" + FORMULA_STUDENT,
        "'@SUM(1).ipynb",
        "-1.0",
        "",
        "-1.0",
        "2.0",
        "0.0",
        "graded",
        "'+cmd;x",
        '\'=HYPERLINK("http://x")',
        "unrecorded",
    ]


def test_csv_plain_values(tmp_path: Path) -> None:
    path = tmp_path / GRADES_FILE
    write_grades_csv(_results(), CHECK_IDS, path)
    rows = _read_csv(path)
    assert len(rows) == 4
    assert rows[1] == [
        "s1001_nguyễn",
        "s1001_nguyễn.ipynb",
        "2.0",
        "2.0",
        "1.5",
        "5.5",
        "6.0",
        "0.0",
        "graded",
        "",
        "",
        "unrecorded",
    ]
    assert rows[2][2:5] == ["", "", ""]
    assert rows[3][-3] == "no_training;cell_timeout"
