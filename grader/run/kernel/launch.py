"""The kernel's launcher: enter the sandbox, drop privileges, then become the kernel.

Run as the kernelspec's ``argv`` (``python -m grader.run.kernel.launch POLICY -- KERNEL...``),
so it is the process jupyter_client starts and waits on. In order it:

1. starts a new session (the kernel leads its own process group);
2. joins the run's cgroups (memory, pids) while it is still root;
3. unshares the policy's namespaces: network (no interface but a loopback that is
   down), mount, IPC (its own SysV and POSIX shared memory and queues), UTS (its own
   host name) and pid; as an ordinary user, inside a new user namespace that maps the
   user to itself alone (no root inside, so the kernel can undo none of it);
4. with a pid namespace, forks its init and stays outside as the process jupyter_client
   knows (:mod:`grader.run.kernel.supervise`); what follows runs in init;
5. makes its root an allow-list view (:mod:`grader.run.kernel.view`): the system's
   read-only parts, the Python installation, the public asset kit and the run's own
   folder; fresh ``/tmp``-like places, ``/dev`` and ``/proc``; nothing else of the host;
6. sets resource limits (file size, processes, no core dumps);
7. switches to the run's unprivileged uid/gid, without supplementary groups;
8. starts the kernel command (init's child with a pid namespace, else by ``exec``, so
   the kernel keeps this process's pid), after ``PR_SET_NO_NEW_PRIVS`` and the seccomp
   filter (:mod:`grader.run.kernel.seccomp`).

Where the policy names ``bubblewrap`` (an ordinary user whose own ``unshare`` the
machine refuses), steps 1, 2 and 6 are taken here and bubblewrap takes 3 to 8
(:mod:`grader.run.kernel.bubblewrap`).

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

from grader.run.kernel import bubblewrap, seccomp, supervise, view

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACES = {
    "network": CLONE_NEWNET,
    "mount": CLONE_NEWNS,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "pid": CLONE_NEWPID,
}
"""The policy's ``namespaces``, by name."""
HOSTNAME = b"grader-kernel"
REQUIRED = ("tmp_size",)
"""Policy keys with no default here: the grader decides them (grader.run.sandbox)."""
RLIMITS = {
    "fsize": resource.RLIMIT_FSIZE,
    "nproc": resource.RLIMIT_NPROC,
    "core": resource.RLIMIT_CORE,
}


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


_check = view.check


def _join_cgroups(procs_files: list[str]) -> None:
    for procs in procs_files:
        with open(procs, "w") as handle:
            handle.write(str(os.getpid()))


def _unshare(policy: dict) -> None:
    """Leave the policy's namespaces; as an ordinary user, inside a user namespace where
    the user is itself (so the kernel, once ``exec``'d, holds no capability there)."""
    flags = 0
    for name in policy.get("namespaces", []):
        flags |= NAMESPACES[name]
    if not flags:
        return
    if not policy.get("user_namespace"):
        _check(_libc().unshare(flags), "unshare")
        return
    uid, gid = os.getuid(), os.getgid()
    _check(_libc().unshare(CLONE_NEWUSER | flags), "unshare(user)")
    for name, text in (
        ("setgroups", "deny"),
        ("uid_map", f"{uid} {uid} 1"),
        ("gid_map", f"{gid} {gid} 1"),
    ):
        with open(f"/proc/self/{name}", "w") as handle:
            handle.write(text)


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
    _unshare(policy)
    namespaces = policy.get("namespaces", [])
    if "pid" in namespaces:
        supervise.enter_pid_namespace()
    if "mount" in namespaces:
        view.build(policy, fresh_proc="pid" in namespaces)
    if "uts" in namespaces:
        _check(_libc().sethostname(HOSTNAME, len(HOSTNAME)), "sethostname")
    _set_limits(policy.get("rlimits", {}))
    if policy.get("uid") is not None:
        _drop_privileges(int(policy["uid"]), int(policy["gid"]))
    if "pid" in namespaces:
        supervise.die_with_launcher()
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
    supervise.GRADER[0] = supervise.watched_grader(policy)
    if policy.get("uid") is not None:  # e.g. the connection file jupyter_client wrote as root
        for arg in command:
            if arg.startswith(policy["root"] + os.sep) and os.path.isfile(arg):
                os.chown(arg, int(policy["uid"]), int(policy["gid"]))
    if policy.get("bubblewrap"):  # bubblewrap makes the sandbox: limits first, inherited
        if os.getsid(0) != os.getpid():
            os.setsid()
        _join_cgroups(policy.get("cgroup_procs", []))
        _set_limits(policy.get("rlimits", {}))
        os.umask(0o077)
        bubblewrap.run(policy, policy["bubblewrap"], command, os.environ.copy())
    enter(policy)
    os.chdir(policy.get("cwd", os.getcwd()))

    environment = os.environ.copy()
    in_pid_namespace = "pid" in policy.get("namespaces", [])
    if in_pid_namespace and supervise.PARENT_VARIABLE in environment:
        environment[supervise.PARENT_VARIABLE] = "1"

    def start() -> None:
        if policy.get("seccomp"):
            seccomp.install()
        os.execve(command[0], command, environment)

    if in_pid_namespace:
        supervise.run_as_init(start)
    start()


if __name__ == "__main__":
    main(sys.argv[1:])
