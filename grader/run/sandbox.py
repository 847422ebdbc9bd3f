"""The sandbox around one kernel: what the machine allows, set up, torn down.

grader never needs Docker. What it enforces depends on the machine, detected once per
process by :func:`capabilities`. As root the namespaces are unshared directly; as an
ordinary user, inside a user namespace that maps the user to itself (where the machine
allows unprivileged user namespaces), so that the same layers hold without root, except
the uid and the cgroups:

================  ===============================================  =========================
limit             enforced by                                      where not allowed
================  ===============================================  =========================
network           own network namespace (kernel talks over ipc)    not enforced (warned)
files             allow-list view (``kernel/view.py``):             not enforced (warned)
                  system read-only, Python, kit, run folder;
                  fresh ``/tmp``, ``/var/tmp``, ``/dev/shm``,
                  ``/run/lock``, ``/dev``
processes seen    own pid namespace with a small init, fresh       not enforced (warned)
                  ``/proc``; own IPC and UTS namespaces
system calls      no-new-privs and a seccomp filter                not enforced (warned)
                  (:mod:`grader.run.kernel.seccomp`)
user              own unprivileged uid (root only)                 grader's own user (warned)
memory            cgroup (v1 ``memory`` or v2 ``memory.max``)      RSS watchdog on the uid,
                                                                   session, pid namespace
processes         cgroup ``pids``; ``RLIMIT_NPROC`` per uid        not enforced (warned)
file size         ``RLIMIT_FSIZE``                                 always
disk, inodes      the run folder a size- and inode-limited tmpfs   not enforced (warned)
                  of its own (root only)
leftovers         cgroup / uid / session / pid namespace killed    session, pid namespace
================  ===============================================  =========================

:class:`KernelSandbox` is used by :mod:`grader.run.execute`: it writes the policy that
:mod:`grader.run.kernel.launch` applies inside the kernel's process, and after the run it
kills whatever is left and says whether memory ran out (cgroups and /proc are read and
written by :mod:`grader.run.cgroups`).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import site
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from grader.errors import UsageError
from grader.run import cgroups
from grader.run.runfolders import DiskQuota, make_run_folder, remove_run_folder
from grader.run.trees import chown_tree
from grader.run.uids import next_uid

PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
"""The world-writable places a kernel gets a fresh, empty one of: nothing one student's
kernel leaves there reaches another's."""
NAMESPACES = ("network", "mount", "ipc", "uts", "pid")
"""What :mod:`grader.run.kernel.launch` unshares where namespaces work."""
PRIVATE_TMP_SIZE = "512m"
"""Each fresh tmpfs's size (a ``mount -o size=`` value); the policy always carries it."""
WATCHDOG_PERIOD_S = 0.25
SAFE_ENV = ("LANG", "LC_ALL", "TZ")
SKIP_VARIABLE = "GRADER_SANDBOX_SKIP"
SKIPPABLE = ("namespaces", "user", "cgroup")
NOT_ENFORCED = {
    "network": "network access (no network namespaces here)",
    "files": "hiding the grader's files (no mount namespaces here)",
    "user": "a separate unprivileged user (grader is not running as root)",
    "memory": "a memory cgroup (an RSS watchdog is used instead)",
    "syscalls": "a seccomp filter (not supported by this machine's kernel)",
    "processes": "a process-count limit (no pids cgroup, not root)",
    "disk": "a disk and inode quota on the run folder (mounting one needs root)",
}
MSG_NOT_ENFORCED = "grader: sandbox limits not enforced on this machine: {what}"


SYSTEM_PATHS = ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/dev", "/sys", "/run")
SYSTEM_VIEW = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/sys")
"""The machine's parts in every kernel's view, read-only (:mod:`grader.run.kernel.view`)."""


