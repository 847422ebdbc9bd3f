"""The kernel's isolation seen from inside: namespaces, the seccomp filter, no root.

Each test runs a small Python program through :mod:`grader.run.kernel.launch`, the way
a kernel starts (no TensorFlow: the kernel tests train under the same launcher), and
asserts on what that program could see and do.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from grader.run import cgroups, machine, sandbox, uids
from grader.run.kernel import seccomp
from tests.conftest import ROOT

CAPS = machine.capabilities()
AS_ROOT = pytest.mark.skipif(
    not (CAPS.root and CAPS.namespaces), reason="needs root and namespaces"
)
NOBODY = 65534
HOST_FOLDERS = ("/home", "/srv", "/opt", "/var", "/mnt", "/boot", "/work", "/root", "/tmp")
INSIDE = (
    f"HOST_FOLDERS = {HOST_FOLDERS!r}"
    + r"""
import ctypes, errno, json, os, socket, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)

def call(*args):
    result = libc.syscall(*args)
    return 0 if result >= 0 else ctypes.get_errno()

shm = open("/proc/sysvipc/shm").read().splitlines()[1:]
try:
    socket.create_connection(("192.0.2.1", 80), timeout=2)
    net = "open"
except OSError as exc:
    net = exc.errno
daemon = subprocess.Popen(["sleep", "300"], start_new_session=True)
try:
    os.mkdir("/planted")
    planted = 0
except OSError as exc:
    planted = exc.errno
print(json.dumps({
    "pid": os.getpid(), "uid": os.getuid(),
    "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "host": socket.gethostname(), "shm": len(shm), "net": net,
    "lock": sorted(os.listdir("/run/lock")),
    "hidden": sorted(os.listdir(sys.argv[1])) if os.path.isdir(sys.argv[1]) else None,
    "unshare": call(272, 0x10000000), "mount": call(165, b"none", b"/mnt", b"tmpfs", 0, 0),
    "clone_ns": call(56, 0x10000000 | 17, 0, 0, 0, 0), "clone3": call(435, 0, 0),
    "keyctl": call(250, 0, 0, 0, 0, 0), "ptrace": call(101, 0, 0, 0, 0),
    "fork": subprocess.run(["true"]).returncode, "planted": planted,
    "tops": {d: sorted(os.listdir(d)) for d in HOST_FOLDERS if os.path.isdir(d)},
    "writable": sorted({line.split()[4] for line in open("/proc/self/mountinfo")
                        if "rw" in line.split()[5].split(",")}),
}))
"""
)
"""What the program reports (x86-64 system call numbers; the tests skip elsewhere)."""


def launch(policy: dict, folder: Path, python: str, secret: Path, **popen) -> dict:
    (folder / "policy.json").write_text(json.dumps(policy))
    os.chmod(folder / "policy.json", 0o644)
    argv = [python, "-m", "grader.run.kernel.launch", str(folder / "policy.json"), "--"]
    proc = subprocess.run(
        [*argv, python, "-c", INSIDE, str(secret)],
        capture_output=True,
        text=True,
        timeout=120,
        **popen,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def policy_for(root: Path, uid: int | None, expose: list[str], hide: list[str]) -> dict:
    """The policy a kernel gets: as root with ``uid``, else (None) as an ordinary user."""
    return {
        "namespaces": list(machine.NAMESPACES),
        "user_namespace": uid is None,
        "seccomp": True,
        "hide": hide,
        "private_tmp": list(machine.PRIVATE_TMP),
        "tmp_size": sandbox.PRIVATE_TMP_SIZE,
        "system": list(machine.SYSTEM_VIEW),
        "expose": expose,
        "writable": [str(root)],
        "rlimits": {"core": 0},
        "uid": uid,
        "gid": uid,
        "root": str(root),
        "cwd": str(root / "work"),
    }


def assert_isolated(seen: dict, bound: list[str]) -> None:
    eperm = 1
    assert seen["pid"] == 2 and seen["procs"] == [1, 2, 3]  # init, itself, its daemon: no host
    assert seen["host"] == "grader-kernel" and seen["shm"] == 0 and seen["net"] == 101
    assert seen["lock"] == [] and seen["hidden"] in (None, [])
    assert seen["unshare"] == seen["mount"] == seen["clone_ns"] == eperm
    assert seen["keyctl"] == seen["ptrace"] == eperm and seen["clone3"] == 38  # ENOSYS
    assert seen["fork"] == 0 and seen["planted"] in (13, 30)  # EACCES, EROFS: / is read-only
    fresh_places = ["/proc", "/dev", *machine.PRIVATE_TMP, *bound[-1:]]  # the last: the run's
    for point in seen["writable"]:
        assert any(point == p or point.startswith(p + "/") for p in fresh_places), point
    fresh = {"/var": ["tmp"], "/tmp": []}  # private; the run's folder is bound into /tmp
    for folder, names in seen["tops"].items():  # of the host, only what was bound
        below = {Path(b).relative_to(folder).parts[0] for b in bound if b.startswith(folder + "/")}
        assert set(names) == below | set(fresh.get(folder, [])), folder
    assert not daemons_left()  # its daemon went with the namespace's init


def daemons_left() -> list[int]:
    """Host processes running the program's daemon (``sleep 300``)."""
    left = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes() == b"sleep\x00300\x00":
                left.append(int(entry.name))
        except OSError:
            continue
    return left


