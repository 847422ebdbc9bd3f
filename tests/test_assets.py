from __future__ import annotations

import os
import zipfile
from pathlib import Path

import nbformat
import pytest

from grader.assets import Kit, course_kit, prepare_keras_home
from grader.errors import AssetKitError
from grader.evaluation import MSG_NO_HOLDOUT, evaluate
from grader.execute import collect_errors, strip_ansi


def fake_kit(tmp_path: Path) -> Kit:
    home = tmp_path / "kit" / "keras_home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "weights_no_top.h5").write_bytes(b"h5")
    (home / "datasets").mkdir()
    with zipfile.ZipFile(home / "datasets" / "cats_and_dogs.zip", "w") as archive:
        archive.writestr("cats_and_dogs_filtered/train/cats/cat.0.jpg", b"jpg")
    return Kit(keras_home=home, holdout=tmp_path / "kit" / "holdout", version="test")


def test_a_kernels_keras_home_links_the_kit_and_serves_both_path_forms(tmp_path: Path) -> None:
    home = prepare_keras_home(fake_kit(tmp_path), tmp_path / "run" / "keras_home")
    assert (home / "models" / "weights_no_top.h5").read_bytes() == b"h5"
    assert (home / "datasets" / "cats_and_dogs.zip").is_symlink()
    alias = home / "datasets" / "cats_and_dogs_filtered"
    # Keras 2 code joins dirname(path_to_zip) with the folder: it points into what Keras 3
    # extracts (datasets/cats_and_dogs_extracted/), which exists once get_file has run.
    assert os.readlink(alias) == "cats_and_dogs_extracted/cats_and_dogs_filtered"
    with zipfile.ZipFile(home / "datasets" / "cats_and_dogs.zip") as archive:
        archive.extractall(home / "datasets" / "cats_and_dogs_extracted")
    assert (alias / "train" / "cats" / "cat.0.jpg").read_bytes() == b"jpg"
    assert not (home / "holdout").exists()


def test_a_course_cache_without_models_or_datasets_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AssetKitError, match="no models/ or datasets/"):
        course_kit(tmp_path, None)


def test_evaluation_without_a_holdout_says_so(tmp_path: Path) -> None:
    assert evaluate(tmp_path / "m.keras", None)["error"] == MSG_NO_HOLDOUT


def test_cell_errors_are_collected_with_readable_tracebacks() -> None:
    cell = nbformat.v4.new_code_cell("1/0")
    cell.outputs = [
        nbformat.v4.new_output(
            "error",
            ename="ZeroDivisionError",
            evalue="division by zero",
            traceback=["\x1b[31mZeroDivisionError\x1b[0m: boom"],
        )
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("x"), cell])
    [error] = collect_errors(nb)
    assert (error.cell, error.ename, error.traceback) == (
        1,
        "ZeroDivisionError",
        "ZeroDivisionError: boom",
    )
    assert collect_errors(nb, skip={1}) == []
    assert strip_ansi("\x1b[1;32mok\x1b[0m") == "ok"
