"""Tests for grader.outputs.report: escaping of student text, report content, file names, index."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from grader.outputs.names import output_name
from grader.outputs.report import (
    format_percent,
    render_index,
    render_report,
    report_filename,
    write_reports,
)
from grader.outputs.templating import sort_script
from grader.results import (
    SOURCE_MEASURED,
    SOURCE_STATIC,
    STATUS_ERROR,
    STATUS_GRADED,
    STATUS_INVALID,
    CellError,
    CheckResult,
    Evidence,
    SubmissionResult,
)

HOSTILE_STUDENT = '=HYPERLINK("x")<script>alert(1)</script>'
SCRIPT = "<script>alert('x')</script>"
IMG = "<img src=x onerror=alert(1)>"
PASSED_HINT = "HINT-FOR-PASSED-CHECK"
FAILED_HINT = "HINT-FOR-FAILED-CHECK"
CHECK_IDS = ["base_frozen", "accuracy"]


def _hostile_result() -> SubmissionResult:
    passed = CheckResult(
        id="base_frozen",
        passed=True,
        score=2.0,
        max_score=2.0,
        message=f"Base frozen {SCRIPT}",
        source=SOURCE_STATIC,
        title="Base model frozen",
        hint=PASSED_HINT,
        evidence=[Evidence(kind="code", text=f"base.trainable = False  # {IMG}", cell=4, line=7)],
    )
    failed = CheckResult(
        id="accuracy",
        passed=False,
        score=0.5,
        max_score=2.0,
        message=f"Accuracy too low {IMG}",
        source=SOURCE_MEASURED,
        title="Accuracy",
        hint=FAILED_HINT,
        evidence=[Evidence(kind="fact", text=f"Measured 61% on the test split {SCRIPT}")],
    )
    return SubmissionResult(
        student=HOSTILE_STUDENT,
        file=f"{SCRIPT}.ipynb",
        sha256="f" * 64,
        status=STATUS_ERROR,
        score=2.5,
        max_score=4.0,
        checks=[passed, failed],
        errors=[
            CellError(
                cell=9,
                ename="ValueError",
                evalue="<b>bold</b> shapes differ",
                traceback=f"Traceback <b>here</b>\n  {SCRIPT}",
            )
        ],
        flags=["+cmd", IMG],
        message=f"cell 10 raised {SCRIPT}",
        mode="quick",
        graded_at="2024-05-01T10:00:00+00:00",
        cell_times=[1.5, None, 0.25],
        accuracy={"self_reported": 0.9, "measured": 0.61},
        training=[
            {
                "epochs": 3,
                "optimizer": "Adam",
                "learning_rate": 0.001,
                "history": {"loss": [1.2, 0.7, 0.41234], "val_accuracy": [0.5, 0.6, 0.61]},
            },
            {"epochs": 1},
        ],
    )


def _plain_result(
    student: str, status: str = STATUS_GRADED, passed: bool = True
) -> SubmissionResult:
    checks = [
        CheckResult(
            id="base_frozen",
            passed=passed,
            score=2.0 if passed else 0.0,
            max_score=2.0,
            message="ok",
            title="Base model frozen",
        ),
    ]
    if status != STATUS_GRADED:
        checks = []
    return SubmissionResult(
        student=student,
        file=f"{student}.ipynb",
        sha256="0" * 64,
        status=status,
        score=sum(c.score for c in checks),
        max_score=4.0 if checks else 0.0,
        checks=checks,
        flags=["no_training"] if not passed else [],
    )


def _assert_no_live_markup(html: str) -> None:
    lowered = html.replace(f"<script>{sort_script()}</script>", "").lower()  # the index's own
    assert "<script" not in lowered
    assert "<img" not in lowered
    assert "<b>" not in lowered
    assert "onerror=alert" not in lowered.replace("&lt;img src=x onerror=alert(1)&gt;", "")


def test_report_escapes_student_text() -> None:
    html = render_report(_hostile_result())
    _assert_no_live_markup(html)
    assert "&lt;script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "&lt;b&gt;here&lt;/b&gt;" in html
    assert "=HYPERLINK(&#34;x&#34;)&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_report_is_self_contained() -> None:
    html = render_report(_hostile_result())
    assert '<meta name="viewport"' in html
    assert "<style>" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html


def test_report_header() -> None:
    html = render_report(_hostile_result())
    assert "2.5 / 4" in html
    assert STATUS_ERROR in html
    assert "cell 10 raised &lt;script&gt;" in html
    assert "quick" in html
    assert "+cmd" in html
    assert "2024-05-01T10:00:00+00:00" in html


def test_report_hint_only_for_failed_check() -> None:
    html = render_report(_hostile_result())
    assert FAILED_HINT in html
    assert PASSED_HINT not in html
    assert "✓ passed" in html and "◐ partial" in html  # 0.5 of 2 is partial, not failed


@pytest.mark.parametrize(
    ("score", "passed", "review", "reviewed", "shown"),
    [
        (1.0, False, True, False, "awaiting review"),  # a pre-score, full or not
        (0.0, False, True, False, "awaiting review"),
        (1.0, False, True, True, "✓ passed"),  # the instructor gave full points
        (1.0, False, False, False, "✓ passed"),  # full points are never "not passed"
        (0.4, False, False, False, "◐ partial"),
        (0.0, False, False, False, "✗ not passed"),
    ],
)
def test_a_verdict_reads_as_what_it_is(
    score: float, passed: bool, review: bool, reviewed: bool, shown: str
) -> None:
    check = CheckResult(
        id="q4", passed=passed, score=score, max_score=1.0, message="m", review=review,
        reviewed=reviewed,
    )  # fmt: skip
    result = SubmissionResult("s1", "s1.ipynb", "0" * 64, STATUS_GRADED, score, 1.0, [check])
    verdicts = re.findall(
        r'<span class="(?:pass|partial|pending|fail)"[^>]*>([^<]*)<', render_report(result)
    )
    assert verdicts == [shown.replace("awaiting", "… awaiting")]


def test_report_cell_numbers_are_one_based() -> None:
    html = render_report(_hostile_result())
    assert "cell 5, line 7" in html  # evidence cell index 4
    assert "Cell 10: ValueError" in html  # error cell index 9
    assert "cell 1</td><td" in html and "1.50" in html
    assert "cell 3</td><td" in html and "0.25" in html
    assert "cell 2</td>" not in html  # no time recorded for index 1


def test_report_accuracy_and_training() -> None:
    html = render_report(_hostile_result(), reference_accuracy=0.85)
    assert "90.0 %" in html and "61.0 %" in html and "85.0 %" in html
    assert "Self-reported" in html and "Measured" in html and "Reference" in html
    assert "0.4123" in html and "val_accuracy" in html and "0.6100" in html
    assert "Adam" in html and "0.001" in html
    assert "Phase 2" in html


def test_report_prefers_recorded_reference() -> None:
    result = _hostile_result()
    result.accuracy["reference"] = 0.93
    html = render_report(result, reference_accuracy=0.5)
    assert "93.0 %" in html and "50.0 %" not in html


def test_report_for_ungraded_submission() -> None:
    result = SubmissionResult.without_results(
        "s1", "s1.ipynb", "0" * 64, STATUS_INVALID, "not valid JSON"
    )
    html = render_report(result)
    assert "not valid JSON" in html
    assert "No checks were run" in html
    assert "Errors" not in html


@pytest.mark.parametrize(
    ("value", "expected"), [(0.875, "87.5 %"), (87.5, "87.5 %"), (1, "100.0 %"), (None, "—")]
)
def test_format_percent(value: object, expected: str) -> None:
    assert format_percent(value) == expected


@pytest.mark.parametrize(
    ("student", "expected"),
    [
        ("s1001_nguyen", "s1001_nguyen"),
        ("../../etc/passwd", "___.._etc_passwd"),
        (".hidden", "_hidden"),
        ("", "unnamed"),
        ("nguyễn văn an", "nguyen_van_an"),
        ("学生", "__"),
        ("CON", "_CON"),
        ("a" * 300, "a" * 100),
    ],
)
def test_report_filename(student: str, expected: str) -> None:
    name = report_filename(student)
    assert name == expected
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,100}", name)
    assert not name.startswith(".")


def test_write_reports_files_and_links(tmp_path: Path) -> None:
    results = [
        _hostile_result(),
        _plain_result("s1001_ann"),
        _plain_result("S1001_ANN", passed=False),  # same file name on case-insensitive disks
        _plain_result("s1002_bob", status=STATUS_INVALID),
    ]
    paths = write_reports(results, tmp_path, CHECK_IDS, reference_accuracy=0.8)
    index = tmp_path / "index.html"
    assert paths[-1] == index
    reports = paths[:-1]
    assert len(reports) == 4 and len({p.name.casefold() for p in reports}) == 4
    assert all(p.parent == tmp_path / "reports" and p.suffix == ".html" for p in reports)
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == sorted(
        p.name for p in reports
    )
    assert reports[0].name == f"{output_name(HOSTILE_STUDENT)}.html"
    html = index.read_text(encoding="utf-8")
    _assert_no_live_markup(html)
    links = re.findall(r'href="([^"]*)"', html)
    assert sorted(set(links)) == sorted(f"reports/{p.name}" for p in reports)
    assert "&lt;script&gt;" in reports[0].read_text(encoding="utf-8")


def test_index_summary() -> None:
    results = [
        _plain_result("a"),
        _plain_result("b", passed=False),
        _plain_result("c", status=STATUS_INVALID),
    ]
    html = render_index(results, ["base_frozen", "head_added"])
    assert re.search(r"graded</th><td[^>]*>2<", html)
    assert re.search(r"invalid</th><td[^>]*>1<", html)
    assert re.search(r"timeout</th><td[^>]*>0<", html)
    assert "0.67 / 4" in html  # mean score (2 + 0 + 0) / 3
    assert "33.3 %" in html  # base_frozen passed by 1 of 3
    assert "0 / 3" in html  # head_added passed by nobody
    table = html[html.index('id="students"') :]
    assert table.index(">a</a>") < table.index(">b</a>") < table.index(">c</a>")


def test_index_empty_class() -> None:
    html = render_index([], CHECK_IDS)
    assert "No submissions." in html


def test_code_is_cut_into_pieces_that_join_back_and_is_coloured_by_the_template() -> None:
    from grader.outputs.highlight import python_tokens

    code = f'base.trainable = False  # {IMG}\nname = "{SCRIPT}"\n'
    pieces = python_tokens(code)
    assert "".join(text for _, text in pieces) == code
    assert ("k", "False") in pieces and ("s", f'"{SCRIPT}"') in pieces
    html = render_report(_hostile_result())
    assert '<span class="c"># &lt;img src=x onerror=alert(1)&gt;</span>' in html


def test_code_keeps_its_lines_and_indents_through_magics_and_windows_line_ends() -> None:
    """A cell as students write it (a magic, a shell escape, a call over three lines, a
    backslash continuation, Windows line ends): the pieces give back every line once,
    with its indentation, and colour the Python around the magics."""
    from grader.outputs.highlight import python_tokens

    lines = [
        "%matplotlib inline",
        "!pip install -q tensorflow",
        "model.compile(optimizer=keras.optimizers.Adam(1e-4),",
        "              loss='binary_crossentropy',  # two classes",
        "              metrics=['accuracy'])",
        "total = 1 + \\",
        "        2",
        "for layer in base.layers:",
        "    layer.trainable = False",
        "",
    ]
    pieces = python_tokens("\r\n".join(lines))
    assert "".join(text for _, text in pieces).split("\n") == lines
    assert ("k", "for") in pieces and ("c", "# two classes") in pieces
    assert ("s", "'binary_crossentropy'") in pieces and ("n", "1e-4") in pieces
    fragment = "%pip install x\n  ("
    assert "".join(text for _, text in python_tokens(fragment)) == fragment
