"""A batch killed with SIGKILL resumes without redoing work; a zip from Canvas with a
malicious entry; the same class graded on a Dask cluster (real kernels throughout)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from grader.run.runfolders import RUN_PREFIX, run_folder_owner
from tests.conftest import RUBRIC, sandbox_processes

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).parent.parent
FAST_RUBRIC = """
[assignment]
title = "Resume test"

[limits]
cell_timeout_s = 60
notebook_timeout_s = 120

[[checks]]
id = "include_top_false"
points = 1
"""
STUDENTS = {"11111": "ann", "22222": "bob", "33333": "cat", "44444": "dan"}


def small_notebook(seconds: float, marker: str) -> str:
    """Builds MobileNetV2 without weights, then sleeps: a few seconds of a real kernel."""
    code = (
        "import time\n"
        "import tensorflow as tf\n"
        "base = tf.keras.applications.MobileNetV2(input_shape=(96, 96, 3), "
        "include_top=False, weights=None)\n"
        f"time.sleep({seconds})\n"
        f"print({marker!r})\n"
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code)]
    return nbformat.writes(nb)


def canvas_zip(path: Path, students: dict[str, str]) -> Path:
    """A Canvas bulk download, plus entries that try to escape the extraction folder."""
    with zipfile.ZipFile(path, "w") as bundle:
        for number, (sid, login) in enumerate(students.items()):
            name = f"{login}_{sid}_{700000 + number}_week6.ipynb"
            bundle.writestr(name, small_notebook(3, f"student {sid}"))
        bundle.writestr("../escaped.ipynb", small_notebook(0, "escaped"))
        bundle.writestr("/tmp/absolute_escape.ipynb", small_notebook(0, "absolute"))
    return path


def grade_command(source: Path, out: Path, rubric: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "grader", "grade", str(source),
        "--rubric", str(rubric), "--out", str(out), *extra,
    ]  # fmt: skip


def stored(out: Path) -> dict[str, str]:
    """student -> when its row was stored (nothing while the store is being created)."""
    db = sqlite3.connect(out / "results.sqlite")
    try:
        return dict(db.execute("SELECT student, stored_at FROM results").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()


def wait_for_rows(out: Path, count: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the batch ended before it could be killed"
        if (out / "results.sqlite").exists() and len(stored(out)) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} results stored in {timeout} s")


def test_sigkill_then_resume_grades_only_what_is_missing(tmp_path: Path) -> None:
    rubric = tmp_path / "rubric.toml"
    rubric.write_text(FAST_RUBRIC)
    archive = canvas_zip(tmp_path / "submissions.zip", STUDENTS)
    out = tmp_path / "out"
    command = grade_command(archive, out, rubric, "--quick", "--workers", "1")
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    wait_for_rows(out, 2, proc, timeout=240)
    os.killpg(proc.pid, signal.SIGKILL)  # the orchestrator and its worker, mid-notebook
    proc.wait()
    before = stored(out)
    assert len(before) in (2, 3)  # whole rows only: nothing half-written
    assert not (out / "results.jsonl").exists()  # the batch never got to its outputs

    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert f"{len(before)} of 4 already graded" in second.stdout
    after = stored(out)
    assert sorted(after) == sorted(STUDENTS)
    assert {s: after[s] for s in before} == before  # finished rows were not re-run
    log = (out / "grader.log").read_text()
    second_run = log[log.rindex("already graded") :]
    assert all(f"started {s}" not in second_run for s in before)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["student"] for r in records) == sorted(STUDENTS)
    assert all(r["status"] == "graded" and r["score"] == 1 for r in records)

    if os.geteuid() == 0:  # own uids per kernel: none may outlive the killed batch
        assert sandbox_processes() == []

    # the zip's escaping entries were refused, named, and nothing landed outside
    assert "escaped.ipynb" in second.stderr and "rejected" in second.stderr
    assert not (tmp_path / "escaped.ipynb").exists() and not (out / "escaped.ipynb").exists()
    assert not Path("/tmp/absolute_escape.ipynb").exists()

    third = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0 and "4 of 4 already graded" in third.stdout
    assert stored(out) == after

    forced = subprocess.run([*command, "--force"], capture_output=True, text=True, timeout=300)
    assert forced.returncode == 0 and "already graded" not in forced.stdout
    assert all(stored(out)[s] > after[s] for s in STUDENTS)


def test_a_dask_cluster_grades_like_local_workers(
    graded: tuple[Path, str], class_dir: Path, tmp_path: Path
) -> None:
    distributed = pytest.importorskip("distributed")
    local_out, _ = graded
    chosen = ["s1001_nguyen", "s1010_ivanova", "not_json"]
    submissions = tmp_path / "class"
    submissions.mkdir()
    for name in chosen:
        shutil.copy(class_dir / f"{name}.ipynb", submissions)
    out = tmp_path / "out"
    with distributed.LocalCluster(  # two threads per worker: a shared evaluator, taking turns
        n_workers=2, threads_per_worker=2, processes=True, memory_limit=0, dashboard_address=None
    ) as cluster:
        proc = subprocess.run(
            grade_command(
                submissions,
                out,
                RUBRIC,
                "--quick",
                "--workers",
                "3",
                "--dask",
                cluster.scheduler_address,
            ),  # fmt: skip
            capture_output=True,
            text=True,
            timeout=900,
        )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    remote = _by_student(out)
    local = _by_student(local_out)
    assert sorted(remote) == sorted(chosen)
    for student in chosen:
        assert _verdict(remote[student]) == _verdict(local[student]), student


@dataclass
class KilledBatch:
    """A class of three graded while one of its workers was killed (shared: kernels cost)."""

    rubric: Path
    submissions: Path
    out: Path
    returncode: int
    output: str


@pytest.fixture(scope="module")
def killed_batch(tmp_path_factory: pytest.TempPathFactory) -> KilledBatch:
    root = tmp_path_factory.mktemp("killed")
    rubric = root / "rubric.toml"
    rubric.write_text(FAST_RUBRIC)
    submissions = root / "class"
    submissions.mkdir()
    for name in ("s1", "s2", "s3"):
        (submissions / f"{name}.ipynb").write_text(small_notebook(8, name))
    out = root / "out"
    command = grade_command(submissions, out, rubric, "--quick", "--workers", "2")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = _a_grading_worker(time.monotonic() + 120, proc)
    os.kill(victim, signal.SIGKILL)  # as the OOM killer would
    stdout, stderr = proc.communicate(timeout=300)
    return KilledBatch(rubric, submissions, out, proc.returncode, stdout[-2000:] + stderr[-2000:])


def test_a_worker_killed_mid_batch_costs_nobody_a_grade(killed_batch: KilledBatch) -> None:
    assert killed_batch.returncode == 0, killed_batch.output
    records = _by_student(killed_batch.out)
    assert sorted(records) == ["s1", "s2", "s3"]
    assert all(r["status"] == "graded" for r in records.values()), records


def test_a_regrade_keeps_the_whole_class(killed_batch: KilledBatch, tmp_path: Path) -> None:
    """Then one late file alone, then one student by name: every export still has
    everyone, and only the regraded notebook ran."""
    assert killed_batch.returncode == 0, killed_batch.output
    rubric, out, everyone = killed_batch.rubric, killed_batch.out, ["s1", "s2", "s3"]
    on_time = _by_student(out)["s2"]["sha256"]
    late = tmp_path / "late" / "s2.ipynb"
    late.parent.mkdir()
    late.write_text(small_notebook(0, "s2, late"))
    alone = subprocess.run(
        grade_command(late, out, rubric, "--quick"), capture_output=True, text=True, timeout=300
    )
    assert alone.returncode == 0, alone.stdout[-2000:] + alone.stderr[-2000:]
    assert "1 student(s) from this intake and 2 kept" in alone.stdout
    assert_whole_class(out, everyone)
    assert _by_student(out)["s2"]["sha256"] not in (on_time, "")

    named = subprocess.run(
        grade_command(killed_batch.submissions, out, rubric, "--quick", "--student", "s3"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert named.returncode == 0, named.stdout[-2000:] + named.stderr[-2000:]
    log = (out / "grader.log").read_text()
    last_run = log[log.rindex("started s3") :]
    assert "started s1" not in last_run and "started s2" not in last_run
    assert_whole_class(out, everyone)
    late_s2 = _by_student(out)["s2"]
    assert late_s2["sha256"] != on_time and late_s2["provenance"]["mode"] == "quick"


def assert_whole_class(out: Path, students: list[str]) -> None:
    """Every class-wide file names exactly ``students``."""
    assert sorted(_by_student(out)) == students
    with open(out / "grades.csv", newline="", encoding="utf-8") as handle:
        assert sorted(row["student"] for row in csv.DictReader(handle)) == students
    with open(out / "canvas.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[1:]  # after the Points Possible row
    assert len(rows) == len(students)
    assert sorted(p.stem for p in (out / "reports").glob("*.html")) == students
    page = (out / "index.html").read_text()
    assert all(f"reports/{s}.html" in page for s in students)
    assert "Graded under different settings" not in page


def _a_grading_worker(deadline: float, proc: subprocess.Popen) -> int:
    """The pid of a worker process that is running a kernel now."""
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the batch ended before a worker could be killed"
        for folder in Path(tempfile.gettempdir()).glob(f"{RUN_PREFIX}*"):
            owner = run_folder_owner(folder)
            if owner and _parent(owner.pid) == proc.pid:  # a worker of this batch, nothing else
                return owner.pid
        time.sleep(0.2)
    raise AssertionError("no worker started a kernel")


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def _by_student(out: Path) -> dict[str, dict]:
    lines = (out / "results.jsonl").read_text().splitlines()
    return {r["student"]: r for r in map(json.loads, lines)}


def _verdict(record: dict) -> dict:
    return {
        "status": record["status"],
        "score": record["score"],
        "checks": [(c["id"], c["score"], c["source"]) for c in record["checks"]],
        "measured": record["accuracy"].get("measured"),
    }
