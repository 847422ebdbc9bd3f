"""The kernel's file system: an allow-list view, built inside its mount namespace.

A new root (a small tmpfs) holds only what the policy names, each at its own path:

* ``system``: the machine's read-only parts (``/usr``, ``/etc``, ``/sys``, ...), bound
  read-only; a top-level link such as ``/bin -> usr/bin`` is made again as a link;
* ``expose``: this Python installation and the public asset kit, bound read-only;
* ``writable``: the run's own folder, bound as it is;
* ``serve``: the course's data, bound read-only at the Drive or Kaggle paths the
  notebook names (:mod:`grader.run.dataroutes`);
* fresh, empty and private: ``/tmp``, ``/var/tmp``, ``/dev/shm``, ``/run/lock`` (the
  policy's ``private_tmp``), a ``/dev`` with only ``null``, ``zero``, ``full``,
  ``random``, ``urandom`` and ``tty``, and ``/proc`` for the kernel's pid namespace;
* ``hide``: covered by an empty tmpfs where one lies inside what was bound.

Then ``pivot_root`` makes it the root and the host's is detached: last week's
submissions, other users' homes, the grader's store are not in the view at all, rather
than covered one by one. The root itself is remounted read-only.

Only the standard library is used (this runs before every kernel).
"""

from __future__ import annotations

import ctypes
import os

from grader.run.kernel import seccomp

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME = 32, 1024, 2048
MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 4096, 16384, 1 << 18, 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2
LOCKED = {  # statvfs flag -> mount flag: what a bind's read-only remount must keep
    os.ST_RDONLY: MS_RDONLY,
    os.ST_NOSUID: MS_NOSUID,
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: MS_NOATIME,
    os.ST_NODIRATIME: MS_NODIRATIME,
    os.ST_RELATIME: MS_RELATIME,
}
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEVICE_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
}
OLD_ROOT = ".old-root"


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    result = _libc().mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    check(result, f"mount {target}")


def unmount(target: str) -> None:
    """Detach the mount at ``target`` (lazily: what still uses it keeps it until done)."""
    check(_libc().umount2(target.encode(), MNT_DETACH), f"umount {target}")


def _locked_flags(path: str) -> int:
    flags = os.statvfs(path).f_flag
    return sum(ms for st, ms in LOCKED.items() if flags & st)


def mounts_under(target: str) -> list[str]:
    """Mount points at or below ``target`` in this namespace, outermost first."""
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4]
            for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
                point = point.replace(code, char)
            if inside(point, target):
                found.append(point)
    return sorted(set(found), key=len)


def _restrict(target: str, extra: int) -> None:
    """Remount every mount at or below ``target`` with ``extra`` flags, keeping the ones a
    user namespace may not clear (so the remount never fails there)."""
    for point in mounts_under(target):
        flags = MS_REMOUNT | MS_BIND | extra | _locked_flags(point)
        if not flags & (MS_NOATIME | MS_RELATIME):
            flags |= MS_STRICTATIME
        mount("none", point, None, flags)


def _bind(new_root: str, path: str, read_only: bool, at: str | None = None) -> None:
    """``path`` at the same place under ``new_root`` (or at ``at``): a top-level link as a
    link, else bound, read-only with everything mounted inside it; a writable path (the
    run's folder, where the view itself is being built) alone, without devices or set-uid."""
    target = new_root + (at or path)
    if at is None and os.path.islink(path) and os.path.dirname(path) == "/":
        os.symlink(os.readlink(path), target)
        return
    if os.path.isdir(path):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    mount(path, target, None, MS_BIND | (MS_REC if read_only else 0))
    _restrict(target, MS_RDONLY if read_only else MS_NOSUID | MS_NODEV)


def _open_parents(new_root: str, target: str) -> None:
    """Make the missing folders above ``target``, open to the kernel as ``/tmp`` is
    (1777): made here by root, they would refuse the kernel's own files beside the data
    (a model saved to ``/content/drive/MyDrive``, where Colab lets it write)."""
    missing = []
    folder = os.path.dirname(new_root + target)
    while not os.path.exists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for folder in reversed(missing):
        os.mkdir(folder)
        os.chmod(folder, 0o1777)


def inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def covered(hide: list[str], bound: list[str]) -> list[str]:
    """The hidden paths that need covering: those inside something bound into the view
    (anything else of the host is not in it at all)."""
    return [h for h in hide if any(inside(h, b) for b in bound)]


def nested(paths: list[str], bound: list[str]) -> list[str]:
    """What is bound strictly inside ``paths``: bound again once they are covered."""
    return [b for b in bound if any(inside(b, h) and b != h for h in paths)]


def _fresh(target: str, size: str, mode: str = "1777") -> None:
    os.makedirs(target, exist_ok=True)
    mount("none", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode={mode}")


def _devices(new_root: str) -> None:
    _fresh(new_root + "/dev", "64k", "0755")
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            open(f"{new_root}/dev/{name}", "a").close()
            mount(f"/dev/{name}", f"{new_root}/dev/{name}", None, MS_BIND)
    for name, target in DEVICE_LINKS.items():
        os.symlink(target, f"{new_root}/dev/{name}")


def _pivot(new_root: str) -> None:
    arch = seccomp.machine()
    if arch is None:
        raise OSError("pivot_root: no system call number for this machine")
    number = seccomp.BLOCKED[arch]["pivot_root"]
    old = f"{new_root}/{OLD_ROOT}"
    os.mkdir(old)
    check(_libc().syscall(number, new_root.encode(), old.encode()), "pivot_root")
    os.chdir("/")
    unmount(f"/{OLD_ROOT}")
    os.rmdir(f"/{OLD_ROOT}")
    mount("none", "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def build(policy: dict, fresh_proc: bool) -> None:
    """Make the view the policy describes this process's root (see the module docstring),
    in the mount namespace the launcher unshared; ``fresh_proc``: mount a ``/proc`` of
    this pid namespace."""
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    new_root = os.path.join(policy["root"], "view")
    _fresh(new_root, "1m", "0755")
    for path in policy.get("system", []):
        if os.path.lexists(path):
            _bind(new_root, path, read_only=True)
    _devices(new_root)
    for path in policy.get("private_tmp", []):  # before the binds: the run's folder is in /tmp
        _fresh(new_root + path, policy["tmp_size"])
    for path in policy.get("expose", []):
        if os.path.exists(path):
            _bind(new_root, path, read_only=True)
    for path in policy.get("writable", []):
        _bind(new_root, path, read_only=False)
    for source, target in policy.get("serve", []):  # the course's data where code names it
        _open_parents(new_root, target)
        _bind(new_root, source, read_only=True, at=target)
    readable = [*policy.get("system", []), *policy.get("expose", [])]
    writable = policy.get("writable", [])
    hidden = [
        h
        for h in covered(policy.get("hide", []), readable + writable)
        if os.path.isdir(new_root + h)
    ]
    for path in hidden:
        mount("none", new_root + path, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
    for path in nested(hidden, readable):
        _bind(new_root, path, read_only=True)
    for path in nested(hidden, writable):
        _bind(new_root, path, read_only=False)
    if fresh_proc:
        os.makedirs(new_root + "/proc", exist_ok=True)
        mount("proc", new_root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _pivot(new_root)
