"""Benchmark: a class graded by ``grader grade`` against plain serial nbclient, in one run.

The class is the sample class's notebooks copied under new student names until there
are ``--notebooks`` of them (default 20). Three timings, in this order:

* **(a) baseline**: each notebook executed serially with nbclient's ``NotebookClient``
  (a TCP kernel of this interpreter, no sandbox), the way nbgrader's autograde runs
  them. The probe is injected with the same caps as (b), so both sides train the same
  capped amount, but none of the grader's speed-ups (no eager one-step runs, Keras
  left to trace each step twice); nothing is checked, measured or written.
* **(b) grader**: ``grader grade CLASS --quick`` with the default workers, including
  every check, the trusted evaluator, reports and exports. The reference's figures are
  stored before timing (a course pays for them once).
* **(c) again**: the same command with nothing changed (the results store answers).

Reported: each wall time, the ratios (b)/(a) (target <= 0.75) and (c) (target < 2 s),
and the orchestrating process's peak RSS from ``grader.log`` (target < 300 MB).

Example: python bench/batch_speed.py --notebooks 20
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sandbox_overhead import run_plain  # noqa: E402

from grader.batch.runners import default_workers  # noqa: E402
from grader.kit.assets import ensure_kit  # noqa: E402
from grader.rubric.schema import load_rubric  # noqa: E402
from grader.run import probe  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RUBRIC = ROOT / "tests" / "fixtures" / "rubric_fast.toml"
RATIO_TARGET, RERUN_TARGET_S, RSS_TARGET_MB = 0.75, 2.0, 300
PEAK_RSS = re.compile(r"orchestrator peak RSS (\d+) MB")


def make_class(folder: Path, count: int) -> list[Path]:
    samples = sorted((ROOT / "submissions").glob("*.ipynb"))
    paths = []
    for index in range(count):
        source = samples[index % len(samples)]
        target = folder / f"c{index // len(samples):02d}_{source.name}"
        shutil.copy(source, target)
        paths.append(target)
    return paths


def grade(folder: Path, out: Path, workers: int | None) -> tuple[float, str]:
    command = [sys.executable, "-m", "grader", "grade", str(folder), "--rubric", str(RUBRIC)]
    command += ["--out", str(out), "--quick"]
    command += ["--workers", str(workers)] if workers else []
    start = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"grader grade failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=int, default=20)
    parser.add_argument(
        "--workers", type=int, nargs="*", default=[], help="(b) for each count [grader's default]"
    )
    parser.add_argument("--skip-baseline", type=float, default=None, metavar="SECONDS")
    args = parser.parse_args()
    kit = ensure_kit(progress=print)
    caps = load_rubric(RUBRIC).quick
    config = probe.ProbeConfig(
        dir=Path("."),
        quick=True,
        max_epochs=caps.max_epochs,
        max_steps_per_epoch=caps.max_steps_per_epoch,
        max_validation_steps=caps.max_validation_steps,
        build_first=False,  # Keras as it is: the grader's own speed-ups are (b)'s
    )
    with tempfile.TemporaryDirectory(prefix="bench-class-") as tmp:
        folder, out = Path(tmp) / "class", Path(tmp) / "out"
        folder.mkdir()
        paths = make_class(folder, args.notebooks)
        counts = args.workers or [None]
        grade(folder / paths[0].name, Path(tmp) / "warm", counts[0])  # reference stored
        baseline = args.skip_baseline
        if baseline is None:
            start = time.monotonic()
            for path in paths:
                run_plain(nbformat.read(path, as_version=4), kit, config)
            baseline = time.monotonic() - start
        print(f"(a) plain serial nbclient: {baseline:.0f} s for {len(paths)} notebooks", flush=True)
        for count in counts:
            out = Path(tmp) / f"out{count or 'default'}"
            graded, stdout = grade(folder, out, count)
            workers = count or default_workers()
            print(
                f"(b) grader grade, {workers} workers: {graded:.0f} s: (b)/(a) = "
                f"{graded / baseline:.3f} (target <= {RATIO_TARGET})",
                flush=True,
            )
        again, _ = grade(folder, out, counts[-1])
        log = (out / "grader.log").read_text()
    peaks = [int(m) for m in PEAK_RSS.findall(log)]
    print(f"(c) the same command again: {again:.2f} s (target < {RERUN_TARGET_S} s)")
    print(f"orchestrator peak RSS: {max(peaks) if peaks else '?'} MB (target < {RSS_TARGET_MB})")


if __name__ == "__main__":
    main()
