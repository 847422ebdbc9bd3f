"""Copy detection: calibrated on the sample class, realistic copies flagged.

Calibration (shingles of 7 tokens, names the notebook defines replaced by a
placeholder): the 13 sample students and the reference solution, all written from
the same course template, reach at most 0.855 pairwise (s1007_kim and s1013_dubois,
both close to the tutorial); the default threshold is 0.9. Copies score 1.0 when only
outputs, whitespace, comments, cell boundaries or markdown change, about 0.94-0.97
with quotes and two hyperparameters changed, 0.95-1.0 with seven variables renamed,
and 0.92-0.95 with all of these at once.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from grader.intake.copies import (
    DEFAULT_THRESHOLD,
    FLAG_POSSIBLE_COPY,
    Match,
    copy_message,
    find_copies,
    similarity,
)

ROOT = Path(__file__).parent.parent
SAMPLE = sorted((ROOT / "submissions").glob("*.ipynb"))
REFERENCE = ROOT / "reference_solution" / "transfer_learning.ipynb"
ORIGINALS = ("s1004_chen", "s1007_kim", "s1011_tanaka")
MARGIN = 0.03
RENAMES = {
    "train_dataset": "train_ds",
    "validation_dataset": "val_ds",
    "test_dataset": "test_ds",
    "base_model": "backbone",
    "model": "net",
    "history": "hist",
    "data_augmentation": "augment",
}
Notebook = dict[str, Any]


def source(cell: Notebook) -> str:
    value = cell["source"]
    return "".join(value) if isinstance(value, list) else value


def map_code(nb: Notebook, change: Callable[[str], str]) -> Notebook:
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["source"] = change(source(cell))
    return nb


def clear_outputs(nb: Notebook) -> Notebook:
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return nb


def respace(nb: Notebook) -> Notebook:
    """Two-space indents, blank lines, trailing spaces, spaces around '=' and ','."""

    def line(text: str) -> str:
        if not re.search(r"['\"]|==", text):
            text = re.sub(r"(?<=[\w)])=(?=[\w(])", " = ", re.sub(r",(?=\S)", ", ", text))
        return text.replace("    ", "  ") + "  "

    return map_code(nb, lambda code: "\n\n".join(line(x) for x in code.split("\n")))


def recomment_and_recut(nb: Notebook) -> Notebook:
    """New comments; code cells split at blank lines, then neighbours merged in pairs."""
    map_code(nb, lambda code: "# my own work\n" + re.sub(r"#[^\n]*", "# step", code))
    cells: list[Notebook] = []
    for cell in nb["cells"]:
        parts = re.split(r"\n\n(?=\S)", source(cell)) if cell["cell_type"] == "code" else []
        cells.extend([{**copy.deepcopy(cell), "source": p} for p in parts] or [cell])
    merged: list[Notebook] = []
    joined = False
    for cell in cells:
        if not joined and merged and merged[-1]["cell_type"] == cell["cell_type"] == "code":
            merged[-1] = {**merged[-1], "source": merged[-1]["source"] + "\n" + cell["source"]}
            joined = True
        else:
            merged.append(cell)
            joined = False
    nb["cells"] = merged
    return nb


def rewrite_markdown(nb: Notebook) -> Notebook:
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            cell["source"] = "In my own words: " + source(cell)[::-1]
    return nb


def requote_and_retune(nb: Notebook) -> Notebook:
    """Double quotes everywhere; 15 epochs instead of 10, dropout 0.3 instead of 0.2."""

    def change(code: str) -> str:
        code = code.replace("initial_epochs = 10", "initial_epochs = 15")
        return code.replace("Dropout(0.2)", "Dropout(0.3)").replace("'", '"')

    return map_code(nb, change)


def rename(nb: Notebook) -> Notebook:
    """Seven variables renamed consistently (also inside f-strings)."""
    names = re.compile(r"\b(" + "|".join(RENAMES) + r")\b")
    return map_code(nb, lambda code: names.sub(lambda m: RENAMES[m.group()], code))


def everything(nb: Notebook) -> Notebook:
    for change in (clear_outputs, respace, recomment_and_recut, rewrite_markdown):
        nb = change(nb)
    return rename(requote_and_retune(nb))


SAME_CODE = {
    "outputs cleared": clear_outputs,
    "whitespace changed": respace,
    "comments changed, cells split and merged": recomment_and_recut,
    "markdown rewritten": rewrite_markdown,
}
VARIANTS = {
    **SAME_CODE,
    "quotes and two hyperparameters changed": requote_and_retune,
    "seven variables renamed": rename,
    "all of these at once": everything,
}


def sample_class() -> dict[str, bytes]:
    notebooks = {path.stem: path.read_bytes() for path in SAMPLE}
    notebooks["reference"] = REFERENCE.read_bytes()
    return notebooks


def variant(raw: bytes, change: Callable[[Notebook], Notebook]) -> bytes:
    return json.dumps(change(json.loads(raw)), indent=2).encode()


def test_the_sample_class_has_no_copies() -> None:
    notebooks = sample_class()
    assert len(notebooks) == 14
    assert find_copies(notebooks) == {}
    scores = {
        (a, b): similarity(notebooks[a], notebooks[b])
        for a, b in itertools.combinations(sorted(notebooks), 2)
    }
    highest = max(scores, key=scores.__getitem__)
    print(f"highest honest pair: {highest} {scores[highest]:.3f}")
    assert scores[highest] <= DEFAULT_THRESHOLD - MARGIN


def test_the_prefix_filter_finds_every_pair_a_full_comparison_finds() -> None:
    notebooks = sample_class()
    threshold = 0.5
    expected = {
        (a, b): similarity(notebooks[a], notebooks[b])
        for a, b in itertools.combinations(sorted(notebooks), 2)
    }
    expected = {pair: score for pair, score in expected.items() if score >= threshold}
    found = find_copies(notebooks, threshold)
    got = {(s, m.other): m.similarity for s, ms in found.items() for m in ms if s < m.other}
    assert len(expected) >= 5
    assert got == pytest.approx(expected)


@pytest.mark.parametrize("original", ORIGINALS)
@pytest.mark.parametrize("label", VARIANTS)
def test_realistic_copies_are_flagged(original: str, label: str) -> None:
    notebooks = sample_class()
    notebooks["s9999_copy"] = variant(notebooks[original], VARIANTS[label])
    found = find_copies(notebooks)
    assert sorted(found) == sorted([original, "s9999_copy"])
    [match] = found["s9999_copy"]
    assert match.other == original and not match.identical
    assert found[original] == [Match("s9999_copy", match.similarity, False)]
    if label in SAME_CODE:
        assert match.similarity == 1.0
    print(f"{original} {label}: {match.similarity:.3f}")


def test_byte_identical_files_always_match() -> None:
    raw = (ROOT / "submissions" / "s1004_chen.ipynb").read_bytes()
    found = find_copies({"s1004": raw, "s2000": raw, "s3000": b"not json", "s3001": b"not json"})
    assert found == {
        "s1004": [Match("s2000", 1.0, True)],
        "s2000": [Match("s1004", 1.0, True)],
        "s3000": [Match("s3001", 1.0, True)],
        "s3001": [Match("s3000", 1.0, True)],
    }
    assert copy_message(found["s2000"]) == "possible copy: identical to s1004's file"


def test_unreadable_or_tiny_notebooks_are_compared_only_byte_wise() -> None:
    tiny = {"cells": [{"cell_type": "code", "source": "import os", "outputs": []}]}
    retitled = {**tiny, "metadata": {"title": "mine"}}
    notebooks = {
        "a": b"{broken",
        "b": b"{broken!",
        "c": json.dumps(tiny).encode(),
        "d": json.dumps(retitled).encode(),
        "e": b'{"cells": 3}',
        "f": b"[]",
    }
    assert find_copies(notebooks) == {}


def test_matches_are_sorted_most_similar_first() -> None:
    raw = (ROOT / "submissions" / "s1011_tanaka.ipynb").read_bytes()
    notebooks = {
        "a": raw,
        "b": variant(raw, requote_and_retune),
        "c": raw,
        "d": variant(raw, clear_outputs),
    }
    found = find_copies(notebooks)
    assert [(m.other, m.identical) for m in found["a"]] == [("c", True), ("d", False), ("b", False)]
    assert copy_message(found["a"]).startswith(
        "possible copy: identical to c's file; same code as d's (only outputs, markdown, "
        "comments, layout or names differ); code 9"
    )


@pytest.mark.parametrize(
    ("matches", "message"),
    [
        ([Match("s1004", 1.0, True)], "possible copy: identical to s1004's file"),
        ([Match("s1007", 0.968, False)], "possible copy: code 96% similar to s1007's"),
        ([Match("s1007", 0.9999, False)], "possible copy: code 99% similar to s1007's"),
        ([Match("s1007", 0.57, False)], "possible copy: code 57% similar to s1007's"),
        (
            [Match(f"s{i}", 0.95, False) for i in range(5)],
            "possible copy: code 95% similar to s0's; code 95% similar to s1's; "
            "code 95% similar to s2's; and 2 more",
        ),
    ],
)
def test_copy_message(matches: list[Match], message: str) -> None:
    assert copy_message(matches) == message


def test_flag_name_and_threshold_range() -> None:
    assert FLAG_POSSIBLE_COPY == "possible_copy"
    for bad in (0, -0.1, 1.01):
        with pytest.raises(ValueError, match="threshold"):
            find_copies({}, bad)


def synthetic_class(size: int) -> dict[str, bytes]:
    """``size`` students, each a sample notebook with its own edits (deterministic)."""
    rng = random.Random(6)
    originals = list(sample_class().values())
    notebooks = {}
    for i in range(size):
        nb = json.loads(rng.choice(originals))
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                lines = [x for x in source(cell).split("\n") if rng.random() > 0.15]
                lines += [f"extra_{i}_{j} = {rng.random()}" for j in range(rng.randrange(3))]
                cell["source"] = "\n".join(lines)
        notebooks[f"s{i:04d}"] = json.dumps(nb).encode()
    return notebooks


def test_a_class_of_300_is_compared_in_about_a_second() -> None:
    notebooks = synthetic_class(300)
    notebooks["s9998"] = variant(notebooks["s0001"], recomment_and_recut)
    notebooks["s9999"] = notebooks["s0002"]
    started = time.perf_counter()
    found = find_copies(notebooks)
    elapsed = time.perf_counter() - started
    print(f"302 notebooks compared in {elapsed:.2f} s")
    assert sorted(found) == ["s0001", "s0002", "s9998", "s9999"]
    assert elapsed < 20  # about 1 s on one core; generous for a loaded machine
