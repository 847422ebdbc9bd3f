"""Cells run out of order: a NameError's advice names the later cell that defines the
name, and the student's own session that ran it first (``grader/checks/order.py``)."""

from __future__ import annotations

from pathlib import Path

import nbformat

from grader.checks.notes import advise
from grader.checks.order import defined_names, out_of_order_advice
from grader.results import CellError

OUT_OF_ORDER = Path(__file__).parent / "fixtures" / "wild" / "cells_out_of_order.ipynb"


def code(source: str, count: int | None = None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.execution_count = count
    return cell


def test_the_fixtures_first_error_is_told_which_cell_to_move_and_why_it_worked() -> None:
    cells = nbformat.read(OUT_OF_ORDER, as_version=4).cells
    model = next(i for i, c in enumerate(cells) if c.source.startswith("inputs = tf.keras.Input"))
    error = CellError(model, "NameError", "name 'data_augmentation' is not defined")
    advice = advise(error, cells)
    assert advice.startswith(f"`data_augmentation` is only defined in cell {model + 2}, below")
    assert f"Move cell {model + 2} above cell {model + 1}." in advice
    assert f"cell {model + 2} ran before this one (its count [10], this cell's [12])" in advice


def test_only_a_later_definition_is_advice_and_counts_only_when_they_show_it() -> None:
    cells = [code("x = 1", 1), code("print(y)\ny = 2", 3), code("print(z)", 4), code("z = 3", 2)]
    assert out_of_order_advice(1, "NameError", "name 'y' is not defined", cells) == ""
    told = out_of_order_advice(2, "NameError", "name 'z' is not defined", cells)
    assert "only defined in cell 4" in told and "its count [2], this cell's [4]" in told
    cells[3].execution_count = None  # never run, or saved without counts
    told = out_of_order_advice(2, "NameError", "name 'z' is not defined", cells)
    assert "only defined in cell 4" in told and "your own session" not in told
    assert out_of_order_advice(2, "NameError", "name 'w' is not defined", cells) == ""
    assert out_of_order_advice(2, "KeyError", "name 'z' is not defined", cells) == ""
    assert out_of_order_advice(9, "NameError", "name 'z' is not defined", cells) == ""


def test_names_a_cell_defines_include_imports_defs_and_loop_targets() -> None:
    source = "!pip install x\nimport numpy as np\nfrom a.b import c\n"
    source += "def f(): pass\nfor i in []: pass"
    assert {"np", "c", "f", "i"} <= defined_names(source)
    assert defined_names("this is not python(") == set()
