"""Execution: run one notebook in a fresh kernel, with the probe, under time limits.

Each run gets its own folder (``work/`` as the kernel's working directory holding a
copy of the notebook, ``keras_home/`` as its Keras cache, ``probe/`` for the probe's
records). Errors are allowed so later cells still run; a cell over its time limit is
interrupted and recorded; the notebook's total time is capped by shrinking each cell's
limit to what is left. Student failures never raise out of :func:`run_notebook`: they
are fields of the returned :class:`Execution`.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client import AsyncKernelManager
from nbclient.exceptions import DeadKernelError

from grader.errors import KernelOutputError, map_dependency_errors
from grader.kit.assets import TFDS_FOLDER, Kit, prepare_keras_home
from grader.results import CellError
from grader.rubric.limits import Limits
from grader.run import dataroutes, probe
from grader.run.capture import CappedClient, collect_errors
from grader.run.machine import python_paths
from grader.run.manager import how_it_ended, kernel_exit_code, kernel_manager, kernel_pid, shutdown
from grader.run.runfolders import make_run_folder, remove_run_folder
from grader.run.sandbox import KernelLimits, KernelSandbox, disk_quota
from grader.run.threads import thread_env

TIMEOUT_ENAME = "CellTimeout"
PROBE_CELL_TIMEOUT_S = 120
"""The time limit of each of the probe's own cells (saving a model, closing its records),
whatever is left of the notebook's: a notebook that ended in time is not cut short."""
MSG_PROBE_FOLDER = "the kernel's probe folder cannot be read ({detail})"
MSG_PROBE_REPLACED = "the kernel put something else in its place"
MSG_CELL_TIMEOUT = "cell {cell} ran longer than {limit:.0f} s and was interrupted"
MSG_NOTEBOOK_TIMEOUT = (
    "the notebook ran longer than {limit:.0f} s; cells from {cell} on were not run"
)
MSG_KERNEL_DIED = "the kernel died while running cell {cell} ({how})"
MSG_KERNEL_NOT_STARTED = (
    "the kernel could not start (a machine problem, not the notebook's): {detail}"
)
MSG_OUT_OF_MEMORY = (
    "cell {cell} used more than {limit} MB of memory (the rubric's [limits] memory_mb);"
    " the kernel was killed"
)
MSG_TRUNCATED = "cell {cell} printed more than {limit} kB; the rest of its output was dropped"
MSG_DISK_FULL = (
    "cell {cell} filled the run folder ({limit} MB, {files} files); writes past it failed"
    " with 'No space left on device'"
)
MSG_STDIN = "cell {cell} asked for keyboard input (input()); nobody can type while grading"
STDIN_ENAME = "StdinNotImplementedError"
TIMEOUT_ERROR = {"ename": TIMEOUT_ENAME, "evalue": "cell time limit reached", "traceback": []}
KERNEL_ENV = {
    "PYTHONHASHSEED": "0",
    "PIP_NO_INDEX": "1",  # a notebook's `!pip install` cannot change the shared environment
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONWARNINGS": "ignore",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    "GRADER_GRADING": "1",  # grader.notebook.check_here() left in a notebook stays inert
}


class NotebookDeadline(Exception):
    """Raised from the cell-start hook when the notebook's time is used up."""


