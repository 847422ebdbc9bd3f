"""Kernel run folders: named for the grader that made them, so a later grader can tell
when one is stale (its maker is gone) and sweep it, with its cgroups, away.

A run folder's name is ``grader-run-PID-START-NAMESPACE-random``: the maker's pid, its
start time (so a reused pid is not mistaken for it) and its pid namespace. Its cgroups
carry the same name (:mod:`grader.run.cgroups`).

Where grader can mount (as root), a run folder is a file system of its own, a tmpfs
limited in bytes and in inodes (:class:`DiskQuota`): what a kernel writes fills its own
folder, never the host's disk, and goes at once when the folder is unmounted.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from grader.run import cgroups
from grader.run.kernel import view
from grader.run.trees import remove_tree

RUN_PREFIX = "grader-run-"
"""A kernel's run folder (and cgroup) name starts with this, then its owner's pid, start
time and pid namespace: ``grader-run-PID-START-NAMESPACE-random``."""
OWNER_PATTERN = re.compile(re.escape(RUN_PREFIX) + r"(\d+)-(\d+)-(\d+)-")
LEGACY_OWNER_FILE = "owner.pid"
"""Where earlier graders named a run folder's owner (its pid only), inside the folder."""
UNOWNED_STALE_S = 600
"""A run folder that names no owner is stale this long after its last change: only an
older grader killed between making it and writing its owner file leaves one."""
FOREIGN_STALE_S = 24 * 3600
"""A run folder made in another pid namespace (a container sharing this temp dir) is
stale a day after its last change: far longer than a notebook's time limit in practice."""
NO_DEVICES = view.MS_NOSUID | view.MS_NODEV
MSG_NOT_REMOVED = "warning: {folder}: a left kernel folder cannot be removed ({why}); kept"


class DiskQuota(NamedTuple):
    """What one run folder may hold (the rubric's ``disk_mb`` and ``max_files``)."""

    size_mb: int
    files: int
    """Inodes: files, folders and links together."""

    def options(self) -> str:
        """The tmpfs's mount options."""
        return f"size={self.size_mb}m,nr_inodes={self.files},mode=0700"


class RunOwner(NamedTuple):
    """The process that made a run folder, as its name says (0: not known)."""

    pid: int
    start: int
    """When it started, in clock ticks after boot (/proc/PID/stat field 22)."""
    namespace: int
    """Its pid namespace's inode: another container's pids mean nothing here."""


def pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def run_folder_prefix(owner: RunOwner) -> str:
    """The start of a run folder's name, saying who made it (read by ``OWNER_PATTERN``)."""
    return f"{RUN_PREFIX}{owner.pid}-{owner.start}-{owner.namespace}-"


def make_run_folder(quota: DiskQuota | None = None) -> Path:
    """A new kernel run folder, named for this process from the instant it exists, so a
    later grader can tell it is stale even if this one is killed then; with ``quota``, a
    file system of that size mounted on it (an :class:`OSError` where it cannot be)."""
    pid = os.getpid()
    me = RunOwner(pid, cgroups.process_start(pid) or 0, pid_namespace())
    folder = Path(tempfile.mkdtemp(prefix=run_folder_prefix(me)))
    if quota is not None:
        try:
            view.mount("none", str(folder), "tmpfs", NO_DEVICES, quota.options())
        except OSError:
            folder.rmdir()
            raise
    return folder


def remove_run_folder(folder: Path) -> str | None:
    """Remove a run folder and what is in it, unmounting its file system first if it has
    one; None once it is gone, else why not (never raised)."""
    try:
        if folder.is_dir() and not folder.is_symlink() and os.path.ismount(folder):
            view.unmount(str(folder))
    except OSError as exc:
        return str(exc)
    return remove_tree(folder)


def run_folder_owner(folder: Path) -> RunOwner | None:
    """Who made ``folder`` (an older grader named the pid only, in a file); None when the
    folder names no owner."""
    named = OWNER_PATTERN.match(folder.name)
    if named:
        return RunOwner(int(named[1]), int(named[2]), int(named[3]))
    try:
        return RunOwner(int((folder / LEGACY_OWNER_FILE).read_text()), 0, 0)
    except (OSError, ValueError):
        return None


def is_stale(folder: Path, now: float | None = None) -> bool:
    """True when the grader that made ``folder`` is gone (a pid reused since does not
    count); a folder naming no owner, or another pid namespace's, only once it is old."""
    try:
        age = (now or time.time()) - folder.stat().st_mtime
    except OSError:
        return False
    owner = run_folder_owner(folder)
    if owner is None:
        return age > UNOWNED_STALE_S
    if owner.namespace not in (0, pid_namespace()):
        return age > FOREIGN_STALE_S
    return not _is_running(owner)


def _is_running(owner: RunOwner) -> bool:
    if cgroups.proc_stat(str(owner.pid)) is not None:
        start = cgroups.process_start(owner.pid)  # None for a zombie: it is gone
        return start is not None and owner.start in (0, start)
    try:  # /proc hides it (hidepid) or has no entry
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, as another user
    return True


def sweep_stale(tmp: Path | None = None, report: Callable[[str], None] | None = None) -> int:
    """Remove what a killed grader left behind: run folders whose owning process is gone,
    with their cgroups and any process still in them, and cgroups whose folder is gone
    but whose owner is too. Returns how many folders were removed; a folder that cannot
    be removed is left, and told to ``report`` with the reason."""
    removed = 0
    for folder in Path(tmp or tempfile.gettempdir()).glob(f"{RUN_PREFIX}*"):
        if folder.is_symlink() or not folder.is_dir() or not is_stale(folder):
            continue
        if folder.lstat().st_uid != os.geteuid():  # planted by another user: not ours
            continue
        for cgroup in cgroups.cgroups_named(folder.name):
            cgroups.kill_all(cgroups.read_pids(cgroup / "cgroup.procs"))
            cgroups.remove_cgroup(cgroup)
        problem = remove_run_folder(folder)
        if problem and report is not None:
            report(MSG_NOT_REMOVED.format(folder=folder, why=problem))
        removed += problem is None
    _sweep_orphan_cgroups()
    return removed


def _sweep_orphan_cgroups() -> None:
    """Remove cgroups whose run folder is already gone (a grader killed between removing
    the folder and the cgroup, or a temp dir cleaned by hand) once their owner is gone."""
    for cgroup in cgroups.grader_cgroups(RUN_PREFIX):
        if is_stale(cgroup):
            cgroups.kill_all(cgroups.read_pids(cgroup / "cgroup.procs"))
            cgroups.remove_cgroup(cgroup)
