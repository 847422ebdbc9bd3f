"""The results store, progress display, worker default and copy flags (no kernels)."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from pathlib import Path

import nbformat
import pytest

from grader import __version__
from grader.batch.classout import FLAG_MULTIPLE_FILES, flag_copies, note_intake
from grader.batch.pipeline import RUN_CONDITIONS, run_flags, run_status
from grader.batch.progress import Progress, close_log, eta_text, open_log, result_line
from grader.batch.runners import (
    FLAG_EXECUTED_NOT_WRITTEN,
    Job,
    default_workers,
    keep_executed,
    plan_jobs,
)
from grader.batch.store import BatchKey, ResultsStore, filesystem_type, grader_fingerprint
from grader.intake.copies import FLAG_POSSIBLE_COPY
from grader.intake.lms import gather
from grader.outputs.names import EXECUTED_DIR
from grader.results import CheckResult, SubmissionResult
from grader.run.execute import Execution

ROOT = Path(__file__).parent.parent
KEY = BatchKey(rubric="r", reference="ref", kit="kit", mode="quick", grader="g")


def result(student: str, score: float = 1.0, message: str = "") -> SubmissionResult:
    check = CheckResult(id="c", passed=True, score=score, max_score=2.0, message="ok")
    return SubmissionResult(
        student=student,
        file=f"{student}.ipynb",
        sha256="0" * 64,
        status="graded",
        score=score,
        max_score=2.0,
        checks=[check],
        message=message,
        duration_s=12.0,
    )


def test_store_round_trip_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    with ResultsStore(path) as store:
        store.put("k1", result("s1", 1.5))
        store.put("k2", result("s2"))
    with ResultsStore(path) as store:
        found = store.finished(["k1", "k2", "k3"])
        assert sorted(found) == ["k1", "k2"]
        assert found["k1"].score == 1.5 and found["k1"].checks[0].id == "c"
        store.put("k1", result("s1", 2.0))  # --force replaces the row
        assert store.finished(["k1"])["k1"].score == 2.0
        assert store.count() == 2


def test_a_damaged_row_is_graded_again_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    with ResultsStore(path) as store:
        store.put("k1", result("s1"))
    db = sqlite3.connect(path)
    db.execute("UPDATE results SET record = '{\"bogus\": 1' WHERE key = 'k1'")
    db.commit()
    db.close()
    with ResultsStore(path) as store:
        assert store.finished(["k1"]) == {}


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
40 27 0:50 /export /srv/class rw,relatime - nfs4 fs:/export rw,vers=4.2
41 40 0:51 / /srv/class/local\\040disk rw,relatime - ext4 /dev/sdb1 rw
"""


@pytest.mark.parametrize(
    "path, kind",
    [
        ("/home/ta/out", "ext4"),
        ("/srv/class", "nfs4"),
        ("/srv/class/week6/out", "nfs4"),
        ("/srv/classic/out", "ext4"),  # a longer name, not a folder inside the mount
        ("/srv/class/local disk/out", "ext4"),  # a mount inside the mount, its space escaped
    ],
)
def test_the_filesystem_under_a_path_is_its_longest_mount(path: str, kind: str) -> None:
    assert filesystem_type(Path(path), MOUNTINFO) == kind


def test_on_a_network_filesystem_the_store_needs_no_shared_memory(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    with ResultsStore(path, exclusive=True) as store:
        store.put("k1", result("s1", 1.5))
        assert store._db.execute("PRAGMA locking_mode").fetchone()[0] == "exclusive"
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert not (tmp_path / "results.sqlite-shm").exists()
    with ResultsStore(path) as store:  # here, a local disk: shared as usual
        assert store.finished(["k1"])["k1"].score == 1.5
        assert store._db.execute("PRAGMA locking_mode").fetchone()[0] == "normal"


def test_an_unwritable_store_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "results.sqlite").mkdir()
    from grader.errors import StoreError

    with pytest.raises(StoreError, match="results store cannot be used"):
        ResultsStore(tmp_path / "results.sqlite")


def test_every_part_of_the_key_matters() -> None:
    base = KEY.for_submission("s1", "s1.ipynb", "abc")
    assert base == KEY.for_submission("s1", "s1.ipynb", "abc")
    others = [
        KEY.for_submission("s2", "s1.ipynb", "abc"),
        KEY.for_submission("s1", "other.ipynb", "abc"),
        KEY.for_submission("s1", "s1.ipynb", "abd"),
        BatchKey("r2", "ref", "kit", "quick", "g").for_submission("s1", "s1.ipynb", "abc"),
        BatchKey("r", "ref2", "kit", "quick", "g").for_submission("s1", "s1.ipynb", "abc"),
        BatchKey("r", "ref", "kit2", "quick", "g").for_submission("s1", "s1.ipynb", "abc"),
        BatchKey("r", "ref", "kit", "full", "g").for_submission("s1", "s1.ipynb", "abc"),
        BatchKey("r", "ref", "kit", "quick", "g2").for_submission("s1", "s1.ipynb", "abc"),
    ]
    assert base not in others and len(set(others)) == len(others)
    assert grader_fingerprint().startswith(f"{__version__}+")


def test_progress_without_a_terminal_is_plain_lines(tmp_path: Path) -> None:
    stream = io.StringIO()
    logger = open_log(tmp_path)
    progress = Progress(3, workers=2, stream=stream, logger=logger)
    progress.skipped(1)
    progress.start("s2")
    progress.finish(result("s2", message="cell 3 raised \x1b[31mValueError\x1b]0;pwn\x07"))
    progress.close()
    close_log(logger)
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text and "\x07" not in text
    assert text.splitlines() == [
        "1 of 3 already graded (results store); grading 2",
        "  s2: 1/2 graded in 12 s (cell 3 raised ?[31mValueError?]0;pwn?)",
    ]
    log = (tmp_path / "grader.log").read_text()
    assert "started s2" in log and "s2: 1/2 graded" in log and "finished 2/3" in log


