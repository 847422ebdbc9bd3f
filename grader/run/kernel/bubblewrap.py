"""The kernel's sandbox made by bubblewrap (``bwrap``), where grader's own cannot be.

Some distributions let only known programs create user namespaces (Ubuntu's AppArmor
rule, from 23.10): there the launcher's own ``unshare`` gives an ordinary user no
capability, and bubblewrap, which such a distribution allows, builds the same sandbox
from the same policy. :func:`argv` turns the policy into bubblewrap's options, in the
order :func:`grader.run.kernel.view.build` mounts them:

* network, IPC, UTS and pid namespaces, inside a user namespace that may not make
  another (``--disable-userns``), the host name ``grader-kernel``;
* the system's parts and ``expose`` read-only (submounts too), ``/bin``-like top-level
  links made again as links, the run's own folder writable;
* fresh ``/dev``, ``/proc`` and the policy's private tmpfs places; ``hide`` covered,
  what was bound inside it bound again; the root read-only;
* the seccomp filter (:mod:`grader.run.kernel.seccomp`) handed over as a compiled
  program, installed by bubblewrap just before the kernel starts, with no-new-privs.

:func:`run` starts bubblewrap as the launcher's child in a process group of its own
(so a signal to the launcher's group reaches the kernel once, through the launcher),
killed if the launcher dies; bubblewrap's own init is pid 1 of the kernel's namespace,
the kernel pid 2. bubblewrap forwards no signal, so the launcher sends each one it gets
to the kernel itself, found by its pid in that namespace. It ends as bubblewrap does
(an exit code above 128 is taken for the signal that killed the kernel).

Only the standard library is used (this runs before every kernel).
"""

from __future__ import annotations

import ctypes
import os
import signal
import struct
import sys
from collections.abc import Iterator

from grader.run.kernel import seccomp, supervise
from grader.run.kernel.view import covered, nested

HOSTNAME = "grader-kernel"
KERNEL_IN_NAMESPACE = "2"
"""The kernel's pid in its namespace: bubblewrap's init is 1, the command it starts 2."""
UNSHARE = {"network": "net", "ipc": "ipc", "uts": "uts", "pid": "pid"}
"""The policy's namespaces bubblewrap unshares on request (the mount one it always does)."""
HIDE_SIZE = str(64 * 1024)
TMP_MODE = "1777"


def _size_bytes(size: str) -> str:
    """A ``mount -o size=`` value (``512m``) in bytes, as bubblewrap's ``--size`` takes it."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    unit = units.get(size[-1:].lower(), 1)
    return str(int(size.rstrip("kKmMgG")) * unit)


def _bind(path: str, read_only: bool) -> list[str]:
    """One path at its own place: a top-level link as a link, else bound."""
    if os.path.islink(path) and os.path.dirname(path) == "/":
        return ["--symlink", os.readlink(path), path]
    return ["--ro-bind" if read_only else "--bind", path, path]


def argv(policy: dict, bwrap: str, seccomp_fd: int | None) -> list[str]:
    """bubblewrap's command line for ``policy`` (the command itself follows ``--``)."""
    namespaces = policy.get("namespaces", [])
    args = [bwrap, "--unshare-user", "--disable-userns", "--die-with-parent"]
    args += [f"--unshare-{UNSHARE[name]}" for name in namespaces if name in UNSHARE]
    if "uts" in namespaces:
        args += ["--hostname", HOSTNAME]
    readable = [*policy.get("system", []), *policy.get("expose", [])]
    writable = policy.get("writable", [])
    for path in policy.get("system", []):
        if os.path.lexists(path):
            args += _bind(path, read_only=True)
    args += ["--dev", "/dev"]
    for path in policy.get("private_tmp", []):
        args += ["--perms", TMP_MODE, "--size", _size_bytes(policy["tmp_size"]), "--tmpfs", path]
    for path in policy.get("expose", []):
        if os.path.exists(path):
            args += _bind(path, read_only=True)
    for path in writable:
        args += _bind(path, read_only=False)
    for source, target in policy.get("serve", []):
        args += ["--ro-bind", source, target]
    hidden = [h for h in covered(policy.get("hide", []), readable + writable) if os.path.isdir(h)]
    for path in hidden:
        args += ["--perms", "0755", "--size", HIDE_SIZE, "--tmpfs", path]
    for path in nested(hidden, readable):
        args += _bind(path, read_only=True)
    for path in nested(hidden, writable):
        args += _bind(path, read_only=False)
    if "pid" in namespaces:
        args += ["--proc", "/proc"]
    args += ["--remount-ro", "/", "--chdir", policy.get("cwd", "/")]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    return args


def compiled_filter() -> bytes:
    """The seccomp filter as the kernel takes it: ``struct sock_filter`` one after another."""
    arch = seccomp.machine()
    if arch is None:
        raise OSError("seccomp: no filter for this machine")
    return b"".join(struct.pack("=HBBI", *op) for op in seccomp.program(arch))


def _filter_fd() -> int:
    """A pipe's read end holding the compiled filter (bubblewrap reads it to the end)."""
    program = compiled_filter()
    read, write = os.pipe()
    os.write(write, program)  # far below a pipe's capacity: a few kB
    os.close(write)
    os.set_inheritable(read, True)  # bubblewrap reads it after exec
    return read


def kernel_pid(bwrap_pid: int) -> int | None:
    """The kernel's pid on the host: bubblewrap's descendant whose pid is 2 inside."""
    for pid in descendants(bwrap_pid):
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("NSpid:"):
                        ids = line.split()[1:]
                        if len(ids) > 1 and ids[-1] == KERNEL_IN_NAMESPACE:
                            return pid
        except OSError:
            continue
    return None


def descendants(root: int) -> Iterator[int]:
    """Every live process below ``root`` (read from ``/proc``), nearest first."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    stat = handle.read()
                parent = int(stat[stat.rindex(")") + 2 :].split()[1])
            except (OSError, ValueError):
                continue
            parents.setdefault(parent, []).append(int(entry))
    todo = list(parents.get(root, []))
    while todo:
        pid = todo.pop(0)
        yield pid
        todo += parents.get(pid, [])


def run(policy: dict, bwrap: str, command: list[str], environment: dict[str, str]) -> None:
    """Start ``command`` in bubblewrap's sandbox, forward signals to it, end as it ends."""
    fd = _filter_fd() if policy.get("seccomp") else None
    args = [*argv(policy, bwrap, fd), "--", *command]
    environment = {**environment, supervise.PARENT_VARIABLE: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        try:
            os.setpgid(0, 0)
            ctypes.CDLL(None, use_errno=True).prctl(supervise.PR_SET_PDEATHSIG, signal.SIGKILL)
            os.execve(bwrap, args, environment)
        finally:
            os._exit(127)
    if fd is not None:
        os.close(fd)
    _forward(child)
    status = supervise.wait_unless_orphaned(child, supervise.GRADER[0])
    code = os.waitstatus_to_exitcode(status)
    if 128 < code < 128 + signal.NSIG:  # bubblewrap's way of saying the kernel was killed
        status = code - 128
    supervise.exit_like(status)


def _forward(bwrap_pid: int) -> None:
    def forward(signum: int, _frame: object) -> None:
        target = kernel_pid(bwrap_pid) or bwrap_pid
        try:
            os.kill(target, signum)
        except ProcessLookupError:
            pass

    for signum in supervise.FORWARDED:
        signal.signal(signum, forward)
