"""The class batch, graded once per session and shared by the kernel tests.

One batch mixes the 13 sample notebooks, the reference graded as a student, the
bad-input and accuracy fixtures, the hostile corpus and the notebooks in real students'
shapes (``fixtures/wild``): the honest notebooks must be graded exactly as when alone,
whatever the hostile ones do.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from grader.rubric.schema import load_rubric
from grader.run.cgroups import make_cgroups
from grader.run.execute import MSG_CELL_TIMEOUT
from grader.run.kernel.view import mount
from grader.run.machine import capabilities
from grader.run.runfolders import (
    LEGACY_OWNER_FILE,
    NO_DEVICES,
    RUN_PREFIX,
    UNOWNED_STALE_S,
    DiskQuota,
    RunOwner,
    pid_namespace,
    run_folder_prefix,
)

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
RUBRIC = FIXTURES / "rubric_fast.toml"
FIXTURE_SETS = ("bad_inputs", "extra_students", "hostile", "wild")
CELL_TIMEOUT_S = load_rubric(RUBRIC).limits.cell_timeout_s


def cell_timeout_message(cell: int) -> str:
    """The message a notebook gets when its cell ``cell`` (1-based) hits the test rubric's limit."""
    return MSG_CELL_TIMEOUT.format(cell=cell, limit=CELL_TIMEOUT_S)


@pytest.fixture(scope="session")
def class_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The batch's submissions folder."""
    submissions = tmp_path_factory.mktemp("class")
    fixtures = [p for name in FIXTURE_SETS for p in (FIXTURES / name).glob("*.ipynb")]
    for path in [*(ROOT / "submissions").glob("*.ipynb"), *fixtures]:
        shutil.copy(path, submissions / path.name)
    shutil.copy(
        ROOT / "reference_solution" / "transfer_learning.ipynb",
        submissions / "reference_as_student.ipynb",
    )
    return submissions


@dataclass
class RunFolders:
    """Kernel run folders in the temp dir before the batch started."""

    existing: set[Path]
    """Every run folder there (another grader's, or planted)."""
    planted: list[Path]
    """Folders a killed grader would leave, put there for the batch to sweep."""
    orphan_cgroups: list[Path]
    """Cgroups of a dead grader whose run folder is already gone (planted where grader can
    make cgroups), for the batch to sweep too."""


def owned_prefix(pid: int, start: int = 1) -> str:
    """A run folder name's start saying this machine's process ``pid`` (started at
    ``start``) made it."""
    return run_folder_prefix(RunOwner(pid, start, pid_namespace()))


