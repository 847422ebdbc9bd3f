"""The sandbox around one kernel: what the machine allows, set up, torn down.

grader never needs Docker. What it enforces depends on the machine, detected once per
process by :func:`grader.run.machine.capabilities`. As root the namespaces are unshared
directly; as an ordinary user, inside a user namespace that maps the user to itself
(where the machine allows unprivileged user namespaces; else by bubblewrap, where it is
installed), so that the same layers hold without root, except the uid, the cgroups and
the disk quota:

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

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from grader.run import cgroups
from grader.run.dataroutes import Served
from grader.run.kernel import bubblewrap
from grader.run.machine import (
    NAMESPACES,
    PRIVATE_TMP,
    SYSTEM_VIEW,
    Capabilities,
    capabilities,
)
from grader.run.runfolders import DiskQuota
from grader.run.trees import chown_tree
from grader.run.uids import next_uid

PRIVATE_TMP_SIZE = "512m"
"""Each fresh tmpfs's size (a ``mount -o size=`` value); the policy always carries it."""
WATCHDOG_PERIOD_S = 0.25
SAFE_ENV = ("LANG", "LC_ALL", "TZ")


SYSTEM_PATHS = ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/dev", "/sys", "/run")


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


def _overlaps(path: str, system: str) -> bool:
    return path == system or system.startswith(path + "/") or path.startswith(system + "/")


def disk_quota(limits: KernelLimits) -> DiskQuota | None:
    """The file system a kernel's run folder gets here (None: none can be mounted)."""
    return DiskQuota(limits.disk_mb, limits.max_files) if capabilities().quota else None


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
    served: Served = field(default_factory=Served)
    """The course's data bound where the notebook names it, the working folders it names."""
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
            "bubblewrap": caps.bubblewrap,
            "seccomp": caps.seccomp,
            "hide": sorted(self.hide),
            "private_tmp": [*PRIVATE_TMP, *self.served.working],
            "tmp_size": PRIVATE_TMP_SIZE,
            "system": list(SYSTEM_VIEW),
            "expose": list(self.expose),
            "writable": [str(self.root)],
            "serve": [list(pair) for pair in self.served.binds],
            "rlimits": rlimits,
            "uid": self.uid,
            "gid": self.uid,
            "root": str(self.root),
            "cwd": str(self.root / "work"),
            "grader_pid": os.getpid(),  # its death ends the kernel (supervise)
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
            self._namespace = self._namespace or _kernel_namespace(kernel_pid)
            if self._namespace:  # the kernel's own: its processes, wherever they went
                pids |= cgroups.pids_in_namespace(self._namespace)
        pids.discard(os.getpid())
        return pids


def _chown_tree(path: Path, uid: int) -> None:
    problem = chown_tree(path, uid)
    if problem:
        raise OSError(f"{path}: cannot hand the folder to uid {uid} ({problem})")


def _kernel_namespace(launcher: int) -> str | None:
    """The kernel's pid namespace: the one its launcher starts children in, or, where
    bubblewrap made it, its init's (the launcher's grandchild); None before it exists."""
    own = cgroups.pid_namespace_of_children(os.getpid())
    made = cgroups.pid_namespace_of_children(launcher)
    if made and made != own:
        return made
    for pid in bubblewrap.descendants(launcher):
        try:
            namespace = os.readlink(f"/proc/{pid}/ns/pid")
        except OSError:
            continue
        if namespace != own:
            return namespace
    return None
