"""``grader publish student``: what an instructor hands to students, so that they can
check their notebooks as grading will, without the reference, the holdout or the
hidden checks. :func:`publish_student` writes ``DIR``:

====================  ===================================================================
``rubric.toml``       the visible checks; the reference's figures per mode a student can
                      run (``check``, ``full``) with each seed's run (the band grading
                      uses); ``hidden_checks``: how many checks grading adds (unnamed)
``README.md``         for students: install, the check commands, what accuracy is
                      measured on, the figures and their spread, the exit codes
``published.json``    the same figures, for a course's scripts
``kit/keras_home``    the asset kit the figures were measured with: the notebook's
                      downloads come from it (no kit build on a student's machine)
``kit/practice_holdout``  the images a student's model is measured on: drawn from a
                      public seed, never the course's hidden holdout
====================  ===================================================================

The reference runs here, under the student rubric's own caps, on the bundle's kit and
practice holdout, so that a student's figure is compared with one measured on the same
images. Nothing in ``DIR`` names the reference notebook, the course holdout, the hidden
checks or the course's own data; :func:`_verify` reads the written folder back to hold
that.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from grader.batch.calibrate import Calibration, calibrate
from grader.checks.accuracy import CHECK_ACCURACY
from grader.errors import AssetKitError, UsageError
from grader.kit.assets import MANIFEST, ensure_kit
from grader.publish.readme import student_readme
from grader.publish.tomlwrite import dumps
from grader.rubric.limits import STUDENT_MODES
from grader.rubric.schema import Rubric, load_rubric

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RUBRIC_NAME, README_NAME, FIGURES_NAME = "rubric.toml", "README.md", "published.json"
KIT_DIR, KERAS_DIR, PRACTICE_DIR = "kit", "kit/keras_home", "kit/practice_holdout"
KEPT_SECTIONS = ("limits", "quick", "check")
"""Sections copied as they are; ``[late]``, ``[intake]`` and ``canvas_id`` are the
instructor's, and ``[reference]`` and ``[data]`` are written anew."""
HEADER = (
    "The rubric for checking your own notebook: grader check NOTEBOOK --rubric rubric.toml\n"
    "Written by grader publish student; see README.md."
)
MSG_NO_REFERENCE = "publishing needs the rubric's reference notebook ([reference] notebook)"
MSG_COURSE_DATA = (
    "the rubric names the course's own Keras cache ([data] keras_home): publishing copies "
    "grader's asset kit to students, and cannot publish a course's data"
)
MSG_BARE_PACKAGE = (
    "--package {package!r}: the name grader on PyPI is another project; give the course's "
    "address for this one (a URL, a wheel's path, or a name @ URL)"
)
BARE_PACKAGE = re.compile(r"\s*grader\s*(\[[^\]]*\])?\s*", re.IGNORECASE)
MSG_NOT_EMPTY = "{path}: the folder exists and is not empty; give a new one"
MSG_LEAK = "{path}: the student folder would name {what}; nothing was published"
MSG_NO_FIGURE = "the reference measured no accuracy in {mode} mode; nothing was published"
PRIVATE_MANIFEST_KEYS = ("holdout_fingerprint", "threads", "seconds")
"""The kit manifest's keys students do not get: the fingerprint of the course's holdout
secret would let a guess at it be tested offline."""
HIDDEN_TEXT_KEYS = ("title", "hint", "question")
HIDDEN_LIST_KEYS = ("aliases", "concepts")


@dataclass(frozen=True)
class PublishedMode:
    """The reference's figures in one mode, as a student's check compares with them."""

    mode: str
    accuracy: float
    """The reference's figure (the median of its runs)."""
    final: list[float]
    """Each run's figure after its last ``fit``."""
    head: list[float] | None
    """Each run's figure after its first ``fit`` (None: not every run had one)."""
    images: int
    """Practice-holdout images each figure was measured on."""
    full_points_from: dict[str, float]
    """Per basis (``head``: no fine-tuning, ``final``), where full points start."""


@dataclass(frozen=True)
class StudentBundle:
    """What :func:`publish_student` wrote."""

    folder: Path
    modes: list[PublishedMode]
    hidden: int
    """Checks grading runs that the bundle leaves out (counted, never named)."""
    kit_mb: float
    """Size of the copied asset kit."""


