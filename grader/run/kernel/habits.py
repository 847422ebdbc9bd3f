"""Colab and Jupyter habits inside the student's kernel, and the one IPython line grammar.

Students write ``!pip install``, ``%%bash`` cells and ``from google.colab import drive``.
While grading those cost no crash: :func:`install` adds an IPython input transformer
that turns every shell line into a printed note (:func:`neutralise_shell`), and puts an
inert ``google.colab`` in ``sys.modules``. The course's data comes by the routes
students download it (:func:`offline_shell`): ``!wget``/``!curl`` of a file the
kernel's Keras cache holds (by its name: the course's archive, whatever the origin)
writes that copy where the command would, ``!unzip`` is done in Python, and
``urllib.request.urlretrieve`` and ``requests`` serve the same copies; nothing goes to
the network.

This module is also the single definition of which lines IPython reads as its own
syntax rather than Python (:func:`is_ipython_line`, :data:`CELL_MAGIC`), which of them
run a shell (:data:`SHELL_LINE`, :data:`SHELL_CELL`) or a package installer
(:data:`INSTALL_LINE`), and where a line starts a statement (:func:`scan_line`): the
static analysis (:mod:`grader.static.magics`) and the notes to the student
(:mod:`grader.checks.notes`) import them from here. A line counts only at the start of
a logical line, as IPython itself reads it: not inside brackets, strings or after a
backslash.

It runs in the kernel as its file's text (the kernel cannot import grader), so it
imports nothing from grader.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import sys
import types
import urllib.parse
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ASSIGN_TARGET = r"[\w.\[\], ]+=\s*"
"""The left side of ``x = !ls`` or ``a, b = %sx ls``: names, attributes, subscripts."""
SHELL_LINE = re.compile(rf"^(\s*)({ASSIGN_TARGET})?(!|%pip\b|%conda\b|%system\b|%sx\b)")
"""A line that runs a shell: groups are the indent, the assignment target, the escape."""
SHELL_CELL = re.compile(r"^\s*%%(bash|sh|script|system)\b")
"""The first line of a cell that runs in a shell."""
INSTALL_LINE = re.compile(r"^\s*(!\s*(pip|conda|apt)|%pip\b|%conda\b)")
"""A shell line that installs packages (every one is also a :data:`SHELL_LINE`)."""
CELL_MAGIC = re.compile(r"%%(\w+)")
"""The first line of a cell magic, matched on the stripped line."""
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})
"""Cell magics whose body is Python."""
MAGIC_START = re.compile(r"[!%?]")
MAGIC_ASSIGN = re.compile(rf"{ASSIGN_TARGET}[!%]")
HELP_SUFFIX = re.compile(r"[\w.]+\?{1,2}$")

SKIPPED_CELL = "print('[grader] shell cell skipped while grading')\n"
SKIPPED_LINE = "[grader] skipped while grading: "
MODULE_NAME = "_grader_habits"
"""The name this module runs under in the kernel's ``sys.modules``."""
SERVED_LINE = re.compile(r"^\s*!\s*(wget|curl|unzip)\s")
"""A shell line :func:`offline_shell` serves (a download or an unzip), not skipped."""
MSG_SERVED = "[grader] {name}: the course's offline copy (no network while grading)"
MSG_NOT_SERVED = "[grader] no network while grading, and no offline copy of {name}: skipped"
MSG_NO_ARCHIVE = "[grader] unzip: cannot find {name}"


def is_ipython_line(line: str) -> bool:
    """A magic, shell or help line (``%time f()``, ``!ls``, ``x = %sx ls``, ``len?``)."""
    stripped = line.strip()
    return bool(
        MAGIC_START.match(stripped)
        or MAGIC_ASSIGN.match(stripped)
        or HELP_SUFFIX.fullmatch(stripped)
    )


def first_code_line(lines: list[str]) -> str:
    """The first line that is not blank: where IPython looks for a cell magic."""
    return next((line for line in lines if line.strip()), "")