def paths_to_hide(*candidates: str | os.PathLike[str] | None) -> tuple[str, ...]:
    """Folders to cover in every kernel's view: each candidate's folder, never a system one."""
    hidden = set()
    for candidate in candidates:
        if candidate is None:
            continue
        path = os.path.realpath(candidate)
        if os.path.isfile(path):
            path = os.path.dirname(path)
        if path == "/" or any(_overlaps(path, system) for system in SYSTEM_PATHS):
            continue
        hidden.add(path)
    return tuple(sorted(hidden))


def python_paths() -> tuple[str, ...]:
    """This Python installation: what any process started in a sandbox needs to see."""
    paths = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        str(Path(sys.executable).resolve().parent),
    }
    paths |= {p for p in site.getsitepackages() + [site.getusersitepackages()] if os.path.isdir(p)}
    return tuple(sorted(paths))


def _overlaps(path: str, system: str) -> bool:
    return path == system or system.startswith(path + "/") or path.startswith(system + "/")


@dataclass(frozen=True)
class Capabilities:
    """What this machine lets grader enforce."""

    root: bool
    """Running as root: can switch each kernel to its own uid."""
    namespaces: bool
    """Network, mount, IPC, UTS and pid namespaces can be created."""
    cgroup: str | None
    """``v1`` or ``v2`` when grader can create memory and pids cgroups, else None."""
    user_namespace: bool = False
    """The namespaces are made inside a user namespace (grader is not root)."""
    seccomp: bool = True
    """A seccomp filter can be installed."""
    quota: bool = False
    """Run folders can be file systems of their own, limited in size and inodes (root)."""

    def missing(self) -> list[str]:
        """Keys of :data:`NOT_ENFORCED` that this machine cannot enforce."""
        gaps = []
        if not self.namespaces:
            gaps += ["network", "files"]
        if not self.seccomp:
            gaps.append("syscalls")
        if not self.root:
            gaps.append("user")
        if not self.quota:
            gaps.append("disk")
        if not self.cgroup:
            gaps.append("memory")
            if not self.root:
                gaps.append("processes")
        return gaps


@functools.lru_cache(maxsize=1)
def capabilities() -> Capabilities:
    """Detect once per process what can be enforced (less what ``$GRADER_SANDBOX_SKIP`` lists).

    ``GRADER_SANDBOX_SKIP=namespaces,user,cgroup`` (any of them) grades as a machine
    without those would: for tests of the fallbacks, and for debugging a kernel.
    """
    skip = set(filter(None, os.environ.get(SKIP_VARIABLE, "").split(",")))
    unknown = skip - set(SKIPPABLE)
    if unknown:
        raise UsageError(f"{SKIP_VARIABLE}: unknown {sorted(unknown)}; use any of {SKIPPABLE}")
    root = os.geteuid() == 0 and "user" not in skip
    user_namespace = os.geteuid() != 0
    namespaces = "namespaces" not in skip and _namespaces_work(user_namespace)
    cgroup = None if "cgroup" in skip else _cgroup_kind(os.geteuid() == 0)
    return Capabilities(
        root=root,
        namespaces=namespaces,
        cgroup=cgroup,
        user_namespace=namespaces and user_namespace,
        seccomp=_seccomp_works(),
        quota=root and _quota_works(),
    )


def not_enforced_warning(caps: Capabilities) -> str | None:
    """One line naming what is not enforced here, or None when everything is."""
    missing = caps.missing()
    what = "; ".join(NOT_ENFORCED[m] for m in missing)
    return MSG_NOT_ENFORCED.format(what=what) if missing else None