def publish_student(
    rubric_path: Path,
    out: Path,
    modes: tuple[str, ...] = STUDENT_MODES,
    seeds: int | None = None,
    cache: Path | None = None,
    package: str = "",
    say: Callable[[str], None] = print,
) -> StudentBundle:
    """Write the student folder ``out`` (see the module docstring)."""
    rubric, out = load_rubric(rubric_path), out.absolute()  # the measuring rubric is elsewhere
    _refuse(rubric, out, package)
    raw = tomllib.loads(rubric.path.read_text(encoding="utf-8"))
    document, hidden, hidden_texts = student_document(raw)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        kit_mb = copy_kit(cache, staging, say)
        measured = measure(rubric, document, staging, modes, seeds, cache, say)
        document["assignment"]["hidden_checks"] = hidden
        document["reference"] = reference_table(measured)
        document["data"] = {"keras_home": KERAS_DIR, "holdout": PRACTICE_DIR}
        bundle = StudentBundle(out, measured, hidden, kit_mb)
        _write(staging, document, bundle, package)
        _verify(staging, rubric, hidden_texts)
        _refuse(rubric, out)  # again: minutes have passed
        if out.is_dir() and not out.is_symlink():
            out.rmdir()  # empty
        os.replace(staging, out)
        out.chmod(0o755)  # mkdtemp made it the owner's alone
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return bundle


def _refuse(rubric: Rubric, out: Path, package: str | None = None) -> None:
    if package is not None and (not package.strip() or BARE_PACKAGE.fullmatch(package)):
        raise UsageError(MSG_BARE_PACKAGE.format(package=package))
    if rubric.reference_notebook is None:
        raise UsageError(MSG_NO_REFERENCE)
    if rubric.keras_home is not None:
        raise UsageError(MSG_COURSE_DATA)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(MSG_NOT_EMPTY.format(path=out))


def student_document(raw: dict[str, Any]) -> tuple[dict[str, Any], int, list[str]]:
    """The student rubric's tables without ``[reference]`` and ``[data]``; how many checks
    are hidden; the hidden checks' texts (which must appear nowhere in the folder)."""
    checks = raw.get("checks", [])
    visible = [c for c in checks if not c.get("hidden", False)]
    hidden = [c for c in checks if c.get("hidden", False)]
    document: dict[str, Any] = {"assignment": {"title": raw.get("assignment", {}).get("title")}}
    if document["assignment"]["title"] is None:
        del document["assignment"]["title"]
    document.update({key: raw[key] for key in KEPT_SECTIONS if key in raw})
    document["checks"] = visible
    return document, len(hidden), _hidden_texts(hidden, json.dumps(visible, ensure_ascii=False))


def _hidden_texts(hidden: list[dict[str, Any]], visible: str) -> list[str]:
    """What must appear nowhere in the folder: each hidden check's id and words as a
    quoted string (as TOML and JSON write them), and its sentences as they are (as the
    README would), less what a visible check says too (a concept word both share)."""
    words = [c.get("id") for c in hidden]
    sentences = [c.get(k) for c in hidden for k in HIDDEN_TEXT_KEYS]
    words += [w for c in hidden for k in HIDDEN_LIST_KEYS for w in _flatten(c.get(k) or [])]
    texts = [json.dumps(str(w), ensure_ascii=False) for w in [*words, *sentences] if w]
    texts += [str(text) for text in sentences if text]
    return [t for t in dict.fromkeys(texts) if t not in visible]


def _flatten(value: Any) -> list[Any]:
    return [w for v in value for w in _flatten(v)] if isinstance(value, list) else [value]


