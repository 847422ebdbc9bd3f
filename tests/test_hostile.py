"""The hostile corpus (``tests/fixtures/hostile``), graded inside the class batch.

Each notebook's outcome is asserted here; ``test_sample_class`` checks that every honest
notebook of the same batch is graded exactly as recorded. Where the machine cannot
enforce a limit (no root, no namespaces), the assertions that depend on it are skipped
and the warning that names it is checked instead.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import nbformat
import pytest

from grader.run.cgroups import grader_cgroups
from grader.run.machine import capabilities
from grader.run.probe import MSG_MISSING, MSG_REPLACED
from grader.run.runfolders import RUN_PREFIX, is_stale
from tests.conftest import (
    RunFolders,
    assert_nothing_crossed,
    cell_timeout_message,
    sandbox_processes,
)

pytestmark = pytest.mark.kernel

CAPS = capabilities()
needs_namespaces = pytest.mark.skipif(not CAPS.namespaces, reason="no namespaces here")
needs_root = pytest.mark.skipif(not CAPS.root, reason="not root: no separate uid")


@pytest.fixture(scope="module")
def by_student(graded: tuple[Path, str]) -> dict[str, dict[str, Any]]:
    lines = (graded[0] / "results.jsonl").read_text().splitlines()
    return {r["student"]: r for r in map(json.loads, lines)}


def executed(graded: tuple[Path, str], student: str) -> nbformat.NotebookNode:
    return nbformat.read(graded[0] / "executed" / f"{student}.ipynb", as_version=4)


def text_of(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


def test_infinite_loop_is_interrupted_and_later_cells_run(by_student: dict, graded: tuple) -> None:
    record = by_student["infinite_loop"]
    assert record["status"] == "timeout" and "cell_timeout" in record["flags"]
    assert record["message"] == cell_timeout_message(3)
    assert "still runs" in text_of(executed(graded, "infinite_loop").cells[3])


def test_memory_bomb_is_killed_as_out_of_memory(by_student: dict) -> None:
    record = by_student["memory_bomb"]
    assert record["status"] == "out_of_memory"
    assert record["message"].startswith("cell 3 used more than 4096 MB of memory")
    assert {"out_of_memory", "kernel_died"} <= set(record["flags"])


def test_fork_bomb_stops_at_the_process_limit(by_student: dict) -> None:
    record = by_student["fork_bomb"]
    if CAPS.cgroup or CAPS.root:
        assert record["status"] == "error"
        assert record["errors"][0]["ename"] == "BlockingIOError"
        assert record["message"].startswith("cell 3 raised BlockingIOError")
    else:  # only the RSS watchdog: the forks' memory stops them
        assert record["status"] in ("out_of_memory", "error")


def test_os_exit_is_a_dead_kernel_with_its_exit_code_and_static_credit(by_student: dict) -> None:
    record = by_student["os_exit"]
    assert record["status"] == "kernel_died"
    assert record["message"] == "the kernel died while running cell 3 (exit code 3)"
    static = {c["id"]: c for c in record["checks"] if c["source"] == "static"}
    assert {"include_top_false", "base_frozen", "pooling_head"} <= set(static)
    assert all(static[c]["passed"] for c in ("include_top_false", "base_frozen", "pooling_head"))
    assert record["score"] > 0


def test_huge_output_is_truncated_with_a_visible_marker(by_student: dict, graded: tuple) -> None:
    record = by_student["huge_output"]
    assert record["status"] == "output_truncated"
    assert (
        record["message"] == "cell 2 printed more than 4096 kB; the rest of its output was dropped"
    )
    nb = executed(graded, "huge_output")
    flood = text_of(nb.cells[1])
    assert "[grader: output truncated here - more than 4096 kB]" in flood
    assert len(flood) < 4.5 * 2**20
    assert "after the flood" in text_of(nb.cells[2])


def test_input_is_a_stdin_status_naming_the_cell(by_student: dict) -> None:
    record = by_student["input_call"]
    assert record["status"] == "stdin_requested"
    assert record["message"].startswith("cell 2 asked for keyboard input")


@needs_namespaces
def test_network_is_unreachable(by_student: dict, graded: tuple) -> None:
    nb = executed(graded, "network_attempt")
    lines = text_of(nb.cells[1]).splitlines()
    assert len(lines) == 3 and all(line.startswith("BLOCKED") for line in lines)
    record = by_student["network_attempt"]
    assert record["status"] == "error" and record["errors"][0]["ename"] == "URLError"


@needs_namespaces
def test_grader_files_and_other_students_are_invisible(
    graded: tuple, class_dir: Path, by_student: dict
) -> None:
    out = graded[0]
    nb = executed(graded, "snoop_files")
    found_line = next(
        line for line in text_of(nb.cells[1]).splitlines() if line.startswith("FOUND")
    )
    found = json.loads(found_line.removeprefix("FOUND "))
    secret = [class_dir, out, Path(__file__).parent, Path.home(), Path.cwd()]
    leaked = [f for f in found if any(Path(f).is_relative_to(s.resolve()) for s in secret)]
    assert leaked == []
    assert not any(f.endswith((".toml", ".jsonl")) and "grader" in f for f in found)
    assert "DENIED /etc/shadow" in text_of(nb.cells[3]) or not CAPS.root


@needs_root
def test_the_kernel_runs_as_its_own_user_in_a_private_folder(graded: tuple) -> None:
    nb = executed(graded, "snoop_files")
    parent = nb.cells[2].outputs[0]
    assert parent["output_type"] == "error" and parent["ename"] == "PermissionError"


@needs_namespaces
def test_writes_outside_the_work_folder_fail_or_vanish(graded: tuple) -> None:
    nb = executed(graded, "write_outside")
    lines = [line.split() for line in text_of(nb.cells[1]).splitlines()]
    assert len(lines) == 8
    for verdict, path, *_ in lines:
        if path.startswith(("/tmp/", "/var/tmp/", "/dev/shm/")):
            assert not Path(path).exists(), f"{path} reached the grader's machine"
        elif CAPS.root:
            assert verdict.startswith("DENIED"), path
    assert "DENIED big.bin OSError [Errno 27] File too large" in text_of(nb.cells[2])


def test_removing_the_probe_earns_no_accuracy(by_student: dict) -> None:
    """Deleting ``keras.Model``'s methods leaves the trainer's, wrapped too: the toy fit is
    recorded, and the faked evaluation earns nothing."""
    record = by_student["probe_tamper"]
    accuracy = next(c for c in record["checks"] if c["id"] == "accuracy")
    assert accuracy["score"] == 0 and record["training"]
    assert record["accuracy"]["measured"] is None and "no credit" in accuracy["message"]
    assert record["accuracy"]["printed"] == pytest.approx(0.99)


def test_forged_records_and_a_planted_model_earn_nothing_and_are_flagged(
    by_student: dict,
) -> None:
    """Records appended to the probe's file by hand and a model put where the probe keeps
    the trained one: neither is the probe's, so neither counts, and the row says so."""
    record = by_student["forged_evidence"]
    assert record["status"] == "graded" and record["training"] == []
    assert {"evidence_forged", "no_training"} <= set(record["flags"])
    assert [c["score"] for c in record["checks"]] == [0] * len(record["checks"])
    assert record["accuracy"]["measured"] is None
    assert record["message"] == (
        "3 record(s) in the probe's folder were not written by the probe and were ignored; "
        + MSG_REPLACED
    )


