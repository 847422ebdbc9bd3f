"""Files grader keeps about itself: digests of its own source.

Caches key on the code that produced them (the results store on the whole package, the
reference's figures on the measuring code, the asset kit on its builder), so a digest
must cover every file of a package, subpackages included.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE = Path(__file__).parent


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
