"""The probe's injection: the tagged cells that install it in the student's kernel.

What the probe records is :mod:`grader.run.kernel.probe`; the shell lines and
``google.colab`` it makes harmless are :mod:`grader.run.kernel.habits`. The kernel
cannot import grader (its mount view hides the checkout), so the first cell carries both
modules' file text and runs each in a module namespace of its own, registered in
``sys.modules`` under a private name: the notebook's globals gain only
``_grader_save_named``, which a last cell calls when the rubric names the model to
measure. This module never imports TensorFlow.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat

from grader.errors import KernelOutputError, map_dependency_errors, strerror
from grader.intake.notebooks import file_digest
from grader.run.kernel import habits as kernel_habits
from grader.run.kernel import probe as kernel_probe
from grader.run.kernel import seal as kernel_seal
from grader.run.kernel.probe import EVENTS_FILE, FIT_MODEL_FILE, MODEL_FILE, Settings

__all__ = [
    "EVENTS_FILE",
    "FIT_MODEL_FILE",
    "MODEL_FILE",
    "CLOSE_CALL",
    "PROBE_TAG",
    "SEED",
    "ProbeConfig",
    "closing",
    "inject",
    "install_error",
    "installed",
    "is_probe",
    "kernel_settings",
    "probe_cell",
    "read_events",
    "read_records",
    "saved_model",
    "strip",
    "write_seal",
]

PROBE_TAG = "grader-probe"
SEED = 1234
HABITS_MODULE = kernel_habits.MODULE_NAME
PROBE_MODULE = "_grader_probe"
SEAL_MODULE = "_grader_seal"
"""The private names the kernel modules run under in the kernel's ``sys.modules``."""
SAVE_NAMED = "_grader_save_named"
"""The one name the probe cell adds to the notebook's globals."""
CLOSE_CALL = f"__import__('sys').modules[{SEAL_MODULE!r}].close"
"""The closing cell's call (:func:`grader.run.kernel.seal.close`), with the run's nonce."""
RAW_QUOTE = "'''"
MAX_EVENTS_BYTES = 64 * 2**20
"""The most of the probe's records read (a notebook's are well under a megabyte)."""
MSG_EVENTS = "the probe's records in the kernel's folder cannot be read ({detail})"
REASON_NOT_FILE = "the notebook replaced the records file with something that is not a file"
REASON_TOO_LARGE = f"more than {MAX_EVENTS_BYTES // 2**20} MB"
MSG_FORGED = (
    "{count} record(s) in the probe's folder were not written by the probe and were ignored"
)
MSG_MISSING = "{count} of the probe's records are missing from its folder"
MSG_REMOVED = "the probe's records were removed from its folder"
MSG_TAIL_REMOVED = "the probe's last records were removed from its folder"
MSG_NOT_CLOSED = (
    "the probe's closing cell failed (the notebook removed the probe): its records were "
    "not confirmed whole"
)
MSG_REPLACED = "the saved model is not the one the probe saved, so it was not measured"

LOADER = '''# grader's probe, not the student's code: it records what Keras does while grading
def _grader_module(name, source):
    """Run one of grader's kernel modules as a module of its own."""
    import linecache, sys, types
    module = types.ModuleType(name)
    module.__file__ = f"<{name}>"
    sys.modules[name] = module
    linecache.cache[module.__file__] = (len(source), None, source.splitlines(True), name)
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module
'''


@dataclass(frozen=True)
class ProbeConfig:
    """What the probe needs to know inside the kernel."""

    dir: Path
    """Folder the kernel writes events and the saved model into."""
    quick: bool = False
    """Cap epochs and steps."""
    max_epochs: int = 2
    """Epochs of each ``fit``, counted from its ``initial_epoch``."""
    max_steps_per_epoch: int = 10
    """Steps per epoch of the first ``fit`` (the rubric's caps use the same name)."""
    max_validation_steps: int = 3
    later_steps: int = 0
    """Steps per epoch from the second ``fit`` on (0: ``max_steps_per_epoch``)."""
    eager_steps: int = 0
    """Run a ``fit`` capped at this many steps or fewer eagerly (0: never)."""
    build_first: bool = True
    """Make the optimizer's and metrics' variables before a ``fit`` traces its step, so
    TensorFlow traces it once (False: as Keras alone does, twice; a benchmark's baseline)."""
    seed: int = SEED
    keep_fits: bool = False
    """Keep the model after each ``fit`` too (``fit_1.keras``, ...): the reference's
    figure per phase."""
    model_variable: str | None = None
    """Measure the model in this notebook variable instead of the last one trained."""


def kernel_settings(config: ProbeConfig) -> Settings:
    """The settings the kernel side reads (:class:`grader.run.kernel.probe.Settings`)."""
    return {
        "dir": str(config.dir),
        "quick": config.quick,
        "max_epochs": config.max_epochs,
        "max_steps_per_epoch": config.max_steps_per_epoch,
        "max_validation_steps": config.max_validation_steps,
        "later_steps": config.later_steps,
        "eager_steps": config.eager_steps,
        "build_first": config.build_first,
        "seed": config.seed,
        "keep_fits": config.keep_fits,
    }


def module_text(module: ModuleType) -> str:
    """A kernel module's file text as a raw string literal, which keeps it verbatim."""
    text = Path(str(module.__file__)).read_text()
    if RAW_QUOTE in text or text.endswith("\\"):
        raise ValueError(f"{module.__name__} cannot be written as one raw string literal")
    return "r" + RAW_QUOTE + text + RAW_QUOTE


