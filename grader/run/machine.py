"""What this machine lets the sandbox enforce, detected once per process.

:func:`capabilities` tries each layer as a kernel would meet it (the launcher run on
``true`` with the namespaces and the view, a seccomp filter installed, a quota mounted)
and :func:`not_enforced_warning` names, in one line, each one it could not. As an
ordinary user the namespaces are made by the launcher inside a user namespace, or,
where the distribution lets only known programs make one (Ubuntu's AppArmor rule), by
bubblewrap where it is installed (:mod:`grader.run.kernel.bubblewrap`).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import site
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from grader.errors import UsageError
from grader.run import cgroups
from grader.run.runfolders import DiskQuota, make_run_folder, remove_run_folder

PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
"""The world-writable places a kernel gets a fresh, empty one of: nothing one student's
kernel leaves there reaches another's."""
NAMESPACES = ("network", "mount", "ipc", "uts", "pid")
"""What :mod:`grader.run.kernel.launch` unshares where namespaces work."""
SKIP_VARIABLE = "GRADER_SANDBOX_SKIP"
SKIPPABLE = ("namespaces", "user", "cgroup", "unshare")
"""What ``$GRADER_SANDBOX_SKIP`` may name: ``unshare`` is grader's own namespaces, so
that an ordinary user's kernels are isolated by bubblewrap where it is installed."""
BUBBLEWRAP = "bwrap"
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
MSG_ISOLATED_BY = "grader: not root: each kernel is isolated {how}"
MSG_STUDENT_NO_SANDBOX = (
    "Note: on this computer your notebook runs as you, without grader's sandbox (the"
    " course's grading runs it in one). That is fine for a check: nothing to do."
)
SYSTEM_VIEW = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/sys")
"""The machine's parts in every kernel's view, read-only (:mod:`grader.run.kernel.view`)."""


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
    bubblewrap: str | None = None
    """bubblewrap's path where it makes the namespaces (an ordinary user whose own
    ``unshare`` the machine refuses), else None."""

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

    ``GRADER_SANDBOX_SKIP=namespaces,user,cgroup,unshare`` (any of them) grades as a
    machine without those would: for tests of the fallbacks, and for debugging a kernel.
    """
    skip = set(filter(None, os.environ.get(SKIP_VARIABLE, "").split(",")))
    unknown = skip - set(SKIPPABLE)
    if unknown:
        raise UsageError(f"{SKIP_VARIABLE}: unknown {sorted(unknown)}; use any of {SKIPPABLE}")
    if not sys.platform.startswith("linux"):  # macOS, Windows: no layer of it exists there
        return Capabilities(root=False, namespaces=False, cgroup=None, seccomp=False)
    root = os.geteuid() == 0 and "user" not in skip
    user_namespace = os.geteuid() != 0
    namespaces = skip.isdisjoint({"namespaces", "unshare"}) and _namespaces_work(user_namespace)
    bwrap = None
    if not namespaces and user_namespace and "namespaces" not in skip:
        bwrap = shutil.which(BUBBLEWRAP)
        namespaces = bwrap is not None and _namespaces_work(True, bwrap)
    cgroup = None if "cgroup" in skip else _cgroup_kind(os.geteuid() == 0)
    return Capabilities(
        root=root,
        namespaces=namespaces,
        cgroup=cgroup,
        user_namespace=namespaces and user_namespace,
        seccomp=_seccomp_works(),
        quota=root and _quota_works(),
        bubblewrap=bwrap if namespaces else None,
    )


def warn_unenforced(warn: Callable[[str], None]) -> None:
    """Say once, before any notebook runs, what isolates the kernels (not root) and which
    sandbox limits this machine cannot enforce."""
    caps = capabilities()
    for line in (isolated_by(caps), not_enforced_warning(caps)):
        if line:
            warn(line)


def tell_student(say: Callable[[str], None]) -> None:
    """What ``grader check`` says of the sandbox: one line, in a student's words, and only
    where the notebook runs without one (a laptop, Windows, macOS, a container); the
    limits an instructor's batch enforces are not the student's concern."""
    line = student_note(capabilities())
    if line:
        say(line)


def student_note(caps: Capabilities) -> str | None:
    """The line :func:`tell_student` says, or None where the kernel is isolated."""
    return None if caps.namespaces else MSG_STUDENT_NO_SANDBOX


def isolated_by(caps: Capabilities) -> str | None:
    """For an ordinary user, one line saying what isolates each kernel (None as root)."""
    if not caps.user_namespace:
        return None
    if caps.bubblewrap:
        return MSG_ISOLATED_BY.format(how=f"by bubblewrap ({caps.bubblewrap})")
    return MSG_ISOLATED_BY.format(how="in a user namespace of its own")


def not_enforced_warning(caps: Capabilities) -> str | None:
    """One line naming what is not enforced here, or None when everything is."""
    missing = caps.missing()
    what = "; ".join(NOT_ENFORCED[m] for m in missing)
    return MSG_NOT_ENFORCED.format(what=what) if missing else None


def _namespaces_work(user_namespace: bool, bubblewrap: str | None = None) -> bool:
    """Whether the launcher itself can make a kernel's namespaces and view here: it is
    run on ``true`` with them, as a kernel would be (a container may allow ``unshare``
    and still refuse a fresh ``/proc``)."""
    scratch = make_run_folder()  # named for this process: swept if it is killed meanwhile
    try:
        (scratch / "work").mkdir()
        policy = {
            "namespaces": list(NAMESPACES),
            "user_namespace": user_namespace,
            "bubblewrap": bubblewrap,
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
