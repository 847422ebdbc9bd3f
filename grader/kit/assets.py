"""The offline asset kit, seen from the orchestrating process (no TensorFlow here).

The kit is built once by a child process (:mod:`grader.kit.build`) into
``<cache>/kit-v<KIT_VERSION>/`` and reused. Each kernel gets its own Keras cache
(:func:`prepare_keras_home`): links to the kit's weight files and dataset archives,
plus the folder alias that Keras-2-style code (``dirname(path_to_zip)``) expects.
The holdout split stays outside every kernel's cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from grader.errors import AssetKitError, map_dependency_errors, strerror
from grader.files import lock_file, source_digest

KIT_FORMAT = "1"
BUILDER_SOURCES = ("kit/build.py", "kit/synthetic.py", "kit/tfdscopy.py")


def _kit_version() -> str:
    """The kit's version: its format plus a digest of the code that builds it."""
    return f"{KIT_FORMAT}-{source_digest(*BUILDER_SOURCES)[:10]}"


KIT_VERSION = _kit_version()
CACHE_ENV = "GRADER_CACHE"
MANIFEST = "manifest.json"
KERAS_HOME = "keras_home"
MSG_CACHE = "{cache}: cannot use this cache folder ({detail})"
EXTRACTED_SUFFIX = "_extracted"
CUSTOM_KIT = "custom"
"""The version of a course's own Keras cache (:func:`course_kit`)."""
KIT_SIDE = 160
"""The image size the built kit's base is made for (the kit builder's
``RECALIBRATION_SIDE``): its features tell the synthetic classes apart less well at others
(the best linear readout of the pooled features: 0.97 of the holdout at 160 px, 0.86 at
224, 0.67 at 320)."""
TFDS_FOLDER = "tensorflow_datasets"
"""TFDS's prepared datasets in a Keras cache (the kit's: :mod:`grader.kit.tfdscopy`)."""
DATASET_ALIASES = {"cats_and_dogs.zip": ("cats_and_dogs_filtered.zip",)}
"""Other names notebooks cache the kit's archives under (``get_file`` finds a cached file
by its name, whatever the origin: the tutorial's old and new URLs are both served)."""
MAX_EXTRACTED_BYTES = 256 * 2**20
"""Archives up to this size are laid out extracted in each kernel's own cache."""


@dataclass(frozen=True)
class Kit:
    """Where a kernel's assets come from."""

    keras_home: Path
    """A Keras cache: ``models/`` (weight files) and ``datasets/`` (archives)."""
    holdout: Path | None
    """Hidden holdout images, one sub-folder per class; never shown to a kernel."""
    version: str
    """Kit version, or ``custom`` for a course's own cache (part of cache keys)."""


def default_cache_dir() -> Path:
    """``$GRADER_CACHE``, else ``~/.cache/grader``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "grader"


def kit_dir(cache: Path | None = None) -> Path:
    return (cache or default_cache_dir()) / f"kit-v{KIT_VERSION}"


def ensure_kit(cache: Path | None = None, progress: Callable[[str], None] = print) -> Kit:
    """The built kit, building it first (a few minutes, shown line by line) if missing,
    and adding what a package installed since it was built serves (its TFDS copy)."""
    root = kit_dir(cache)
    with map_dependency_errors(
        "kit", lambda exc: AssetKitError(MSG_CACHE.format(cache=root.parent, detail=strerror(exc)))
    ):
        root.parent.mkdir(parents=True, exist_ok=True)
        lock = open(root.parent / f".kit-v{KIT_VERSION}.lock", "w")  # closed by the block below
    with lock:
        lock_file(lock)  # one builder at a time; others wait, then reuse
        if not (root / MANIFEST).exists():
            progress(f"Building the offline asset kit into {root} (once; a few minutes)")
            _build(root, progress)
        from grader.kit.complete import complete_tfds  # imports this module

        complete_tfds(root, progress)
    return Kit(keras_home=root / KERAS_HOME, holdout=root / "holdout", version=KIT_VERSION)


def _build(root: Path, progress: Callable[[str], None]) -> None:
    staging = Path(tempfile.mkdtemp(prefix="kit-build-", dir=root.parent))
    command = [sys.executable, "-m", "grader.kit.build", str(staging), KIT_VERSION]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0"}
    try:
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        ) as proc:
            assert proc.stdout is not None
            tail: list[str] = []
            for line in proc.stdout:
                tail = (tail + [line.rstrip()])[-20:]
                if line.startswith("[kit]"):
                    progress(line.rstrip())
        if proc.returncode != 0:
            raise AssetKitError("building the asset kit failed:\n" + "\n".join(tail))
        if root.exists():
            shutil.rmtree(root)
        os.replace(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def course_kit(keras_home: Path, holdout: Path | None) -> Kit:
    """A course's own Keras cache named by the rubric."""
    if not (keras_home / "models").is_dir() and not (keras_home / "datasets").is_dir():
        raise AssetKitError(f"{keras_home}: no models/ or datasets/ folder in this Keras cache")
    return Kit(keras_home=keras_home, holdout=holdout, version=CUSTOM_KIT)


