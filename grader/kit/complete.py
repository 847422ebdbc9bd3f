"""A kit built before ``tensorflow-datasets`` was installed, completed once it is.

The kit builder writes the TFDS copy of the images (:mod:`grader.kit.tfdscopy`) only
where TFDS is installed. A course that adds the ``course`` extra after its first grading
keeps its kit, so ``tfds.load`` would still find nothing. :func:`complete_tfds` (called
by :func:`grader.kit.assets.ensure_kit`) notices, and writes the copy into the kit in a
process of its own (``python -m grader.kit.complete KIT``: it imports TensorFlow), a few
seconds. What it did goes into ``tfds.json`` beside the manifest, which stays as built:
the kit's digest, and with it every stored reference figure, does not change (they never
read TFDS's copy). It runs once per installed TFDS version, whether it wrote the copy or
not, so a failing TFDS costs one attempt, not one per grading.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from grader.kit.assets import KERAS_HOME, MANIFEST, TFDS_FOLDER

TFDS_RECORD = "tfds.json"
TFDS_DISTRIBUTION = "tensorflow-datasets"
ARCHIVE = Path(KERAS_HOME) / "datasets" / "cats_and_dogs.zip"
"""The kit's images (as the kit builder writes them)."""
TIMEOUT_S = 600
MSG_ADDING = "Adding the TFDS copy of the images to the kit (tensorflow-datasets {version})"
MSG_READ_ONLY = (
    "{root} is read-only: its TFDS copy cannot be added; tfds.load will not find the data."
)


def installed_tfds() -> str | None:
    """The installed TFDS's version, read from its metadata (nothing is imported)."""
    try:
        return importlib.metadata.version(TFDS_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def needs_tfds(root: Path, version: str | None) -> bool:
    """Whether the kit at ``root`` lacks a TFDS copy that ``version`` could write now."""
    if version is None or (root / KERAS_HOME / TFDS_FOLDER).is_dir():
        return False
    try:
        done = json.loads((root / TFDS_RECORD).read_text())
    except (OSError, ValueError):
        done = {}
    return not (isinstance(done, dict) and done.get("tfds_version") == version)


def complete_tfds(root: Path, progress: Callable[[str], None] = print) -> int | None:
    """Write the kit's TFDS copy where it is missing and TFDS is now installed; returns
    how many images it wrote (None: nothing to do)."""
    version = installed_tfds()
    if not needs_tfds(root, version):
        return None
    if not os.access(root, os.W_OK):  # a kit shared read-only: grading goes on without it
        progress(MSG_READ_ONLY.format(root=root))
        return None
    progress(MSG_ADDING.format(version=version))
    command = [sys.executable, "-m", "grader.kit.complete", str(root)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, check=False
        )
        lines = done.stdout.strip().splitlines()
        written = int(lines[-1]) if done.returncode == 0 and lines else 0
        detail = "" if written else (done.stderr or done.stdout)[-2000:]
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        written, detail = 0, f"{type(exc).__name__}: {exc}"
    record = {"tfds_version": version, "written": written, "detail": detail}
    try:
        (root / TFDS_RECORD).write_text(json.dumps(record, indent=2))
    except OSError as exc:  # a full disk: tried again at the next start
        progress(f"The kit's TFDS record could not be written ({exc.strerror or exc}).")
    if not written:
        progress("The TFDS copy could not be written; tfds.load will not find the data.")
    return written


def _manifest_ok(root: Path) -> bool:
    return (root / MANIFEST).is_file() and (root / ARCHIVE).is_file()


def main(argv: list[str]) -> int:
    root = Path(argv[0])
    if not _manifest_ok(root):
        print(f"{root}: not a built kit", file=sys.stderr)
        return 2
    from grader.kit.tfdscopy import write_tfds_copy  # imports TensorFlow and TFDS

    staging = Path(tempfile.mkdtemp(prefix=".tfds-", dir=root))  # all or nothing in the kit
    try:
        written = write_tfds_copy(root / ARCHIVE, staging)
        if written:
            os.replace(staging / TFDS_FOLDER, root / KERAS_HOME / TFDS_FOLDER)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
