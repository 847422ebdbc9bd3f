"""``grader gradescope build``: the autograder zip Gradescope builds its image from.

The zip's root is what Gradescope unpacks into ``/autograder/source``::

    setup.sh            installs Python, TensorFlow for CPU and grader, then runs
                        ``grader gradescope setup`` (the kit and the reference's figures)
    run_autograder      ``grader gradescope run``: grades /autograder/submission
    bundle.json         the mode, the leaderboard choice, the grader that built it
    rubric/rubric.toml  the course rubric, its reference notebook pointing into the zip
    reference/<name>    the reference solution (root-only in the image)
    package/            grader's own source, installed by setup.sh

The course's own data (``[data] keras_home`` / ``holdout``) is not copied: those paths
must exist in the image (add their download to ``setup.sh``); the build says so.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import grader
from grader import __version__
from grader.errors import UsageError
from grader.files import atomic_write_bytes, zip_bytes
from grader.rubric.schema import Rubric, load_rubric

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

SETUP, RUN = "setup.sh", "run_autograder"
BUNDLE_FILE = "bundle.json"
RUBRIC_FILE = "rubric/rubric.toml"
REFERENCE_DIR = "reference"
PACKAGE_DIR = "package"
PROJECT_FILES = ("pyproject.toml", "README.md")
"""What ``pip install package/`` needs beside the ``grader`` folder."""
SKIPPED = re.compile(r"(^|/)(__pycache__|\.)")
REFERENCE_LINE = re.compile(r"""(?m)^(\s*notebook\s*=\s*)(["']).*?\2""")
SECTION = re.compile(r"(?m)^\s*\[[^\]]+\]\s*$")
MSG_NOT_A_CHECKOUT = "{path}: grader's source is not here (build the bundle from a checkout)"
MSG_MODE = "mode {mode!r}: the autograder grades in quick or full mode"
MSG_COURSE_DATA = (
    "the rubric names [data] {what} = {path!r}: it must exist there in the image (a relative"
    " path from /autograder/source/rubric/); add its download to setup.sh"
)
MSG_OUTSIDE = "the bundled rubric's reference notebook is outside the bundle: {path}"
MODES = ("quick", "full")


@dataclass
class BundleSettings:
    """``bundle.json``: how the autograder grades, and what built it."""

    mode: str
    """``quick`` or ``full``: what ``grader grade`` would be run with."""
    leaderboard: bool = False
    """Whether results.json carries the measured accuracy as a leaderboard entry."""
    grader: str = __version__
    """The grader version that built the bundle."""
    rubric: str = RUBRIC_FILE
    """The rubric, relative to the bundle's root."""


def read_settings(source: Path) -> BundleSettings:
    """``source/bundle.json`` read back (a bundle's own file: its keys are ours)."""
    data = json.loads((source / BUNDLE_FILE).read_text(encoding="utf-8"))
    return BundleSettings(**data)


def build_bundle(
    rubric_path: Path,
    target: Path,
    mode: str,
    leaderboard: bool,
    say: Callable[[str], None] = print,
) -> Path:
    """Write the autograder zip at ``target`` (see the module's docstring); the rubric in
    it is loaded back from an unpacked copy before the zip is kept."""
    if mode not in MODES:
        raise UsageError(MSG_MODE.format(mode=mode))
    rubric = load_rubric(rubric_path)
    settings = json.dumps(asdict(BundleSettings(mode, leaderboard)), indent=1) + "\n"
    entries = {
        BUNDLE_FILE: settings.encode(),
        **_scripts(),
        **_package(),
        **_rubric_entries(rubric),
    }
    data = tomllib.loads(rubric.path.read_text(encoding="utf-8")).get("data", {})
    for what in ("keras_home", "holdout"):
        if data.get(what):
            say(MSG_COURSE_DATA.format(what=what, path=data[what]))
    data = zip_bytes(entries, executable=(SETUP, RUN))
    _verify(data)
    atomic_write_bytes(target, data)
    return target


def _scripts() -> dict[str, bytes]:
    here = Path(__file__).parent
    return {name: (here / name).read_bytes() for name in (SETUP, RUN)}


def _package() -> dict[str, bytes]:
    package = Path(grader.__file__).parent
    project = package.parent
    missing = [name for name in PROJECT_FILES if not (project / name).is_file()]
    if missing:
        raise UsageError(MSG_NOT_A_CHECKOUT.format(path=project / missing[0]))
    entries = {f"{PACKAGE_DIR}/{name}": (project / name).read_bytes() for name in PROJECT_FILES}
    for path in sorted(package.rglob("*")):
        relative = path.relative_to(project).as_posix()
        if path.is_file() and not SKIPPED.search(relative) and path.suffix != ".pyc":
            entries[f"{PACKAGE_DIR}/{relative}"] = path.read_bytes()
    return entries


def _rubric_entries(rubric: Rubric) -> dict[str, bytes]:
    text = rubric.path.read_text(encoding="utf-8")
    entries = {}
    if rubric.reference_notebook is not None:
        name = rubric.reference_notebook.name
        entries[f"{REFERENCE_DIR}/{name}"] = rubric.reference_notebook.read_bytes()
        text = _point_reference(text, f"../{REFERENCE_DIR}/{name}")
    entries[RUBRIC_FILE] = text.encode("utf-8")
    return entries


def _point_reference(text: str, notebook: str) -> str:
    """``text`` with ``[reference] notebook`` set to ``notebook`` (only in that table)."""
    start = text.index("[reference]")
    following = SECTION.search(text, start + len("[reference]"))
    end = following.start() if following else len(text)
    table = REFERENCE_LINE.sub(lambda m: f"{m[1]}{json.dumps(notebook)}", text[start:end], 1)
    return text[:start] + table + text[end:]


def _verify(data: bytes) -> None:
    """The rubric loads from an unpacked copy, its reference notebook the bundle's."""
    with tempfile.TemporaryDirectory(prefix="grader-bundle-") as folder:
        with zipfile.ZipFile(io.BytesIO(data)) as bundle:
            bundle.extractall(folder)
        settings = read_settings(Path(folder))
        rubric = load_rubric(Path(folder) / settings.rubric)
        notebook = rubric.reference_notebook
        if notebook is not None and not notebook.resolve().is_relative_to(Path(folder).resolve()):
            raise UsageError(MSG_OUTSIDE.format(path=notebook))
