"""Folder trees a kernel wrote, walked without recursion: removed, or given an owner.

A kernel can leave anything in its run folder: a tree thousands of folders deep
(:func:`shutil.rmtree` and :func:`os.walk` recurse, and fail with ``RecursionError``),
paths longer than the system allows, links, folders it made unreadable. :func:`remove_tree`
and :func:`chown_tree` walk such a tree with an explicit stack, holding one folder open
at a time and acting relative to it (any depth, any path length), never following a
link, and stopping after :data:`MAX_ENTRIES` entries. Neither raises: each says why a
tree could not be handled, and the caller reports that folder and goes on.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_ENTRIES = 2_000_000
"""The most entries one tree is walked for (a kernel's disk cap allows fewer)."""
MSG_TOO_MANY = "more than {limit} entries"
MSG_MOVED = "a folder in it moved while it was being removed"

Files = Callable[[int, list[str]], None]
"""Called with an open folder and the names of what it holds that is not a folder."""
Leave = Callable[[int, str], None]
"""Called with an open folder and the name of a subfolder walked to its end."""


class TreeTooLarge(OSError):
    """The tree holds more than the walk's bound."""


class TreeMoved(OSError):
    """A folder of the tree moved while it was walked (climbing back would leave it)."""


def remove_tree(root: Path, limit: int | None = None) -> str | None:
    """Remove ``root`` and everything under it; None once it is gone, else why not
    (``limit``: the most entries walked, :data:`MAX_ENTRIES` by default)."""
    limit = limit or MAX_ENTRIES
    try:
        if not stat.S_ISDIR(os.lstat(root).st_mode):
            os.unlink(root)
            return None
        _walk_path(root, _unlink_all, _rmdir, limit)
        os.rmdir(root)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


def chown_tree(root: Path, uid: int, limit: int = MAX_ENTRIES) -> str | None:
    """Make ``uid`` (and its group) own ``root`` and everything under it, links
    themselves included; None when done, else why not."""

    def files(folder: int, names: list[str]) -> None:
        for name in names:
            os.chown(name, uid, uid, dir_fd=folder, follow_symlinks=False)

    def leave(folder: int, name: str) -> None:
        os.chown(name, uid, uid, dir_fd=folder, follow_symlinks=False)

    try:
        os.lchown(root, uid, uid)
        if stat.S_ISDIR(os.lstat(root).st_mode):
            _walk_path(root, files, leave, limit)
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


def _walk_path(root: Path, files: Files, leave: Leave, limit: int) -> None:
    try:
        fd = os.open(root, DIR_FLAGS)
    except PermissionError:
        os.chmod(root, stat.S_IRWXU)
        fd = os.open(root, DIR_FLAGS)
    try:
        walk(fd, files, leave, limit)
    finally:
        os.close(fd)


def walk(fd: int, files: Files, leave: Leave, limit: int = MAX_ENTRIES) -> None:
    """Walk the tree of the open folder ``fd`` (left open), depth first, without
    recursion: ``files`` for each folder's other entries, ``leave`` after each subfolder."""
    current = os.dup(fd)
    levels: list[tuple[str, list[str], tuple[int, int]]] = []
    try:
        pending, seen = _listing(current, files, 0, limit)
        while pending or levels:
            if pending:
                name = pending.pop()
                child = _open_dir(current, name)
                here = _identity(current)
                os.close(current)
                current = child
                levels.append((name, pending, here))
                pending, seen = _listing(current, files, seen, limit)
                continue
            name, pending, was = levels.pop()
            parent = os.open("..", DIR_FLAGS, dir_fd=current)
            os.close(current)
            current = parent
            if _identity(current) != was:  # moved meanwhile: ".." is not where it came from
                raise TreeMoved(MSG_MOVED)
            leave(current, name)
    finally:
        os.close(current)


def _identity(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def _listing(folder: int, files: Files, seen: int, limit: int) -> tuple[list[str], int]:
    """The folder's subfolders (its other entries handed to ``files``), and the count."""
    folders, others = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            (folders if entry.is_dir(follow_symlinks=False) else others).append(entry.name)
    seen += len(folders) + len(others)
    if seen > limit:
        raise TreeTooLarge(MSG_TOO_MANY.format(limit=limit))
    files(folder, others)
    return folders, seen


def _open_dir(parent: int, name: str) -> int:
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except PermissionError:  # a folder its owner made unreadable: ours to open again
        os.chmod(name, stat.S_IRWXU, dir_fd=parent)
        return os.open(name, DIR_FLAGS, dir_fd=parent)


def _unlink_all(folder: int, names: list[str]) -> None:
    for name in names:
        try:
            os.unlink(name, dir_fd=folder)
        except PermissionError:  # a folder its owner made read-only
            with contextlib.suppress(OSError):
                os.fchmod(folder, stat.S_IRWXU)
            os.unlink(name, dir_fd=folder)


def _rmdir(folder: int, name: str) -> None:
    try:
        os.rmdir(name, dir_fd=folder)
    except PermissionError:
        with contextlib.suppress(OSError):
            os.fchmod(folder, stat.S_IRWXU)
        os.rmdir(name, dir_fd=folder)
