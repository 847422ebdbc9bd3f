"""The evaluator's sandbox: the one a kernel gets, around the process that loads a
student's saved model.

Keras's ``safe_mode`` refuses serialized code, but it is one layer and has had
published bypasses; the evaluator is where a student's file meets the grader's trusted
side. So the evaluator runs like a kernel (:class:`grader.run.sandbox.KernelSandbox`,
entered by :mod:`grader.run.kernel.launch`): its own unprivileged uid (never a kernel's:
:func:`~grader.run.uids.next_uid`), no network, the kernel's
mount view (the grader's inputs, caches and home covered; this Python, the grader
package and the public kit's weights bound back), memory and process limits in
cgroups, every process it leaves killed when it stops. It reads a copy of the holdout
and the one model it measures, copied into its ``inbox`` (the kernel that wrote it
cannot reach that copy): both owned by grader, readable by the evaluator's group
alone.

Each start is a fresh jail (a new uid and run folder, named for the grading process so a
killed grader's is swept); :meth:`EvaluatorJail.close` tears it down.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grader
from grader.run import cgroups
from grader.run.machine import python_paths
from grader.run.runfolders import make_run_folder, remove_run_folder
from grader.run.sandbox import KernelLimits, KernelSandbox, disk_quota, paths_to_hide

MAX_PROCESSES = 512
"""TensorFlow's thread pools count against a uid's process limit (each thread is a task)."""
MAX_FILE_MB = 64
"""The evaluator writes nothing of its own; a library's cache file at most."""
MODEL_NAME = "model.keras"
MAX_MODEL_BYTES = 2**30
"""The largest saved model copied in (a kernel's files are held to the rubric's size)."""
SPARE_MB, SPARE_FILES = 256, 10_000
"""The jail's folder holds the holdout's copy, one model and this much besides."""
MSG_NO_JAIL = "its sandbox could not be made ({what})"


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
        """Make the jail; an :class:`OSError` naming what failed (never a holdout path,
        which would reach students' rows) when it cannot be made, nothing left behind."""
        try:
            limits = _limits(self.memory_mb, self.holdout)
            self.root = make_run_folder(disk_quota(limits))
        except OSError as exc:
            raise OSError(MSG_NO_JAIL.format(what=type(exc).__name__)) from exc
        self.sandbox = KernelSandbox(
            root=self.root,
            limits=limits,
            hide=(*self.hide, *paths_to_hide(Path.home(), self.holdout)),
            expose=(*self.expose, *_code_paths()),
        )
        try:
            work, inbox, holdout = (self.root / n for n in ("work", "inbox", "holdout"))
            work.mkdir()
            inbox.mkdir()
            shutil.copytree(self.holdout, holdout, symlinks=False)
            self.policy = self.sandbox.prepare(writable=[work])
            for folder in (inbox, holdout):  # read by the evaluator's group alone
                _hand_over(folder, self.sandbox.uid)
        except (OSError, shutil.Error, RecursionError) as exc:
            self.close(None)
            raise OSError(MSG_NO_JAIL.format(what=type(exc).__name__)) from exc
        except BaseException:
            self.close(None)
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
        copy is what the evaluator reads, so nothing the kernel does later changes it.
        Only a plain file is copied (not a link, a pipe or a device), up to
        :data:`MAX_MODEL_BYTES`; anything else is an :class:`OSError`."""
        for old in (self.root / "inbox").iterdir():
            old.unlink()
        copy = self.root / "inbox" / MODEL_NAME
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
        with os.fdopen(os.open(model, flags), "rb") as source:
            info = os.fstat(source.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_MODEL_BYTES:
                raise OSError(errno.EINVAL, "not a plain file of at most 1 GB")
            made = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(made, "wb") as dest:
                shutil.copyfileobj(source, dest)
                _give_group(dest.fileno(), self.sandbox.uid, 0o640)
        return copy

    def out_of_memory(self) -> bool:
        """True once the jail's memory cgroup has killed something for memory."""
        return any(cgroups.oom_killed(c) for c in self.sandbox.cgroups)

    def close(self, pid: int | None) -> None:
        """Kill what is left of the evaluator (``pid``: its process), remove the jail."""
        self.sandbox.teardown(pid)
        remove_run_folder(self.root)


def _limits(memory_mb: int, holdout: Path) -> KernelLimits:
    """The evaluator's limits: its folder sized for the holdout's copy and one model."""
    size, files = 0, 0
    for folder, _dirs, names in os.walk(holdout):
        files += 1 + len(names)
        size += sum(os.lstat(os.path.join(folder, n)).st_size for n in names)
    disk_mb = (size + MAX_MODEL_BYTES) // 2**20 + SPARE_MB
    return KernelLimits(memory_mb, MAX_PROCESSES, MAX_FILE_MB, disk_mb, files + SPARE_FILES)


def _hand_over(folder: Path, uid: int | None) -> None:
    """``folder``'s tree read-only to ``uid``'s group (its own gid), owned by grader: the
    evaluator reads it, cannot change it, and no other uid can read it."""
    for path in [folder, *folder.rglob("*")]:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            _give_group(fd, uid, 0o750 if stat.S_ISDIR(os.fstat(fd).st_mode) else 0o640)
        finally:
            os.close(fd)


def _give_group(fd: int, uid: int | None, mode: int) -> None:
    """Set ``mode`` (the group bits for ``uid``'s group; without a uid of its own the
    evaluator is grader's user, and the owner's bits alone are kept)."""
    if uid is None:
        os.fchmod(fd, mode & 0o700)
        return
    os.fchown(fd, -1, uid)
    os.fchmod(fd, mode)


def _code_paths() -> tuple[str, ...]:
    """This Python installation and the grader package: what the evaluator runs."""
    return (*python_paths(), str(Path(grader.__file__).resolve().parent))
