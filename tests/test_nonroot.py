"""A class graded by an ordinary user: the kernels are isolated all the same.

The hostile corpus's readers, writers and the one leaving traces for a benign
classmate beside it (the whole corpus runs as root in the class batch).

Most instructors do not run a grader as root. CI does, so this test drops to ``nobody``
and grades the hostile corpus's readers and writers with the real CLI, asserting what
their kernels could see and write. This machine's Python may lie under a folder nobody
cannot enter (root's home, with pyenv): the test then grades in a private mount
namespace where that folder is an empty, enterable one with only the interpreter bound
back, which changes nothing the kernels see (their view is built from the allow-list).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader.kit.assets import ensure_kit, kit_dir
from tests.conftest import FIXTURES, ROOT, RUBRIC, assert_nothing_crossed, reachable_script

pytestmark = pytest.mark.kernel

NOBODY = 65534
NOTEBOOKS = (
    "snoop_files",
    "write_outside",
    "network_attempt",
    "a_leaves_traces",
    "b_classmate_looks",  # benign: looks for what the one before it left
)
FRESH_TARGETS = tuple(f"{p}/grader_escape.txt" for p in ("/tmp", "/var/tmp", "/dev/shm"))
"""``write_outside``'s targets in the kernel's fresh places (the others lie in the host's
folders, this checkout's among them, wherever it is: under /tmp in CI)."""
ISOLATED = "grader: not root: each kernel is isolated in a user namespace of its own"


def rubric_without_accuracy(dest: Path) -> Path:
    """The test rubric less its reference and accuracy check (nothing to train)."""
    text = re.sub(r"\[reference\]\nnotebook = [^\n]*\n", "", RUBRIC.read_text())
    checks = [c for c in text.split("[[checks]]") if 'id = "accuracy"' not in c]
    dest.write_text("[[checks]]".join(checks))
    return dest


@pytest.fixture
def course() -> Iterator[Path]:
    """A folder nobody owns: the notebooks, the rubric, a copy of the kit, a home."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("setpriv") is None:
        pytest.skip("needs root (to become nobody), unshare and setpriv")
    folder = Path(tempfile.mkdtemp(prefix="grader-nonroot-class-"))
    try:
        (folder / "class").mkdir()
        for name in NOTEBOOKS:
            shutil.copy(FIXTURES / "hostile" / f"{name}.ipynb", folder / "class")
        rubric_without_accuracy(folder / "rubric.toml")
        ensure_kit(progress=lambda _: None)
        shutil.copytree(kit_dir(), folder / "cache" / kit_dir().name, symlinks=True)
        (folder / "home").mkdir()
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(folder)], check=True)
        os.chmod(folder, 0o755)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def as_nobody(folder: Path, command: list[str]) -> subprocess.CompletedProcess[str]:
    """``command`` run as nobody, in a mount namespace where the interpreter is reachable."""
    env = ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={folder / 'home'}"]
    env.append(f"GRADER_CACHE={folder / 'cache'}")
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *env]
    script = reachable_script(folder / "kept", [Path(sys.base_prefix), ROOT]) + 'exec "$@"'
    unshare = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
    return subprocess.run(
        [*unshare, *drop, *command], capture_output=True, text=True, timeout=900, cwd="/"
    )


def test_an_ordinary_users_kernels_see_and_write_only_their_own_folder(course: Path) -> None:
    grader = str(Path(sys.executable).parent / "grader")
    out = course / "out"
    args = ["grade", str(course / "class"), "--rubric", str(course / "rubric.toml")]
    proc = as_nobody(course, [grader, *args, "--out", str(out), "--quick", "--workers", "2"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count(ISOLATED) == 1
    records = {r["student"]: r for r in map(json.loads, (out / "results.jsonl").open())}
    assert set(records) == set(NOTEBOOKS)

    snoop = cell_text(out, "snoop_files", 1)
    found = json.loads(next(x for x in snoop.splitlines() if x.startswith("FOUND"))[6:])
    runs = {next(p for p in Path(f).parents if p.name.startswith("grader-run-")) for f in found}
    assert len(runs) == 1, runs  # its own run folder's files alone (its probe, its dataset)
    assert not any(Path(f).is_relative_to(course) for f in found)

    writes = [line.split()[:2] for line in cell_text(out, "write_outside", 1).splitlines()]
    assert len(writes) == 8
    for verdict, path in writes:
        fresh = path in FRESH_TARGETS or path.startswith("..")  # its own fresh places
        assert verdict == ("WROTE" if fresh else "DENIED"), path
        if not path.startswith(".."):
            assert not Path(path).exists(), f"{path} reached the grader's machine"
    assert "File too large" in cell_text(out, "write_outside", 2)

    assert_nothing_crossed(out / "executed")
    assert records["network_attempt"]["status"] == "error"
    assert "urlopen error" in records["network_attempt"]["message"]
    assert nothing_left_running(), "a kernel's process outlived the batch"


def nothing_left_running(timeout_s: float = 10.0) -> bool:
    """No process of nobody's once the last one exiting (a resource tracker) is gone."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-a", "-u", str(NOBODY)], capture_output=True, text=True)
        if not left.stdout:
            return True
        time.sleep(0.2)
    print(left.stdout)
    return False


def cell_text(out: Path, student: str, cell: int) -> str:
    nb = json.loads((out / "executed" / f"{student}.ipynb").read_text())
    return "".join("".join(o.get("text", "")) for o in nb["cells"][cell].get("outputs", []))
