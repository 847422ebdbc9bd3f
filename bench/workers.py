"""Benchmark: how many workers grade a class fastest on this machine.

The same class (the first ``--notebooks`` sample notebooks, default 6) is graded by
``grader grade --quick`` with the test caps (``tests/fixtures/rubric_fast.toml``) and
``--workers`` 1, 2, 3, ... into a fresh output folder each time; the reference's figures
are stored first. Reported: wall time per worker count and its throughput relative to
one worker. ``bench/batch_speed.py --workers 2 3`` gives the same comparison with a baseline.

Example: python bench/workers.py --notebooks 6 --counts 1 2 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUBRIC = ROOT / "tests" / "fixtures" / "rubric_fast.toml"


def grade(folder: Path, out: Path, workers: int) -> float:
    command = [sys.executable, "-m", "grader", "grade", str(folder), "--rubric", str(RUBRIC)]
    command += ["--out", str(out), "--quick", "--workers", str(workers)]
    start = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"grader grade failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=int, default=6)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        folder = Path(tmp) / "class"
        folder.mkdir()
        for path in sorted((ROOT / "submissions").glob("*.ipynb"))[: args.notebooks]:
            shutil.copy(path, folder)
        grade(folder / sorted(os.listdir(folder))[0], Path(tmp) / "warm", 1)  # reference
        times = {}
        for count in args.counts:
            times[count] = grade(folder, Path(tmp) / f"out{count}", count)
            print(f"{count} worker(s): {times[count]:.0f} s", flush=True)
    base = times[args.counts[0]]
    for count, seconds in times.items():
        print(f"{count} worker(s) on {cores} cores: {seconds:.0f} s, speed x{base / seconds:.2f}")


if __name__ == "__main__":
    main()
