"""The sample class end to end: real kernels, real TensorFlow, the real CLI.

One batch (see ``conftest.py``) is graded once per session; the verdicts are compared
whole with ``tests/expected/sample_class.json``.
Set ``GRADER_UPDATE_EXPECTED=1`` to rewrite that file after a deliberate change.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from grader.checks.accuracy import FLAG_MISMATCH
from grader.outputs.names import output_name
from grader.run.probe import MSG_REPLACED
from tests.conftest import cell_timeout_message

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).parent.parent
EXPECTED = Path(__file__).parent / "expected" / "sample_class.json"
ROWS = 54
"""13 students, the reference, 9 fixtures, 21 hostile notebooks, 10 in real students'
shapes: no row lost."""
WRITTEN = ("q1_transfer_learning", "q2_fine_tuning", "q3_freezing", "q4_augmentation")
CONTRACT_KEYS = {
    "student",
    "file",
    "sha256",
    "status",
    "score",
    "max_score",
    "checks",
    "errors",
    "duration_s",
    "flags",
}


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def correct_students() -> set[str]:
    """The sample students whose intended verdicts say "Correct"."""
    intended = json.loads((EXPECTED.parent / "sample_class_intended.json").read_text())
    return {s for s, v in intended.items() if v["notes"].startswith("Correct")}


def verdict(record: dict[str, Any], correct: set[str]) -> dict[str, Any]:
    """What the batch decided for one student. The accuracy check's pass/fail is compared
    for the correct students: with the kit's readout and the 40-step head budget they
    measured 0.9875-0.994 against a line at 0.9375 in every seed benchmarked
    (``bench/accuracy_stability.py``), so it must not follow the machine. For the others
    a trained figure can sit near the line (a base never frozen measured 0.953 here), so
    only the check's source is compared, and not whether their own evaluate strayed from
    the measured figure (``accuracy_mismatch``: a from_logits=False model measured 0.625
    with its own evaluate at 0.406 in one run, 0.500 with 0.44-0.47 in two others);
    their figures are asserted by behaviour below."""

    def accuracy(c: dict[str, Any]) -> list[Any]:
        return [c["passed"] if record["student"] in correct else None, c["source"]]

    drawn = record["student"] not in correct and "no_training" not in record["flags"]
    return {
        "status": record["status"],
        # a trained model's own evaluate beside the measured figure: the draw's, but for
        # correct work (a claim with no training behind it is flagged on every draw)
        "flags": sorted(f for f in record["flags"] if not (drawn and f == FLAG_MISMATCH)),
        "checks": {
            c["id"]: accuracy(c) if c["id"] == "accuracy" else [c["passed"], c["source"]]
            for c in record["checks"]
        },
        "structural_score": sum(c["score"] for c in record["checks"] if c["id"] != "accuracy"),
    }


def test_sample_class_verdicts_as_recorded(graded: tuple[Path, str]) -> None:
    out, _ = graded
    correct = correct_students()
    actual = {r["student"]: verdict(r, correct) for r in records(out)}
    if os.environ.get("GRADER_UPDATE_EXPECTED"):
        EXPECTED.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
    assert actual == json.loads(EXPECTED.read_text())


def test_every_correct_sample_student_gets_full_accuracy_credit(graded: tuple[Path, str]) -> None:
    """The students whose intended verdicts say "Correct" (tutorial-like, Keras 3,
    Sequential with Rescaling, pooling on the base with augmentation in the pipeline,
    global max pooling) each earn the accuracy check's full points, above its line."""
    correct = sorted(correct_students())
    by_student = {r["student"]: r for r in records(graded[0])}
    assert len(correct) == 5
    for student in correct:
        accuracy = next(c for c in by_student[student]["checks"] if c["id"] == "accuracy")
        assert accuracy["passed"] and accuracy["score"] == accuracy["max_score"], student
        figures = by_student[student]["accuracy"]
        assert figures["measured"] >= figures["full_at"], student