@dataclass
class RunSettings:
    """How to run a notebook."""

    kit: Kit
    """Assets linked into the kernel's Keras cache."""
    limits: Limits = field(default_factory=Limits)
    """Time, memory, process, file and output limits."""
    hide: tuple[str, ...] = ()
    """Paths the kernel must not see (submissions, rubric, reference, outputs, caches)."""
    probe: probe.ProbeConfig | None = None
    """Probe caps and seed (its ``dir`` is filled in per run)."""
    threads: int | None = None
    """TensorFlow/OpenMP threads for the kernel (None: TensorFlow decides)."""
    holdout_images: int = 0
    """The evaluator measures this many holdout images, spread evenly over the split
    (0: all of them). The self-check's quick answer uses a part."""
    mounts: tuple[str, ...] = dataroutes.MOUNT_ROOTS
    """Drive and Kaggle folders the course's data is served under where code names them."""


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
    exit_code: int | None = None
    """The dead kernel's exit status (negative: killed by that signal)."""
    out_of_memory: bool = False
    """True when the kernel was killed for using more than its memory limit."""
    truncated: list[int] = field(default_factory=list)
    """Cells whose output went over the per-cell cap."""
    peak_memory_mb: int | None = None
    """Most memory the kernel and its children used (known with a memory cgroup)."""
    stdin_requested: list[int] = field(default_factory=list)
    """Cells that called ``input()``."""
    disk_full: int | None = None
    """The first cell after which the run folder's quota was used up (bytes or inodes)."""
    messages: list[str] = field(default_factory=list)
    """One line per limit hit or failure, naming the cell (1-based)."""
    duration_s: float = 0.0
    probe_error: str | None = None
    """Set when the probe itself failed to install (a grader fault, not the student's)."""
    unreadable: str | None = None
    """Why what the kernel left (the probe's records) could not be read, if it could not."""

    model_path: Path | None = None
    """The model the probe saved last, when the file is the one it saved."""
    evidence_forged: list[str] = field(default_factory=list)
    """Why some of what the kernel left was not the probe's (ignored; empty: none)."""

    def cleanup(self) -> str | None:
        """Remove the run's folder, whatever the kernel left in it; why it could not be
        removed, if it could not (never raised: the next batch's sweep tries again)."""
        return remove_run_folder(self.root)


def run_notebook(nb: nbformat.NotebookNode, name: str, settings: RunSettings) -> Execution:
    """Execute ``nb`` (not modified) in a fresh kernel inside its own sandbox."""
    limits = kernel_limits(settings.limits)
    root = make_run_folder(disk_quota(limits))
    work, probe_dir, ipc = root / "work", root / "probe", root / "ipc"
    try:
        for folder in (work, probe_dir, ipc):
            folder.mkdir()
        made = _identity(probe_dir)  # the kernel may own the run folder (not root): checked
        keras_home = prepare_keras_home(settings.kit, root / "keras_home")
        sources = [c.source for c in nb.cells if c.cell_type == "code"]
        served = dataroutes.serve(sources, keras_home, work, settings.mounts)
        key = probe.write_seal(probe_dir)
        nbformat.write(nb, work / name)
    except BaseException:
        remove_run_folder(root)
        raise
    config = settings.probe or probe.ProbeConfig(dir=probe_dir)
    config = probe.ProbeConfig(**{**config.__dict__, "dir": probe_dir})
    nonce = secrets.token_hex(8)  # in the closing cell alone: no early close counts
    running = probe.inject(clear_outputs(nb), config, nonce)
    run = Execution(nb=running, root=root, cell_times=[None] * len(nb.cells))
    sandbox = KernelSandbox(
        root=root,
        limits=limits,
        hide=settings.hide,
        expose=exposed_paths(settings.kit),
        served=served,
    )
    start = time.monotonic()
    try:
        policy = sandbox.prepare(writable=[work, probe_dir, ipc, keras_home])
        env = sandbox.env(_kernel_env(root, keras_home, settings.threads))
        km = kernel_manager(root, sandbox.kernel_argv(policy))
        _execute(running, run, settings, km, sandbox, cwd=work, env=env)
    except BaseException:
        run.cleanup()
        raise
    run.duration_s = round(time.monotonic() - start, 2)
    try:
        _collect(run, running, (probe_dir, made), key, nonce)
    except BaseException:
        run.cleanup()
        raise
    return run


