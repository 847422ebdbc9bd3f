"""The class batch, graded once per session and shared by the kernel tests.

One batch mixes the 13 sample notebooks, the reference graded as a student, the
bad-input and accuracy fixtures and the hostile corpus: the honest notebooks must be
graded exactly as when alone, whatever the hostile ones do.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
RUBRIC = FIXTURES / "rubric_fast.toml"
FIXTURE_SETS = ("bad_inputs", "extra_students", "hostile")


@pytest.fixture(scope="session")
def class_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The batch's submissions folder."""
    submissions = tmp_path_factory.mktemp("class")
    fixtures = [p for name in FIXTURE_SETS for p in (FIXTURES / name).glob("*.ipynb")]
    for path in [*(ROOT / "submissions").glob("*.ipynb"), *fixtures]:
        shutil.copy(path, submissions / path.name)
    shutil.copy(
        ROOT / "reference_solution" / "transfer_learning.ipynb",
        submissions / "reference_as_student.ipynb",
    )
    return submissions


@pytest.fixture(scope="session")
def graded(class_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The batch graded by the real CLI: (output folder, what the CLI printed)."""
    submissions = class_dir
    out = tmp_path_factory.mktemp("out")
    command = [
        sys.executable,
        "-m",
        "grader",
        "grade",
        str(submissions),
        "--rubric",
        str(RUBRIC),
        "--out",
        str(out),
        "--quick",
        "--workers",
        "3",  # 3 kernels on 2 cores: one is often starting, sleeping or waiting
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out, proc.stdout
