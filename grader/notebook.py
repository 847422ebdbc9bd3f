"""Self-check from inside a notebook: one line in a cell, the checklist shown inline.

    from grader.notebook import check_here; check_here("week6.ipynb")

It runs ``grader check`` on the notebook *as saved on disk* (save first) in a separate
process, so the student's kernel imports nothing heavy and keeps its state. Without a
path it uses the notebook's own (Jupyter tells the kernel through ``__session__``).
Left in a submitted notebook it does nothing: while grading it only prints a note.

In Google Colab the notebook is not a file beside the kernel; there the cell is

    from grader.notebook import check_colab; check_colab()

which asks Colab for the running notebook (unsaved edits included), saves it into the
working folder (``/content``) and checks that copy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

GRADING_VARIABLE = "GRADER_GRADING"
"""Set in every grading kernel's environment (see :mod:`grader.run.execute`)."""
MSG_WHILE_GRADING = "[grader] check_here() does nothing while the notebook is being graded."
ANSWER_TEMPLATE = "check_here.html.j2"
PASSED_COLOUR, FAILED_COLOUR = "#116329", "#b3261e"
MSG_NO_PATH = "check_here() needs the notebook's file name, e.g. check_here('week6.ipynb')."
MSG_NOT_COLAB = "check_colab() runs in Google Colab; elsewhere use check_here('week6.ipynb')."
COLAB_COPY = "colab_notebook.ipynb"
"""The name the running Colab notebook is saved under for the check."""
COLAB_TIMEOUT_S = 30


def check_here(
    path: str | os.PathLike[str] | None = None,
    static: bool = False,
    full: bool = False,
    rubric: str | os.PathLike[str] | None = None,
) -> int:
    """Check the saved notebook and show the checklist in the cell; returns the exit code."""
    if os.environ.get(GRADING_VARIABLE):
        print(MSG_WHILE_GRADING)
        return 0
    notebook = path or _own_notebook()
    if not notebook:
        print(MSG_NO_PATH)
        return 2
    command = [sys.executable, "-m", "grader", "check", str(notebook)]
    command += ["--static"] * static + ["--full"] * full
    command += ["--rubric", str(rubric)] if rubric else []
    proc = subprocess.run(command, capture_output=True, text=True)
    _show(proc.stdout + proc.stderr, proc.returncode)
    return proc.returncode


def check_colab(
    static: bool = False,
    full: bool = False,
    rubric: str | os.PathLike[str] | None = None,
    fetch: Callable[[], Any] | None = None,
) -> int:
    """In Colab: check the notebook this cell is in (as it is now, saved or not), saved
    as ``colab_notebook.ipynb`` in the working folder; returns the exit code. ``fetch``
    gives the notebook as JSON data (default: ask Colab's frontend for it)."""
    if os.environ.get(GRADING_VARIABLE):
        print(MSG_WHILE_GRADING)
        return 0
    notebook = (fetch or _colab_notebook)()
    if not isinstance(notebook, dict):
        print(MSG_NOT_COLAB)
        return 2
    path = Path.cwd() / COLAB_COPY
    path.write_text(json.dumps(notebook), encoding="utf-8")
    return check_here(path, static=static, full=full, rubric=rubric)


def _colab_notebook() -> Any:
    """The running notebook, from Colab's frontend; None outside Colab."""
    try:
        from google.colab import _message  # Colab's own module, only there
    except ImportError:
        return None
    reply = _message.blocking_request("get_ipynb", request="", timeout_sec=COLAB_TIMEOUT_S)
    return reply.get("ipynb") if isinstance(reply, dict) else None


def _own_notebook() -> str | None:
    main = sys.modules.get("__main__")
    session = getattr(main, "__session__", None)
    return session if isinstance(session, str) and session.endswith(".ipynb") else None


def _show(text: str, code: int) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:  # a Python without IPython
        print(text)
        return
    if get_ipython() is None:  # a plain Python session
        print(text)
        return
    display(HTML(answer_html(text, code)))


def answer_html(text: str, code: int) -> str:
    """The checklist ``grader check`` printed, as the cell shows it: green when every
    check passed, red otherwise, with a link to the report when one was written."""
    from grader.outputs.templating import render

    report = next((line[8:] for line in text.splitlines() if line.startswith("Report: ")), None)
    colour = PASSED_COLOUR if code == 0 else FAILED_COLOUR
    return render(ANSWER_TEMPLATE, text=text, colour=colour, report=report and Path(report).name)
