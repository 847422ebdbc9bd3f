"""The trusted evaluator runs in a sandbox of its own (grader.measure.jail): seen from
outside through /proc, as the machine allows (root and namespaces for the whole of it)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

from grader.measure.client import EvaluatorProcess
from grader.run.cgroups import grader_cgroups, pids_of_session, pids_of_uid
from grader.run.machine import capabilities
from grader.run.uids import UID_BASE

EXEC_WAIT_S = 30.0


def wait_for_evaluator(pid: int) -> int:
    """Until the launcher (``pid``) has entered the sandbox and started the evaluator, as
    its pid namespace's init's child where there is one; the evaluator's host pid."""
    deadline = time.monotonic() + EXEC_WAIT_S
    while time.monotonic() < deadline:
        for candidate in sorted(pids_of_session(pid) | {pid}):
            try:
                command = Path(f"/proc/{candidate}/cmdline").read_bytes()
            except OSError:
                continue
            if command.split(b"\0")[1:3] == [b"-m", b"grader.measure.evaluator"]:
                return candidate
        time.sleep(0.05)
    raise AssertionError("the evaluator never started")


def uid_of(pid: int) -> int:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x[:4] == "Uid:")
    return int(line.split()[1])


@pytest.fixture
def holdout(tmp_path: Path) -> Path:
    folder = tmp_path / "holdout"
    (folder / "cats").mkdir(parents=True)
    (folder / "cats" / "cat.0.jpg").write_bytes(b"not decoded in this test")
    return folder


def test_the_evaluator_has_its_own_uid_network_and_view(holdout: Path, tmp_path: Path) -> None:
    caps = capabilities()
    if not (caps.root and caps.namespaces):
        pytest.skip("the whole sandbox needs root and namespaces")
    inputs = Path.home() / f".grader-jail-test-{os.getpid()}"  # outside the private /tmp
    inputs.mkdir()
    (inputs / "answers.txt").write_text("the grader's own inputs")
    evaluator = EvaluatorProcess(holdout, hide=(str(inputs),))
    try:
        evaluator.start()
        launcher, jail = evaluator.pid, evaluator.jail
        assert launcher is not None and jail is not None
        pid = wait_for_evaluator(launcher)
        uid = uid_of(pid)
        assert uid >= UID_BASE
        for kind in ("net", "pid", "ipc"):
            assert os.readlink(f"/proc/{pid}/ns/{kind}") != os.readlink(f"/proc/self/ns/{kind}")
        view = Path(f"/proc/{pid}/root")
        assert (inputs / "answers.txt").exists()
        assert not (view / inputs.relative_to("/") / "answers.txt").exists()
        assert not (view / holdout.relative_to("/")).exists()  # the original: not in view
        copy = view / jail.holdout_copy.relative_to("/")
        assert (copy / "cats" / "cat.0.jpg").read_bytes() == b"not decoded in this test"
        info = copy.stat()  # readable by the evaluator's group alone, writable by nobody
        assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (0, uid, 0o750)
        assert (copy / "cats" / "cat.0.jpg").stat().st_mode & 0o777 == 0o640
        root = jail.root
    finally:
        evaluator.close(kill=True)
        (inputs / "answers.txt").unlink()
        inputs.rmdir()
    assert not root.exists() and pids_of_uid(uid) == set()


def test_the_model_measured_is_a_copy_the_kernel_cannot_change(
    holdout: Path, tmp_path: Path
) -> None:
    """The evaluator reads the inbox's copy; a link the kernel left is not followed."""
    from grader.measure.jail import EvaluatorJail

    jail = EvaluatorJail(holdout, memory_mb=512)
    try:
        model = tmp_path / "model.keras"
        model.write_bytes(b"first")
        copy = jail.admit(model)
        model.write_bytes(b"changed after the fact")
        assert copy.read_bytes() == b"first" and copy.parent == jail.root / "inbox"
        link = tmp_path / "link.keras"
        link.symlink_to("/etc/passwd")
        pipe = tmp_path / "pipe.keras"
        os.mkfifo(pipe)  # opened for reading, a pipe with no writer would block forever
        for planted in (link, pipe, tmp_path):
            with pytest.raises(OSError):
                jail.admit(planted)
        assert list(copy.parent.iterdir()) == []
    finally:
        jail.close(None)
    assert not jail.root.exists()


CLIENT_EXITS = """
import sys
from pathlib import Path
from grader.kit.assets import Kit
from grader.measure.client import shared_evaluator
from grader.rubric.limits import Limits
from grader.run.execute import RunSettings
holdout = Path(sys.argv[1])
kit = Kit(keras_home=holdout.parent, holdout=holdout, version="custom")
evaluator = shared_evaluator(RunSettings(kit=kit, limits=Limits()))
evaluator.start()
print(evaluator.jail.root, flush=True)
"""  # and exits without closing it, as a batch worker or `grader check` does


def test_an_evaluators_sandbox_goes_when_its_process_exits(holdout: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    run = subprocess.run(
        [sys.executable, "-c", CLIENT_EXITS, str(holdout)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    root = Path(run.stdout.strip())
    assert root.name.startswith("grader-run-") and not root.exists()
    assert not [c for c in grader_cgroups(root.name)]


def test_a_holdout_that_cannot_be_copied_is_a_measurement_error_not_a_crash(
    tmp_path: Path,
) -> None:
    """A link in the holdout that leads nowhere: the evaluator's sandbox cannot be made;
    the student's row says the evaluator could not start, naming no holdout path, and
    nothing of the sandbox is left."""
    from grader.measure.jail import MSG_NO_JAIL

    holdout = tmp_path / "secret-holdout"
    holdout.mkdir()
    (holdout / "cat.0.jpg").symlink_to(tmp_path / "gone.jpg")
    before = set(Path(tempfile.gettempdir()).glob("grader-run-*"))
    evaluator = EvaluatorProcess(holdout)
    evaluator.start()  # told at the next measure, not raised
    model = tmp_path / "m.keras"
    model.write_bytes(b"never read")
    answer = evaluator.measure(model, timeout_s=30)
    assert answer["accuracy"] is None
    assert MSG_NO_JAIL.format(what="Error") in answer["error"]
    assert "secret-holdout" not in answer["error"]
    assert set(Path(tempfile.gettempdir()).glob("grader-run-*")) == before
