"""Benchmark: the sandbox's overhead, as a ratio against plain nbclient in the same run.

The same notebook (the reference solution by default, with the probe injected in quick
mode so both sides train the same capped amount) is executed alternately:

* **plain**: nbclient's ``NotebookClient`` with a kernel of this interpreter over TCP,
  no sandbox: the way most notebook graders run student code;
* **sandbox**: ``grader.run.execute.run_notebook``: launcher, namespaces, own uid, cgroups,
  ipc transport, output cap, clean-up.

Runs alternate (plain, sandbox, plain, ...) so drift on the machine hits both; the
report gives each side's median wall time and the ratio sandbox / plain (target <= 1.10).

Example: python bench/sandbox_overhead.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient

from grader.kit.assets import Kit, ensure_kit, prepare_keras_home
from grader.rubric.limits import Limits
from grader.run import probe
from grader.run.execute import KERNEL_ENV, RunSettings, clear_outputs, run_notebook
from grader.run.machine import capabilities

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_NOTEBOOK = ROOT / "reference_solution" / "transfer_learning.ipynb"
TARGET = 1.10


def quick_probe(folder: Path) -> probe.ProbeConfig:
    return probe.ProbeConfig(dir=folder, quick=True, max_epochs=1, max_steps_per_epoch=10)


def run_plain(
    nb: nbformat.NotebookNode, kit: Kit, config: probe.ProbeConfig | None = None
) -> float:
    """Plain nbclient: TCP kernel of this interpreter, no launcher, no limits."""
    root = Path(tempfile.mkdtemp(prefix="bench-plain-"))
    try:
        (root / "work").mkdir()
        (root / "probe").mkdir()
        keras_home = prepare_keras_home(kit, root / "keras_home")
        spec_dir = root / "kernels" / "plain"
        spec_dir.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        spec = {"argv": argv, "display_name": "plain", "language": "python"}
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        specs = KernelSpecManager(kernel_dirs=[str(root / "kernels")], ensure_native_kernel=False)
        km = AsyncKernelManager(kernel_name="plain", kernel_spec_manager=specs)
        config = config or quick_probe(Path("."))
        config = probe.ProbeConfig(**{**config.__dict__, "dir": root / "probe"})
        running = probe.inject(clear_outputs(nb), config)
        env = {**KERNEL_ENV, "KERAS_HOME": str(keras_home), "HOME": str(root / "work")}
        env["PATH"] = str(Path(sys.executable).parent) + ":/usr/bin:/bin"
        client = NotebookClient(running, km=km, allow_errors=True, timeout=600)
        start = time.monotonic()
        try:
            client.execute(cwd=str(root / "work"), env=env, stdout=subprocess.DEVNULL)
        finally:  # a km passed in is not shut down by nbclient: an idle kernel left
            run_sync(km.shutdown_kernel)(now=True)  # running would slow every later one
        return time.monotonic() - start
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_sandboxed(nb: nbformat.NotebookNode, settings: RunSettings) -> float:
    start = time.monotonic()
    run = run_notebook(nb, "bench.ipynb", settings)
    elapsed = time.monotonic() - start
    problems = run.messages + [f"{e.ename} in cell {e.cell + 1}" for e in run.errors]
    run.cleanup()
    if problems:
        raise SystemExit(f"the sandboxed run did not run cleanly: {problems}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", type=Path, default=DEFAULT_NOTEBOOK)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    kit = ensure_kit(progress=print)
    nb = nbformat.read(args.notebook, as_version=4)
    settings = RunSettings(
        kit=kit,
        limits=Limits(cell_timeout_s=600, notebook_timeout_s=1800),
        probe=quick_probe(Path(".")),
        hide=(str(Path.home()), str(ROOT)),
    )
    print(f"sandbox here: {capabilities()}")
    plain, sandboxed = [], []
    for i in range(args.repeats):
        plain.append(run_plain(nb, kit))
        sandboxed.append(run_sandboxed(nb, settings))
        print(f"round {i + 1}: plain {plain[-1]:.1f} s, sandbox {sandboxed[-1]:.1f} s", flush=True)
    ratio = statistics.median(sandboxed) / statistics.median(plain)
    verdict = "within" if ratio <= TARGET else "over"
    print(
        f"median plain {statistics.median(plain):.1f} s, sandbox "
        f"{statistics.median(sandboxed):.1f} s: ratio {ratio:.3f} ({verdict} the {TARGET} target)"
    )


if __name__ == "__main__":
    main()
