"""Zip archives whose entry names claim UTF-8 and are not: read as the zip standard's CP437.

An entry's name is bytes; a flag (bit 11) says they are UTF-8, else they are CP437.
Some tools set the flag over Latin-1 or CP437 bytes, and :class:`zipfile.ZipFile`
then refuses the whole archive (``UnicodeDecodeError``), so one student's file name
would stop a class. :func:`open_zip` opens such an archive through
:class:`FlagsCleared`, a read-only view of the file in which the flag is cleared for
exactly those entries (in the central directory and in each entry's own header): their
names read as CP437, printable, and every other entry is untouched.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path
from typing import BinaryIO

UTF8_FLAG = 0x800
EOCD = b"PK\x05\x06"
CENTRAL = b"PK\x01\x02"
EOCD_SEARCH = 22 + 65_535
"""The end record and the longest comment it can carry."""
CENTRAL_HEADER, LOCAL_FLAGS = 46, 6


def open_zip(path: Path) -> zipfile.ZipFile:
    """The archive at ``path``; one whose names wrongly claim UTF-8 read as CP437.

    Raises what :class:`zipfile.ZipFile` raises for an archive it cannot read at all."""
    try:
        return zipfile.ZipFile(path)
    except UnicodeDecodeError:
        handle = open(path, "rb")  # noqa: SIM115 - the ZipFile closes it
        patches = misflagged(handle)
        if not patches:
            handle.close()
            raise
        return zipfile.ZipFile(FlagsCleared(handle, patches))


def misflagged(handle: BinaryIO) -> dict[int, int]:
    """The byte offsets to change, and their new value, so that each entry whose name
    claims UTF-8 and is not says CP437 (empty: none found, or not an archive read here)."""
    handle.seek(0, io.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - EOCD_SEARCH))
    tail = handle.read()
    end = tail.rfind(EOCD)
    if end < 0 or len(tail) < end + 22:
        return {}
    cd_size, cd_offset = struct.unpack("<II", tail[end + 12 : end + 20])
    start = size - len(tail) + end - cd_size
    handle.seek(start)
    return _patches(handle.read(cd_size), start, start - cd_offset)


def _patches(directory: bytes, start: int, concat: int) -> dict[int, int]:
    patches: dict[int, int] = {}
    at = 0
    while directory[at : at + 4] == CENTRAL and at + CENTRAL_HEADER <= len(directory):
        (flags,) = struct.unpack("<H", directory[at + 8 : at + 10])
        lengths = struct.unpack("<HHH", directory[at + 28 : at + 34])
        (local,) = struct.unpack("<I", directory[at + 42 : at + 46])
        name = directory[at + CENTRAL_HEADER : at + CENTRAL_HEADER + lengths[0]]
        if flags & UTF8_FLAG and not _utf8(name):
            high = (flags & ~UTF8_FLAG) >> 8
            patches[start + at + 9] = high
            patches[local + concat + LOCAL_FLAGS + 1] = high
        at += CENTRAL_HEADER + sum(lengths)
    return patches


def _utf8(name: bytes) -> bool:
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class FlagsCleared(io.RawIOBase):
    """A read-only, seekable view of ``handle`` with single bytes replaced (``patches``)."""

    def __init__(self, handle: BinaryIO, patches: dict[int, int]) -> None:
        super().__init__()
        self._handle = handle
        self._patches = patches

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        at = self._handle.tell()
        data = self._handle.read(len(buffer))
        view = bytearray(data)
        for offset, value in self._patches.items():
            if at <= offset < at + len(view):
                view[offset - at] = value
        buffer[: len(view)] = view
        return len(view)

    def close(self) -> None:
        self._handle.close()
        super().close()
