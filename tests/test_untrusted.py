"""Everything a kernel writes is untrusted input: one student never costs another a grade.

Real files, real zips, real SQLite; no kernel. Each test names the class of failure it
holds shut (an unencodable string, an undecodable file name, a wrong-typed record, a
deep folder tree, an oversized notebook, a hostile events file, a name that lies).
"""

from __future__ import annotations

import io
import json
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from grader.batch.progress import Progress
from grader.batch.runners import Job, run_batch
from grader.batch.store import ResultsStore
from grader.checks.facts import FitEndEvent, parse_events
from grader.checks.measured import parse_measurement
from grader.outputs.records import read_results_jsonl, write_results_jsonl
from grader.results import CheckResult, SubmissionResult, encodable

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