@pytest.fixture
def host_leftovers() -> Iterator[Path]:
    """A note in the host's ``/run/lock`` and a SysV shared-memory segment, as an earlier
    student's kernel would leave them; removed afterwards."""
    note = Path("/run/lock") / f"grader-test-note-{os.getpid()}"
    note.write_text("from an earlier kernel")
    libc = ctypes.CDLL(None, use_errno=True)
    segment = libc.shmget(0, 4096, 0o1000 | 0o666)  # IPC_PRIVATE, IPC_CREAT
    assert segment >= 0
    yield note
    libc.shmctl(segment, 0, None)  # IPC_RMID
    note.unlink()


X86_64 = pytest.mark.skipif(seccomp.machine() != "x86_64", reason="x86-64 numbers inside")


def test_the_filter_program_is_well_formed_and_refuses_the_listed_calls() -> None:
    for arch in seccomp.AUDIT_ARCH:
        ops = seccomp.program(arch)
        assert len(ops) < 4096
        for index, (code, jt, jf, _k) in enumerate(ops):
            if code in (seccomp.JEQ_K, seccomp.JSET_K, seccomp.JGE_K):
                assert index + 1 + max(jt, jf) < len(ops)
        assert ops[-1] == (seccomp.RET_K, 0, 0, seccomp.ALLOW)
        refused = {k for (code, _t, _f, k) in ops if code == seccomp.JEQ_K}
        assert set(seccomp.BLOCKED[arch].values()) | set(seccomp.COMMON.values()) <= refused


@X86_64
@AS_ROOT
def test_as_root_a_kernel_sees_only_its_own_processes_tmp_ipc_and_no_syscall_way_out(
    tmp_path: Path, host_leftovers: Path
) -> None:
    uid = uids.next_uid()
    (tmp_path / "run" / "work").mkdir(parents=True)
    os.chown(tmp_path / "run" / "work", uid, uid)
    os.chmod(tmp_path / "run", 0o711)
    secret = Path(__file__).parent / "fixtures"
    policy = policy_for(tmp_path / "run", uid, python_paths(), [str(secret), str(Path.home())])
    seen = launch(policy, tmp_path, sys.executable, secret, cwd=ROOT)
    assert seen["uid"] == uid
    assert_isolated(seen, [*python_paths(), str(tmp_path / "run")])
    assert not cgroups.pids_of_uid(uid)


def python_paths() -> list[str]:
    return [*machine.python_paths(), str(ROOT / "grader")]


@dataclass
class Nobody:
    """A folder ``nobody`` owns, holding a world-readable copy of grader's files."""

    folder: Path
    python: str
    """The system's Python (this one's lies under root's home, which nobody cannot read)."""

    @property
    def package(self) -> Path:
        return self.folder / "package"

    def popen(self) -> dict:
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(self.package)}
        return {"user": NOBODY, "group": NOBODY, "extra_groups": [], "env": env, "cwd": "/"}