def probe_cell(config: ProbeConfig) -> nbformat.NotebookNode:
    """The tagged code cell that installs the habits and the probe."""
    source = (
        LOADER
        + f"_grader_module({HABITS_MODULE!r}, {module_text(kernel_habits)}).install()\n"
        + f"{SAVE_NAMED} = _grader_module({PROBE_MODULE!r}, {module_text(kernel_probe)})"
        + f".install({kernel_settings(config)!r}, globals(), "
        + f"_grader_module({SEAL_MODULE!r}, {module_text(kernel_seal)}))\n"
        + "del _grader_module"
    )
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = [PROBE_TAG]
    return cell


def inject(
    nb: nbformat.NotebookNode, config: ProbeConfig, nonce: str = ""
) -> nbformat.NotebookNode:
    """A copy of ``nb`` with the probe cell first (when the rubric names the model to
    measure, a cell saving that variable's model after the student's) and the closing
    cell, carrying ``nonce``, last."""
    copy = nbformat.from_dict(nb)
    copy.cells.insert(0, probe_cell(config))
    sources = [f"{SAVE_NAMED}({config.model_variable!r})"] if config.model_variable else []
    for source in [*sources, f"{CLOSE_CALL}({nonce!r})"]:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = [PROBE_TAG]
        copy.cells.append(cell)
    return copy


def is_probe(cell: nbformat.NotebookNode) -> bool:
    return PROBE_TAG in cell.get("metadata", {}).get("tags", [])


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove the probe cells (the stored notebook is the student's own)."""
    nb.cells = [cell for cell in nb.cells if not is_probe(cell)]
    return nb


def read_events(probe_dir: Path) -> list[dict[str, Any]]:
    """The events the probe recorded; unreadable lines (malformed, nested past what
    :mod:`json` can read) are skipped. The kernel owns the file: one that is not a
    plain file, or is larger than :data:`MAX_EVENTS_BYTES`, is a
    :class:`~grader.errors.KernelOutputError` (that student's error, not grader's)."""
    path = probe_dir / EVENTS_FILE
    with map_dependency_errors("kernel output", _unreadable):
        if not path.exists() and not path.is_symlink():
            return []
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            raise KernelOutputError(MSG_EVENTS.format(detail=REASON_NOT_FILE))
        if info.st_size > MAX_EVENTS_BYTES:
            raise KernelOutputError(MSG_EVENTS.format(detail=REASON_TOO_LARGE))
        text = path.read_text(errors="replace")
    events = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(entry, dict):
            events.append(entry)
    return events


def _unreadable(exc: Exception) -> KernelOutputError:
    return KernelOutputError(MSG_EVENTS.format(detail=strerror(exc)))


def write_seal(probe_dir: Path) -> bytes:
    """A fresh key for this run's records, written where only the probe reads it (once)."""
    key = secrets.token_bytes(32)
    path = probe_dir / kernel_seal.SEAL_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def read_records(
    probe_dir: Path,
    key: bytes,
    installed: bool = True,
    closed: str | None = None,
    nonce: str = "",
) -> tuple[kernel_seal.Checked, list[str]]:
    """The probe's own records (:func:`read_events`, then
    :func:`~grader.run.kernel.seal.check`), and what was not its own: lines it did not
    sign, numbers missing, (when it ``installed``) its first record gone, and (when the
    closing cell ran, :func:`closing`) no closing record with the run's ``nonce`` last."""
    checked = kernel_seal.check(key, read_events(probe_dir))
    problems = [MSG_FORGED.format(count=checked.rejected)] if checked.rejected else []
    if installed and not checked.installed:
        problems.append(MSG_REMOVED)
    elif checked.missing:
        problems.append(MSG_MISSING.format(count=checked.missing))
    if installed and closed is not None and checked.closed_with != nonce:
        problems.append(MSG_NOT_CLOSED if closed == "failed" else MSG_TAIL_REMOVED)
    return checked, problems


def install_error(nb: nbformat.NotebookNode) -> str | None:
    """Why the probe cell (the first) failed, if it did: grader's fault, not the student's."""
    for output in nb.cells[0].get("outputs", []) if nb.cells else []:
        if output.get("output_type") == "error":
            return f"{output.get('ename')}: {output.get('evalue')}"
    return None


def closing(nb: nbformat.NotebookNode) -> str | None:
    """How the closing cell (the last) ended: ``closed``, ``failed`` (it raised: the
    notebook removed what it calls) or None when it did not run (the kernel died, the
    notebook ran out of time)."""
    last = nb.cells[-1] if nb.cells else None
    if last is None or not is_probe(last) or not last.get("source", "").startswith(CLOSE_CALL):
        return None
    if last.get("execution_count") is None:
        return None
    errors = [o for o in last.get("outputs", []) if o.get("output_type") == "error"]
    return "failed" if errors else "closed"


def installed(nb: nbformat.NotebookNode) -> bool:
    """Whether the probe cell ran to its end (so its first record must be there)."""
    ran = bool(nb.cells) and nb.cells[0].get("execution_count") is not None
    return ran and install_error(nb) is None


def saved_model(probe_dir: Path, digest: str | None) -> tuple[Path | None, list[str]]:
    """The model file to measure: the one whose digest the probe recorded when it saved
    it (None, with a message, when the file there is another; None when there is none)."""
    path = probe_dir / MODEL_FILE
    if not path.is_file() or path.is_symlink():
        return None, []
    if digest is not None and file_digest(path) == digest:
        return path, []
    return None, [MSG_REPLACED]
