"""Everything a kernel writes is untrusted input: one student never costs another a grade.

Real files, real zips, real SQLite; no kernel. Each test names the class of failure it
holds shut (an unencodable string, an undecodable file name, a wrong-typed record, a
deep folder tree); ``test_untrusted_intake.py`` has the rest (sizes, records, names).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import zipfile
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import nbformat
import pytest

from grader.batch.classrun import rebuild_outputs
from grader.batch.pipeline import GradingContext
from grader.batch.progress import Progress
from grader.batch.runners import Job, grade_task, keep_executed, plan_jobs, run_batch
from grader.batch.store import BatchKey, ResultsStore
from grader.checks.facts import FitEndEvent, parse_events
from grader.checks.measured import parse_measurement
from grader.errors import SubmissionsError
from grader.intake.lms import Intake, gather
from grader.outputs.readback import well_formed
from grader.outputs.records import read_results_jsonl, write_results_jsonl
from grader.results import CheckResult, SubmissionResult, encodable
from grader.rubric.schema import load_rubric
from grader.run import runfolders, trees
from grader.run.execute import Execution

ROOT = Path(__file__).resolve().parent.parent
KEY = BatchKey(rubric="r", reference="ref", kit="kit", mode="quick", grader="g")

LONE = "\ud800"
"""A lone surrogate: Python holds it, UTF-8 and SQLite cannot."""


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def result(student: str, text: str = "ok") -> SubmissionResult:
    check = CheckResult(id="c", passed=True, score=1.0, max_score=1.0, message=text)
    return SubmissionResult(
        student=student,
        file=f"{student}.ipynb",
        sha256="0" * 64,
        status="graded",
        score=1.0,
        max_score=1.0,
        checks=[check],
        message=text,
        model={"class": "Functional", "name": text, "layers": []},
    )


# --- 1. strings that cannot be encoded as UTF-8 -----------------------------------------


def test_encodable_reads_escaped_bytes_and_replaces_other_surrogates() -> None:
    assert encodable("plain é") == "plain é"
    assert encodable("caf\udce9") == "café"  # a Latin-1 byte of a Linux file name
    assert encodable(f"x{LONE}y") == "x\ufffdy"
    assert encodable("\udc81") == "\ufffd"  # no printable character for that byte


def test_probe_events_come_out_encodable_names_and_keys_alike() -> None:
    raw = [
        {
            "event": "fit_end",
            "model": {"class": f"Dense{LONE}", "name": f"out{LONE}", "layers": []},
            "history": {f"acc{LONE}": [0.5]},
            "saved": f"model{LONE}.keras",
            "probe_error": LONE,
        },
        {"event": "evaluate", "metrics": {f"loss{LONE}": 0.1}},
    ]
    fit_end, evaluate = parse_events(raw)
    assert isinstance(fit_end, FitEndEvent) and fit_end.model is not None
    texts = [fit_end.model.name, fit_end.model.class_name, fit_end.saved or "", *fit_end.history]
    texts += [fit_end.probe_error or "", *getattr(evaluate, "metrics", {})]
    assert all(_encodes(text) for text in texts), texts
    assert fit_end.model.name == "out\ufffd"


def test_the_evaluators_answer_comes_out_encodable() -> None:
    measured = parse_measurement({"error": f"bad layer {LONE}", "rule": LONE})
    assert measured is not None and measured.error == "bad layer \ufffd"
    assert measured.rule is None


def test_the_store_keeps_a_result_whatever_its_strings(tmp_path: Path) -> None:
    bad = result(f"s{LONE}", f"layer {LONE}")
    with ResultsStore(tmp_path / "results.sqlite") as store:
        store.put("k", bad)
        back = store.finished(["k"])["k"]
    assert back.message == "layer \ufffd" and back.student == "s\ufffd"
    assert back.model is not None and back.model["name"] == "layer \ufffd"


class _Ready:
    """A runner whose jobs are done at once: the results given, by student."""

    capacity = 2

    def __init__(self, results: dict[str, SubmissionResult]) -> None:
        self.results = results

    def submit(self, job: Job, ctx: Any) -> Future[SubmissionResult]:
        future: Future[SubmissionResult] = Future()
        future.set_result(self.results[job.student])
        return future

    def wait(self, futures: Any) -> set[Any]:
        return set(futures)

    def result(self, future: Future[SubmissionResult]) -> SubmissionResult:
        return future.result()

    def close(self) -> None:
        pass


def test_a_kernels_lone_surrogate_costs_neither_the_batch_nor_the_outputs(tmp_path: Path) -> None:
    results = {"a": result("a", f"name {LONE}"), "b": result("b")}
    jobs = [Job(tmp_path / f"{s}.ipynb", s, key=f"key-{s}") for s in results]
    with ResultsStore(tmp_path / "results.sqlite") as store:
        progress = Progress(len(jobs), 1, stream=io.StringIO())
        done = run_batch(jobs, None, lambda: _Ready(results), store, progress)  # type: ignore[arg-type]
        assert store.count() == 2
    assert [r.student for r in done] == ["a", "b"]
    write_results_jsonl(done, tmp_path / "results.jsonl")
    back = read_results_jsonl(tmp_path / "results.jsonl")
    assert back[0].message == "name \ufffd"
    assert json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0])["student"] == "a"


def test_an_executed_notebook_with_a_lone_surrogate_is_still_kept(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("print(1)"))
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"x{LONE}\n")]
    kept = keep_executed(result("s"), nb, tmp_path)
    assert "executed_not_written" not in kept.flags
    back = nbformat.read(tmp_path / "executed" / "s.ipynb", as_version=4)
    assert back.cells[0].outputs[0].text == "x\ufffd\n"


# --- 2. file names that are not UTF-8 ---------------------------------------------------

NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
"""A notebook with no cells: graded ``invalid`` at once, no kernel started."""


class _InProcess(_Ready):
    """The real per-job task (:func:`grade_task`), run here instead of in a worker."""

    def __init__(self) -> None:
        super().__init__({})

    def submit(self, job: Job, ctx: Any) -> Future[SubmissionResult]:
        future: Future[SubmissionResult] = Future()
        future.set_result(grade_task(job.path, ctx, job.student))
        return future


def _context() -> GradingContext:
    rubric = load_rubric(ROOT / "rubrics" / "transfer_learning.toml")
    return GradingContext(rubric, None, None, None, "quick")  # type: ignore[arg-type]


def _grade_all(intake: Intake, out: Path) -> list[SubmissionResult]:
    jobs = plan_jobs(intake, KEY)
    with ResultsStore(out / "results.sqlite") as store:
        progress = Progress(len(jobs), 1, stream=io.StringIO())
        results = run_batch(jobs, _context(), _InProcess, store, progress)
        assert store.count() == len(jobs)
    return results


def test_a_folder_entry_with_undecodable_bytes_is_that_students_row(tmp_path: Path) -> None:
    folder = tmp_path / "subs"
    folder.mkdir()
    Path(os.fsdecode(bytes(folder) + b"/caf\xe9.ipynb")).write_text(NOTEBOOK)
    (folder / "ok.ipynb").write_text(NOTEBOOK)
    results = _grade_all(gather(folder, tmp_path / "out"), tmp_path)
    assert sorted(r.file for r in results) == ["café.ipynb", "ok.ipynb"]
    assert {r.status for r in results} == {"invalid"}
    assert all(_encodes(r.student + r.file + r.message) for r in results)


def _misflagged_zip(path: Path) -> Path:
    """A zip whose entry ``caf??.ipynb`` says UTF-8 over Latin-1 bytes (as some tools
    write), beside an ordinary entry."""
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("café.ipynb", NOTEBOOK)  # non-ASCII: the UTF-8 flag is set
        bundle.writestr("ok.ipynb", NOTEBOOK)
    data = path.read_bytes().replace("café".encode(), b"caf\xe9\xe9")  # same length
    path.write_bytes(data)
    return path


def test_a_zip_whose_names_wrongly_claim_utf8_is_graded_not_refused(tmp_path: Path) -> None:
    archive = _misflagged_zip(tmp_path / "class.zip")
    with pytest.raises(UnicodeDecodeError):
        zipfile.ZipFile(archive)  # what stopped the batch before any student
    intake = gather(archive, tmp_path / "out")
    assert intake.problems == []
    names = sorted(entry.path.name for entry in intake.entries)
    assert names == ["cafΘΘ.ipynb", "ok.ipynb"]  # the bytes read as CP437
    assert all(entry.path.read_text() == NOTEBOOK for entry in intake.entries)
    results = _grade_all(intake, tmp_path)
    assert {r.status for r in results} == {"invalid"}


def test_a_zip_that_is_not_one_is_still_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "class.zip"
    broken.write_bytes(b"PK\x05\x06" + b"\0" * 10)
    with pytest.raises(SubmissionsError, match="not a readable zip"):
        gather(broken, tmp_path / "out")


# --- 3. a field of the wrong type in a stored result -------------------------------------


def _stored(out: Path, results: list[SubmissionResult], edits: dict[str, dict]) -> None:
    """``results.jsonl`` as grader wrote it, then some records' fields changed on disk."""
    write_results_jsonl(results, out / "results.jsonl")
    lines = []
    for line in (out / "results.jsonl").read_text().splitlines():
        record = json.loads(line)
        record.update(edits.get(record["student"], {}))
        lines.append(json.dumps(record))
    (out / "results.jsonl").write_text("\n".join(lines) + "\n")