def _namespaces_work(user_namespace: bool) -> bool:
    """Whether the launcher itself can make a kernel's namespaces and view here: it is
    run on ``true`` with them, as a kernel would be (a container may allow ``unshare``
    and still refuse a fresh ``/proc``)."""
    scratch = make_run_folder()  # named for this process: swept if it is killed meanwhile
    try:
        (scratch / "work").mkdir()
        policy = {
            "namespaces": list(NAMESPACES),
            "user_namespace": user_namespace,
            "system": list(SYSTEM_VIEW),
            "expose": list(python_paths()),
            "writable": [str(scratch)],
            "private_tmp": list(PRIVATE_TMP),
            "tmp_size": "1m",
            "root": str(scratch),
            "cwd": str(scratch / "work"),
        }
        (scratch / "policy.json").write_text(json.dumps(policy))
        launch = [sys.executable, "-m", "grader.run.kernel.launch", str(scratch / "policy.json")]
        true = shutil.which("true") or "/bin/true"
        return _succeeds([*launch, "--", true])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _quota_works() -> bool:
    """Whether a run folder can be given a file system of its own (root may still be
    refused a mount, in a container)."""
    try:
        scratch = make_run_folder(DiskQuota(size_mb=1, files=16))
    except OSError:
        return False
    return remove_run_folder(scratch) is None


def disk_quota(limits: KernelLimits) -> DiskQuota | None:
    """The file system a kernel's run folder gets here (None: none can be mounted)."""
    return DiskQuota(limits.disk_mb, limits.max_files) if capabilities().quota else None


def _seccomp_works() -> bool:
    code = "import sys; from grader.run.kernel import seccomp; sys.exit(seccomp.install() is None)"
    return _succeeds([sys.executable, "-c", code])


def _succeeds(argv: list[str]) -> bool:
    try:
        proc = subprocess.run(argv, timeout=30, capture_output=True)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _cgroup_kind(root: bool) -> str | None:
    if not root:
        return None
    v1 = [cgroups.CGROUP_V1 / "memory", cgroups.CGROUP_V1 / "pids"]
    if all((c / "cgroup.procs").exists() and os.access(c, os.W_OK) for c in v1):
        return "v1"
    controllers = cgroups.CGROUP_V1 / "cgroup.controllers"
    if controllers.exists() and {"memory", "pids"} <= set(controllers.read_text().split()):
        return "v2" if os.access(cgroups.CGROUP_V1, os.W_OK) else None
    return None


@dataclass(frozen=True)
class KernelLimits:
    """What the sandbox holds one kernel to (the rubric's ``[limits]``, converted by
    :mod:`grader.run.execute`; the time and output limits are not the sandbox's)."""

    memory_mb: int
    max_processes: int
    max_file_mb: int
    disk_mb: int
    max_files: int