@pytest.fixture
def nobody() -> Iterator[Nobody]:
    """CI runs as root, so the tests of an ordinary user's sandbox drop to ``nobody``."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    if os.geteuid() != 0 or python is None:
        pytest.skip("needs root to become nobody, and a system python3")
    folder = Path(tempfile.mkdtemp(prefix="grader-nonroot-"))
    try:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(ROOT / "grader", folder / "package" / "grader", ignore=ignore)
        secret = folder / "secret"
        secret.mkdir()
        (secret / "holdout.txt").write_text("hidden")
        (folder / "run" / "work").mkdir(parents=True)
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(folder)], check=True)
        os.chmod(folder, 0o755)
        yield Nobody(folder, python)
    finally:
        shutil.rmtree(folder)


BWRAP = shutil.which("bwrap")
NEEDS_BWRAP = pytest.mark.skipif(BWRAP is None, reason="bubblewrap is not installed")


@X86_64
@pytest.mark.parametrize(
    "bubblewrap",
    [
        pytest.param(None, id="own-user-namespace"),
        pytest.param(BWRAP, marks=NEEDS_BWRAP, id="bubblewrap"),
    ],
)
def test_as_an_ordinary_user_the_same_layers_hold(
    host_leftovers: Path, nobody: Nobody, bubblewrap: str | None
) -> None:
    """As ``nobody``, with the system's Python: no root, no cgroups, the same view, made
    by the launcher in a user namespace, or by bubblewrap."""
    if bubblewrap is None and not _user_namespaces_allowed(nobody.python):
        pytest.skip("this machine does not allow unprivileged user namespaces")
    secret = nobody.folder / "secret"
    policy = policy_for(nobody.folder / "run", None, [str(nobody.package)], [str(secret)])
    policy["bubblewrap"] = bubblewrap
    seen = launch(policy, nobody.folder, nobody.python, secret, **nobody.popen())
    assert seen["uid"] == NOBODY
    assert_isolated(seen, [str(nobody.package), str(nobody.folder / "run")])


def _user_namespaces_allowed(python: str) -> bool:
    code = "import ctypes,sys; sys.exit(ctypes.CDLL(None).unshare(0x10000000) != 0)"
    proc = subprocess.run([python, "-c", code], user=NOBODY, group=NOBODY, extra_groups=[])
    return proc.returncode == 0


def test_uids_are_never_the_same_twice_within_a_boot(tmp_path: Path) -> None:
    """Not across graders running at once (the counter is locked), not after any number
    of kernels; a counter from another boot, or damaged, starts the range again."""
    counter = tmp_path / "uids"
    with ThreadPoolExecutor(4) as pool:
        given = list(pool.map(lambda _: uids.next_uid(counter), range(200)))
    assert len(set(given)) == 200 and min(given) == uids.UID_BASE
    assert max(given) == uids.UID_BASE + 199
    boot = uids.BOOT_ID.read_text().strip()
    assert counter.read_text() == f"{boot} 200\n" and oct(counter.stat().st_mode)[-3:] == "600"
    counter.write_text("another-boot 5000\n")
    assert uids.next_uid(counter) == uids.UID_BASE
    counter.write_text(f"{boot} {uids.UID_COUNT}\n")  # the whole range used: round again
    assert uids.next_uid(counter) == uids.UID_BASE
    counter.write_text("garbage")
    assert uids.next_uid(counter) == uids.UID_BASE


def run_bpf(ops: list[tuple[int, int, int, int]], arch: int, nr: int, arg0: int = 0) -> int:
    """What the filter answers for one call: a small interpreter of the instructions the
    filter uses (loads of ``seccomp_data`` words, jumps on a constant, returns)."""
    data = {seccomp.OFFSET_NR: nr, seccomp.OFFSET_ARCH: arch, seccomp.OFFSET_ARG0: arg0}
    accumulator, pc = 0, 0
    while True:
        code, jt, jf, k = ops[pc]
        if code == seccomp.LD_W_ABS:
            accumulator, pc = data[k], pc + 1
        elif code == seccomp.RET_K:
            return k
        else:
            taken = {
                seccomp.JEQ_K: accumulator == k,
                seccomp.JGE_K: accumulator >= k,
                seccomp.JSET_K: bool(accumulator & k),
            }[code]
            pc += 1 + (jt if taken else jf)


@pytest.mark.parametrize("arch", sorted(seccomp.AUDIT_ARCH))
def test_the_filter_answers_each_call_as_documented(arch: str) -> None:
    ops, audit = seccomp.program(arch), seccomp.AUDIT_ARCH[arch]
    eperm, enosys = seccomp.refuse(1), seccomp.refuse(38)
    for name, number in {**seccomp.BLOCKED[arch], **seccomp.COMMON}.items():
        assert run_bpf(ops, audit, number) == eperm, name
    clone = seccomp.CLONE[arch]
    assert run_bpf(ops, audit, clone, 0x003D0F00) == seccomp.ALLOW  # a thread's flags
    assert run_bpf(ops, audit, clone, 0x01200011) == seccomp.ALLOW  # fork's
    assert run_bpf(ops, audit, clone, 0x10000000 | 17) == eperm  # CLONE_NEWUSER
    assert run_bpf(ops, audit, seccomp.CLONE3) == enosys
    for allowed in (0, 1, 2, 3, 60, 63, 64, 93, 222, 231):  # read, write, exit, mmap, ...
        if allowed not in {**seccomp.BLOCKED[arch], **seccomp.COMMON}.values():
            assert run_bpf(ops, audit, allowed) == seccomp.ALLOW
    assert run_bpf(ops, 0x40000003, 1) == seccomp.KILL_PROCESS  # another ABI (i386)
    if arch == "x86_64":
        assert run_bpf(ops, audit, seccomp.X32_BIT | 1) == eperm


LIFE = r"""
import os, signal, sys, time, subprocess
mode = sys.argv[1]
if mode == "exit":
    sys.exit(3)
