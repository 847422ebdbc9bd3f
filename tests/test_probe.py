from __future__ import annotations

import ast
from pathlib import Path

import nbformat

from grader.probe import PROBE_TAG, ProbeConfig, inject, is_probe, probe_cell, read_events, strip


def test_probe_cell_is_valid_python_with_its_config() -> None:
    cell = probe_cell(ProbeConfig(dir=Path("/tmp/p"), quick=True, max_epochs=3))
    tree = ast.parse(cell.source)
    assert cell.metadata["tags"] == [PROBE_TAG]
    call = tree.body[-2].value
    assert isinstance(call, ast.Call)
    config = ast.literal_eval(call.args[0])
    assert config == {
        "dir": "/tmp/p",
        "quick": True,
        "max_epochs": 3,
        "max_steps": 10,
        "max_validation_steps": 3,
        "later_steps": 0,
        "eager_steps": 0,
        "seed": 1234,
    }


def test_inject_then_strip_gives_back_the_students_cells() -> None:
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# hi"), nbformat.v4.new_code_cell("x = 1")]
    )
    running = inject(nb, ProbeConfig(dir=Path("/tmp")))
    assert len(running.cells) == 3 and is_probe(running.cells[0])
    assert len(nb.cells) == 2  # the original is not modified
    assert strip(running).cells == nb.cells


def test_read_events_skips_garbage(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text('{"event": "fit"}\nnot json\n[1]\n{"event": "x"}\n')
    assert [e["event"] for e in read_events(tmp_path)] == ["fit", "x"]
    assert read_events(tmp_path / "none") == []


def test_a_named_model_variable_adds_a_final_probe_cell() -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    running = inject(nb, ProbeConfig(dir=Path("/tmp"), model_variable="final_model"))
    assert running.cells[-1].source == "_grader_save_named('final_model')"
    assert is_probe(running.cells[-1])
    assert strip(running).cells == nb.cells
