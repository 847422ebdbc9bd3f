"""Progress of a batch: a bar on a terminal, a line per student, a log file.

On a terminal the last line is a bar redrawn in place (counts, ETA, the students being
graded now); each finished student's line is printed above it. Elsewhere (a pipe, CI,
a file) there is no bar and no control character: just the lines. The log file in
the output folder gets every event with a timestamp, whatever the terminal.
"""

from __future__ import annotations

import logging
import re
import shutil
import sys
import time
from pathlib import Path
from typing import TextIO

from grader.results import SubmissionResult

LOG_FILE = "grader.log"
BAR_WIDTH = 24
LINE_DONE = "  {student}: {score:g}/{max:g} {status} in {seconds:.0f} s{note}"
LINE_CACHED = "{n} of {total} already graded (results store); grading {left}"
BAR = "[{bar}] {done}/{total} {percent:3.0f}% {eta}{running}"
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""Control characters (escape sequences included) in student text: shown as ``?``."""


def open_log(out: Path) -> logging.Logger:
    """The batch's logger, writing to ``OUT/grader.log`` (appended: one file per folder)."""
    logger = logging.getLogger(f"grader.batch.runners.{out.resolve()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        out.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(out / LOG_FILE, encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
    return logger


def close_log(logger: logging.Logger) -> None:
    """Close the log file (a later batch into the same folder appends to it)."""
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)


def result_line(result: SubmissionResult) -> str:
    """The line printed when a student is done (control characters shown as ``?``)."""
    note = f" ({CONTROL.sub('?', result.message)})" if result.message else ""
    return LINE_DONE.format(
        student=result.student,
        score=result.score,
        max=result.max_score,
        status=result.status,
        seconds=result.duration_s,
        note=note,
    )


def eta_text(seconds: float | None) -> str:
    """``ETA 4m05s`` (``ETA --`` before the first result)."""
    if seconds is None:
        return "ETA --"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}h{minutes:02d}m" if hours else f"ETA {minutes}m{secs:02d}s"


class Progress:
    """Counts, ETA and the students in flight, shown as the batch goes."""

    def __init__(
        self,
        total: int,
        workers: int,
        stream: TextIO | None = None,
        logger: logging.Logger | None = None,
        bar: bool | None = None,
    ) -> None:
        self.total = total
        self.workers = max(1, workers)
        self.stream = stream or sys.stdout
        self.logger = logger
        self.bar = self.stream.isatty() if bar is None else bar
        self.done = 0
        self.running: list[str] = []
        self._started = time.monotonic()
        self.graded_time = 0.0
        self.graded = 0

    def skipped(self, cached: int) -> None:
        """``cached`` submissions already have results: counted as done, not timed."""
        self.done += cached
        if cached:
            line = LINE_CACHED.format(n=cached, total=self.total, left=self.total - cached)
            self._print(line)
        self._log(line if cached else f"grading {self.total} submission(s)")

    def start(self, student: str) -> None:
        """``student`` went to a worker."""
        self.running.append(student)
        self._log(f"started {student}")
        self._draw()

    def finish(self, result: SubmissionResult) -> None:
        """A result arrived: count it, print its line, redraw the bar."""
        if result.student in self.running:
            self.running.remove(result.student)
        self.done += 1
        self.graded += 1
        self.graded_time += result.duration_s
        self._print(result_line(result))
        self._log(result_line(result).strip())

    def close(self) -> None:
        """Clear the bar and log the batch's time."""
        if self.bar:
            self.stream.write("\r\033[K")
            self.stream.flush()
        elapsed = time.monotonic() - self._started
        self._log(f"finished {self.done}/{self.total} in {elapsed:.0f} s")

    def eta(self) -> float | None:
        """Seconds left: the mean time per submission so far, spread over the workers."""
        if not self.graded:
            return None
        left = self.total - self.done
        per = self.graded_time / self.graded
        in_flight = len(self.running)
        return max(0.0, (left - in_flight) * per / self.workers + per / 2 * bool(in_flight))

    def render(self, width: int = 100) -> str:
        """The bar's text, cut to ``width``."""
        filled = int(BAR_WIDTH * self.done / self.total) if self.total else BAR_WIDTH
        running = f"  now: {', '.join(self.running)}" if self.running else ""
        line = BAR.format(
            bar="#" * filled + "." * (BAR_WIDTH - filled),
            done=self.done,
            total=self.total,
            percent=100 * self.done / self.total if self.total else 100,
            eta=eta_text(self.eta()),
            running=running,
        )
        return line if len(line) <= width else line[: max(0, width - 1)] + "…"

    def _print(self, line: str) -> None:
        if self.bar:
            self.stream.write("\r\033[K")
        self.stream.write(line + "\n")
        self._draw()

    def _draw(self) -> None:
        if self.bar:
            width = shutil.get_terminal_size((100, 20)).columns
            self.stream.write("\r\033[K" + self.render(width - 1))
        self.stream.flush()

    def _log(self, message: str) -> None:
        if self.logger is not None:
            self.logger.info(message)