def scan_line(line: str, depth: int, quote: str | None) -> tuple[int, str | None, bool]:
    """Bracket depth, open string quote and backslash continuation after ``line``."""
    i = 0
    while i < len(line):
        if quote:
            if line.startswith(quote, i):
                i, quote = i + len(quote), None
            else:
                i += 2 if line[i] == "\\" else 1
            continue
        char = line[i]
        if char == "#":
            return depth, None, False
        if char in "'\"":
            quote = char * 3 if line.startswith(char * 3, i) else char
            i += len(quote)
            continue
        depth = max(0, depth + (char in "([{") - (char in ")]}"))
        i += 1
    continued = line.endswith("\\")
    if quote and len(quote) == 1 and not continued:
        quote = None
    return depth, quote, continued


def neutralise_shell(lines: list[str]) -> list[str]:
    """A cell's lines (each ending in a newline) with every shell line made harmless.

    A shell cell becomes one printed note; a shell line becomes a printed note at its
    indent, or ``target = []`` when its output was assigned; the lines it continues
    with a backslash become blank. Line numbers are kept.
    """
    if SHELL_CELL.match(first_code_line(lines)):
        return [SKIPPED_CELL]
    out: list[str] = []
    depth, quote, continued, skipping = 0, None, False, False
    for line in lines:
        text = line.rstrip("\n")
        match = None if depth or quote or continued else SHELL_LINE.match(text)
        if skipping or match:
            out.append(_replacement(match, text) if match and not skipping else "\n")
            skipping = text.endswith("\\")
            continue
        out.append(line)
        depth, quote, continued = scan_line(text, depth, quote)
    return out


def _replacement(match: re.Match[str], line: str) -> str:
    indent, target = match.group(1), match.group(2) or ""
    command = line.strip()
    if not target and SERVED_LINE.match(command) and not command.endswith("\\"):
        return indent + f"__import__({MODULE_NAME!r}).offline_shell({command[1:].strip()!r})\n"
    note = SKIPPED_LINE + line.strip()[:100]
    return indent + (target + "[]" if target else f"print({note!r})") + "\n"


def install() -> None:
    """Shell lines print a note instead of running; ``google.colab`` is inert."""
    from IPython import get_ipython

    get_ipython().input_transformers_cleanup.insert(0, neutralise_shell)
    install_colab()
    install_urlretrieve()
    install_requests()


def _say(text: str) -> Callable[..., dict[str, Any]]:
    def inert(*args: Any, **kwargs: Any) -> dict[str, Any]:
        print("[grader] " + text)
        return {}

    return inert


def install_colab() -> None:
    """An inert ``google.colab``: ``drive.mount`` and ``files.upload`` print a note."""
    colab = types.ModuleType("google.colab")
    drive = types.ModuleType("google.colab.drive")
    files = types.ModuleType("google.colab.files")
    unmounted = _say(
        "Google Drive is not mounted while grading: the course's data is served at the "
        "Drive path the notebook names"
    )
    vars(drive).update(mount=unmounted, flush_and_unmount=unmounted)
    vars(files).update(
        upload=_say("files.upload() returns nothing while grading"),
        download=_say("files.download() skipped while grading"),
    )
    vars(colab).update(drive=drive, files=files)
    sys.modules.update(
        {"google.colab": colab, "google.colab.drive": drive, "google.colab.files": files}
    )
    try:
        import google

        vars(google)["colab"] = colab
    except ImportError:
        pass


# --- the course's data by the students' download routes, offline -------------------------


def offline_copy(url: str) -> Path | None:
    """The kernel's cached copy of the file ``url`` names (None: there is none)."""
    name = Path(urllib.parse.urlparse(url).path).name
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    cached = home / "datasets" / name
    return cached if name and cached.is_file() else None


def offline_shell(command: str) -> None:
    """``wget``/``curl`` of a cached file, or ``unzip``: what the shell line would do."""
    try:
        words = shlex.split(_expanded(command))
    except ValueError:
        words = []
    if words and words[0] == "unzip":
        _unzip(words[1:])
    elif words:
        url, dest = _download_target(words[0], words[1:])
        cached = offline_copy(url) if url else None
        name = Path(urllib.parse.urlparse(url).path).name if url else command
        if cached is None or dest is None:
            print(MSG_NOT_SERVED.format(name=name))
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached, dest)
        print(MSG_SERVED.format(name=name))


