"""Pages and exports without a kernel: charts, model tree, hidden checks, gradebooks."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from grader.cli import main
from grader.outputs.canvas import canvas_csv, read_roster
from grader.outputs.records import write_results_jsonl
from grader.outputs.report import render_index, render_report
from grader.outputs.templating import sort_script
from grader.outputs.write import ClassInfo, write_outputs
from grader.results import CellError, CheckResult, Note, SubmissionResult

PAYLOAD = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
FORMULA_NAME = '=HYPERLINK("http://evil","x")'
CHECK_IDS = ["base_frozen", "pooling_head", "accuracy"]
HISTORY = [
    {"history": {"accuracy": [0.6, 0.7], "val_accuracy": [0.65, 0.72], "loss": [0.7, 0.6],
                 "val_loss": [0.68, 0.61]}},
    {"history": {"accuracy": [0.8], "val_accuracy": [0.82], "loss": [0.4], "val_loss": [0.42]}},
]  # fmt: skip
MODEL = {
    "class": "Functional", "name": "model", "trainable": True,
    "params_trainable": 1281, "params_non_trainable": 2257984,
    "layers": [
        {"class": "InputLayer", "name": "input_1", "trainable": True,
         "params_trainable": 0, "params_non_trainable": 0},
        {"class": "Functional", "name": "mobilenetv2_1.00_160", "trainable": False,
         "params_trainable": 0, "params_non_trainable": 2257984,
         "layers": [{"class": "Conv2D", "name": "Conv1", "trainable": False,
                     "params_trainable": 0, "params_non_trainable": 864}]},
        {"class": "Dense", "name": PAYLOAD, "trainable": True,
         "params_trainable": 1281, "params_non_trainable": 0},
    ],
}  # fmt: skip


def result(student: str = FORMULA_NAME + PAYLOAD, score: float = 6.0) -> SubmissionResult:
    checks = [
        CheckResult("base_frozen", True, 2, 2, "Frozen.", "runtime", "Base frozen"),
        CheckResult(
            "pooling_head", False, 0, 2, "SECRET-MESSAGE", "static", "SECRET-TITLE",
            hint="SECRET-HINT", hidden=True,
        ),
        CheckResult("accuracy", True, 2, 2, f"Measured {PAYLOAD}", "measured", "Accuracy"),
    ]  # fmt: skip
    return SubmissionResult(
        student=student,
        file=f"{student}.ipynb",
        sha256="0" * 64,
        status="error",
        score=score,
        max_score=6,
        checks=checks,
        errors=[CellError(3, "ValueError", PAYLOAD, "Traceback\n" + PAYLOAD, advice="Fix it.")],
        flags=["cell_errors"],
        message=f"cell 4 raised ValueError: {PAYLOAD}",
        accuracy={"measured": 0.8, "self_reported": 0.9, "printed": None, "reference": 0.85},
        training=HISTORY,
        model=MODEL,
        notes=[Note(1, 1, "colab", "Shell command skipped.", "!pip install x")],
    )


def test_report_draws_curves_with_the_reference_and_accuracy_bars() -> None:
    html = render_report(result(), 0.85, HISTORY)
    curves = html[html.index('id="curves"') : html.index('id="model"')]
    assert curves.count("<svg") == 2 and "stroke-dasharray" in curves
    assert "reference fine-tuning: val_accuracy" in curves
    accuracy = html[html.index('id="accuracy"') : html.index('id="curves"')]
    assert accuracy.count("<rect") == 3 and "80.0%" in accuracy and "85.0%" in accuracy


def test_report_shows_the_model_tree_with_the_base_folded() -> None:
    html = render_report(result())
    model = html[html.index('id="model"') :]
    assert "mobilenetv2_1.00_160" in model and "2,257,984" in model
    assert "<details><summary>1 layers inside mobilenetv2_1.00_160</summary>" in model


def test_no_student_text_becomes_markup_anywhere() -> None:
    html = render_report(result(), 0.85, HISTORY) + render_index([result()], CHECK_IDS)
    assert "<script>window" not in html and "<img" not in html
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert scripts == [sort_script()]  # only the index's own sorter


def test_hidden_check_shows_its_score_but_never_its_text() -> None:
    html = render_report(result())
    assert "A hidden check" in html
    assert not {"SECRET-MESSAGE", "SECRET-TITLE", "SECRET-HINT"} & set(
        re.findall(r"SECRET-\w+", html)
    )


def test_notes_and_error_advice_are_in_the_report() -> None:
    html = render_report(result())
    assert "Notes on the code" in html and "!pip install x" in html
    assert "How to fix:</strong> Fix it." in html


def test_index_csp_allows_exactly_its_sorter() -> None:
    html = render_index([result(), result("s2", 2.0)], CHECK_IDS)
    digest = base64.b64encode(hashlib.sha256(sort_script().encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in html
    assert 'id="distribution"' in html and "<rect" in html
    assert html.count('<li><a href="reports/') == 2  # both flagged (status error)


def test_workbook_freezes_headers_neutralises_formulas_and_adds_statistics(tmp_path: Path) -> None:
    info = ClassInfo(check_ids=CHECK_IDS, assignment="Week 6", reference_accuracy=0.85)
    written = write_outputs([result(), result("s2", 2.0)], info, tmp_path)
    book = openpyxl.load_workbook(written["xlsx"])
    grades, stats = book["grades"], book["checks"]
    assert grades.freeze_panes == "A2" and stats.freeze_panes == "A2"
    students = [row[0].value for row in grades.iter_rows(min_row=2)]
    assert students[0].startswith("'=HYPERLINK(")  # text, not a formula
    assert [c.value for c in stats[1]][:5] == ["check", "title", "graded", "passed", "pass_rate"]
    assert [row[0].value for row in stats.iter_rows(min_row=2)] == CHECK_IDS


def test_canvas_csv_reads_back_with_the_columns_canvas_requires(tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "Student,ID,SIS User ID,SIS Login ID,Section\n"
        '"Nguyen, An",1001,S1001,s1001_nguyen,Week 6 A\n'
    )
    results = [result("s1001_nguyen", 5.0), result(FORMULA_NAME, 1.0)]
    text = canvas_csv(results, "Week 6: Transfer learning", read_roster(roster))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section",
                       "Week 6: Transfer learning"]  # fmt: skip
    assert rows[1][0] == "Points Possible" and rows[1][5] == "6.00"
    by_login = {row[3]: row for row in rows[2:]}
    assert by_login["s1001_nguyen"] == ["Nguyen, An", "1001", "S1001", "s1001_nguyen",
                                        "Week 6 A", "5.00"]  # fmt: skip
    assert by_login["'" + FORMULA_NAME][0].startswith("'=")  # neutralised


def test_report_command_rebuilds_every_page_and_export(tmp_path: Path) -> None:
    write_results_jsonl([result("s1", 6.0), result("s2", 2.0)], tmp_path / "results.jsonl")
    (tmp_path / "reference.json").write_text(json.dumps({"accuracy": 0.85, "history": HISTORY}))
    rubric = Path(__file__).parent.parent / "rubrics" / "transfer_learning.toml"
    outcome = CliRunner().invoke(main, ["report", str(tmp_path), "--rubric", str(rubric)])
    assert outcome.exit_code == 0, outcome.output
    for name in ("grades.csv", "grades.xlsx", "canvas.csv", "index.html"):
        assert (tmp_path / name).exists(), name
    assert not (tmp_path / "gradescope").exists()  # Gradescope runs grader itself
    page = (tmp_path / "reports" / "s1.html").read_text()
    assert "reference feature extraction: val_accuracy" in page


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_every_formula_prefix_is_neutralised_in_canvas(value: str) -> None:
    rows = list(csv.reader(io.StringIO(canvas_csv([result(value)], "A"), newline="")))
    assert rows[2][0].startswith("'")
