"""cgroups and /proc: make a kernel's cgroups, read what they saw, kill what is left.

Both cgroup v1 (``memory`` and ``pids`` controllers) and v2 (one group with
``memory.max`` and ``pids.max``) are handled. Everything here is used by
:mod:`grader.run.sandbox`; nothing here decides policy.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

CGROUP_V1 = Path("/sys/fs/cgroup")
CGROUP_PARENT = "grader"
KILL_ROUNDS = 50
PROC = "/proc"
"""Linux's process table, read to find, watch and kill a kernel's processes."""


PLACES = (CGROUP_V1 / "memory", CGROUP_V1 / "pids", CGROUP_V1)
"""Where grader's cgroups live: v1's memory and pids controllers, and v2's one tree."""


def cgroups_named(name: str) -> list[Path]:
    return [p / CGROUP_PARENT / name for p in PLACES if (p / CGROUP_PARENT / name).is_dir()]


def grader_cgroups(prefix: str) -> list[Path]:
    """Every cgroup under grader's parents whose name starts with ``prefix``."""
    found = []
    for place in PLACES:
        try:
            found += [c for c in (place / CGROUP_PARENT).glob(f"{prefix}*") if c.is_dir()]
        except OSError:
            continue
    return found


def make_cgroups(kind: str, name: str, memory_mb: int, max_processes: int) -> list[Path]:
    """The run's cgroups (``kind`` ``v1``: a memory and a pids group; ``v2``: one group),
    holding it to ``memory_mb`` (swap included) and ``max_processes``."""
    memory = str(memory_mb * 2**20)
    if kind == "v1":
        mem = CGROUP_V1 / "memory" / CGROUP_PARENT / name
        pids = CGROUP_V1 / "pids" / CGROUP_PARENT / name
        mem.mkdir(parents=True, exist_ok=True)
        pids.mkdir(parents=True, exist_ok=True)
        (mem / "memory.limit_in_bytes").write_text(memory)
        swap = mem / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(memory)
        (pids / "pids.max").write_text(str(max_processes))
        return [mem, pids]
    parent = CGROUP_V1 / CGROUP_PARENT
    parent.mkdir(exist_ok=True)
    (CGROUP_V1 / "cgroup.subtree_control").write_text("+memory +pids")
    (parent / "cgroup.subtree_control").write_text("+memory +pids")
    group = parent / name
    group.mkdir(exist_ok=True)
    (group / "memory.max").write_text(memory)
    (group / "memory.swap.max").write_text("0")
    (group / "pids.max").write_text(str(max_processes))
    return [group]


def remove_cgroup(cgroup: Path) -> None:
    """Remove an emptied cgroup; a task still exiting keeps it busy for a moment."""
    for _ in range(KILL_ROUNDS):
        try:
            cgroup.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            kill_all(read_pids(cgroup / "cgroup.procs"))
            time.sleep(0.1)


def oom_killed(cgroup: Path) -> bool:
    for name in ("memory.oom_control", "memory.events"):
        path = cgroup / name
        if path.exists():
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and value.strip() not in ("", "0"):
                    return True
    return False


def peak_mb(cgroup: Path) -> int | None:
    for name in ("memory.max_usage_in_bytes", "memory.peak"):
        path = cgroup / name
        if path.exists():
            return int(path.read_text().split()[0]) // 2**20
    return None


def read_pids(path: Path) -> set[int]:
    try:
        return {int(p) for p in path.read_text().split()}
    except OSError:
        return set()


def proc_stat(pid: str) -> list[str] | None:
    try:
        text = Path(f"{PROC}/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot), None when no such process lives: a
    pid and its start time name one process, even once the pid has been reused."""
    stat = proc_stat(str(pid))
    if stat is None or stat[0] in "ZX":
        return None
    return int(stat[19])  # field 22: starttime


def proc_pids() -> list[str]:
    """The process ids ``/proc`` lists; none where there is no ``/proc`` (macOS, Windows:
    there the kernel's own process and its session are all grader can find)."""
    try:
        return [entry for entry in os.listdir(PROC) if entry.isdigit()]
    except OSError:
        return []


def pids_of_session(sid: int) -> set[int]:
    found = set()
    for entry in proc_pids():
        stat = proc_stat(entry)
        if stat and int(stat[3]) == sid and stat[0] != "Z":  # field 6: session id
            found.add(int(entry))
    return found


def pid_namespace_of_children(pid: int) -> str | None:
    """The pid namespace ``pid`` starts its children in (the kernel's, for its launcher),
    None where it cannot be read."""
    try:
        return os.readlink(f"{PROC}/{pid}/ns/pid_for_children")
    except OSError:
        return None


def pids_in_namespace(namespace: str) -> set[int]:
    """Live processes in the pid namespace ``namespace`` (a ``pid:[...]`` link): a
    kernel's processes, even those that left its session."""
    found = set()
    for entry in proc_pids():
        try:
            if os.readlink(f"{PROC}/{entry}/ns/pid") == namespace and not is_zombie(entry):
                found.add(int(entry))
        except OSError:
            continue
    return found


def pids_of_uid(uid: int) -> set[int]:
    """Live processes of ``uid`` (zombies are dead already: they wait for init to reap them)."""
    found = set()
    for entry in proc_pids():
        try:
            if os.stat(f"{PROC}/{entry}").st_uid == uid and not is_zombie(entry):
                found.add(int(entry))
        except OSError:
            continue
    return found


def is_zombie(pid: str) -> bool:
    stat = proc_stat(pid)
    return stat is None or stat[0] == "Z"


def rss(pid: int) -> int:
    stat = proc_stat(str(pid))
    return int(stat[21]) * os.sysconf("SC_PAGE_SIZE") if stat else 0  # field 24: rss pages


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