def test_progress_bar_on_a_terminal_shows_counts_eta_and_who_runs() -> None:
    stream = io.StringIO()
    progress = Progress(4, workers=2, stream=stream, bar=True)
    progress.start("s1")
    progress.start("s2")
    assert "0/4" in progress.render() and "ETA --" in progress.render()
    progress.finish(result("s1"))
    progress.start("s3")
    line = progress.render()
    assert "[######" in line and "1/4" in line and "25%" in line
    assert "now: s2, s3" in line
    assert progress.eta() == pytest.approx(1 * 12.0 / 2 + 6.0)
    assert "\r\x1b[K" in stream.getvalue()
    assert len(progress.render(width=30)) <= 30


def test_eta_text() -> None:
    assert eta_text(None) == "ETA --"
    assert eta_text(75) == "ETA 1m15s"
    assert eta_text(2 * 3600 + 300) == "ETA 2h05m"
    assert result_line(result("s9")) == "  s9: 1/2 graded in 12 s"


def test_default_workers_follows_cores_and_memory() -> None:
    assert default_workers(cpus=2, memory_mb=24_000) == 2
    assert default_workers(cpus=16, memory_mb=128_000) == 16
    assert default_workers(cpus=16, memory_mb=16_000) == 3  # 4 GB per worker
    assert default_workers(cpus=1, memory_mb=1_000) == 1


def test_copies_are_flagged_with_the_other_student_named(tmp_path: Path) -> None:
    honest = sorted((ROOT / "submissions").glob("*.ipynb"))[:4]
    jobs = [Job(p, p.stem) for p in honest]
    copy = tmp_path / "copycat.ipynb"
    nb = json.loads(honest[0].read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    copy.write_text(json.dumps(nb, indent=2))
    jobs.append(Job(copy, "copycat"))
    results = [result(job.student) for job in jobs]
    assert flag_copies(results, jobs, 0.9) == 2
    flagged = {r.student: r for r in results if FLAG_POSSIBLE_COPY in r.flags}
    assert sorted(flagged) == sorted(["copycat", honest[0].stem])
    assert honest[0].stem in flagged["copycat"].remarks[0]
    assert "copycat" in flagged[honest[0].stem].remarks[0]


def test_plan_jobs_maps_lms_names_and_notes_resubmissions(tmp_path: Path) -> None:
    source = tmp_path / "canvas"
    source.mkdir()
    notebook = (ROOT / "submissions" / "s1001_nguyen.ipynb").read_bytes()
    for name in ("nguyenan_12345_600001_week6.ipynb", "nguyenan_12345_600002_week6-1.ipynb"):
        (source / name).write_bytes(notebook)
    out = source / "out"
    (out / "executed").mkdir(parents=True)
    (out / "executed" / "12345.ipynb").write_bytes(notebook)  # grader's own output
    jobs = plan_jobs(gather(source, out), KEY)
    assert [job.student for job in jobs] == ["12345"]
    assert "2 files from this student" in jobs[0].notes[0]
    assert len(jobs[0].key) == 64
    results = [result("12345")]
    note_intake(results, jobs)
    assert FLAG_MULTIPLE_FILES in results[0].flags
    assert results[0].remarks == jobs[0].notes


def test_one_grader_per_output_folder(tmp_path: Path) -> None:
    from grader.batch.classrun import _output_lock
    from grader.errors import UsageError

    with _output_lock(tmp_path / "out"):
        with pytest.raises(UsageError, match=f"another grader is writing.*pid {os.getpid()}"):
            with _output_lock(tmp_path / "out"):
                pass
    with _output_lock(tmp_path / "out"):  # free again once the first is done
        pass


def test_the_status_is_the_worst_condition_and_every_condition_is_flagged(tmp_path: Path) -> None:
    run = Execution(nb=nbformat.v4.new_notebook(), root=tmp_path)
    assert (run_status(run), run_flags(run)) == ("graded", [])
    run.truncated, run.timed_out, run.notebook_timeout = [2], [3], True
    assert run_status(run) == "timeout"
    assert run_flags(run) == ["cell_timeout", "notebook_timeout", "output_truncated"]
    run.out_of_memory = True
    assert run_status(run) == "out_of_memory"
    run.timed_out, run.notebook_timeout, run.truncated, run.out_of_memory = [], False, [], False
    run.disk_full = 1  # a flag alone: the writes it failed are the cells' own errors
    assert (run_status(run), run_flags(run)) == ("graded", ["disk_full"])
    assert [c.flag for c in RUN_CONDITIONS] == [
        "cell_timeout",
        "notebook_timeout",
        "kernel_died",
        "out_of_memory",
        "stdin_requested",
        "cell_errors",
        "output_truncated",
        "kernel_output_unreadable",
        "disk_full",
    ]


def test_the_batch_keeps_the_executed_notebook_beside_the_result(tmp_path: Path) -> None:
    nb = nbformat.read(ROOT / "submissions" / "s1001_nguyen.ipynb", as_version=4)
    kept = keep_executed(result("s1001_nguyen"), nb, tmp_path)
    path = tmp_path / EXECUTED_DIR / "s1001_nguyen.ipynb"
    assert nbformat.read(path, as_version=4) == nb and kept.flags == []
    (tmp_path / "blocked").write_text("a file where the folder should be")
    failed = keep_executed(result("s2", message="cell 1 raised"), nb, tmp_path / "blocked")
    assert failed.flags == [FLAG_EXECUTED_NOT_WRITTEN]
    assert failed.message.startswith("cell 1 raised; ")