def _collect(
    run: Execution,
    running: nbformat.NotebookNode,
    folder: tuple[Path, tuple[int, int]],
    key: bytes,
    nonce: str,
) -> None:
    """What the run left, read onto ``run``: the student's cells, the probe's records and
    model (each checked against the seal ``key`` and the closing ``nonce``; ``folder``:
    the probe's, with the identity it was made with), the errors."""
    run.probe_error = probe.install_error(running)
    installed, closed = probe.installed(running), probe.closing(running)
    run.nb = probe.strip(running)
    probe_dir, made = folder
    try:
        _drop_links(probe_dir, made)
        checked, run.evidence_forged = probe.read_records(probe_dir, key, installed, closed, nonce)
        run.events = checked.records
        run.model_path, replaced = probe.saved_model(probe_dir, checked.model_digest)
        run.evidence_forged += replaced
        run.messages += run.evidence_forged
    except (KernelOutputError, OSError) as exc:  # the kernel's folder: this student's error
        problem = exc if isinstance(exc, KernelOutputError) else MSG_PROBE_FOLDER.format(detail=exc)
        run.unreadable = str(problem)
        run.messages.append(str(problem))
    run.errors = collect_errors(run.nb, skip=set(run.timed_out))
    run.stdin_requested = [e.cell for e in run.errors if e.ename == STDIN_ENAME]
    run.messages += [MSG_STDIN.format(cell=c + 1) for c in run.stdin_requested]


def kernel_limits(limits: Limits) -> KernelLimits:
    """The rubric's limits that the sandbox enforces (the time and output ones are here)."""
    return KernelLimits(
        limits.memory_mb, limits.max_processes, limits.max_file_mb, limits.disk_mb, limits.max_files
    )


def exposed_paths(kit: Kit) -> tuple[str, ...]:
    """What a kernel needs to see: this Python installation and the public asset kit."""
    return tuple(sorted({*python_paths(), str(kit.keras_home.resolve())}))


@dataclass
class _Hooks:
    """nbclient's hooks for one run: per-cell limits, the notebook deadline, timings."""

    run: Execution
    limits: Limits
    km: AsyncKernelManager
    sandbox: KernelSandbox
    deadline: float = 0.0
    started: dict[int, float] = field(default_factory=dict)
    cell_limits: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.limits.notebook_timeout_s

    def limit(self, cell: nbformat.NotebookNode) -> int:
        """The cell's time limit: the rubric's, or what is left of the notebook's; the
        probe's own cells (which save and close after the student's) have their own."""
        if probe.is_probe(cell):
            return PROBE_CELL_TIMEOUT_S
        remaining = self.deadline - time.monotonic()
        value = max(1, int(min(self.limits.cell_timeout_s, remaining)))
        self.cell_limits[id(cell)] = value
        return value

    def on_notebook_start(self, notebook: nbformat.NotebookNode) -> None:
        self.sandbox.start_watchdog(kernel_pid(self.km) or 0)

    def on_cell_start(self, cell: nbformat.NotebookNode, cell_index: int) -> None:
        if time.monotonic() >= self.deadline and not probe.is_probe(cell):
            raise NotebookDeadline(cell_index - 1)
        self.started[cell_index] = time.monotonic()

    def on_cell_executed(
        self, cell: nbformat.NotebookNode, cell_index: int, execute_reply: dict
    ) -> None:
        run, index = self.run, cell_index - 1
        if not 0 <= index < len(run.cell_times):  # the probe's own cells
            return
        begun = self.started.get(cell_index, self.deadline)
        run.cell_times[index] = round(time.monotonic() - begun, 3)
        if execute_reply.get("content", {}).get("ename") == TIMEOUT_ENAME:
            run.timed_out.append(index)
            used = self.cell_limits.get(id(cell), self.limits.cell_timeout_s)
            run.messages.append(MSG_CELL_TIMEOUT.format(cell=index + 1, limit=used))
        if run.disk_full is None and self.sandbox.disk_used_up():
            run.disk_full = index
            limits = self.limits
            run.messages.append(
                MSG_DISK_FULL.format(cell=index + 1, limit=limits.disk_mb, files=limits.max_files)
            )


