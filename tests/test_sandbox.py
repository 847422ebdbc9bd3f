"""The sandbox: what is hidden, what the machine allows, the launcher, the fallbacks."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from grader.cli import main
from grader.errors import UsageError
from grader.run import machine, runfolders, sandbox, uids
from grader.run.cgroups import grader_cgroups, make_cgroups, process_start
from grader.run.machine import Capabilities, not_enforced_warning
from grader.run.sandbox import paths_to_hide
from tests.conftest import ROOT, dead_pid, owned_prefix

HOSTILE = Path(__file__).parent / "fixtures" / "hostile"


@pytest.fixture
def skip_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    machine.capabilities.cache_clear()
    yield monkeypatch
    machine.capabilities.cache_clear()


def test_paths_to_hide_takes_folders_and_never_a_system_one(tmp_path: Path) -> None:
    rubric = tmp_path / "course" / "rubric.toml"
    rubric.parent.mkdir()
    rubric.write_text("")
    hidden = paths_to_hide(rubric, tmp_path / "class", None, "/", "/usr", "/usr/lib/x", "/etc/..")
    assert hidden == tuple(
        sorted([str(rubric.parent.resolve()), str((tmp_path / "class").resolve())])
    )


def test_warning_names_every_limit_not_enforced() -> None:
    every = Capabilities(root=True, namespaces=True, cgroup="v1", quota=True)
    assert not_enforced_warning(every) is None
    text = not_enforced_warning(Capabilities(root=False, namespaces=False, cgroup=None))
    assert text is not None and text.startswith("grader: sandbox limits not enforced")
    words = ("network", "grader's files", "unprivileged user", "RSS watchdog", "process", "inode")
    assert all(w in text for w in words)
    only_cgroup = not_enforced_warning(
        Capabilities(root=True, namespaces=True, cgroup=None, quota=True)
    )
    assert only_cgroup is not None and "memory cgroup" in only_cgroup
    assert "network" not in only_cgroup and "process-count" not in only_cgroup


def test_skip_variable_degrades_and_rejects_unknown_names(skip_env: pytest.MonkeyPatch) -> None:
    skip_env.setenv(machine.SKIP_VARIABLE, "namespaces,user,cgroup")
    caps = machine.capabilities()
    assert caps == Capabilities(root=False, namespaces=False, cgroup=None)
    machine.capabilities.cache_clear()
    skip_env.setenv(machine.SKIP_VARIABLE, "network")
    with pytest.raises(UsageError, match="unknown"):
        machine.capabilities()


def test_cli_warns_once_before_grading(skip_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    skip_env.setenv(machine.SKIP_VARIABLE, "namespaces")
    result = CliRunner().invoke(main, ["grade", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2  # the empty folder is the caller's mistake
    assert result.output.count("sandbox limits not enforced") == 1
    assert "network access" in result.output and "no .ipynb notebooks found" in result.output


def test_launcher_needs_a_policy_and_a_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "grader.run.kernel.launch", "policy.json"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "usage:" in proc.stderr


@pytest.mark.skipif(
    not (machine.capabilities().root and machine.capabilities().namespaces),
    reason="needs root and namespaces",
)
def test_launcher_hides_drops_privileges_and_cuts_the_network(tmp_path: Path) -> None:
    secret = Path(__file__).parent / "fixtures"  # covered by `hide` (or gone with a private /tmp)
    work = tmp_path / "run" / "work"
    work.mkdir(parents=True)
    uid = uids.next_uid()
    os.chown(work, uid, uid)
    policy = {
        "namespaces": list(machine.NAMESPACES),
        "seccomp": True,
        "hide": [str(secret), str(Path.home())],
        "private_tmp": ["/tmp", "/var/tmp"],
        "tmp_size": sandbox.PRIVATE_TMP_SIZE,
        "system": list(machine.SYSTEM_VIEW),
        "expose": [sys.prefix, sys.base_prefix],
        "writable": [str(tmp_path / "run")],
        "rlimits": {"fsize": 2**20, "core": 0},
        "uid": uid,
        "gid": uid,
        "root": str(tmp_path / "run"),
        "cwd": str(work),
    }
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    code = (
        "import os, socket, json\n"
        f"hidden = {str(secret)!r}\n"
        "seen = os.listdir(hidden) if os.path.exists(hidden) else []\n"
        "out = {'uid': os.getuid(), 'secret': seen}\n"
        "try:\n    socket.create_connection(('1.1.1.1', 80), timeout=2); out['net'] = 'open'\n"
        "except OSError as exc:\n    out['net'] = exc.errno\n"
        "try:\n    open('big', 'wb').write(b'0' * 2**21); out['big'] = 'written'\n"
        "except OSError as exc:\n    out['big'] = exc.errno\n"
        "print(json.dumps(out))"
    )
    command = [sys.executable, "-m", "grader.run.kernel.launch", str(tmp_path / "policy.json")]
    proc = subprocess.run(
        [*command, "--", sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen == {"uid": uid, "secret": [], "net": 101, "big": 27}
    assert (secret / "rubric_fast.toml").exists()  # hidden from the kernel only


def test_a_run_folder_names_its_owner_from_the_instant_it_exists(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mine = runfolders.make_run_folder()
    me = runfolders.RunOwner(
        os.getpid(), process_start(os.getpid()) or 0, runfolders.pid_namespace()
    )
    assert runfolders.run_folder_owner(mine) == me and me.start and me.namespace
    assert not runfolders.is_stale(mine)
    code = "import os; from grader.run import runfolders; runfolders.make_run_folder(); os._exit(9)"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    killed = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT)
    assert killed.returncode == 9
    (theirs,) = set(tmp_path.glob(f"{runfolders.RUN_PREFIX}*")) - {mine}
    assert runfolders.is_stale(theirs)


def test_staleness_sees_dead_owners_reused_pids_and_old_unowned_folders(tmp_path: Path) -> None:
    me, start, here = os.getpid(), process_start(os.getpid()) or 0, runfolders.pid_namespace()

    def folder(name: str, owner_file: str | None = None) -> Path:
        path = tmp_path / f"{runfolders.RUN_PREFIX}{name}"
        path.mkdir()
        if owner_file is not None:
            (path / runfolders.LEGACY_OWNER_FILE).write_text(owner_file)
        return path

    live, unknown_start = folder(f"{me}-{start}-{here}-a"), folder(f"{me}-0-{here}-b")
    dead = folder(f"{dead_pid()}-{start}-{here}-c")
    reused = folder(f"{me}-{start + 1}-{here}-d")  # this pid, but another process's start
    foreign = folder(f"{dead_pid()}-{start}-{here + 1}-e")  # pids of another container
    legacy_live, legacy_dead = folder("f", str(me)), folder("g", str(dead_pid()))
    unowned, garbled = folder("h"), folder("i", "not a pid")
    now = time.time()
    assert [runfolders.is_stale(f, now) for f in (live, unknown_start, dead, reused)] == [
        False,
        False,
        True,
        True,
    ]
    assert [runfolders.is_stale(f, now) for f in (legacy_live, legacy_dead)] == [False, True]
    assert not any(runfolders.is_stale(f, now) for f in (unowned, garbled, foreign))
    later = now + runfolders.UNOWNED_STALE_S + 1
    assert runfolders.is_stale(unowned, later) and runfolders.is_stale(garbled, later)
    assert not runfolders.is_stale(foreign, later)
    assert runfolders.is_stale(foreign, now + runfolders.FOREIGN_STALE_S + 1)
    assert runfolders.sweep_stale(tmp_path) == 3
    kept = [live, unknown_start, foreign, legacy_live, unowned, garbled]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)


def mount_points() -> set[str]:
    return {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}


@pytest.mark.skipif(not machine.capabilities().quota, reason="mounting a quota needs root")
def test_a_run_folder_s_quota_holds_bytes_and_inodes_and_goes_with_it_even_when_left(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folder = runfolders.make_run_folder(runfolders.DiskQuota(size_mb=2, files=20))
    assert str(folder) in mount_points()
    with pytest.raises(OSError) as full:
        (folder / "big").write_bytes(b"x" * 3 * 2**20)
    assert full.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as no_inode:
        for n in range(30):
            (folder / str(n)).touch()
    assert no_inode.value.errno == errno.ENOSPC and len(list(folder.iterdir())) < 20
    assert runfolders.remove_run_folder(folder) is None
    assert not folder.exists() and str(folder) not in mount_points()
    code = (
        "import os; from grader.run import runfolders as r\n"
        "f = r.make_run_folder(r.DiskQuota(1, 8)); (f / 'left').write_text('x'); os._exit(9)"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT).returncode == 9
    (left,) = tmp_path.glob(f"{runfolders.RUN_PREFIX}*")
    assert str(left) in mount_points() and runfolders.is_stale(left)
    assert runfolders.sweep_stale(tmp_path) == 1  # unmounted, then removed
    assert not left.exists() and str(left) not in mount_points()


def test_a_dead_graders_cgroups_go_even_when_its_run_folder_went_first(tmp_path: Path) -> None:
    kind = machine.capabilities().cgroup
    if kind is None:
        pytest.skip("grader cannot make cgroups here")
    me = process_start(os.getpid()) or 0
    dead = make_cgroups(kind, f"{owned_prefix(dead_pid())}gone", 64, 8)
    live = make_cgroups(kind, f"{owned_prefix(os.getpid(), me)}mine", 64, 8)
    try:
        assert set(dead + live) <= set(grader_cgroups(runfolders.RUN_PREFIX))
        assert runfolders.sweep_stale(tmp_path) == 0  # no folders: the cgroups alone
        assert [c for c in dead if c.exists()] == []
        assert all(c.exists() for c in live)
    finally:
        for cgroup in live:
            cgroup.rmdir()


@pytest.mark.kernel
def test_without_cgroups_the_watchdog_catches_a_memory_bomb(skip_env: pytest.MonkeyPatch) -> None:
    from grader.kit.assets import ensure_kit
    from grader.rubric.limits import Limits
    from grader.run.execute import RunSettings, run_notebook

    skip_env.setenv(machine.SKIP_VARIABLE, "namespaces,user,cgroup")
    limits = Limits(cell_timeout_s=60, notebook_timeout_s=120, memory_mb=1024)
    settings = RunSettings(kit=ensure_kit(progress=lambda _: None), limits=limits)
    nb = nbformat.read(HOSTILE / "memory_bomb.ipynb", as_version=4)
    run = run_notebook(nb, "memory_bomb.ipynb", settings)
    run.cleanup()
    assert run.out_of_memory and run.kernel_died == 2
    assert run.messages == [
        "cell 3 used more than 1024 MB of memory (the rubric's [limits] memory_mb);"
        " the kernel was killed"
    ]


def test_the_private_tmpfs_size_is_the_sandbox_s_and_the_launcher_requires_it(
    tmp_path: Path,
) -> None:
    """One value, chosen in grader.run.sandbox (512m, what grading has always used); the
    launcher has no default of its own and refuses a policy without it."""
    box = sandbox.KernelSandbox(
        root=tmp_path,
        limits=sandbox.KernelLimits(
            memory_mb=1024, max_processes=64, max_file_mb=8, disk_mb=64, max_files=1000
        ),
    )
    policy = box._policy()
    assert policy["tmp_size"] == sandbox.PRIVATE_TMP_SIZE == "512m"
    assert policy["rlimits"]["fsize"] == 8 * 2**20
    (tmp_path / "policy.json").write_text(json.dumps({"private_tmp": ["/tmp"]}))
    command = [sys.executable, "-m", "grader.run.kernel.launch", str(tmp_path / "policy.json")]
    proc = subprocess.run([*command, "--", "true"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "the policy lacks tmp_size" in proc.stderr


def test_kernel_and_evaluator_threads_come_from_one_function() -> None:
    from grader.run.execute import _kernel_env
    from grader.run.threads import thread_env

    assert thread_env(None) == thread_env(0) == {}
    assert thread_env(3) == {
        "OMP_NUM_THREADS": "3",
        "TF_NUM_INTRAOP_THREADS": "3",
        "TF_NUM_INTEROP_THREADS": "1",
    }
    env = _kernel_env(Path("/run"), Path("/run/keras_home"), 3)
    assert thread_env(3).items() <= env.items()
    assert not set(thread_env(3)) & set(_kernel_env(Path("/r"), Path("/r/k"), None))


def test_the_sandbox_knows_no_rubric() -> None:
    """run/ does not import rubric/: the caller converts the rubric's limits."""
    from grader.rubric.limits import Limits
    from grader.run.execute import kernel_limits

    for module in ("sandbox", "cgroups", "threads", "capture"):
        source = (ROOT / "grader" / "run" / f"{module}.py").read_text()
        assert "grader.rubric" not in source, module
    given = Limits(memory_mb=2048, max_processes=99, max_file_mb=5, disk_mb=64, max_files=1000)
    assert kernel_limits(given) == (
        sandbox.KernelLimits(
            memory_mb=2048, max_processes=99, max_file_mb=5, disk_mb=64, max_files=1000
        )
    )


def test_a_student_hears_one_calm_line_and_only_where_there_is_no_sandbox() -> None:
    from grader.run.machine import MSG_STUDENT_NO_SANDBOX, student_note

    laptop = Capabilities(root=False, namespaces=False, cgroup=None, seccomp=False)
    assert student_note(laptop) == MSG_STUDENT_NO_SANDBOX
    assert "cgroup" not in MSG_STUDENT_NO_SANDBOX and "enforced" not in MSG_STUDENT_NO_SANDBOX
    linux = Capabilities(root=False, namespaces=True, cgroup=None, user_namespace=True)
    assert student_note(linux) is None  # isolated: nothing to say, whatever else is missing