def test_outputs_follow_the_contract(graded: tuple[Path, str]) -> None:
    out, stdout = graded
    results = records(out)
    assert len(results) == ROWS
    for record in results:
        assert CONTRACT_KEYS <= set(record)
        assert record["max_score"] == 14  # 5 code checks x 2 points, 4 written answers x 1
        assert (out / "reports" / f"{output_name(record['student'])}.html").exists()
    with open(out / "grades.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["student"] for r in rows] == sorted(r["student"] for r in results)
    assert {
        "include_top_false",
        "base_frozen",
        "augmentation",
        "pooling_head",
        "accuracy",
        "score",
        "status",
    } <= set(rows[0])
    executed = nbformat.read(out / "executed" / "s1001_nguyen.ipynb", as_version=4)
    assert not any("grader-probe" in c.metadata.get("tags", []) for c in executed.cells)
    original = nbformat.read(ROOT / "submissions" / "s1001_nguyen.ipynb", as_version=4)
    assert [c.source for c in executed.cells] == [c.source for c in original.cells]
    assert "Class page:" in stdout


def test_bad_inputs_get_a_specific_message(graded: tuple[Path, str]) -> None:
    by_student = {r["student"]: r for r in records(graded[0])}
    expected = {
        "not_json": "not valid JSON",
        "not_a_notebook": "no 'cells'",
        "no_cells": "has no cells",
        "r_kernel": "not Python",
    }
    for student, fragment in expected.items():
        assert by_student[student]["status"] == "invalid"
        assert fragment in by_student[student]["message"]
    upgraded = by_student["nbformat3_static_only"]
    assert "nbformat_upgraded" in upgraded["flags"]


def test_crash_and_hang_are_results_naming_the_cell(graded: tuple[Path, str]) -> None:
    by_student = {r["student"]: r for r in records(graded[0])}
    crashed = by_student["s1010_ivanova"]
    assert crashed["errors"][0]["ename"] == "NameError"
    assert crashed["message"].startswith(
        f"cell {crashed['errors'][0]['cell'] + 1} raised NameError"
    )
    hung = by_student["s1011_tanaka"]
    assert hung["status"] == "timeout"
    assert hung["message"] == cell_timeout_message(11)
    cells = nbformat.read(ROOT / "submissions" / "s1011_tanaka.ipynb", as_version=4).cells
    hanging = next(i for i, c in enumerate(cells) if "while True" in c.source)
    assert f"cell {hanging + 1} ran longer" in hung["message"]
    later = [t for t in hung["cell_times"][hanging + 1 :] if t is not None]
    assert later, "cells after the hanging one still ran"


def test_reference_accuracy_is_recorded_for_every_graded_student(graded: tuple[Path, str]) -> None:
    for record in records(graded[0]):
        if record["status"] != "invalid":
            assert 0.0 <= record["accuracy"]["reference"] <= 1.0


def test_the_reference_graded_as_a_student_measures_the_same_and_gets_full_credit(
    graded: tuple[Path, str],
) -> None:
    record = next(r for r in records(graded[0]) if r["student"] == "reference_as_student")
    accuracy = next(c for c in record["checks"] if c["id"] == "accuracy")
    assert accuracy["source"] == "measured" and accuracy["passed"]
    # a separate run of the same notebook under the probe's seed is one of the reference's
    # own draws: inside the reference's spread, compared on the whole-exercise basis
    figures = record["accuracy"]
    assert figures["basis"] == "final"  # it fine-tunes: the evaluator found its base changed
    assert figures["reference_low"] <= figures["measured"] <= figures["reference_high"]
    code = [c for c in record["checks"] if not c["id"].startswith("q")]
    assert all(c["passed"] for c in code)  # every code check; its written answers are absent


def test_accuracy_comes_from_measurement(graded: tuple[Path, str]) -> None:
    for record in records(graded[0]):
        if not any(phase["completed"] for phase in record["training"]):
            assert record["accuracy"].get("measured") is None  # no trained model to measure
            continue
        measured = record["accuracy"]["measured"]
        if measured is None:  # a model the evaluator refused says why (toy, non-image input)
            why = record["accuracy"].get("measured_error") or MSG_REPLACED in record["message"]
            assert why, record["student"]  # or the model was not the probe's: the row says so
            continue
        assert 0.0 <= measured <= 1.0, record["student"]


def test_printing_099_without_training_earns_nothing_and_is_flagged(
    graded: tuple[Path, str],
) -> None:
    record = next(r for r in records(graded[0]) if r["student"] == "never_trains_prints_099")
    accuracy = next(c for c in record["checks"] if c["id"] == "accuracy")
    assert accuracy["score"] == 0 and "never trained" in accuracy["message"]
    assert "accuracy_mismatch" in record["flags"] and "no_training" in record["flags"]
    assert record["accuracy"]["printed"] == pytest.approx(0.99)


def test_a_base_never_frozen_fails_its_check_and_is_measured_against_the_whole_reference(
    graded: tuple[Path, str],
) -> None:
    """Its accuracy is the draw's: trained whole at 1e-3 on this kit it measured 0.500 on
    one machine and 0.972 on another (the benchmark's 1e-2 variant is the accuracy
    mistake). What holds everywhere: the structural check fails, and the evaluator,
    finding the base's weights changed, compares it with the fine-tuned reference."""
    record = next(r for r in records(graded[0]) if r["student"] == "unfrozen_high_lr")
    checks = {c["id"]: c for c in record["checks"]}
    assert [checks["base_frozen"]["passed"], checks["base_frozen"]["source"]] == [False, "runtime"]
    figures = record["accuracy"]
    assert [figures["base"], figures["basis"]] == ["changed", "final"]
    assert checks["accuracy"]["source"] == "measured"
    assert "compared with the whole reference" in checks["accuracy"]["message"]


def test_no_input_scaling_measures_below_the_reference_and_loses_points(
    graded: tuple[Path, str],
) -> None:
    """0.00-0.09 of the points in every seed, mode and kit benchmarked."""
    record = next(r for r in records(graded[0]) if r["student"] == "no_preprocess_input")
    accuracy = next(c for c in record["checks"] if c["id"] == "accuracy")
    figures = record["accuracy"]
    # How far below (partial or zero) varies by machine and draw: the benchmark holds
    # each mistake's band; here only what holds everywhere.
    assert figures["measured"] < figures["reference"] - 0.05
    assert accuracy["source"] == "measured"
    assert not accuracy["passed"] and accuracy["score"] < accuracy["max_score"]
    assert f"{figures['measured']:.1%}" in accuracy["message"]  # both figures and the band
    assert (
        f"{figures['reference']:.1%}" in accuracy["message"]
        and "full points" in accuracy["message"]
    )


def test_a_probability_loss_over_logits_never_earns_full_accuracy_credit(
    graded: tuple[Path, str],
) -> None:
    """``from_logits=False`` over a ``Dense(1)``: its outputs separate the classes on some
    draws (full credit on 1 benchmarked seed in 3 before), chance on others. What holds on
    every draw: the evaluator finds the outputs are not probabilities, and the points are
    capped at half."""
    record = next(r for r in records(graded[0]) if r["student"] == "from_logits_false_on_logits")
    accuracy = next(c for c in record["checks"] if c["id"] == "accuracy")
    assert accuracy["source"] == "measured" and not accuracy["passed"]
    assert accuracy["score"] <= accuracy["max_score"] / 2
    assert "from_logits=False" in accuracy["message"] and "at most 50%" in accuracy["message"]
    found = [e["text"] for e in accuracy["evidence"] if e["text"].startswith("outputs that")]
    assert found and float(found[0].split(": ")[1].rstrip("%")) > 5


def test_written_answers_are_pre_scored_and_flagged_for_review(graded: tuple[Path, str]) -> None:
    by_student = {r["student"]: r for r in records(graded[0])}

    def item(student: str, check_id: str) -> dict[str, Any]:
        return next(c for c in by_student[student]["checks"] if c["id"] == check_id)

    assert all(item("s1001_nguyen", q)["score"] == 1 for q in WRITTEN)  # a good set
    assert item("s1005_patel", "q3_freezing")["score"] <= 0.25  # thin
    missing = item("s1009_rossi", "q3_freezing")
    assert missing["score"] == 0 and missing["message"].startswith("No answer found")
    with open(graded[0] / "grades.csv", newline="") as fh:
        rows = {r["student"]: r for r in csv.DictReader(fh)}
    assert set(WRITTEN) <= set(rows["s1001_nguyen"])
    assert "review_suggested" in rows["s1001_nguyen"]["flags"]
    assert float(rows["s1009_rossi"]["q3_freezing"]) == 0.0


def test_pages_and_exports_of_the_batch(graded: tuple[Path, str]) -> None:
    out = graded[0]
    for name in ("grades.xlsx", "canvas.csv", "reference.json", "index.html"):
        assert (out / name).exists(), name
    canvas = list(csv.reader((out / "canvas.csv").read_text().splitlines()))
    assert canvas[0][:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert canvas[1][0] == "Points Possible" and canvas[1][5] == "14.00"
    assert len(canvas) == 2 + ROWS
    assert not (out / "gradescope").exists()  # Gradescope runs grader itself
    page = (out / "reports" / "s1001_nguyen.html").read_text()
    assert 'id="curves"' in page and 'id="model"' in page and 'id="show-the-code"' in page


def by_score(out: Path, student: str) -> float:
    return next(r["score"] for r in records(out) if r["student"] == student)


def test_the_evaluator_tells_a_head_only_base_from_a_trained_one(
    graded: tuple[Path, str],
) -> None:
    """One training phase on a frozen base leaves the base's weights as shipped: the
    evaluator finds them unchanged (and only then may the student meet the head-only
    reference); whoever trained the base meets the whole reference."""
    head_only = trained_base = 0
    for record in records(graded[0]):
        figures = record["accuracy"]
        if figures.get("measured") is None:
            continue
        frozen = next(c for c in record["checks"] if c["id"] == "base_frozen")
        one_phase = len(record["training"]) == 1
        if frozen["passed"] and frozen["source"] == "runtime" and one_phase:
            assert figures["base"] == "unchanged", record["student"]
            head_only += 1
        elif not frozen["passed"]:
            assert figures["base"] == "changed", record["student"]
            assert figures["basis"] == "final", record["student"]
            trained_base += 1
    assert head_only and trained_base  # the class has both


def test_calibrate_prints_the_band_from_the_stored_reference_runs(graded: tuple[Path, str]) -> None:
    from grader.kit.assets import default_cache_dir

    runs = default_cache_dir() / "reference"
    stored = {path: path.stat().st_mtime_ns for path in runs.glob("*.json")}
    rubric = Path(__file__).parent / "fixtures" / "rubric_fast.toml"
    command = [
        sys.executable,
        "-m",
        "grader",
        "calibrate",
        "--rubric",
        str(rubric),
        "--mode",
        "quick",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert sum(line.strip().startswith("seed ") for line in lines) == 3
    assert any(line.strip().startswith("final: reference") for line in lines)
    assert any("full points from" in line for line in lines)
    after = {path: path.stat().st_mtime_ns for path in runs.glob("*.json")}
    assert stored and after == stored  # the batch's stored runs were used, none run again