def test_one_bad_record_is_that_students_error_page_never_the_class(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    bad_model = {"class": "Functional", "name": "m", "layers": [{"params_trainable": "12x"}, "a"]}
    edits = {
        "model": {"model": bad_model},  # a parameter count that is a string
        "score": {
            "duration_s": "slow",
            "checks": [
                {"id": "c", "passed": True, "score": "x", "max_score": 1.0, "message": "ok"}
            ],
        },
        "late": {"late": {"penalty": 1.0}},  # sound types, but a page cannot be drawn
    }
    _stored(out, [result(s) for s in ["fine", *edits]], edits)
    rubric = ROOT / "rubrics" / "transfer_learning.toml"
    outcome = rebuild_outputs(out, rubric, None, say=lambda _: None)
    reports = {p.stem: p.read_text() for p in (out / "reports").glob("*.html")}
    assert sorted(reports) == ["fine", "late", "model", "score"]
    by_student = {r["student"]: r for r in map(json.loads, _lines(out / "results.jsonl"))}
    assert by_student["model"]["status"] == "graded"
    assert by_student["model"]["model"]["layers"][0]["params_trainable"] == 0
    assert by_student["score"]["status"] == "error"
    assert "duration_s is not a number" in by_student["score"]["message"]
    assert "cannot be shown" in reports["late"] and "cannot be shown" in reports["score"]
    index = (out / "index.html").read_text()
    assert all(name in index for name in ["fine", "late", "model", "score"])
    assert len(outcome.results) == 4


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def test_a_stored_row_of_the_wrong_types_is_graded_again(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    with ResultsStore(path) as store:
        store.put("k", result("s"))
    record = result("s").to_record()
    record["checks"][0]["score"] = "x"
    with sqlite3.connect(path) as db:
        db.execute("UPDATE results SET record = ? WHERE key = 'k'", (json.dumps(record),))
    with ResultsStore(path) as store:
        assert store.finished(["k"]) == {}  # not trusted, not fatal: that student runs again
    damaged = well_formed(SubmissionResult.from_record(record))
    assert damaged.status == "error" and damaged.student == "s" and "check 'c'" in damaged.message


# --- 4. a very deep folder tree left by a kernel -----------------------------------------


DEEP = 1050
"""Past Python's recursion limit (1000 frames)."""
LONG = "d" * 100
"""With :data:`DEEP` levels, a path 27 times the longest the system takes (4096)."""


def _deep_tree(root: Path, depth: int = DEEP) -> None:
    """``root/ddd.../ddd...`` ``depth`` folders deep, a file at every level, made as a
    kernel would: relative to each folder (the whole path is too long to name)."""
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
            os.mkdir(LONG, dir_fd=fd)
            child = os.open(LONG, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def test_a_deep_tree_is_removed_without_recursion_and_no_link_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the kernel's")
    run = tmp_path / "run"
    _deep_tree(run)
    (run / "link").symlink_to(outside)
    (run / LONG / "file-link").symlink_to(outside / "keep.txt")
    (run / "locked").mkdir()
    (run / "locked" / "x").write_text("x")
    (run / "locked").chmod(0o500)
    try:
        if os.getuid() == 0:  # the sandbox's hand-over before and after a kernel
            assert trees.chown_tree(run, 4242) is None
            assert (run / LONG / "f").stat().st_uid == 4242
            assert (run / "link").lstat().st_uid == 4242 and outside.stat().st_uid == 0
        with pytest.raises(RecursionError):
            shutil.rmtree(run, ignore_errors=True)  # what teardown and the sweep did
        execution = Execution(nb=nbformat.v4.new_notebook(), root=run)
        assert execution.cleanup() is None
        assert not run.exists()
    finally:
        trees.remove_tree(run)  # pytest's own clean-up of old temporary folders recurses
    assert (outside / "keep.txt").read_text() == "not the kernel's"


def test_a_folder_moved_out_while_its_tree_is_walked_stops_the_walk_above_nothing(
    tmp_path: Path,
) -> None:
    """A process still writing the tree moves a subfolder out of it mid-walk: climbing
    back by ".." would land outside the tree, so the walk stops there instead."""
    (tmp_path / "run" / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "keep.txt").write_text("another student's")

    def files(folder: int, names: list[str]) -> None:
        if os.path.exists(tmp_path / "run" / "a" / "b" / "c") and not names:
            if os.fstat(folder).st_ino == (tmp_path / "run" / "a" / "b" / "c").stat().st_ino:
                os.rename(tmp_path / "run" / "a" / "b", tmp_path / "moved")

    removed: list[str] = []
    fd = os.open(tmp_path / "run", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(trees.TreeMoved):
            trees.walk(fd, files, lambda folder, name: removed.append(name))
    finally:
        os.close(fd)
    assert removed == ["c"]  # inside the moved folder, its own; nothing above it
    assert (tmp_path / "victim" / "keep.txt").read_text() == "another student's"


def test_the_sweep_leaves_a_folder_another_user_planted(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to plant a folder as another user")
    dead = subprocess.Popen(["true"])
    dead.wait()
    owner = runfolders.RunOwner(dead.pid, 1, runfolders.pid_namespace())
    planted = tmp_path / f"{runfolders.run_folder_prefix(owner)}x"
    planted.mkdir()
    os.chown(planted, 65534, 65534)
    assert runfolders.is_stale(planted)
    assert runfolders.sweep_stale(tmp_path) == 0 and planted.exists()


def test_the_sweep_reports_a_folder_it_cannot_remove_and_goes_on(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    owner = f"{dead.pid}-1-{runfolders.pid_namespace()}"
    small, big = (tmp_path / f"{runfolders.RUN_PREFIX}{owner}-{n}" for n in ("a", "b"))
    for folder, entries in ((small, 5), (big, 50)):
        (folder / "sub").mkdir(parents=True)
        for n in range(entries):
            (folder / "sub" / str(n)).touch()
    told: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trees, "MAX_ENTRIES", 20)  # past the bound: told, and kept
        assert runfolders.sweep_stale(tmp_path, report=told.append) == 1
    assert not small.exists() and big.exists()
    assert len(told) == 1 and big.name in told[0] and "more than 20 entries" in told[0]


def test_a_probe_folder_the_kernel_replaced_with_a_link_is_not_read_or_cleaned(
    tmp_path: Path,
) -> None:
    """Without root the kernel owns its run folder: it can rename ``probe/`` and put a
    link to another folder there; the grader reads nothing through it and removes
    nothing there (its links would have been dropped as the probe folder's own)."""
    from grader.errors import KernelOutputError
    from grader.run.execute import _drop_links, _identity

    probe_dir, elsewhere = tmp_path / "probe", tmp_path / "venv-bin"
    probe_dir.mkdir()
    made = _identity(probe_dir)
    elsewhere.mkdir()
    (elsewhere / "python").symlink_to("/usr/bin/python3")
    probe_dir.rename(tmp_path / "moved")
    probe_dir.symlink_to(elsewhere)
    with pytest.raises(KernelOutputError, match="put something else in its place"):
        _drop_links(probe_dir, made)
    assert (elsewhere / "python").is_symlink()
    probe_dir.unlink()
    (tmp_path / "moved").rename(probe_dir)
    _drop_links(probe_dir, made)  # the folder it made: read as before
