"""The evaluator's sandbox: the one a kernel gets, around the process that loads a
student's saved model.

Keras's ``safe_mode`` refuses serialized code, but it is one layer and has had
published bypasses; the evaluator is where a student's file meets the grader's trusted
side. So the evaluator runs like a kernel (:class:`grader.run.sandbox.KernelSandbox`,
entered by :mod:`grader.run.kernel.launch`): its own unprivileged uid, no network, a
private mount view with the grader's inputs and caches hidden, memory and process
limits in cgroups, every process it leaves killed when it stops. What it may read:
this Python, the grader package, the public kit's weights (to tell whether the base
moved), a copy of the holdout owned by its uid alone, and the one model it measures,
copied into its ``inbox`` (the kernel that wrote it cannot reach that copy).

Each start is a fresh jail (a new uid and run folder, named for the grading process so a
killed grader's is swept); :meth:`EvaluatorJail.close` tears it down.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grader
from grader.run import cgroups
from grader.run.runfolders import make_run_folder
from grader.run.sandbox import KernelLimits, KernelSandbox, paths_to_hide, python_paths
from grader.run.trees import remove_tree

MAX_PROCESSES = 512
"""TensorFlow's thread pools count against a uid's process limit (each thread is a task)."""
MAX_FILE_MB = 64
"""The evaluator writes nothing of its own; a library's cache file at most."""
MODEL_NAME = "model.keras"


@dataclass
class EvaluatorJail:
    """One evaluator process's sandbox: its folder, uid, cgroups and view."""

    holdout: Path
    """The holdout folder the grader was given (copied in: the original stays hidden)."""
    memory_mb: int
    hide: tuple[str, ...] = ()
    """Paths covered in the evaluator's view (the grader's inputs and caches); its home
    and the holdout's own folder are always covered."""
    expose: tuple[str, ...] = ()
    """Paths bound back into it besides Python and the grader package (the kit's weights)."""
    root: Path = field(init=False)
    sandbox: KernelSandbox = field(init=False)
    policy: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = make_run_folder()
        try:
            work, inbox, holdout = (self.root / n for n in ("work", "inbox", "holdout"))
            work.mkdir()
            inbox.mkdir(mode=0o755)
            shutil.copytree(self.holdout, holdout, symlinks=False)
            self.sandbox = KernelSandbox(
                root=self.root,
                limits=KernelLimits(self.memory_mb, MAX_PROCESSES, MAX_FILE_MB),
                hide=(*self.hide, *paths_to_hide(Path.home(), self.holdout)),
                expose=(*self.expose, *_code_paths()),
            )
            self.policy = self.sandbox.prepare(writable=[work, holdout])
            os.chmod(holdout, 0o700)
        except BaseException:
            remove_tree(self.root)
            raise

    @property
    def holdout_copy(self) -> Path:
        return self.root / "holdout"

    def argv(self, command: list[str]) -> list[str]:
        """``command`` started inside the jail, through the kernel's launcher."""
        launch = [sys.executable, "-m", "grader.run.kernel.launch", str(self.policy), "--"]
        return [*launch, *command]

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """The evaluator's whole environment: ``base`` and a home inside its folder."""
        home = str(self.root / "work")
        return self.sandbox.env({**base, "HOME": home, "KERAS_HOME": f"{home}/.keras"})

    def admit(self, model: Path) -> Path:
        """Copy the one model to measure into the inbox (the last one's copy goes); the
        copy is what the evaluator reads, so nothing the kernel does later changes it."""
        for old in (self.root / "inbox").iterdir():
            old.unlink()
        copy = self.root / "inbox" / MODEL_NAME
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(model, flags), "rb") as source, open(copy, "wb") as dest:
            shutil.copyfileobj(source, dest)
        os.chmod(copy, 0o644)
        return copy

    def out_of_memory(self) -> bool:
        """True once the jail's memory cgroup has killed something for memory."""
        return any(cgroups.oom_killed(c) for c in self.sandbox.cgroups)

    def close(self, pid: int | None) -> None:
        """Kill what is left of the evaluator (``pid``: its process), remove the jail."""
        self.sandbox.teardown(pid)
        remove_tree(self.root)


def _code_paths() -> tuple[str, ...]:
    """This Python installation and the grader package: what the evaluator runs."""
    return (*python_paths(), str(Path(grader.__file__).resolve().parent))
