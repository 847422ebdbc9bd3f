from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from grader.errors import InvalidNotebook, SubmissionsError
from grader.intake.notebooks import find_submissions, load_submission, parse_notebook, student_id


def notebook_bytes(**metadata: object) -> bytes:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nb.metadata.update(metadata)
    return nbformat.writes(nb).encode()


V3 = {
    "nbformat": 3,
    "nbformat_minor": 0,
    "metadata": {"name": "old"},
    "worksheets": [
        {
            "cells": [
                {
                    "cell_type": "code",
                    "input": "print(1)",
                    "language": "python",
                    "outputs": [],
                    "metadata": {},
                }
            ],
            "metadata": {},
        }
    ],
}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json at all", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[1, 2, 3]", "no 'cells'"),
        (
            json.dumps(
                {"cells": "nope", "nbformat": 4, "nbformat_minor": 5, "metadata": {}}
            ).encode(),
            "not a notebook",
        ),
        (nbformat.writes(nbformat.v4.new_notebook()).encode(), "has no cells"),
        (
            nbformat.writes(
                nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("hi")])
            ).encode(),
            "no code cells",
        ),
        (
            notebook_bytes(kernelspec={"name": "ir", "language": "R", "display_name": "R"}),
            "for 'r', not Python",
        ),
    ],
)
def test_bad_notebooks_are_invalid_with_a_clear_message(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidNotebook, match=message) as info:
        parse_notebook(raw)
    assert info.value.status == "invalid"


def test_nbformat3_is_upgraded() -> None:
    nb, notes = parse_notebook(json.dumps(V3).encode())
    assert nb.nbformat == 4
    assert nb.cells[0].source == "print(1)"
    assert notes == ["upgraded from nbformat 3"]


def test_outputs_that_break_the_format_are_dropped_and_said_but_nothing_else_is() -> None:
    """An editor's stream output with ``metadata`` (seen in a public Colab notebook):
    Jupyter opens it, nbformat's schema refuses it; its stale outputs are dropped."""
    data = json.loads(notebook_bytes())
    stream = {"output_type": "stream", "name": "stdout", "text": ["Mounted"], "metadata": {}}
    data["cells"][0].update(outputs=[stream], execution_count=3)
    nb, notes = parse_notebook(json.dumps(data).encode())
    assert nb.cells[0].outputs == [] and nb.cells[0].execution_count is None
    assert nb.cells[0].source == "x = 1"
    assert len(notes) == 1 and "saved outputs were dropped" in notes[0] and "metadata" in notes[0]
    data["cells"][0]["source"] = 7  # not the outputs: still not a notebook
    with pytest.raises(InvalidNotebook, match="not a notebook"):
        parse_notebook(json.dumps(data).encode())


def test_python_notebook_loads(tmp_path: Path) -> None:
    path = tmp_path / "s1234_lee.ipynb"
    path.write_bytes(
        notebook_bytes(
            kernelspec={"name": "python3", "language": "python", "display_name": "Python 3"}
        )
    )
    submission = load_submission(path)
    assert submission.student == "s1234_lee"
    assert len(submission.sha256) == 64


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("s1001_nguyen.ipynb", "s1001_nguyen"),
        ("My Notebook (1).ipynb", "My_Notebook_1"),
        ("=HYPERLINK(x).ipynb", "HYPERLINK_x"),
        ("...ipynb", "unnamed"),
    ],
)
def test_student_id(name: str, expected: str) -> None:
    assert student_id(Path(name)) == expected


def test_find_submissions(tmp_path: Path) -> None:
    (tmp_path / "a.ipynb").write_text("{}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.ipynb").write_text("{}")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "a-checkpoint.ipynb").write_text("{}")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in find_submissions(tmp_path)] == ["a.ipynb", "b.ipynb"]
    with pytest.raises(SubmissionsError, match="no such file or folder"):
        find_submissions(tmp_path / "missing")
