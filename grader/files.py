"""Files grader writes and keeps about itself: atomic writes, zips, digests of its source.

:func:`atomic_path` is how every output, cache record and extracted file is written:
readers see the old file or the new one, never half of one, even when grader is killed
mid-write. :func:`atomic_write_text` and :func:`atomic_write_bytes` are its two usual
forms.

Caches key on the code that produced them (the results store on the whole package, the
reference's figures on the measuring code, the asset kit on its builder), so a digest
must cover every file of a package, subpackages included.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import zipfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO

PACKAGE = Path(__file__).parent
ENCODING = "utf-8"
TEMPORARY_SUFFIX = ".part"
"""A file being written ends so, beside its final name (hidden: it starts with a dot)."""


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; when the block ends without an error it
    is flushed to disk and replaces ``path`` (:func:`os.replace`), else it is removed.

    The folder is created if missing. Use it directly for writers that want a path
    (a spreadsheet engine, ``nbformat.write``), else :func:`atomic_write_text`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as temporary, open(temporary, "w", encoding=ENCODING, newline="") as f:
        f.write(text)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def source_digest(*parts: str) -> str:
    """A digest of grader's own source files: ``parts`` are paths relative to the package
    (a module file or a folder, whose ``.py`` files are all taken, at any depth); none
    means the whole package. Each file counts with its path, so a move changes it too."""
    digest = hashlib.sha256()
    for path in _source_files(parts or (".",)):
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _source_files(parts: tuple[str, ...]) -> list[Path]:
    found: set[Path] = set()
    for part in parts:
        path = (PACKAGE / part).resolve()
        if path.is_dir():
            found.update(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
        elif path.is_file():
            found.add(path)
        else:
            raise FileNotFoundError(f"grader has no source at {part}")
    return sorted(found)


def lock_file(handle: IO[str], wait: bool = True) -> bool:
    """Hold an exclusive lock on an open file until it is closed: ``flock`` where there
    is one (Linux, macOS), ``msvcrt.locking`` on Windows. False when ``wait`` is off and
    another process holds it."""
    try:
        import fcntl
    except ModuleNotFoundError:  # Windows
        import msvcrt

        mode = msvcrt.LK_LOCK if wait else msvcrt.LK_NBLCK  # type: ignore[attr-defined]
        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), mode, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


ZIP_DATE = (2026, 1, 1, 0, 0, 0)
"""Every entry's date in a zip grader writes: the same contents give the same zip."""
EXECUTABLE_MODE, REGULAR_MODE = 0o100755, 0o100644


def zip_bytes(entries: dict[str, bytes], executable: Collection[str] = ()) -> bytes:
    """A deflated zip of ``entries`` (name -> bytes) in name order, every entry dated
    :data:`ZIP_DATE`, the names in ``executable`` marked executable (unzip and
    Gradescope keep the mode), the rest plain files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.external_attr = (EXECUTABLE_MODE if name in executable else REGULAR_MODE) << 16
            bundle.writestr(info, entries[name], zipfile.ZIP_DEFLATED)
    return buffer.getvalue()