def test_records_cut_from_the_end_are_seen_and_flagged(by_student: dict) -> None:
    """A second fit's records cut off the file: the closing record's number shows the gap,
    and the model saved by that fit no longer matches the last digest left."""
    record = by_student["records_truncated"]
    assert record["status"] == "graded" and "evidence_forged" in record["flags"]
    assert len(record["training"]) == 1 and record["accuracy"]["measured"] is None
    assert record["message"] == f"{MSG_MISSING.format(count=2)}; {MSG_REPLACED}"


def test_a_display_updated_in_place_past_the_cap_is_dropped(
    by_student: dict, graded: tuple
) -> None:
    """``update_display_data`` to 20 MB: charged to the cap like any output, and dropped."""
    record = by_student["display_update_flood"]
    assert record["status"] == "output_truncated" and "output_truncated" in record["flags"]
    nb = executed(graded, "display_update_flood")
    assert nb.cells[1].outputs[0]["data"]["text/plain"] == "'small'"
    assert (graded[0] / "executed" / "display_update_flood.ipynb").stat().st_size < 2**20


def test_a_records_file_made_a_folder_is_that_students_error(by_student: dict) -> None:
    record = by_student["records_made_folder"]
    assert record["status"] == "error" and "kernel_output_unreadable" in record["flags"]
    assert "not a file" in record["message"]


