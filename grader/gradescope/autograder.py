"""Inside Gradescope's container: ``setup.sh``'s grading part and ``run_autograder``.

Gradescope lays the container out as ``/autograder/source`` (the bundle),
``/autograder/submission`` (the student's files) and ``/autograder/results`` (where
``results.json`` must be when ``run_autograder`` ends); the root is a parameter so that
tests lay it out anywhere.

**Isolation there.** Gradescope runs both scripts as root, in a container that may
refuse namespaces. Without them, what holds is: each kernel runs as an unprivileged uid
of its own (grader is root), under the rubric's rlimits and an RSS watchdog; the bundle
(rubric, reference notebook), the kit's holdout, the reference's figures and the
results folder are root's alone (mode 0700; the cache, ``$GRADER_CACHE`` or
``/autograder/cache``, lets a kernel pass to the kit's Keras cache and nowhere else:
:func:`~grader.kit.assets.seal_for_kernels`), so a kernel can neither read the holdout
or the reference nor write ``results.json``; and grader writes
``results.json`` once, after the kernel is gone, from the result it holds. Where
namespaces work, the whole sandbox of :mod:`grader.run.sandbox` holds as anywhere.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from grader.batch.classrun import GradeRequest, grade_class, run_reference
from grader.files import atomic_write_text
from grader.gradescope.bundle import read_settings
from grader.gradescope.results import gradescope_results, no_notebook_results
from grader.kit.assets import default_cache_dir, ensure_kit, seal_for_kernels
from grader.rubric.schema import load_rubric

SOURCE, SUBMISSION, RESULTS = "source", "submission", "results"
GRADESCOPE_RESULTS = "results.json"
"""The file Gradescope reads from the results folder."""
PRIVATE = 0o700
MSG_SEVERAL = "Graded {graded}; not graded (one notebook per submission): {others}"
MSG_NONE = "No .ipynb notebook in the submission: upload your notebook file."
MSG_PUBLISHED = "No reference notebook in the bundle: the rubric's published figures are used"


def setup_autograder(root: Path, say: Callable[[str], None] = print) -> None:
    """What ``setup.sh`` runs after installing: the bundle made root's alone, the kit
    built and the reference run for the bundle's mode (stored in grader's cache), the
    cache sealed for kernels without a file view."""
    source = root / SOURCE
    settings = read_settings(source)
    os.chmod(source, PRIVATE)
    rubric_path = source / settings.rubric
    rubric = load_rubric(rubric_path)
    cache = default_cache_dir()
    if rubric.keras_home is None:
        ensure_kit(cache, progress=say)
    seal_for_kernels(cache)  # before the reference's kernel: it needs the kit too
    if rubric.reference_notebook is not None:
        figures = run_reference(rubric_path, settings.mode, None, force=False, say=say)
        say(f"Reference accuracy ({settings.mode}): {figures.accuracy:.4f}")
    else:
        say(MSG_PUBLISHED)
    seal_for_kernels(cache)
    if rubric.holdout is not None and rubric.holdout.exists():
        os.chmod(rubric.holdout, PRIVATE)  # a course's own holdout: root's alone too


def run_autograder(root: Path, say: Callable[[str], None] = print) -> Path:
    """Grade the notebook in ``root/submission`` as the bundle says and write
    ``root/results/results.json`` once, at the end."""
    source = root / SOURCE
    settings = read_settings(source)
    results = root / RESULTS
    results.mkdir(parents=True, exist_ok=True)
    os.chmod(results, PRIVATE)
    notebooks = submitted_notebooks(root / SUBMISSION)
    if not notebooks:
        data = no_notebook_results(MSG_NONE)
    else:
        notes = []
        if len(notebooks) > 1:
            others = ", ".join(str(p.relative_to(root / SUBMISSION)) for p in notebooks[1:])
            notes.append(MSG_SEVERAL.format(graded=notebooks[0].name, others=others))
        with tempfile.TemporaryDirectory(prefix="grader-gradescope-") as work:
            request = GradeRequest(
                notebooks[0], source / settings.rubric, Path(work) / "out", settings.mode, 1
            )
            result = grade_class(request, say=say).results[0]
        data = gradescope_results(result, settings.leaderboard, notes)
    path = results / GRADESCOPE_RESULTS
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    return path


def submitted_notebooks(folder: Path) -> list[Path]:
    """The notebooks a student uploaded, outside hidden folders, by name; never a link
    (one could point at the sealed reference, which grader, as root, could read) nor a
    file reached through one."""
    inside = folder.resolve()
    found = []
    for path in folder.rglob("*.ipynb"):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or path.is_symlink():
            continue
        if path.is_file() and path.resolve() == inside / relative:
            found.append(path)
    return sorted(found)
