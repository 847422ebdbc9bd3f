"""The course's data where a notebook names it on a Google Drive or Kaggle mount.

Colab notebooks read the dataset from Drive (``drive.mount('/content/drive')``, then
``/content/drive/MyDrive/.../cats_and_dogs_filtered``), Kaggle notebooks from
``/kaggle/input/<dataset>/cats_and_dogs_filtered``. Neither exists while grading. Before
the kernel starts, its code is read for such paths (:func:`named_paths`):

* a string under a mount root (the rubric's ``[data] mounts``, :data:`MOUNT_ROOTS` by
  default) with a component that is the name of a folder or archive the kernel's Keras
  cache holds: served at that path, up to that component;
* a folder under a mount root (its name has no suffix: ``model.keras`` is a file to
  write), in a notebook that names such a folder or archive elsewhere
  (``os.path.join(base_dir, 'cats_and_dogs_filtered')``): served inside it.

Each is bound read-only at that path in the kernel's own view (the policy's ``serve``),
from the kernel's copy of the cache; nothing outside the view changes, and without a
view (no mount namespace) an absolute path is not served. A relative ``drive/...``
(Colab's working folder is ``/content``) becomes a link in the kernel's working folder.
Colab's and Kaggle's own working folders (``/content``, ``/kaggle/working``), where such
notebooks write, are made empty and private in the view when the code names them.
Only the standard library is used.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from grader.run.machine import SYSTEM_VIEW, python_paths

MOUNT_ROOTS = ("/content/drive", "/content/gdrive", "/gdrive", "/kaggle/input")
"""Where notebooks find a course's data on Google Drive and on Kaggle."""
RELATIVE_ROOTS = ("drive", "gdrive")
"""A mount root named relative to Colab's working folder (``drive/MyDrive/...``)."""
LITERAL = re.compile(r"""(['"])([^'"\n{}]{1,300})\1""")
"""A string in the code (f-strings' fields left out: their value is not known here)."""
WORKING_FOLDERS = ("/content", "/kaggle/working")
"""Colab's and Kaggle's working folders: writable there, so made (empty, private, sized as
``/tmp``) in the view of a notebook that names them; ``/content/drive`` is served inside."""
SYSTEM_FOLDERS = tuple(
    sorted({*SYSTEM_VIEW, "/boot", "/dev", "/proc", "/root", "/run", "/tmp", "/var"})
)
"""Folders the kernel's view needs as the machine has them (its programs, libraries,
``/proc``, its own ``/tmp``): a course's mount root may not be one, hold one or sit in one."""
NAME_MAX = 255
"""The longest name one path component may have (Linux's ``NAME_MAX``, in bytes)."""
MAX_SERVED = 16
"""The most paths served to one notebook: each is one read-only bind."""


def served_names(keras_home: Path) -> dict[str, Path]:
    """The folders and archives the kernel's Keras cache holds, by name (links resolved:
    what a bind mounts must be the thing itself)."""
    datasets = keras_home / "datasets"
    names: dict[str, Path] = {}
    for item in sorted(datasets.iterdir()) if datasets.is_dir() else []:
        real = item.resolve()
        if real.is_dir() or (real.is_file() and item.suffix == ".zip"):
            names[item.name] = real
    return names


def system_folder(root: str) -> str | None:
    """The system folder (:data:`SYSTEM_FOLDERS`, or this Python's installation) a mount
    root is, holds or sits in, read as the kernel's view will (``/./etc`` is ``/etc``)."""
    root = "/" + posixpath.normpath(root).lstrip("/")
    for folder in (*SYSTEM_FOLDERS, *python_paths()):
        if _under(root, [folder]) or _under(folder, [root]):
            return folder
    return None


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _clean(text: str, roots: Sequence[str]) -> str | None:
    """``text`` as a normalised path under a mount root (absolute, or relative to Colab's
    working folder), or None: anything else, or a path that climbs out of its root."""
    text = text.strip().rstrip("/")
    parts = text.split("/")
    if any(ord(c) < 32 for c in text) or any(len(p.encode()) > NAME_MAX for p in parts):
        return None  # no file system holds it: the bind would fail the kernel's start
    relative = not text.startswith("/")
    path = posixpath.normpath(text)
    if relative:
        top = path.split("/", 1)[0]
        return path if top in RELATIVE_ROOTS and ".." not in path.split("/") else None
    return path if _under(path, roots) else None


def named_paths(sources: Iterable[str], names: Iterable[str], roots: Sequence[str]) -> list[str]:
    """The paths to serve for code ``sources``: each ends at one of ``names``, under one of
    ``roots`` (or a relative Drive root), none inside another, at most :data:`MAX_SERVED`."""
    names = set(names)
    strings = [m.group(2) for source in sources for m in LITERAL.finditer(source)]
    named = {part for text in strings for part in text.split("/")} & names
    found: set[str] = set()
    for text in strings:
        path = _clean(text, roots)
        if path is None:
            continue
        parts = path.split("/")
        hit = next((i for i, part in enumerate(parts) if part in names), None)
        if hit is not None:
            found.add("/".join(parts[: hit + 1]))
        elif "." not in parts[-1]:  # a base folder the dataset's name is joined to later
            found.update(f"{path}/{name}" for name in named)  # (a file such as x.keras: no)
    served: list[str] = []
    for path in sorted(found, key=lambda p: (p.count("/"), p)):
        if not any(path.startswith(outer + "/") for outer in served):
            served.append(path)
    return served[:MAX_SERVED]


@dataclass(frozen=True)
class Served:
    """What the kernel's view gets for the notebook's data paths."""

    binds: tuple[tuple[str, str], ...] = ()
    """(source, target): the course's data bound read-only at a path the code names."""
    working: tuple[str, ...] = ()
    """Colab's and Kaggle's working folders the code names: made, empty and private."""


def working_folders(sources: Sequence[str]) -> tuple[str, ...]:
    """The platforms' writable working folders (:data:`WORKING_FOLDERS`) the code names."""
    named = [f for f in WORKING_FOLDERS if any(re.search(rf"{f}\b", s) for s in sources)]
    return tuple(named)


def serve(sources: Sequence[str], keras_home: Path, work: Path, roots: Sequence[str]) -> Served:
    """Serve the course's data where ``sources`` name it: relative paths as links in
    ``work`` (made now), absolute ones as binds for the view, beside the working folders
    the code names."""
    names = served_names(keras_home)
    binds: list[tuple[str, str]] = []
    for path in named_paths(sources, names, roots):
        source = names[path.rsplit("/", 1)[-1]]
        if path.startswith("/"):
            binds.append((str(source), path))
            continue
        link = work / path
        if not os.path.lexists(link):
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(source, link)
    return Served(tuple(binds), working_folders(sources))