def test_keras_own_fit_is_out_of_reach(by_student: dict) -> None:
    record = by_student["fit_unwrapped"]
    assert record["errors"][0]["ename"] == "AttributeError"
    assert "__wrapped__" in record["errors"][0]["evalue"] and "no_training" in record["flags"]


def test_a_lone_surrogate_in_the_records_is_stored_and_reported(
    by_student: dict, graded: tuple
) -> None:
    record = by_student["surrogate_history_key"]
    assert record["status"] == "graded" and record["training"]
    keys = set(record["training"][0]["history"])
    assert "loss" in keys and any(k.startswith("acc_") and k != "acc_\udcff" for k in keys)
    assert (graded[0] / "reports" / "surrogate_history_key.html").exists()


def test_a_folder_tree_deeper_than_any_recursion_is_left_and_removed(by_student: dict) -> None:
    record = by_student["deep_folder_tree"]
    assert record["status"] == "graded" and record["message"] == ""


def test_only_the_forgery_is_flagged_as_forged(by_student: dict) -> None:
    flagged = [s for s, r in by_student.items() if "evidence_forged" in r["flags"]]
    assert flagged == ["forged_evidence", "records_truncated"]


def test_nothing_is_left_running_or_mounted(graded: tuple, run_folders_before: RunFolders) -> None:
    assert sandbox_processes() == []
    # Only a grader still running (another one on this machine) may hold cgroups now.
    assert [c for c in grader_cgroups(RUN_PREFIX) if is_stale(c)] == []
    assert [c for c in run_folders_before.orphan_cgroups if c.exists()] == []
    left = set(Path(tempfile.gettempdir()).glob(f"{RUN_PREFIX}*"))
    assert left - run_folders_before.existing == set()  # the batch removed its own
    assert [p for p in run_folders_before.planted if p.exists()] == []  # and killed ones'
    mounted = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    assert {m for m in mounted if RUN_PREFIX in m} <= {str(p) for p in run_folders_before.existing}


def test_what_one_kernel_leaves_never_reaches_a_classmate_or_outlives_it(graded: tuple) -> None:
    assert_nothing_crossed(graded[0] / "executed")


def test_a_disk_filler_fills_its_own_quota_and_goes_on(by_student: dict, graded: tuple) -> None:
    record, cells = by_student["disk_filler"], executed(graded, "disk_filler").cells
    assert "still runs" in text_of(cells[3])
    if not CAPS.quota:  # the host's disk: the notebook stops itself at 1.2 GB
        assert "disk_full" not in record["flags"]
        return
    assert record["status"] == "graded" and "disk_full" in record["flags"]
    assert record["message"] == (
        "cell 2 filled the run folder (512 MB, 20000 files); writes past it failed with"
        " 'No space left on device'"
    )
    stopped = re.search(r"disk stopped it after (\d+) MB: ENOSPC", text_of(cells[1]))
    assert stopped and 400 < int(stopped[1]) < 512  # the notebook and its history take some
    assert "inodes stopped it after" in text_of(cells[2]) and "ENOSPC" in text_of(cells[2])
