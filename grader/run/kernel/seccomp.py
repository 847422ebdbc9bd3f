"""A seccomp filter for the kernel: system calls that no notebook needs are refused.

Installed by :mod:`grader.run.kernel.launch` just before it ``exec``s the kernel, after
``PR_SET_NO_NEW_PRIVS`` (which the filter requires of an unprivileged process, and which
keeps a set-uid program from giving privileges back). Inherited by every process the
kernel starts and never removable. Refused with ``EPERM``:

* leaving or changing the sandbox: ``unshare``, ``setns``, ``clone`` with a namespace
  flag, ``mount`` and the new mount API, ``umount2``, ``pivot_root``;
* kernel attack surface a notebook has no use for: the keyrings (``keyctl``,
  ``add_key``, ``request_key``), ``bpf``, ``perf_event_open``, ``io_uring_*``,
  ``userfaultfd``;
* other processes and the machine: ``ptrace``, ``open_by_handle_at``,
  ``process_vm_readv``/``writev``, ``kexec_*``, module loading, ``swapon``/``swapoff``,
  ``reboot``, ``acct``.

``clone3`` is refused with ``ENOSYS``: its flags sit in memory a filter cannot read, and
the C library then falls back to ``clone``, whose flags it can. Threads, ``fork`` and
``subprocess`` are untouched; TensorFlow trains and matplotlib plots under it.

Only the standard library is used (this runs before every kernel). Architectures
other than x86-64 and AArch64 get no filter, and :func:`install` says so.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_BIT = 0x40000000
"""x86-64's x32 system calls carry this bit: all refused (no notebook uses them)."""

BLOCKED = {
    "x86_64": {
        "unshare": 272,
        "setns": 308,
        "mount": 165,
        "umount2": 166,
        "pivot_root": 155,
        "keyctl": 250,
        "add_key": 248,
        "request_key": 249,
        "bpf": 321,
        "perf_event_open": 298,
        "userfaultfd": 323,
        "ptrace": 101,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
        "kexec_load": 246,
        "kexec_file_load": 320,
        "init_module": 175,
        "finit_module": 313,
        "delete_module": 176,
        "open_by_handle_at": 304,
        "swapon": 167,
        "swapoff": 168,
        "reboot": 169,
        "acct": 163,
    },
    "aarch64": {
        "unshare": 97,
        "setns": 268,
        "mount": 40,
        "umount2": 39,
        "pivot_root": 41,
        "keyctl": 219,
        "add_key": 217,
        "request_key": 218,
        "bpf": 280,
        "perf_event_open": 241,
        "userfaultfd": 282,
        "ptrace": 117,
        "process_vm_readv": 270,
        "process_vm_writev": 271,
        "kexec_load": 104,
        "kexec_file_load": 294,
        "init_module": 105,
        "finit_module": 273,
        "delete_module": 106,
        "open_by_handle_at": 265,
        "swapon": 224,
        "swapoff": 225,
        "reboot": 142,
        "acct": 89,
    },
}
"""Refused everywhere, by number (the numbers differ by architecture)."""
COMMON = {
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
}
"""Newer calls, numbered alike on every architecture."""
CLONE = {"x86_64": 56, "aarch64": 220}
CLONE3 = 435
NAMESPACE_FLAGS = 0x7E020080
"""``CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME``."""

LD_W_ABS, JEQ_K, JSET_K, JGE_K, RET_K = 0x20, 0x15, 0x45, 0x35, 0x06
ALLOW = 0x7FFF0000
KILL_PROCESS = 0x80000000
OFFSET_NR, OFFSET_ARCH, OFFSET_ARG0 = 0, 4, 16
"""Where ``struct seccomp_data`` keeps the call's number, architecture and first
argument's low 32 bits (little-endian, as both architectures run here)."""


def refuse(code: int) -> int:
    """The filter's answer that fails the call with ``code`` (an errno)."""
    return 0x00050000 | code


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> tuple[int, int, int, int]:
    return (code, jt, jf, k)


def program(arch: str) -> list[tuple[int, int, int, int]]:
    """The filter for ``arch`` as BPF instructions ``(code, jt, jf, k)``."""
    blocked = sorted({**BLOCKED[arch], **COMMON}.values())
    ops = [
        _op(LD_W_ABS, OFFSET_ARCH),
        _op(JEQ_K, AUDIT_ARCH[arch], jt=1),
        _op(RET_K, KILL_PROCESS),  # another ABI's numbers mean other calls
        _op(LD_W_ABS, OFFSET_NR),
    ]
    if arch == "x86_64":
        ops += [_op(JGE_K, X32_BIT, jf=1), _op(RET_K, refuse(errno.EPERM))]
    ops += [_op(JEQ_K, CLONE3, jf=1), _op(RET_K, refuse(errno.ENOSYS))]
    ops += [_op(JEQ_K, CLONE[arch], jf=4), _op(LD_W_ABS, OFFSET_ARG0)]
    ops += [_op(JSET_K, NAMESPACE_FLAGS, jt=0, jf=1), _op(RET_K, refuse(errno.EPERM))]
    ops += [_op(RET_K, ALLOW)]
    for number in blocked:
        ops += [_op(JEQ_K, number, jf=1), _op(RET_K, refuse(errno.EPERM))]
    ops += [_op(RET_K, ALLOW)]
    return ops


def machine() -> str | None:
    """This machine's architecture when the filter knows it, else None."""
    arch = platform.machine().lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
    return arch if arch in AUDIT_ARCH else None


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def no_new_privs() -> None:
    """Set ``PR_SET_NO_NEW_PRIVS``: no exec gives this process tree more privileges."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl(NO_NEW_PRIVS): {os.strerror(code)}")


def install() -> str | None:
    """Set no-new-privs and install the filter in this process; the architecture's name,
    or None when there is no filter for it (no-new-privs is set either way)."""
    no_new_privs()
    arch = machine()
    if arch is None:
        return None
    ops = program(arch)
    raw = b"".join(struct.pack("<HBBI", *op) for op in ops)
    fprog = SockFprog(len(ops), raw)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl(SECCOMP): {os.strerror(code)}")
    return arch
