"""Colab and Jupyter habits, and Keras 2 code run on Keras 3: found, explained, fixed.

Students write ``!pip install``, mount Google Drive and paste Keras 2 code. While
grading, the probe neutralises the habits (shell lines print a note instead of running;
``google.colab`` is a stand-in whose ``drive.mount`` and ``files.upload`` do nothing),
so they cost no crash. This module says so to the student, naming the shell lines by
the same grammar the kernel side skips them by (:mod:`grader.run.kernel.habits`):

* :func:`find_notes` reads the code and returns one :class:`Note` per habit or Keras 2
  pitfall, naming the cell and line, with what grader did or what to change;
* :func:`advise` explains an error a cell raised when it is a known Keras 2 to 3 or
  Colab pitfall, with the fix (shown next to the error).
"""

from __future__ import annotations

import re

import nbformat

from grader.checks.order import CellOrder, out_of_order_advice
from grader.results import CellError, Note
from grader.run.kernel.habits import INSTALL_LINE, SERVED_LINE, SHELL_CELL, SHELL_LINE

SHELL_NOTE = "Shell command skipped while grading (it printed a note instead of running)."
SERVED_NOTE = (
    "`wget`/`curl` of the course's data is served from the offline copy while grading "
    "(no network), and `unzip` is done in Python; any other download is skipped."
)
PIP_NOTE = (
    "Package install skipped while grading: tensorflow, numpy, matplotlib and pillow are "
    "already installed, and nothing else can be."
)
MATPLOTLIB_NOTE = "`%matplotlib` is fine: plots are kept in the report."
DRIVE_NOTE = (
    "Google Drive is not mounted while grading (`drive.mount` does nothing): the course's "
    "dataset is there, read-only, at the Drive path the code names; nothing else of a Drive is."
)
UPLOAD_NOTE = "`files.upload()` returns nothing while grading: nobody can pick a file."
CONTENT_NOTE = (
    "`/content` (Colab's working folder) starts empty while grading: what the notebook "
    "writes there lasts for the run, and files uploaded to Colab are not there."
)
EXPERIMENTAL_FIX = (
    "Keras 3 has no `layers.experimental.preprocessing`: use `tf.keras.layers.RandomFlip`, "
    "`tf.keras.layers.RandomRotation`, `tf.keras.layers.Rescaling` directly."
)
LEGACY_FIX = (
    "Keras 3 has no `optimizers.legacy`: use `tf.keras.optimizers.Adam` (or RMSprop) "
    "with `learning_rate=`."
)
LR_FIX = "Keras 3 optimizers take `learning_rate=`, not `lr=`."
IDG_FIX = (
    "`ImageDataGenerator` is deprecated in Keras 3: load images with "
    "`tf.keras.utils.image_dataset_from_directory` and augment with layers "
    "(`RandomFlip`, `RandomRotation`) inside the model."
)
FIT_GENERATOR_FIX = "Keras 3 removed `fit_generator`/`evaluate_generator`: call `fit`/`evaluate`."
STDIN_FIX = "`input()` cannot be answered while grading: set the value in the code instead."
SAVE_FIX = (
    "Keras 3 saves models to a `.keras` file (`model.save('model.keras')`); a folder name "
    "(the old SavedModel) is refused and `.h5` cannot hold every layer."
)


LINE_RULES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (INSTALL_LINE, "colab", PIP_NOTE),
    (SERVED_LINE, "colab", SERVED_NOTE),
    (SHELL_LINE, "colab", SHELL_NOTE),
    (SHELL_CELL, "colab", SHELL_NOTE),
    (re.compile(r"^\s*%matplotlib\b"), "colab", MATPLOTLIB_NOTE),
    (re.compile(r"google\.colab|\bdrive\.mount\(|['\"]/content/g?drive/"), "colab", DRIVE_NOTE),
    (re.compile(r"\bfiles\.upload\("), "colab", UPLOAD_NOTE),
    (re.compile(r"['\"]/content/(?!g?drive\b)"), "colab", CONTENT_NOTE),
    (
        re.compile(r"layers\.experimental\.preprocessing|keras\.layers\.experimental"),
        "keras2",
        EXPERIMENTAL_FIX,
    ),
    (re.compile(r"optimizers\.legacy\b"), "keras2", LEGACY_FIX),
    (re.compile(r"optimizers\.\w+\([^)]*\blr\s*="), "keras2", LR_FIX),
    (re.compile(r"\bImageDataGenerator\b"), "keras2", IDG_FIX),
    (re.compile(r"\.(fit|evaluate|predict)_generator\("), "keras2", FIT_GENERATOR_FIX),
)
"""(pattern on one line, kind, note): the first matching rule per line wins."""
SAVE_CALL = re.compile(r"(?<!\bnp)(?<!numpy)(?<!torch)\.save\(\s*['\"]([^'\"]+)['\"]")

ERROR_RULES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("AttributeError", re.compile(r"has no attribute 'experimental'"), EXPERIMENTAL_FIX),
    ("ImportError", re.compile(r"optimizers\.legacy"), LEGACY_FIX),
    ("ValueError", re.compile(r"Argument\(s\) not recognized: \{'lr'"), LR_FIX),
    ("TypeError", re.compile(r"unexpected keyword argument 'lr'"), LR_FIX),
    (
        "AttributeError",
        re.compile(r"has no attribute '(fit|evaluate|predict)_generator'"),
        FIT_GENERATOR_FIX,
    ),
    ("ValueError", re.compile(r"Invalid filepath extension for saving"), SAVE_FIX),
    ("", re.compile(r"/content/g?drive/"), DRIVE_NOTE),
    ("", re.compile(r"/content/"), CONTENT_NOTE),
    ("ModuleNotFoundError", re.compile(r"google\.colab|'google'"), DRIVE_NOTE),
    ("StdinNotImplementedError", re.compile(r""), STDIN_FIX),
)
"""(exception name or "" for any, pattern on its message, advice)."""


def find_notes(nb: nbformat.NotebookNode) -> list[Note]:
    """Every habit and Keras 2 pitfall in the notebook's code cells, in order."""
    notes = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for number, line in enumerate(str(cell.source).splitlines(), start=1):
            rule = next(((kind, text) for p, kind, text in LINE_RULES if p.search(line)), None)
            if rule is None and _old_save_format(line):
                rule = ("keras2", SAVE_FIX)
            if rule:
                notes.append(Note(index, number, rule[0], rule[1], line.strip()[:200]))
    return notes


def advise(error: CellError, order: CellOrder | None = None) -> str:
    """The fix for a known Keras 2 / Colab error, or for a name defined only in a later
    cell of the submitted notebook (``order``: cells run out of order); else ""."""
    for ename, pattern, advice in ERROR_RULES:
        if (not ename or error.ename == ename) and pattern.search(error.evalue):
            return advice
    return out_of_order_advice(error.cell, error.ename, error.evalue, order) if order else ""


def _old_save_format(line: str) -> bool:
    """``model.save('x.h5')`` or ``model.save('folder')``: not Keras 3's ``.keras`` file."""
    match = SAVE_CALL.search(line)
    if not match:
        return False
    name = match.group(1).rstrip("/").rsplit("/", 1)[-1]
    return name.endswith(".h5") or "." not in name
