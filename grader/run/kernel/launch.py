"""The kernel's launcher: enter the sandbox, drop privileges, then become the kernel.

Run as the kernelspec's ``argv`` (``python -m grader.run.kernel.launch POLICY -- KERNEL...``),
so it is the process jupyter_client starts and waits on. In order it:

1. starts a new session (the kernel leads its own process group);
2. joins the run's cgroups (memory, pids) while it is still root;
3. leaves the network namespace (no interface but a loopback that is down);
4. builds a private mount view: ``hide`` paths are covered by empty tmpfs mounts,
   ``private_tmp`` paths by fresh writable ones, and ``expose`` paths (the Python
   installation, the public asset kit, the run's own folder) are bound back in;
5. sets resource limits (file size, processes, no core dumps);
6. switches to the run's unprivileged uid/gid, without supplementary groups;
7. ``exec``s the kernel command, so the kernel keeps this process's pid.

Only the standard library is imported here: this runs before every kernel. Each step is
taken only when the policy asks for it: the grader decides what the machine allows, and
every value this module has no default for (``REQUIRED``: the private tmpfs's size).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_NOSUID = 2
MS_NODEV = 4
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
REQUIRED = ("tmp_size",)
"""Policy keys with no default here: the grader decides them (grader.run.sandbox)."""
RLIMITS = {
    "fsize": resource.RLIMIT_FSIZE,
    "nproc": resource.RLIMIT_NPROC,
    "core": resource.RLIMIT_CORE,
}


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    libc = _libc()
    result = libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(result, f"mount {target}")


def _join_cgroups(procs_files: list[str]) -> None:
    for procs in procs_files:
        with open(procs, "w") as handle:
            handle.write(str(os.getpid()))


def _build_view(policy: dict) -> None:
    """Private mounts: hide, give fresh tmpfs, bind the exposed paths back.

    Each exposed path is held open (``O_PATH``) before anything is covered, and bound back
    through ``/proc/self/fd``: its original path may lie under a hidden one.
    """
    _check(_libc().unshare(CLONE_NEWNS), "unshare(mount)")
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    held = [(p, os.open(p, os.O_PATH)) for p in policy.get("expose", []) if os.path.exists(p)]
    for path in policy.get("hide", []):
        if os.path.isdir(path):
            _mount("none", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
    size = policy["tmp_size"]
    for path in policy.get("private_tmp", []):
        if os.path.isdir(path):
            _mount("none", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777")
    for path, fd in held:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(path, exist_ok=True)
        elif not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "a").close()
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)


def _set_limits(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        resource.setrlimit(RLIMITS[name], (value, value))


def _drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def enter(policy: dict) -> None:
    """Apply ``policy`` to this process (see the module docstring for the order)."""
    if os.getsid(0) != os.getpid():  # jupyter_client usually started a new session already
        os.setsid()
    _join_cgroups(policy.get("cgroup_procs", []))
    if policy.get("network_namespace"):
        _check(_libc().unshare(CLONE_NEWNET), "unshare(network)")
    if policy.get("mount_namespace"):
        _build_view(policy)
    _set_limits(policy.get("rlimits", {}))
    if policy.get("uid") is not None:
        _drop_privileges(int(policy["uid"]), int(policy["gid"]))
    os.umask(0o077)


def main(argv: list[str]) -> None:
    if "--" not in argv or argv.index("--") != 1:
        sys.exit("usage: python -m grader.run.kernel.launch POLICY.json -- KERNEL COMMAND...")
    with open(argv[0]) as handle:
        policy = json.load(handle)
    missing = [key for key in REQUIRED if key not in policy]
    if missing:
        sys.exit(f"grader.run.kernel.launch: the policy lacks {', '.join(missing)}")
    command = argv[2:]
    if policy.get("uid") is not None:  # e.g. the connection file jupyter_client wrote as root
        for arg in command:
            if arg.startswith(policy["root"] + os.sep) and os.path.isfile(arg):
                os.chown(arg, int(policy["uid"]), int(policy["gid"]))
    enter(policy)
    os.chdir(policy.get("cwd", os.getcwd()))
    os.execve(command[0], command, os.environ.copy())


if __name__ == "__main__":
    main(sys.argv[1:])