def kit_digest(kit: Kit) -> str:
    """Identifies the kit's contents for cache keys."""
    manifest = kit.keras_home.parent / MANIFEST
    text = manifest.read_text() if manifest.exists() else str(kit.keras_home)
    return hashlib.sha256(f"{kit.version}:{text}".encode()).hexdigest()[:16]


PASSABLE, PRIVATE_DIR, PRIVATE_FILE = 0o711, 0o700, 0o600


def seal_for_kernels(cache: Path) -> None:
    """Modes for a machine where kernels get no file view (no namespaces: Gradescope's
    containers): a kernel's uid may pass through ``cache`` and each kit's folder to the
    kit's Keras cache (where :func:`prepare_keras_home`'s links point) and reach nothing
    else there: the holdout, its secret, the reference's figures are root's alone."""
    os.chmod(cache, PASSABLE)
    for entry in cache.iterdir():
        if entry.is_dir() and entry.name == kit_dir(cache).name:
            os.chmod(entry, PASSABLE)
            for item in entry.iterdir():
                if item.name != KERAS_HOME:
                    os.chmod(item, PRIVATE_DIR if item.is_dir() else PRIVATE_FILE)
        elif not entry.is_symlink():
            os.chmod(entry, PRIVATE_DIR if entry.is_dir() else PRIVATE_FILE)


def prepare_keras_home(kit: Kit, dest: Path) -> Path:
    """A kernel's own Keras cache linking to the kit; returns ``dest``. Each archive is
    there under the other names notebooks cache it as (:data:`DATASET_ALIASES`), and
    laid out extracted beside itself as Keras 2's ``get_file`` left it; the cache's
    prepared TFDS datasets (``tensorflow_datasets/``) are linked, for ``tfds.load``."""
    for sub in ("models", "datasets"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
        source = kit.keras_home / sub
        if not source.is_dir():
            continue
        for item in source.iterdir():
            if item.is_file():
                os.symlink(item.resolve(), dest / sub / item.name)
    prepared = kit.keras_home / TFDS_FOLDER  # TFDS's prepared datasets (read-only)
    if prepared.is_dir() and not os.path.lexists(dest / TFDS_FOLDER):
        os.symlink(prepared.resolve(), dest / TFDS_FOLDER)
    for archive in list((dest / "datasets").glob("*.zip")):
        for alias in DATASET_ALIASES.get(archive.name, ()):
            if not os.path.lexists(archive.parent / alias):
                os.symlink(archive.resolve(), archive.parent / alias)
        _keras2_layout(archive)
    return dest


def _keras2_layout(archive: Path) -> None:
    """Keras 3 extracts ``name.zip`` into ``name_extracted/``; Keras 2 code looks beside
    the archive for its folders, whichever name it cached it as: a small archive is
    extracted there (the kernel's own copy), a large one's folders link to where Keras 3
    puts them for this name."""
    try:
        with zipfile.ZipFile(archive) as zf:
            tops = {n.split("/", 1)[0] for n in zf.namelist() if "/" in n}
            if archive.stat().st_size <= MAX_EXTRACTED_BYTES:
                zf.extractall(archive.parent, [n for n in zf.namelist() if "/" in n])
                return
    except zipfile.BadZipFile:
        return
    extracted = archive.with_name(archive.name.split(".")[0] + EXTRACTED_SUFFIX)
    for top in tops:
        alias = archive.parent / top
        if not alias.exists() and not alias.is_symlink():
            os.symlink(Path(extracted.name) / top, alias)