@dataclass
class KernelSandbox:
    """One kernel's sandbox: its uid, cgroups, policy file and clean-up."""

    root: Path
    """The run's folder; everything the kernel may write lives here."""
    limits: KernelLimits
    hide: tuple[str, ...] = ()
    """Paths covered with an empty folder in the kernel's view (grader's inputs, caches)."""
    expose: tuple[str, ...] = ()
    """Paths bound back into the view (Python, the public asset kit)."""
    caps: Capabilities = field(default_factory=capabilities)
    uid: int | None = None
    cgroups: list[Path] = field(default_factory=list)
    out_of_memory: bool = False
    peak_memory_mb: int | None = None
    """Most memory the kernel's cgroup used (None without a memory cgroup)."""
    _watchdog: threading.Thread | None = None
    _namespace: str | None = None
    """The kernel's pid namespace, read once its launcher has made it."""
    _stop: threading.Event = field(default_factory=threading.Event)

    def prepare(self, writable: list[Path]) -> Path:
        """Create uid, cgroups and the policy file; returns the policy's path."""
        if self.caps.root:
            self.uid = next_uid()
            os.chmod(self.root, 0o711)
            for path in writable:
                _chown_tree(path, self.uid)
        if self.caps.cgroup:
            limits = self.limits
            self.cgroups = cgroups.make_cgroups(
                self.caps.cgroup, self.root.name, limits.memory_mb, limits.max_processes
            )
        policy = self.root / "sandbox.json"
        policy.write_text(json.dumps(self._policy()))
        os.chmod(policy, 0o600)
        return policy

    def _policy(self) -> dict:
        limits = self.limits
        rlimits = {"fsize": limits.max_file_mb * 2**20, "core": 0}
        if self.uid is not None:
            rlimits["nproc"] = limits.max_processes
        caps = self.caps
        return {
            "cgroup_procs": [str(c / "cgroup.procs") for c in self.cgroups],
            "namespaces": list(NAMESPACES) if caps.namespaces else [],
            "user_namespace": caps.user_namespace,
            "seccomp": caps.seccomp,
            "hide": sorted(self.hide),
            "private_tmp": list(PRIVATE_TMP),
            "tmp_size": PRIVATE_TMP_SIZE,
            "system": list(SYSTEM_VIEW),
            "expose": list(self.expose),
            "writable": [str(self.root)],
            "rlimits": rlimits,
            "uid": self.uid,
            "gid": self.uid,
            "root": str(self.root),
            "cwd": str(self.root / "work"),
        }

    def kernel_argv(self, policy: Path) -> list[str]:
        kernel = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        return [sys.executable, "-m", "grader.run.kernel.launch", str(policy), "--", *kernel]

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """The kernel's whole environment: ``base`` plus a safe PATH and locale."""
        path = os.pathsep.join(
            [str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]
        )
        kept = {k: os.environ[k] for k in SAFE_ENV if k in os.environ}
        return {"PATH": path, **kept, **base}

    def start_watchdog(self, kernel_pid: int) -> None:
        """Without a memory cgroup, poll the kernel's processes' RSS and kill past the limit."""
        if self.cgroups:
            return
        limit = self.limits.memory_mb * 2**20

        def watch() -> None:
            while not self._stop.wait(WATCHDOG_PERIOD_S):
                pids = self._pids(kernel_pid)
                if pids and sum(cgroups.rss(p) for p in pids) > limit:
                    self.out_of_memory = True
                    cgroups.kill_all(pids)

        self._watchdog = threading.Thread(target=watch, daemon=True)
        self._watchdog.start()

    def teardown(self, kernel_pid: int | None) -> None:
        """Kill everything the kernel started, remove cgroups, note an OOM kill."""
        self._stop.set()
        for _ in range(cgroups.KILL_ROUNDS):
            pids = self._pids(kernel_pid)
            if not pids:
                break
            cgroups.kill_all(pids)
            time.sleep(0.05)
        for cgroup in self.cgroups:
            self.out_of_memory |= cgroups.oom_killed(cgroup)
            self.peak_memory_mb = (
                max(self.peak_memory_mb or 0, cgroups.peak_mb(cgroup) or 0) or None
            )
            cgroups.remove_cgroup(cgroup)
        if self.uid is not None:
            chown_tree(self.root, 0)  # what it cannot hand back, root removes anyway

    def disk_used_up(self) -> bool:
        """True when the run folder's own file system has no byte or no inode left."""
        if not os.path.ismount(self.root):
            return False
        try:
            free = os.statvfs(self.root)
        except OSError:
            return False
        return free.f_bavail == 0 or free.f_favail == 0

    def _pids(self, kernel_pid: int | None) -> set[int]:
        pids: set[int] = set()
        for cgroup in self.cgroups:
            pids |= cgroups.read_pids(cgroup / "cgroup.procs")
        if self.uid is not None:
            pids |= cgroups.pids_of_uid(self.uid)
        if kernel_pid:
            pids |= cgroups.pids_of_session(kernel_pid)
            namespace = self._namespace or cgroups.pid_namespace_of_children(kernel_pid)
            if namespace and namespace != cgroups.pid_namespace_of_children(os.getpid()):
                self._namespace = namespace  # the kernel's own: its processes, wherever
                pids |= cgroups.pids_in_namespace(namespace)
        pids.discard(os.getpid())
        return pids


def _chown_tree(path: Path, uid: int) -> None:
    problem = chown_tree(path, uid)
    if problem:
        raise OSError(f"{path}: cannot hand the folder to uid {uid} ({problem})")