def _execute(
    nb: nbformat.NotebookNode,
    run: Execution,
    settings: RunSettings,
    km: AsyncKernelManager,
    sandbox: KernelSandbox,
    cwd: Path,
    env: dict[str, str],
) -> None:
    """Run ``nb`` in the sandboxed kernel; every way it can end is recorded on ``run``."""
    limits = settings.limits
    hooks = _Hooks(run=run, limits=limits, km=km, sandbox=sandbox)
    client = CappedClient(
        nb,
        km=km,
        max_output_bytes=limits.max_output_kb * 1024,
        max_total_bytes=limits.max_notebook_mb * 2**20,
        allow_errors=True,
        interrupt_on_timeout=True,
        timeout_func=hooks.limit,
        record_timing=True,
        on_notebook_start=hooks.on_notebook_start,
        on_cell_start=hooks.on_cell_start,
        on_cell_executed=hooks.on_cell_executed,
        shutdown_kernel="immediate",
        error_on_timeout=TIMEOUT_ERROR,
    )
    try:
        client.execute(cwd=str(cwd), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except NotebookDeadline as exc:
        run.notebook_timeout = True
        cell = int(str(exc)) + 1
        run.messages.append(MSG_NOTEBOOK_TIMEOUT.format(limit=limits.notebook_timeout_s, cell=cell))
    except DeadKernelError:
        running = [i for i in hooks.started if i > 0]
        run.kernel_died = max(running) - 1 if running else 0
        run.exit_code = kernel_exit_code(km)
    except RuntimeError as exc:  # jupyter_client: "Kernel died before replying to kernel_info"
        if hooks.started:
            raise
        run.kernel_died, run.exit_code = 0, kernel_exit_code(km)
        run.messages.append(MSG_KERNEL_NOT_STARTED.format(detail=exc))
    finally:
        pid = kernel_pid(km)
        shutdown(km)
        sandbox.teardown(pid)
    _record_limits(run, sandbox, client, limits, ran=bool(hooks.started))


def _record_limits(
    run: Execution, sandbox: KernelSandbox, client: CappedClient, limits: Limits, ran: bool
) -> None:
    """Out of memory, truncated output and a dead kernel, each as a line naming the cell."""
    run.out_of_memory, run.peak_memory_mb = sandbox.out_of_memory, sandbox.peak_memory_mb
    run.truncated = [i - 1 for i in client.truncated_cells if i > 0]
    run.messages += [
        MSG_TRUNCATED.format(cell=c + 1, limit=limits.max_output_kb) for c in run.truncated
    ]
    if run.kernel_died is not None and ran:
        cell = run.kernel_died + 1
        if run.out_of_memory:
            run.messages.append(MSG_OUT_OF_MEMORY.format(cell=cell, limit=limits.memory_mb))
        else:
            run.messages.append(MSG_KERNEL_DIED.format(cell=cell, how=how_it_ended(run.exit_code)))


def _drop_links(folder: Path, made: tuple[int, int]) -> None:
    """The kernel owns the probe folder: links it made there are never followed, and a
    folder put in its place (a link to elsewhere) is not read at all."""
    with map_dependency_errors(
        "kernel output", lambda exc: KernelOutputError(MSG_PROBE_FOLDER.format(detail=exc))
    ):
        if _identity(folder, follow=False) != made:
            raise OSError(errno.EPERM, MSG_PROBE_REPLACED)
        for path in folder.iterdir():
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                path.unlink()


def clear_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without the student's saved outputs: only what runs here is evidence."""
    copy = nbformat.from_dict(nb)
    for cell in copy.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return copy


def _kernel_env(root: Path, keras_home: Path, threads: int | None) -> dict[str, str]:
    env = dict(KERNEL_ENV)  # the whole environment but PATH and locale: nothing of the grader's
    env["KERAS_HOME"] = str(keras_home)
    env["TFDS_DATA_DIR"] = str(keras_home / TFDS_FOLDER)  # tfds.load finds the kit's copy
    env["HOME"] = str(root / "work")
    env.update(thread_env(threads))
    return env


def _identity(path: Path, follow: bool = True) -> tuple[int, int]:
    info = os.stat(path, follow_symlinks=follow)
    if not stat.S_ISDIR(info.st_mode):
        return (-1, -1)
    return info.st_dev, info.st_ino