def copy_kit(cache: Path | None, staging: Path, say: Callable[[str], None]) -> float:
    """The kit's Keras cache and manifest, and the practice holdout, into ``staging``."""
    kit = ensure_kit(cache, progress=say)
    say(f"Copying the asset kit into {staging / KIT_DIR}")
    shutil.copytree(kit.keras_home, staging / KERAS_DIR)
    manifest = json.loads((kit.keras_home.parent / MANIFEST).read_text(encoding="utf-8"))
    public = {k: v for k, v in manifest.items() if k not in PRIVATE_MANIFEST_KEYS}
    (staging / KIT_DIR / MANIFEST).write_text(json.dumps(public, indent=2) + "\n")
    command = [sys.executable, "-m", "grader.kit.practice"]
    done = subprocess.run(
        [*command, str(staging / PRACTICE_DIR)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise AssetKitError("drawing the practice holdout failed: " + done.stderr[-2000:])
    size = sum(p.stat().st_size for p in (staging / KIT_DIR).rglob("*") if p.is_file())
    return round(size / 2**20, 1)


def measure(
    rubric: Rubric,
    document: dict[str, Any],
    staging: Path,
    modes: tuple[str, ...],
    seeds: int | None,
    cache: Path | None,
    say: Callable[[str], None],
) -> list[PublishedMode]:
    """The reference under the student rubric, on the bundle's kit and practice holdout."""
    if not any(c.get("id") == CHECK_ACCURACY for c in document["checks"]):
        return []
    with tempfile.TemporaryDirectory(prefix="grader-publish-") as folder:
        measuring = Path(folder) / RUBRIC_NAME
        tables = {
            **document,
            "reference": {"notebook": str(rubric.reference_notebook)},
            "data": {
                "keras_home": str(staging / KERAS_DIR),
                "holdout": str(staging / PRACTICE_DIR),
            },
        }
        measuring.write_text(dumps(tables), encoding="utf-8")
        found = calibrate(measuring, list(modes), seeds, cache, say)
    for warning in (w for c in found for w in c.warnings):
        say(warning)
    return [_published(c) for c in found]


def _published(calibration: Calibration) -> PublishedMode:
    runs = calibration.figures.seeds
    final = [round(float(r["final"]), 4) for r in runs if r.get("final") is not None]
    heads = [r.get("head") for r in runs]
    head = [round(float(h), 4) for h in heads] if all(h is not None for h in heads) else None
    accuracy = calibration.figures.accuracy
    if accuracy is None or not final:
        raise AssetKitError(MSG_NO_FIGURE.format(mode=calibration.mode))
    return PublishedMode(
        mode=calibration.mode,
        accuracy=round(float(accuracy), 4),
        final=final,
        head=head if head and len(head) == len(final) else None,
        images=calibration.images,
        full_points_from={b: round(bar.full_at, 4) for b, bar in calibration.bars.items()},
    )


def reference_table(measured: list[PublishedMode]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for mode in measured:
        table[f"{mode.mode}_accuracy"] = mode.accuracy
        if mode.final:
            table[f"{mode.mode}_final"] = mode.final
            if mode.head:
                table[f"{mode.mode}_head"] = mode.head
    return table


def _write(staging: Path, document: dict[str, Any], bundle: StudentBundle, package: str) -> None:
    (staging / RUBRIC_NAME).write_text(dumps(document, HEADER), encoding="utf-8")
    figures = {
        "title": document["assignment"].get("title"),
        "hidden_checks": bundle.hidden,
        "measured_on": PRACTICE_DIR,
        "modes": [asdict(m) for m in bundle.modes],
    }
    (staging / FIGURES_NAME).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    readme = student_readme(document, bundle, package)
    (staging / README_NAME).write_text(readme, encoding="utf-8")


def _verify(staging: Path, rubric: Rubric, hidden_texts: list[str]) -> None:
    """The rubric loads from the folder, and no text file in it names the reference, the
    course's holdout or a hidden check (the README's example notebook name aside)."""
    load_rubric(staging / RUBRIC_NAME)
    secrets = [("the reference notebook", str(rubric.reference_notebook))]
    if rubric.holdout is not None:
        secrets.append(("the course holdout", str(rubric.holdout)))
    secrets += [("a hidden check", text) for text in hidden_texts]
    named = [("the reference notebook's name", rubric.reference_notebook.name)]
    for name in (RUBRIC_NAME, README_NAME, FIGURES_NAME, f"{KIT_DIR}/{MANIFEST}"):
        text = (staging / name).read_text(encoding="utf-8")
        for what, secret in secrets + (named if name != README_NAME else []):
            if secret and secret in text:
                raise UsageError(MSG_LEAK.format(path=name, what=what))