def _expanded(command: str) -> str:
    """``{name}`` and ``$name`` filled in from the notebook's variables, as IPython does
    for a shell line (the line reached here before IPython could)."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    return shell.var_expand(command, depth=2) if shell is not None else command


def _download_target(tool: str, args: list[str]) -> tuple[str | None, Path | None]:
    """The URL and where ``wget`` or ``curl`` would write it (None: to the screen)."""
    url = next((a for a in args if re.match(r"(https?|ftp)://", a)), None)
    name = Path(urllib.parse.urlparse(url).path).name if url else ""
    out, folder, remote = None, None, tool == "wget"
    for i, arg in enumerate(args):
        value = args[i + 1] if i + 1 < len(args) else None
        if tool == "wget" and arg in ("-O", "--output-document"):
            out = value
        elif tool == "wget" and arg.startswith(("--output-document=", "-O")) and len(arg) > 2:
            out = arg.split("=", 1)[1] if arg.startswith("--") else arg[2:]
        elif tool == "wget" and arg in ("-P", "--directory-prefix"):
            folder = value
        elif tool == "wget" and arg.startswith("--directory-prefix="):
            folder = arg.split("=", 1)[1]
        elif tool == "curl" and arg in ("-o", "--output"):
            out = value
        elif tool == "curl" and (arg in ("-O", "--remote-name") or _short_flags(arg, "O")):
            remote = True
    if out is not None:
        return url, None if out == "-" else Path(out)
    return url, (Path(folder or ".") / name) if remote and name else None


def _short_flags(arg: str, flag: str) -> bool:
    """``-sLO``: a bundle of one-letter flags holding ``flag``."""
    return bool(re.fullmatch(r"-[A-Za-z]+", arg)) and flag in arg[1:]


def _unzip(args: list[str]) -> None:
    """``unzip [-q] [-o] ARCHIVE [-d FOLDER]``, with Python's zipfile."""
    folder, plain, skip = ".", [], False
    for i, arg in enumerate(args):
        if skip:
            skip = False
        elif arg == "-d" and i + 1 < len(args):
            folder, skip = args[i + 1], True
        elif not arg.startswith("-"):
            plain.append(arg)
    archive = Path(plain[0]) if plain else None
    if archive is None or not archive.is_file():
        print(MSG_NO_ARCHIVE.format(name=archive))
        return
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(folder, plain[1:] or None)


def install_urlretrieve() -> None:
    """``urllib.request.urlretrieve`` serves cached copies; any other URL goes to the
    real function (and fails as it would without a network)."""
    import urllib.request

    real = urllib.request.urlretrieve

    def urlretrieve(url: str, filename: Any = None, *args: Any, **kwargs: Any) -> Any:
        cached = offline_copy(str(url))
        if cached is None:
            return real(url, filename, *args, **kwargs)
        target = Path(filename) if filename else Path.cwd() / cached.name
        shutil.copyfile(cached, target)
        print(MSG_SERVED.format(name=cached.name))
        return str(target), {}

    urllib.request.urlretrieve = urlretrieve


def install_requests() -> None:
    """``requests`` (where it is installed) answers a URL naming a cached copy with that
    copy, as a server would (``.content``, ``.iter_content``, ``.raw``); any other
    request goes on (and fails as it would without a network)."""
    try:
        import requests.adapters
        import requests.models
    except ImportError:
        return
    adapter = requests.adapters.HTTPAdapter
    real = adapter.send

    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        cached = offline_copy(str(request.url))
        if cached is None:
            return real(self, request, *args, **kwargs)
        content = cached.read_bytes()
        response = requests.models.Response()
        response.status_code, response.reason = 200, "OK"
        response.url, response.request = request.url, request
        response.headers["Content-Length"] = str(len(content))
        response._content, response._content_consumed = content, True
        response.raw = io.BytesIO(content)
        print(MSG_SERVED.format(name=cached.name))
        return response

    adapter.send = send