if mode == "segv":
    os.kill(os.getpid(), signal.SIGSEGV)
subprocess.Popen(["sleep", "300"], start_new_session=True)
signal.signal(signal.SIGINT, lambda *_: open("interrupts", "a").write("INT\n"))
open("ready", "w").close()
deadline = time.monotonic() + 30
while time.monotonic() < deadline and not os.path.exists("interrupts"):
    time.sleep(0.05)
time.sleep(1)  # a second delivery would land now
"""


def start(tmp_path: Path, mode: str) -> tuple[subprocess.Popen, Path]:
    """The program above through the launcher, started as jupyter_client starts a kernel
    (a new session); its work folder."""
    command, work = launcher_command(tmp_path, mode)
    return subprocess.Popen(command, cwd=ROOT, start_new_session=True), work


def launcher_command(tmp_path: Path, mode: str) -> tuple[list[str], Path]:
    uid = uids.next_uid()
    work = tmp_path / "run" / "work"
    work.mkdir(parents=True)
    os.chown(work, uid, uid)
    os.chmod(tmp_path / "run", 0o711)
    policy = policy_for(tmp_path / "run", uid, python_paths(), [str(Path.home())])
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    argv = [sys.executable, "-m", "grader.run.kernel.launch", str(tmp_path / "policy.json")]
    return [*argv, "--", sys.executable, "-c", LIFE, mode], work


@X86_64
@NEEDS_BWRAP
def test_an_ordinary_user_s_sandbox_is_chosen_at_start_and_said_once(nobody: Nobody) -> None:
    """grader's own user namespace where the machine allows it, else bubblewrap (here:
    grader's own refused by ``GRADER_SANDBOX_SKIP=unshare``); one line says which."""
    code = (
        "import json; from grader.run import machine as m; c = m.capabilities()\n"
        "print(json.dumps([c.namespaces, c.bubblewrap, m.isolated_by(c), c.missing()]))"
    )
    seen = {}
    for skip in ("", "unshare"):
        env = {**nobody.popen()["env"], machine.SKIP_VARIABLE: skip}
        proc = subprocess.run(
            [nobody.python, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            **{**nobody.popen(), "env": env},
        )
        assert proc.returncode == 0, proc.stderr
        seen[skip] = json.loads(proc.stdout)
    assert seen[""][:3] == [
        True,
        None,
        "grader: not root: each kernel is isolated in a user namespace of its own",
    ]
    assert seen["unshare"][:3] == [
        True,
        BWRAP,
        f"grader: not root: each kernel is isolated by bubblewrap ({BWRAP})",
    ]
    for _, _, _, missing in seen.values():  # what only root gives, nothing more
        assert missing == ["user", "disk", "memory", "processes"]


def start_in_bubblewrap(nobody: Nobody, mode: str) -> tuple[subprocess.Popen, Path]:
    """The same program as ``nobody``, its sandbox made by bubblewrap."""
    run = nobody.folder / "run"
    policy = policy_for(run, None, [str(nobody.package)], [str(nobody.folder / "secret")])
    policy["bubblewrap"] = BWRAP
    (nobody.folder / "policy.json").write_text(json.dumps(policy))
    os.chmod(nobody.folder / "policy.json", 0o644)
    argv = [nobody.python, "-m", "grader.run.kernel.launch", str(nobody.folder / "policy.json")]
    command = [*argv, "--", nobody.python, "-c", LIFE, mode]
    return subprocess.Popen(command, start_new_session=True, **nobody.popen()), run / "work"


Starter = Callable[[str], tuple[subprocess.Popen, Path]]


@pytest.fixture(params=["root", pytest.param("bubblewrap", marks=NEEDS_BWRAP)])
def starter(request: pytest.FixtureRequest, tmp_path: Path) -> Starter:
    """Starts the program above through the launcher: as root, or as an ordinary user
    whose sandbox bubblewrap makes."""
    if request.param == "root":
        if not (CAPS.root and CAPS.namespaces):
            pytest.skip("needs root and namespaces")
        return lambda mode: start(tmp_path, mode)
    nobody = request.getfixturevalue("nobody")
    return lambda mode: start_in_bubblewrap(nobody, mode)


def test_an_interrupt_to_the_launchers_group_reaches_the_kernel_once(starter: Starter) -> None:
    proc, work = starter("interrupt")
    wait_for(lambda: (work / "ready").exists())
    os.killpg(proc.pid, signal.SIGINT)  # what jupyter_client's interrupt does
    assert proc.wait(timeout=60) == 0
    assert (work / "interrupts").read_text() == "INT\n"
    assert wait_for(lambda: not daemons_left())


@pytest.mark.parametrize(("mode", "status"), [("exit", 3), ("segv", -signal.SIGSEGV)])
def test_the_kernels_exit_status_is_the_launchers(starter: Starter, mode: str, status: int) -> None:
    proc, _ = starter(mode)
    assert proc.wait(timeout=60) == status


def test_killing_the_launcher_takes_the_whole_namespace_with_it(starter: Starter) -> None:
    proc, work = starter("interrupt")
    wait_for(lambda: (work / "ready").exists())
    os.kill(proc.pid, signal.SIGKILL)  # jupyter_client's kill, or a grader's death
    proc.wait(timeout=10)
    assert wait_for(lambda: not daemons_left())
    assert not (work / "interrupts").exists()


MIDDLE = (
    "import subprocess, sys, time\n"
    "kernel = subprocess.Popen(sys.argv[1:], start_new_session=True)\n"
    "print(kernel.pid, flush=True)\n"
    "time.sleep(300)\n"
)
"""A grader in small: starts the launcher as jupyter_client does, then waits."""


@X86_64
@AS_ROOT
def test_a_grader_killed_before_it_ends_its_kernel_takes_the_kernel_with_it(
    tmp_path: Path,
) -> None:
    """Killed (SIGKILL, a crash, an out-of-memory kill), a grader ends no kernel itself:
    the launcher sees its parent gone and ends the namespace, instead of leaving an idle
    kernel holding its memory until the next batch's sweep (one held 12.9 GB)."""
    command, work = launcher_command(tmp_path, "interrupt")
    grader = subprocess.Popen(
        [sys.executable, "-c", MIDDLE, *command], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert grader.stdout is not None
    launcher = int(grader.stdout.readline())
    wait_for(lambda: (work / "ready").exists())
    grader.kill()
    grader.wait(timeout=10)
    assert wait_for(lambda: not alive(launcher), timeout_s=10)
    assert wait_for(lambda: not daemons_left())
    assert not (work / "interrupts").exists()


@X86_64
@AS_ROOT
def test_a_grader_that_is_pid_1_keeps_its_kernels(tmp_path: Path) -> None:
    """A container's entry point is pid 1: the launcher's parent being 1 says nothing of
    the grader's death (it killed every kernel at start when it did)."""
    if shutil.which("unshare") is None:
        pytest.skip("util-linux's unshare is not installed")
    command, _ = launcher_command(tmp_path, "exit")
    as_init = "import subprocess, sys\nprint(subprocess.call(sys.argv[1:]), flush=True)\n"
    done = subprocess.run(
        ["unshare", "--pid", "--fork", sys.executable, "-c", as_init, *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.split()[-1:] == ["3"], done.stderr[-2000:]  # the kernel's own exit


def alive(pid: int) -> bool:
    """Running (a zombie waiting for the host's init to reap it is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def wait_for(condition, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_the_sandbox_finds_a_kernels_process_that_left_its_session(
    tmp_path: Path, starter: Starter
) -> None:
    """Without cgroups or a uid of its own (an ordinary user), the memory watchdog and the
    clean-up find the kernel's processes by its pid namespace, not only its session."""
    proc, work = starter("interrupt")
    try:
        wait_for(lambda: (work / "ready").exists())
        box = sandbox.KernelSandbox(root=tmp_path, limits=sandbox.KernelLimits(64, 8, 1, 16, 100))
        found = box._pids(proc.pid)
        assert set(daemons_left()) <= found  # the daemon started a session of its own
        assert len(found - cgroups.pids_of_session(proc.pid)) == 1
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
