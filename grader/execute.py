"""Execution: run one notebook in a fresh kernel, with the probe, under time limits.

Each run gets its own folder (``work/`` as the kernel's working directory holding a
copy of the notebook, ``keras_home/`` as its Keras cache, ``probe/`` for the probe's
records). Errors are allowed so later cells still run; a cell over its time limit is
interrupted and recorded; the notebook's total time is capped by shrinking each cell's
limit to what is left. Student failures never raise out of :func:`run_notebook`: they
are fields of the returned :class:`Execution`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from grader import probe
from grader.assets import Kit, prepare_keras_home
from grader.results import CellError

KERNEL_NAME = "grader-python"
TIMEOUT_ENAME = "CellTimeout"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MSG_CELL_TIMEOUT = "cell {cell} ran longer than {limit:.0f} s and was interrupted"
MSG_NOTEBOOK_TIMEOUT = (
    "the notebook ran longer than {limit:.0f} s; cells from {cell} on were not run"
)
MSG_KERNEL_DIED = "the kernel died while running cell {cell}"
KERNEL_ENV = {
    "PYTHONHASHSEED": "0",
    "PIP_NO_INDEX": "1",  # a notebook's `!pip install` cannot change the shared environment
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONWARNINGS": "ignore",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
}


class NotebookDeadline(Exception):
    """Raised from the cell-start hook when the notebook's time is used up."""


@dataclass
class RunSettings:
    """How to run a notebook."""

    kit: Kit
    """Assets linked into the kernel's Keras cache."""
    cell_timeout_s: float = 240.0
    notebook_timeout_s: float = 900.0
    probe: probe.ProbeConfig | None = None
    """Probe caps and seed (its ``dir`` is filled in per run)."""
    threads: int | None = None
    """TensorFlow/OpenMP threads for the kernel (None: TensorFlow decides)."""


@dataclass
class Execution:
    """What running one notebook produced."""

    nb: nbformat.NotebookNode
    """The executed notebook, probe cells removed."""
    root: Path
    """The run's folder (``work/``, ``keras_home/``, ``probe/``); removed by ``cleanup``."""
    events: list[dict[str, Any]] = field(default_factory=list)
    """The probe's records, in order."""
    errors: list[CellError] = field(default_factory=list)
    """Exceptions raised by student cells."""
    cell_times: list[float | None] = field(default_factory=list)
    """Seconds per notebook cell (None when not run or not code)."""
    timed_out: list[int] = field(default_factory=list)
    """Cells interrupted at their time limit."""
    notebook_timeout: bool = False
    """True when the notebook's total time ran out."""
    kernel_died: int | None = None
    """The cell during which the kernel died, if it did."""
    messages: list[str] = field(default_factory=list)
    """One line per limit hit or failure, naming the cell (1-based)."""
    duration_s: float = 0.0
    probe_error: str | None = None
    """Set when the probe itself failed to install (a grader fault, not the student's)."""

    @property
    def model_path(self) -> Path | None:
        path = self.root / "probe" / probe.MODEL_FILE
        return path if path.exists() else None

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def run_notebook(nb: nbformat.NotebookNode, name: str, settings: RunSettings) -> Execution:
    """Execute ``nb`` (not modified) in a fresh kernel and sandbox folder."""
    root = Path(tempfile.mkdtemp(prefix="grader-run-"))
    work, probe_dir = root / "work", root / "probe"
    work.mkdir()
    probe_dir.mkdir()
    keras_home = prepare_keras_home(settings.kit, root / "keras_home")
    nbformat.write(nb, work / name)
    config = settings.probe or probe.ProbeConfig(dir=probe_dir)
    config = probe.ProbeConfig(**{**config.__dict__, "dir": probe_dir})
    running = probe.inject(clear_outputs(nb), config)
    run = Execution(nb=running, root=root, cell_times=[None] * len(nb.cells))
    start = time.monotonic()
    try:
        _execute(running, run, settings, work, _kernel_env(root, keras_home, settings.threads))
    except BaseException:
        run.cleanup()
        raise
    run.duration_s = round(time.monotonic() - start, 2)
    run.probe_error = _probe_error(running)
    run.nb = probe.strip(running)
    run.events = probe.read_events(probe_dir)
    run.errors = collect_errors(run.nb, skip=set(run.timed_out))
    return run


