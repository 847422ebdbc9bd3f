"""Notebooks in the shapes real students write (``tests/fixtures/wild``): the model and
its augmentation built inside functions and handed on as arguments, a demo of the full
ImageNet network before the model that is trained, renamed imports and a
``Sequential().add`` model, the data fetched with ``!wget`` and ``!unzip``, read from a
Google Drive path after ``drive.mount``, from a Kaggle input folder, or with
``tfds.load``; and cells saved in an order that only worked in the student's session. Each
fixture's expected verdicts sit beside it (``NAME.expected.json``): read from the code
alone (``static``) and from the run (``runtime``), compared whole; the structural
checks must agree between the two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from grader.batch.selfcheck import check_static
from grader.rubric.schema import load_rubric
from tests.conftest import RUBRIC

WILD = Path(__file__).parent / "fixtures" / "wild"
NOTEBOOKS = sorted(WILD.glob("*.ipynb"))
STRUCTURAL = ("include_top_false", "base_frozen", "augmentation", "pooling_head")
ACCURACY = "accuracy"


def expected(notebook: Path) -> dict[str, Any]:
    return json.loads(notebook.with_suffix(".expected.json").read_text())


def test_every_wild_fixture_has_its_expected_verdicts() -> None:
    assert len(NOTEBOOKS) >= 3
    assert all(n.with_suffix(".expected.json").exists() for n in NOTEBOOKS)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_static_verdicts_as_expected(notebook: Path) -> None:
    checks = {c.id: c for c in check_static(notebook, load_rubric(RUBRIC)).result.checks}
    found = {i: [checks[i].passed, checks[i].message] for i in STRUCTURAL}
    assert found == expected(notebook)["static"]


@pytest.mark.kernel
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_runtime_verdicts_as_expected_and_static_agrees(
    notebook: Path, graded: tuple[Path, str]
) -> None:
    """Graded in the class batch (``conftest.py``), as an instructor grades them: the
    batch's spare workers take them while its slowest notebooks run."""
    rows = (graded[0] / "results.jsonl").read_text().splitlines()
    record = next(r for r in map(json.loads, rows) if r["student"] == notebook.stem)
    checks = {c["id"]: c for c in record["checks"]}
    found: dict[str, list[Any]] = {
        i: [checks[i]["passed"], checks[i]["source"], checks[i]["message"]] for i in STRUCTURAL
    }
    found[ACCURACY] = [checks[ACCURACY]["passed"], checks[ACCURACY]["source"]]
    want = expected(notebook)
    assert [record["status"], found] == [want["status"], want["runtime"]]
    static = {i: v[0] for i, v in want["static"].items()}
    assert static == {i: found[i][0] for i in STRUCTURAL}  # the code read as the run showed
