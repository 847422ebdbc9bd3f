"""A student with only the published folder and the package: ``grader publish student``
run by the real CLI, the folder moved to another place, an empty cache (no kit is
built, no reference is run), and ``grader check --format json`` on three sample
notebooks. The structural verdicts must be the batch's; the accuracy check must use
the published band; the hidden check is counted, never named.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RUBRIC

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).parent.parent
HIDDEN = "pooling_head"
STUDENTS = ("s1001_nguyen", "s1008_mueller", "s1009_rossi")
"""Correct; a visible mistake (no augmentation); a hidden one (a Flatten head)."""
CORRECT = "s1001_nguyen"
ACCURACY = "accuracy"


def grader(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "grader", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=1800)


def course_rubric(folder: Path) -> Path:
    """The test rubric with its pooling check hidden, the reference named by full path."""
    text = RUBRIC.read_text(encoding="utf-8")
    reference = ROOT / "reference_solution" / "transfer_learning.ipynb"
    text = text.replace('"../../reference_solution/transfer_learning.ipynb"', f'"{reference}"')
    text = text.replace(f'id = "{HIDDEN}"\n', f'id = "{HIDDEN}"\nhidden = true\n')
    assert text.count("hidden = true") == 1
    path = folder / "course.toml"
    path.write_text(text, encoding="utf-8")
    return path


def structural(checks: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {c["id"]: [c["passed"], c["source"], c["score"]] for c in checks if c["id"] != ACCURACY}


def test_a_student_checks_with_only_the_published_folder(
    graded: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = graded
    batch = {r["student"]: r for r in map(json.loads, (out / "results.jsonl").open())}
    published = tmp_path / "published"
    made = grader(
        *("publish", "student", "--rubric", str(course_rubric(tmp_path)), "--out", published.name),
        *("--mode", "check", "--seeds", "2", "--package", f"grader[tf] @ file://{ROOT}"),
        cwd=tmp_path,  # a relative --out, as an instructor types it
        env=dict(os.environ),
    )
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    laptop = tmp_path / "laptop"
    folder = laptop / "week6-check"
    shutil.copytree(published, folder)
    shutil.rmtree(published)  # nothing in it may point back here
    figures = json.loads((folder / "published.json").read_text())
    (check,) = figures["modes"]
    assert check["mode"] == "check" and len(check["final"]) == 2
    assert f'pip install "grader[tf] @ file://{ROOT}"' in (folder / "README.md").read_text()
    for text in [p.read_text() for p in folder.glob("*.*")]:
        assert HIDDEN not in text and "transfer_learning.ipynb" not in text

    empty = laptop / "cache"
    env = {**os.environ, "GRADER_CACHE": str(empty)}
    for student in STUDENTS:
        notebook = laptop / f"{student}.ipynb"
        shutil.copy(ROOT / "submissions" / notebook.name, notebook)
        done = grader(
            *("check", str(notebook), "--rubric", "rubric.toml", "--format", "json"),
            cwd=folder,
            env=env,
        )
        assert done.returncode in (0, 1), done.stderr[-3000:]
        assert HIDDEN not in done.stdout + done.stderr
        outcome = json.loads(done.stdout)
        assert outcome["hidden_not_run"] == 1
        checks = outcome["result"]["checks"]
        graded_as = [c for c in batch[student]["checks"] if c["id"] != HIDDEN]
        assert structural(checks) == structural(graded_as), student
        (accuracy,) = [c for c in checks if c["id"] == ACCURACY]
        assert accuracy["source"] == "measured", accuracy["message"]
        runs = [v for v in (check["final"], check["head"]) if v]
        bands = [f"({min(v):.1%}-{max(v):.1%} over 2 seeds" for v in runs]
        assert any(band in accuracy["message"] for band in bands), accuracy["message"]
        if student == CORRECT:
            assert accuracy["score"] == accuracy["max_score"], accuracy["message"]
            assert outcome["ok"] and not outcome["failed"]
    assert not list(empty.glob("kit-v*")), "the check built a kit"
