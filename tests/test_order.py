"""Cells run out of order: a NameError's advice names the later cell that defines the
name, and the student's own session that ran it first (``grader/checks/order.py``)."""

from __future__ import annotations

from pathlib import Path

import nbformat

from grader.checks.notes import advise
from grader.checks.order import MAX_PARSED_CHARS, CellOrder, defined_names, out_of_order_advice
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
    advice = advise(error, CellOrder.of(cells))
    assert advice.startswith(f"`data_augmentation` is only defined in cell {model + 2}, below")
    assert f"Move cell {model + 2} above cell {model + 1}." in advice
    assert f"cell {model + 2} ran before this one (its count [10], this cell's [12])" in advice


def test_only_a_later_definition_is_advice_and_counts_only_when_they_show_it() -> None:
    cells = [code("x = 1", 1), code("print(y)\ny = 2", 3), code("print(z)", 4), code("z = 3", 2)]

    def told(cell: int, name: str, ename: str = "NameError") -> str:
        evalue = f"name '{name}' is not defined"
        return out_of_order_advice(cell, ename, evalue, CellOrder.of(cells))

    assert told(1, "y") == ""
    assert "only defined in cell 4" in told(2, "z")
    assert "its count [2], this cell's [4]" in told(2, "z")
    cells[3].execution_count = None  # never run, or saved without counts
    assert "only defined in cell 4" in told(2, "z") and "your own session" not in told(2, "z")
    assert told(2, "w") == "" and told(2, "z", "KeyError") == "" and told(9, "z") == ""


def test_a_hostile_notebooks_cells_are_parsed_once_within_a_budget_and_never_crash() -> None:
    deep = code("a" + "+a" * 40_000)  # ast's recursion limit: no names, no crash
    huge = code("q = 1\n" + "#" * MAX_PARSED_CHARS)  # past the budget: not parsed
    order = CellOrder.of([code("print(q)"), deep, huge])
    assert order.names[1] == frozenset() and order.names[2] is None
    assert out_of_order_advice(0, "NameError", "name 'q' is not defined", order) == ""


def test_names_a_cell_defines_include_imports_defs_and_loop_targets() -> None:
    source = "!pip install x\nimport numpy as np\nfrom a.b import c\n"
    source += "def f(): pass\nfor i in []: pass"
    assert {"np", "c", "f", "i"} <= defined_names(source)
    assert defined_names("this is not python(") == set()
