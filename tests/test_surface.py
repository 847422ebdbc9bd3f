"""The public surface other people rely on, as they reach it (no kernel).

Students import :func:`grader.notebook.check_here`; instructors run the ``grader``
command; other tools read the output contract of DESIGN.md; maintainers read the
README's Layout as the map of the package. Moving code inside grader must change none
of the first three, and must redraw the map.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from grader import __version__
from grader.notebook import check_here
from grader.outputs.write import ClassInfo, write_outputs
from grader.results import SOURCE_STATIC, STATUS_GRADED, CellError, CheckResult, SubmissionResult
from grader.run import cgroups, machine

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SAMPLE = ROOT / "submissions" / "s1003_smith.ipynb"
COMMANDS = {
    "grade",
    "check",
    "reference",
    "calibrate",
    "report",
    "feedback",
    "gradescope",
    "publish",
    "assets",
}
"""The ``grader`` command's subcommands, as the README documents them."""
CONTRACT_RECORD_KEYS = {
    "student",
    "file",
    "sha256",
    "status",
    "score",
    "max_score",
    "checks",
    "errors",
    "duration_s",
    "flags",
}
"""DESIGN.md's output contract: the keys of each ``results.jsonl`` object."""
CONTRACT_CHECK_KEYS = {"id", "passed", "score", "max_score", "message", "source"}
CONTRACT_ERROR_KEYS = {"cell", "ename", "evalue"}


def grader_process(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter running ``args``, importing this checkout's grader."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GRADER_GRADING", None)
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


WITHOUT_POSIX = """
import importlib.abc, sys
POSIX_ONLY = {"fcntl", "resource", "pwd", "grp", "termios", "pty"}
class Windows(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in POSIX_ONLY:
            raise ModuleNotFoundError(f"No module named {name!r}")
for name in POSIX_ONLY:
    sys.modules.pop(name, None)
sys.meta_path.insert(0, Windows())
from grader.cli import entry
sys.argv = ["grader", *sys.argv[1:]]
entry()
"""
"""``grader`` as Windows' Python would import it: none of the POSIX-only modules."""


@pytest.mark.parametrize(
    "args",
    [("--help",), ("check", "--help"), ("check", "submissions/s1003_smith.ipynb", "--static")],
)
def test_help_and_the_static_check_need_nothing_posix_only(args: tuple[str, ...]) -> None:
    proc = grader_process("-c", WITHOUT_POSIX, *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "No module named" not in proc.stderr


def test_a_machine_without_linux_gets_no_sandbox_and_finds_no_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """macOS and Windows: no namespace, cgroup, seccomp filter or quota is tried, the
    student is told once, and the watchdog's and clean-up's process lists are empty
    where there is no ``/proc`` instead of failing."""
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(cgroups, "PROC", str(tmp_path / "no-proc"))
    machine.capabilities.cache_clear()
    try:
        caps = machine.capabilities()
        assert not (caps.root or caps.namespaces or caps.cgroup or caps.seccomp or caps.quota)
        said: list[str] = []
        machine.tell_student(said.append)
        assert said == [machine.MSG_STUDENT_NO_SANDBOX]
    finally:
        machine.capabilities.cache_clear()
    assert cgroups.proc_pids() == [] and cgroups.rss(os.getpid()) == 0
    assert cgroups.pids_of_session(os.getsid(0)) == set() == cgroups.pids_of_uid(os.getuid())
    assert cgroups.pids_in_namespace("pid:[1]") == set()


def test_check_here_takes_what_students_pass() -> None:
    parameters = inspect.signature(check_here).parameters
    assert list(parameters) == ["path", "static", "full", "rubric"]
    assert all(parameters[name].default in (None, False) for name in parameters)


def test_check_here_runs_as_the_readme_writes_it() -> None:
    """The README's one line, in a plain interpreter, on a sample notebook."""
    lines = README.read_text().splitlines()
    line = next((line for line in lines if "import check_here" in line), None)
    assert line is not None, "the README no longer shows students the check_here line"
    code = line.replace('"week6.ipynb"', repr(str(SAMPLE.relative_to(ROOT))))
    proc = grader_process("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert "[PASS] MobileNetV2 loaded without its ImageNet classifier" in proc.stdout


def test_grader_help_lists_the_commands() -> None:
    proc = grader_process("-m", "grader", "--help")
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split("Commands:", 1)[1]
    names = {m.group(1) for m in re.finditer(r"^\s+(\w+)\s", listed, re.MULTILINE)}
    assert names == COMMANDS


def test_console_script_and_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"grader": "grader.cli:entry"}
    assert __version__ == project["version"]
    proc = grader_process("-m", "grader", "--version")
    assert proc.returncode == 0 and __version__ in proc.stdout, proc.stdout + proc.stderr


def _result() -> SubmissionResult:
    check = CheckResult(
        id="base_frozen",
        passed=True,
        score=2.0,
        max_score=2.0,
        message="the base is frozen",
        source=SOURCE_STATIC,
    )
    return SubmissionResult(
        student="s1001_ada",
        file="s1001_ada.ipynb",
        sha256="a" * 64,
        status=STATUS_GRADED,
        score=2.0,
        max_score=2.0,
        checks=[check],
        errors=[CellError(cell=3, ename="ValueError", evalue="bad shape")],
    )


def test_output_contract_files_and_keys(tmp_path: Path) -> None:
    """``results.jsonl``, ``grades.csv`` and ``reports/<student>.html`` under OUT, and each
    result's contract keys. (``executed/<student>.ipynb`` is written while grading: the
    kernel tests read it.)"""
    write_outputs([_result()], ClassInfo(check_ids=["base_frozen"]), tmp_path)
    assert (tmp_path / "grades.csv").is_file()
    assert (tmp_path / "reports" / "s1001_ada.html").is_file()
    (line,) = (tmp_path / "results.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert CONTRACT_RECORD_KEYS <= set(record)
    assert CONTRACT_CHECK_KEYS <= set(record["checks"][0])
    assert CONTRACT_ERROR_KEYS <= set(record["errors"][0])


LAYOUT_HEADING = "## Layout"


def layout_paths(readme: str) -> set[str]:
    """The paths the README's Layout tree names: ``grader/run/kernel/launch.py``, ...

    A line names entries when its first word ends in ``.py`` or ``/``; the words up to
    the first gap of two spaces are entries, nested under the folder above them by
    indentation (two spaces a level)."""
    block = readme.split(LAYOUT_HEADING, 1)[1].split("```", 2)[1]
    folders: list[str] = []
    found = set()
    for line in block.splitlines():
        names = line.strip().split("  ", 1)[0].split()
        if not names or not names[0].endswith((".py", "/")):
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        folders = folders[:depth]
        found |= {"".join([*folders, name]).rstrip("/") for name in names}
        if names[0].endswith("/"):
            folders.append(names[0])
    return found


def test_readme_layout_names_every_module() -> None:
    """The Layout section of README.md is the map of the house: every module and package
    of grader is on it, and nothing on it is gone."""
    named = layout_paths(README.read_text())
    sources = [p for p in (ROOT / "grader").rglob("*.py") if "__pycache__" not in p.parts]
    modules = {p.relative_to(ROOT).as_posix() for p in sources if p.name != "__init__.py"}
    packages = {p.parent.relative_to(ROOT).as_posix() for p in sources if p.name == "__init__.py"}
    missing = sorted((modules | packages) - named)
    assert not missing, f"missing from the README's Layout: {missing}"
    gone = sorted(p for p in named if not (ROOT / p).exists())
    assert not gone, f"on the README's Layout, not in the tree: {gone}"
