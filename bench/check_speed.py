"""Benchmark: how fast a student's self-check answers (median of N runs).

* ``grader check --static`` on the reference solution (target: <= 1 s);
* ``grader check`` (its quick self-check mode) on the reference solution (target:
  <= 45 s), with the share of that time spent starting TensorFlow in the kernel, timed
  here in fresh processes (``python -c "import tensorflow"``); the trusted evaluator's
  own start runs beside the notebook, off the critical path.

The reference's own figures are stored before timing starts by one untimed check (the
first check of a course pays for them once). Each side is run as a student runs it: a
fresh ``grader`` process.

Example: python bench/check_speed.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "reference_solution" / "transfer_learning.ipynb"
RUBRIC = ROOT / "rubrics" / "transfer_learning.toml"
STATIC_TARGET_S, QUICK_TARGET_S = 1.0, 45.0
TF_STARTS_PER_CHECK = 1  # the kernel's; the evaluator starts beside the running notebook


def timed(command: list[str]) -> float:
    start = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.monotonic() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed


def median_of(repeats: int, command: list[str]) -> tuple[float, list[float]]:
    runs = [timed(command) for _ in range(repeats)]
    return statistics.median(runs), runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    grader = [sys.executable, "-m", "grader"]
    with tempfile.TemporaryDirectory() as out:
        check = [*grader, "check", str(NOTEBOOK), "--rubric", str(RUBRIC), "--out", out]
        timed(check)  # the first check runs the reference once and stores its figures
        static, static_runs = median_of(args.repeats, [*check, "--static"])
        quick, quick_runs = median_of(args.repeats, check)
    tf_start, _ = median_of(args.repeats, [sys.executable, "-c", "import tensorflow"])
    share = TF_STARTS_PER_CHECK * tf_start / quick
    print(
        f"check --static: median {static:.2f} s of {[round(r, 2) for r in static_runs]}"
        f" (target <= {STATIC_TARGET_S} s)"
    )
    print(
        f"check --quick:  median {quick:.1f} s of {[round(r, 1) for r in quick_runs]}"
        f" (target <= {QUICK_TARGET_S} s)"
    )
    print(
        f"TensorFlow start: median {tf_start:.1f} s per process, x{TF_STARTS_PER_CHECK} per "
        f"check = {share:.0%} of the quick check"
    )


if __name__ == "__main__":
    main()
