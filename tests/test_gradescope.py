"""Gradescope's autograder: the bundle, its results.json, and a run laid out as Gradescope
lays it out (``/autograder/source``, ``submission``, ``results``, under a root of the
test's own).

``results.json`` is checked against Gradescope's autograder specification
(gradescope-autograders.readthedocs.io, "Autograder Specifications"): a top-level
``score`` and ``tests``, each test ``score``, ``max_score``, ``name``, ``number``,
``output``, ``status`` in ``passed``/``failed``, ``visibility`` among ``hidden``,
``after_due_date``, ``after_published``, ``visible``; ``execution_time`` in seconds; a
``leaderboard`` of ``name``/``value``/``order`` entries.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from grader.cli import main
from grader.gradescope.bundle import BUNDLE_FILE, PACKAGE_DIR, RUBRIC_FILE, RUN, SETUP
from grader.gradescope.results import VISIBILITIES, gradescope_results
from grader.results import CheckResult, SubmissionResult
from grader.rubric.schema import load_rubric
from tests.conftest import FIXTURES, ROOT, reachable_script

COURSE_RUBRIC = ROOT / "rubrics" / "transfer_learning.toml"
TEST_RUBRIC = FIXTURES / "rubric_fast.toml"
TOP_KEYS = {"score", "execution_time", "output", "output_format", "test_output_format"}
TEST_KEYS = {"name", "number", "score", "max_score", "status", "output", "visibility"}


def assert_gradescope_spec(data: dict) -> None:
    assert isinstance(data["score"], float | int) and isinstance(data["tests"], list)
    assert TOP_KEYS | {"tests"} <= set(data) | {"execution_time"}
    for test in data["tests"]:
        assert set(test) == TEST_KEYS
        assert test["status"] in ("passed", "failed") and test["visibility"] in VISIBILITIES
        assert 0 <= test["score"] <= test["max_score"]
    for entry in data.get("leaderboard", []):
        assert set(entry) == {"name", "value", "order"} and entry["order"] in ("asc", "desc")


def a_result() -> SubmissionResult:
    shown = CheckResult("base_frozen", True, 2.0, 2.0, "frozen", title="Base frozen")
    secret = CheckResult("holdout", False, 0.0, 1.0, "SECRET", title="SECRET", hidden=True)
    result = SubmissionResult("s1", "s1.ipynb", "0" * 64, "graded", 2.0, 3.0)
    result.checks, result.accuracy, result.duration_s = [shown, secret], {"measured": 0.93}, 61.4
    return result


def test_results_json_follows_the_specification_and_hides_hidden_checks() -> None:
    data = gradescope_results(a_result(), leaderboard=True)
    assert_gradescope_spec(data)
    assert data["score"] == 2.0 and data["execution_time"] == 61
    assert [t["number"] for t in data["tests"]] == ["1", "2"]
    hidden = data["tests"][1]
    assert hidden["name"] == "Hidden check" and hidden["visibility"] == "after_published"
    assert "SECRET" not in json.dumps(data)
    assert data["leaderboard"] == [{"name": "Measured accuracy", "value": 0.93, "order": "desc"}]
    assert "leaderboard" not in gradescope_results(a_result())


def build(tmp_path: Path, rubric: Path, *options: str) -> Path:
    target = tmp_path / "autograder.zip"
    args = ["gradescope", "build", "--rubric", str(rubric), "--out", str(target), *options]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 0, run.output
    return target


def unpack(bundle: Path, root: Path) -> Path:
    """The zip where Gradescope puts it, executable bits as the zip gives them."""
    source = root / "source"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(source)
        for info in archive.infolist():
            mode = info.external_attr >> 16
            if mode:
                os.chmod(source / info.filename, stat.S_IMODE(mode))
    for folder in ("submission", "results"):
        (root / folder).mkdir()
    return source


def test_the_bundle_holds_what_gradescope_runs_and_a_rubric_that_loads(tmp_path: Path) -> None:
    source = unpack(build(tmp_path, COURSE_RUBRIC, "--leaderboard"), tmp_path / "autograder")
    for script in (SETUP, RUN):
        assert os.access(source / script, os.X_OK), script
        assert (source / script).read_text().startswith("#!/usr/bin/env bash\n")
    assert '/venv/bin/grader" gradescope setup --root' in (source / SETUP).read_text()
    assert "gradescope run --root" in (source / RUN).read_text()
    assert json.loads((source / BUNDLE_FILE).read_text())["leaderboard"] is True
    rubric = load_rubric(source / RUBRIC_FILE)
    assert rubric.reference_notebook == (source / "reference" / "transfer_learning.ipynb")
    assert rubric.digest != "" and rubric.check_ids == load_rubric(COURSE_RUBRIC).check_ids
    package = source / PACKAGE_DIR
    assert (package / "pyproject.toml").read_bytes() == (ROOT / "pyproject.toml").read_bytes()
    for module in ("cli.py", "gradescope/autograder.py", "outputs/templates/report.html.j2"):
        assert (package / "grader" / module).read_bytes() == (ROOT / "grader" / module).read_bytes()
    assert not list(package.rglob("__pycache__"))


def test_a_submission_without_a_notebook_gets_a_results_file_saying_so(tmp_path: Path) -> None:
    root = tmp_path / "autograder"
    unpack(build(tmp_path, COURSE_RUBRIC), root)
    (root / "submission" / "notes.txt").write_text("forgot the notebook")
    run = CliRunner().invoke(main, ["gradescope", "run", "--root", str(root)])
    assert run.exit_code == 0, run.output
    data = json.loads((root / "results" / "results.json").read_text())
    assert_gradescope_spec(data)
    assert data["score"] == 0 and "No .ipynb notebook" in data["output"]


def test_a_link_in_the_submission_is_never_followed(tmp_path: Path) -> None:
    """A student's upload holding a link to the sealed reference (or a folder linking
    into the bundle) is not graded: root would read what the link points at."""
    root = tmp_path / "autograder"
    source = unpack(build(tmp_path, COURSE_RUBRIC), root)
    reference = source / "reference" / "transfer_learning.ipynb"
    os.symlink(reference, root / "submission" / "week6.ipynb")
    os.symlink(source / "reference", root / "submission" / "folder")
    run = CliRunner().invoke(main, ["gradescope", "run", "--root", str(root)])
    assert run.exit_code == 0, run.output
    data = json.loads((root / "results" / "results.json").read_text())
    assert data["score"] == 0 and "No .ipynb notebook" in data["output"]


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A root that every user can walk into, as /autograder is: only grader's own modes
    keep a kernel out of the bundle, the cache and the results."""
    folder = Path(tempfile.mkdtemp(prefix="grader-gradescope-test-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def in_image(folder: Path, command: list[str], env: dict[str, str]) -> None:
    """``command`` as root, as Gradescope runs it. Gradescope's Python is the system's;
    this machine's may lie under root's home (pyenv), which a kernel's own uid cannot
    enter: it runs in a private mount namespace where that folder is an enterable one
    with only the interpreter bound back (the kernels themselves get no namespaces)."""
    script = reachable_script(folder / "kept", [Path(sys.base_prefix), ROOT]) + 'exec "$@"'
    unshare = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
    proc = subprocess.run(
        [*unshare, *command], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


HOSTILE_CELL = """\
import json, pathlib
leaked = []
for secret in {secrets!r}:
    try:
        pathlib.Path(secret).read_bytes()
        leaked.append(secret)
    except OSError:
        pass
try:
    pathlib.Path({results!r}).write_text(json.dumps({{"score": 1000, "tests": []}}))
    leaked.append("results.json written")
except OSError:
    pass
assert not leaked, leaked
"""


@pytest.mark.kernel
@pytest.mark.skipif(os.geteuid() != 0, reason="Gradescope runs the autograder as root")
def test_gradescope_layout_setup_then_run_autograder_grades_and_holds(open_root: Path) -> None:
    """setup.sh's grading part, then run_autograder as Gradescope calls it, in a
    container without namespaces or cgroups: a correct notebook whose first cell tries
    to read the rubric, the reference and the holdout and to write results.json gets
    every model check passed in the results grader wrote (the cell's assertion would
    fail the run)."""
    from grader.kit.assets import ensure_kit

    root, cache = open_root / "autograder", open_root / "cache"
    source = unpack(build(open_root, TEST_RUBRIC, "--leaderboard"), root)
    os.symlink(Path(sys.executable).parent.parent, root / "venv")  # setup.sh's install part
    kit = ensure_kit(progress=lambda _: None)
    shutil.copytree(kit.keras_home.parent, cache / kit.keras_home.parent.name, symlinks=True)
    cache.chmod(0o755)
    holdout = next(
        p for p in (cache / kit.keras_home.parent.name / "holdout").rglob("*") if p.is_file()
    )
    secrets = [str(source / RUBRIC_FILE), str(source / "reference" / "transfer_learning.ipynb")]
    nb = nbformat.read(ROOT / "submissions" / "s1001_nguyen.ipynb", as_version=4)
    results = root / "results" / "results.json"
    cell = HOSTILE_CELL.format(secrets=[*secrets, str(holdout)], results=str(results))
    nb.cells.insert(0, nbformat.v4.new_code_cell(cell))
    nbformat.write(nb, str(root / "submission" / "week6.ipynb"))
    env = {**os.environ, "GRADER_CACHE": str(cache), "GRADER_SANDBOX_SKIP": "namespaces,cgroup"}
    setup = [str(root / "venv" / "bin" / "grader"), "gradescope", "setup", "--root", str(root)]
    in_image(open_root, setup, env)
    sealed = (source, holdout.parent.parent)  # the cache lets kernels pass to the Keras cache
    assert {stat.S_IMODE(p.stat().st_mode) for p in sealed} == {0o700}
    in_image(open_root, ["bash", str(source / RUN)], {**env, "AUTOGRADER_ROOT": str(root)})
    data = json.loads(results.read_text())
    assert_gradescope_spec(data)
    assert "Status: graded" in data["output"], data["output"]
    assert all(t["status"] == "passed" for t in data["tests"][:5])  # the model's checks
    assert data["score"] == pytest.approx(sum(t["score"] for t in data["tests"]))
    assert 0.5 < data["leaderboard"][0]["value"] <= 1.0


def test_a_sealed_cache_lets_a_kernel_reach_the_keras_cache_alone(tmp_path: Path) -> None:
    from grader.kit.assets import KERAS_HOME, kit_dir, seal_for_kernels

    kit = kit_dir(tmp_path)
    for folder in (kit / KERAS_HOME / "models", kit / "holdout" / "cats", tmp_path / "reference"):
        folder.mkdir(parents=True)
    (kit / "holdout.secret").write_text("s")
    seal_for_kernels(tmp_path)
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path, kit)}
    assert set(modes.values()) == {0o711}  # passed through, never listed
    assert stat.S_IMODE((kit / KERAS_HOME).stat().st_mode) == 0o755
    for private in (kit / "holdout", kit / "holdout.secret", tmp_path / "reference"):
        assert stat.S_IMODE(private.stat().st_mode) in (0o700, 0o600), private