def dead_pid() -> int:
    """A pid no process has now."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


@pytest.fixture(scope="session")
def run_folders_before() -> RunFolders:
    """Plant what killed graders leave: a folder whose owner died, one whose owner's pid now
    belongs to another process (this one, with another start time), and an old one that
    names no owner (an older grader killed before writing it)."""
    tmp = tempfile.gettempdir()
    planted = [
        Path(tempfile.mkdtemp(prefix=owned_prefix(dead_pid()), dir=tmp)),
        Path(tempfile.mkdtemp(prefix=owned_prefix(os.getpid()), dir=tmp)),
        Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=tmp)),
    ]
    long_ago = time.time() - 2 * UNOWNED_STALE_S
    os.utime(planted[2], (long_ago, long_ago))
    legacy = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=tmp))
    (legacy / LEGACY_OWNER_FILE).write_text(str(dead_pid()))
    planted.append(legacy)
    if capabilities().quota:  # a killed grader's folder with its quota still mounted
        mounted = Path(tempfile.mkdtemp(prefix=owned_prefix(dead_pid()), dir=tmp))
        mount("none", str(mounted), "tmpfs", NO_DEVICES, DiskQuota(1, 16).options())
        (mounted / "left.txt").write_text("from a killed grader's kernel")
        planted.append(mounted)
    existing = set(Path(tmp).glob(f"{RUN_PREFIX}*"))
    return RunFolders(existing=existing, planted=planted, orphan_cgroups=plant_orphan_cgroups())


def plant_orphan_cgroups() -> list[Path]:
    """A dead grader's memory and pids cgroups with no run folder (none where grader
    cannot make cgroups here)."""
    kind = capabilities().cgroup
    if kind is None:
        return []
    name = f"{owned_prefix(dead_pid())}orphan"
    return make_cgroups(kind, name, memory_mb=64, max_processes=8)


@pytest.fixture(scope="session")
def graded(
    class_dir: Path, tmp_path_factory: pytest.TempPathFactory, run_folders_before: RunFolders
) -> tuple[Path, str]:
    """The batch graded by the real CLI: (output folder, what the CLI printed). Before it,
    the temp dir holds run folders left by killed graders (``run_folders_before``)."""
    submissions = class_dir
    out = tmp_path_factory.mktemp("out")
    command = [
        sys.executable,
        "-m",
        "grader",
        "grade",
        str(submissions),
        "--rubric",
        str(RUBRIC),
        "--out",
        str(out),
        "--quick",
        "--workers",
        "3",  # 3 kernels on 2 cores: one is often starting, sleeping or waiting
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out, proc.stdout


TRACE_PLACES = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
TRACE_FILE = "grader_trace.txt"
TRACE_SHM_KEY = 0x67726164
"""What ``hostile/a_leaves_traces.ipynb`` leaves: a file in each place, a SysV segment
of this key, a ``sleep 600`` daemon."""


def assert_nothing_crossed(executed: Path) -> None:
    """The classmate beside ``a_leaves_traces`` saw none of its traces, and none of them
    outlived its kernel on this machine (``executed``: the batch's executed notebooks)."""
    leaver = nbformat.read(executed / "a_leaves_traces.ipynb", as_version=4)
    left = "".join(o.get("text", "") for o in leaver.cells[1].outputs)
    assert all(f"LEFT {place}" in left for place in TRACE_PLACES), left
    looker = nbformat.read(executed / "b_classmate_looks.ipynb", as_version=4)
    lines = "".join(o.get("text", "") for o in looker.cells[1].outputs).splitlines()
    seen = ast.literal_eval(next(x for x in lines if x.startswith("SEEN "))[5:])
    in_tmp = seen.pop("/tmp")  # its own run folder, and the kit's path where it is in /tmp
    assert TRACE_FILE not in in_tmp and len([n for n in in_tmp if n.startswith(RUN_PREFIX)]) == 1
    assert seen == {p: [] for p in TRACE_PLACES[1:]}
    assert "SHM 0" in lines and "PROCESSES 2" in lines  # its init and itself
    assert not any(Path(place, TRACE_FILE).exists() for place in TRACE_PLACES)
    keys = [line.split()[0] for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]]
    assert str(TRACE_SHM_KEY) not in keys
    daemons = subprocess.run(["pgrep", "-f", "^sleep 600$"], capture_output=True, text=True)
    assert daemons.stdout == ""


def sandbox_processes() -> list[str]:
    """Live processes of a sandbox uid anywhere on the machine, each as "pid state
    command". A zombie is left out: it runs nothing and holds nothing, only a pid until
    its new parent (the host's init, once the launcher above it was killed) reaps it, which
    happens in that init's own time."""
    from grader.run.uids import UID_BASE

    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            state = stat[stat.rindex(")") + 2]
            if os.stat(f"/proc/{entry}").st_uid < UID_BASE or state == "Z":
                continue
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, ValueError):
            continue
        found.append(f"{entry} {state} {command.decode(errors='replace')[:200]}")
    return found


def blocked_ancestor(path: Path) -> Path | None:
    """The outermost folder above ``path`` that other users cannot enter, if any."""
    for folder in reversed(path.resolve().parents):
        if folder != Path("/") and not os.stat(folder).st_mode & 0o001:
            return folder
    return None


def reachable_script(keep: Path, paths: list[Path]) -> str:
    """Shell lines making each of ``paths`` reachable: each folder other users cannot
    enter above one is covered with an enterable tmpfs, what is needed bound back."""
    needed: dict[Path, Path] = {}  # what to bind back -> the folder it lies in
    for path in paths:
        blocked = blocked_ancestor(path)
        if blocked is not None:
            needed[blocked / path.resolve().relative_to(blocked).parts[0]] = blocked
    kept = {child: keep / str(n) for n, child in enumerate(needed)}
    lines = [f"mkdir -p {kept[c]} && mount --bind {c} {kept[c]}" for c in needed]
    lines += [f"mount -t tmpfs -o mode=0755 tmpfs {b}" for b in sorted(set(needed.values()))]
    lines += [f"mkdir -p {c} && mount --move {kept[c]} {c}" for c in needed]
    return "".join(f"{line} && " for line in lines)
