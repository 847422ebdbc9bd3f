"""What one notebook may use: the rubric's ``[limits]``."""

from __future__ import annotations

from dataclasses import dataclass

MODE_QUICK, MODE_FULL, MODE_CHECK = "quick", "full", "check"
"""Run modes: ``--quick``'s caps, no caps, and the self-check's own caps."""
MODES = (MODE_QUICK, MODE_CHECK, MODE_FULL)
STUDENT_MODES = (MODE_CHECK, MODE_FULL)
"""What ``grader check`` runs: ``check`` (its caps) and ``full`` (``--full``); a published
student rubric carries the reference's figures for these."""


@dataclass(frozen=True)
class Limits:
    """What one notebook may use (``[limits]``), and what happens past each limit."""

    cell_timeout_s: float = 240.0
    """Seconds one cell may run; then it is interrupted, recorded, and the next cell runs."""
    notebook_timeout_s: float = 900.0
    """Seconds all cells of one notebook may run together: each cell's limit shrinks to
    what is left, and the cells after the one that used it up are not run."""
    memory_mb: int = 4096
    """Memory for the kernel and everything it starts (cgroup, or an RSS watchdog); past
    it the kernel is killed and the result says out of memory."""
    max_processes: int = 512
    """Processes and threads the kernel may have at once (TensorFlow needs ~100)."""
    max_file_mb: int = 1024
    """Largest file the kernel may write (``RLIMIT_FSIZE``)."""
    disk_mb: int = 2048
    """What the kernel's run folder may hold (a file system of its own, as root); past it
    writes fail with "No space left on device". It lives in memory: with a memory cgroup
    what it holds counts towards ``memory_mb`` too."""
    max_files: int = 50_000
    """Files, folders and links the run folder may hold (its file system's inodes)."""
    max_output_kb: int = 4096
    """Output kept per cell; the rest is dropped behind a visible marker."""
    max_notebook_mb: int = 25
    """Largest notebook file graded (outputs included); a larger one is ``invalid``,
    refused before it is read."""
    max_cell_kb: int = 100
    """Most source one cell may hold (UTF-8); a notebook with a larger cell is
    ``invalid`` (a tutorial's longest cell holds about 3 KB)."""
