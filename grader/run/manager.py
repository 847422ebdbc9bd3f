"""The Jupyter kernel manager of one run: a kernel of this interpreter started through
the sandbox launcher, and what can be learnt of its process (pid, how it ended)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_core.utils import run_sync

KERNEL_NAME = "grader-python"


def shutdown(km: AsyncKernelManager) -> None:
    """Stop the kernel: nbclient leaves a kernel manager it was given running."""
    try:
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
    except Exception:  # already gone is fine: nothing to stop
        pass


def kernel_manager(root: Path, argv: list[str]) -> AsyncKernelManager:
    """A kernel of this very interpreter, started through the sandbox launcher.

    Its sockets are unix sockets in the run's ``ipc/`` folder (TCP cannot cross from a
    kernel alone in its own network namespace).
    """
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {"argv": argv, "display_name": "grader", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(root / "kernels")], ensure_native_kernel=False)
    return AsyncKernelManager(
        kernel_name=KERNEL_NAME,
        kernel_spec_manager=specs,
        transport="ipc",
        ip=str(root / "ipc" / "k"),
        connection_file=str(root / "ipc" / "connection.json"),
    )


def kernel_pid(km: AsyncKernelManager) -> int | None:
    process = getattr(km.provisioner, "process", None) if km.has_kernel else None
    return getattr(process, "pid", None)


def kernel_exit_code(km: AsyncKernelManager) -> int | None:
    process = getattr(km.provisioner, "process", None) if km.provisioner else None
    if process is None:
        return None
    for _ in range(20):
        if process.poll() is not None:
            return process.returncode
        time.sleep(0.05)
    return None


def how_it_ended(exit_code: int | None) -> str:
    if exit_code is None:
        return "no exit status"
    if exit_code < 0:
        try:
            return f"killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"killed by signal {-exit_code}"
    return f"exit code {exit_code}"