def _execute(
    nb: nbformat.NotebookNode, run: Execution, settings: RunSettings, cwd: Path, env: dict[str, str]
) -> None:
    deadline = time.monotonic() + settings.notebook_timeout_s
    started: dict[int, float] = {}

    limits: dict[int, int] = {}

    def limit(cell: nbformat.NotebookNode) -> int:
        value = max(1, int(min(settings.cell_timeout_s, deadline - time.monotonic())))
        limits[id(cell)] = value
        return value

    def on_start(cell: nbformat.NotebookNode, cell_index: int) -> None:
        if time.monotonic() >= deadline and cell_index > 0:
            raise NotebookDeadline(cell_index - 1)
        started[cell_index] = time.monotonic()

    def on_executed(cell: nbformat.NotebookNode, cell_index: int, execute_reply: dict) -> None:
        index = cell_index - 1
        if not 0 <= index < len(run.cell_times):  # the probe's own cells
            return
        run.cell_times[index] = round(time.monotonic() - started.get(cell_index, deadline), 3)
        if execute_reply.get("content", {}).get("ename") == TIMEOUT_ENAME:
            run.timed_out.append(index)
            used = limits.get(id(cell), settings.cell_timeout_s)
            run.messages.append(MSG_CELL_TIMEOUT.format(cell=index + 1, limit=used))

    km = _kernel_manager(cwd.parent)
    client = NotebookClient(
        nb,
        km=km,
        allow_errors=True,
        interrupt_on_timeout=True,
        timeout_func=limit,
        record_timing=True,
        on_cell_start=on_start,
        on_cell_executed=on_executed,
        shutdown_kernel="immediate",
        error_on_timeout={
            "ename": TIMEOUT_ENAME,
            "evalue": "cell time limit reached",
            "traceback": [],
        },
    )
    try:
        client.execute(cwd=str(cwd), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except NotebookDeadline as exc:
        run.notebook_timeout = True
        run.messages.append(
            MSG_NOTEBOOK_TIMEOUT.format(limit=settings.notebook_timeout_s, cell=int(str(exc)) + 1)
        )
    except DeadKernelError:
        running = [i for i in started if i > 0]
        run.kernel_died = max(running) - 1 if running else 0
        run.messages.append(MSG_KERNEL_DIED.format(cell=run.kernel_died + 1))
    finally:
        _shutdown(km)


def _shutdown(km: AsyncKernelManager) -> None:
    """Stop the kernel: nbclient leaves a kernel manager it was given running."""
    try:
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
    except Exception:  # noqa: BLE001 - already gone is fine
        pass


def _kernel_manager(root: Path) -> AsyncKernelManager:
    """A kernel of this very interpreter (never another ``python3`` kernelspec on the machine)."""
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "grader", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(root / "kernels")], ensure_native_kernel=False)
    return AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)


def clear_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without the student's saved outputs: only what runs here is evidence."""
    copy = nbformat.from_dict(nb)
    for cell in copy.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return copy


def _kernel_env(root: Path, keras_home: Path, threads: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADER_", "JPY_"))}
    env.update(KERNEL_ENV)
    env["KERAS_HOME"] = str(keras_home)
    env["HOME"] = str(root / "work")
    if threads:
        for key in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
            env[key] = str(threads)
        env["TF_NUM_INTEROP_THREADS"] = "1"
    return env


def _probe_error(nb: nbformat.NotebookNode) -> str | None:
    for output in nb.cells[0].get("outputs", []) if nb.cells else []:
        if output.get("output_type") == "error":
            return f"{output.get('ename')}: {output.get('evalue')}"
    return None


def collect_errors(nb: nbformat.NotebookNode, skip: set[int] | None = None) -> list[CellError]:
    """Error outputs of the notebook's cells (cells in ``skip`` are left out)."""
    errors = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or index in (skip or set()):
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                errors.append(
                    CellError(
                        cell=index,
                        ename=str(output.get("ename", "")),
                        evalue=str(output.get("evalue", "")),
                        traceback=strip_ansi("\n".join(output.get("traceback", []))),
                    )
                )
    return errors


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)
