"""The house rules of grader's layout, read from the source with :mod:`ast` (no kernel).

The packages are process boundaries: :mod:`grader.run.kernel` runs inside the student's
kernel, :mod:`grader.measure.evaluator` in the trusted evaluator, :mod:`grader.kit.build`
in the kit builder, everything else in the orchestrator. Each rule below says which
modules may not import which, and why. Every static import counts, inside functions
too, and so does ``importlib.import_module("name")`` with a literal name.

A case that breaks a rule today is named in an allow-list with the reason and the fix
its owner will make; an entry that no longer matches anything fails too, so the lists
only shrink.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "grader"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50
TENSORFLOW = ("tensorflow", "keras")


def module_name(path: Path) -> str:
    """``grader/run/kernel/launch.py`` -> ``grader.run.kernel.launch``."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES: dict[str, Path] = {
    module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts
}


@dataclass(frozen=True)
class Import:
    module: str
    """The importing module."""
    target: str
    """What it imports: a module (``grader.run.probe``) or a package's name."""
    line: int


def _package_of(module: str) -> str:
    path = SOURCES.get(module)
    return module if path is not None and path.name == "__init__.py" else module.rpartition(".")[0]


def _from_targets(node: ast.ImportFrom, package: str) -> Iterator[str]:
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        base = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [node.module])])
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        yield sub if sub in SOURCES else base


def _dynamic_target(node: ast.Call) -> str | None:
    """``importlib.import_module("x")`` or ``__import__("x")``: the literal ``x``."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    first = node.args[0] if node.args else None
    if name in ("import_module", "__import__") and isinstance(first, ast.Constant):
        return first.value if isinstance(first.value, str) else None
    return None


def imports_in(source: str, module: str) -> list[Import]:
    """Every import in ``source`` (the text of ``module``), wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets: list[str] = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            targets = list(_from_targets(node, _package_of(module)))
        elif isinstance(node, ast.Call) and (dynamic := _dynamic_target(node)):
            targets = [dynamic]
        else:
            continue
        found += [Import(module, t, node.lineno) for t in targets]
    return found


def imports_of(module: str) -> list[Import]:
    return imports_in(SOURCES[module].read_text(), module)


def within(name: str, *prefixes: str) -> bool:
    """True when ``name`` is one of ``prefixes`` or inside one of them."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@dataclass(frozen=True)
class Rule:
    name: str
    why: str
    modules: tuple[str, ...]
    """The modules (or packages, with everything inside) the rule holds for."""
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()
    """Exceptions inside ``forbidden``."""
    exempt: tuple[str, ...] = ()
    """Modules inside ``modules`` the rule does not hold for."""
    exact: bool = False
    """Hold for the modules named only, not for what is inside them."""

    def applies_to(self, module: str) -> bool:
        if self.exact:
            return module in self.modules
        return within(module, *self.modules) and not within(module, *self.exempt)

    def breaks(self, imp: Import) -> bool:
        return within(imp.target, *self.forbidden) and not within(imp.target, *self.allowed)


ORCHESTRATOR_SIDE = ("grader.run", "grader.batch", "grader.outputs")
LAUNCHER = ("grader.run.kernel.launch", "grader.run.kernel.view", "grader.run.kernel.bubblewrap")
"""Run by ``python -m grader.run.kernel.launch`` from the host's files, before the view."""
TENSORFLOW_ALLOWED = (
    "grader.run.kernel",  # the student's kernel
    "grader.measure.evaluator",  # the trusted evaluator's own process
    "grader.measure.weights",  # imported by the evaluator only
    "grader.kit.build",  # the kit builder's own process
    "grader.kit.synthetic",  # imported by the kit builder only
    "grader.kit.tfdscopy",  # imported by the kit builder only
)

RULES = (
    Rule(
        "kernel",
        "runs inside the student's kernel, whose mount view hides grader's checkout",
        ("grader.run.kernel",),
        ("grader",),
        exempt=LAUNCHER,
    ),
    Rule(
        "launcher",
        "the launcher imports before it makes the view: its own siblings, stdlib-only",
        LAUNCHER,
        ("grader",),
        allowed=("grader.run.kernel.seccomp", "grader.run.kernel.supervise", *LAUNCHER),
        exact=True,
    ),
    Rule(
        "kernel-parents",
        "`python -m grader.run.kernel.launch` runs these package files in the kernel's process",
        ("grader", "grader.run"),
        ("grader",),
        exact=True,
    ),
    Rule(
        "errors-results",
        "the vocabulary every layer shares: it depends on no layer",
        ("grader.errors", "grader.results"),
        ("grader",),
        allowed=("grader.errors", "grader.results"),
    ),
    Rule(
        "outputs",
        "outputs are written from results alone, by the batch or by `grader report`",
        ("grader.outputs",),
        ("grader.run", "grader.batch"),
    ),
    Rule(
        "evidence",
        "checks and static analysis are pure functions of evidence",
        ("grader.checks", "grader.static"),
        ORCHESTRATOR_SIDE,
        # The shell-line grammar is defined once, where the kernel needs it (it cannot
        # import grader); reading the code for the same lines shares that definition.
        allowed=("grader.run.kernel.habits",),
    ),
    Rule(
        "per-submission-step",
        "the step runs in every worker: no report writer (jinja2, pandas) there",
        ("grader.batch.pipeline",),
        ("grader.outputs",),
    ),
    Rule(
        "check-here",
        "check_here() is imported in the student's own Jupyter kernel: light, no grader",
        ("grader.notebook",),
        ("grader",),
        # Markup lives in templates only: the checklist's HTML is rendered, once the
        # check has run, by the one Jinja2 environment (imported there, not at import).
        allowed=("grader.outputs.templating",),
    ),
    Rule(
        "no-tensorflow",
        "the orchestrator never imports TensorFlow; only its own processes do",
        ("grader",),
        TENSORFLOW,
        exempt=TENSORFLOW_ALLOWED,
    ),
)

ALLOWED_BREAKS: dict[tuple[str, str, str], str] = {}


def breaks_of(rule: Rule) -> list[Import]:
    return [
        imp
        for module in SOURCES
        if rule.applies_to(module)
        for imp in imports_of(module)
        if rule.breaks(imp)
    ]


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_import_rule(rule: Rule) -> None:
    found = [
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in breaks_of(rule)
        if (rule.name, imp.module, imp.target) not in ALLOWED_BREAKS
    ]
    assert not found, f"rule {rule.name!r} ({rule.why}):\n" + "\n".join(found)


def test_every_allowed_break_still_exists() -> None:
    """An allow-list entry whose break is fixed must go, so the list only shrinks."""
    for entry in ALLOWED_BREAKS:
        rule = next(r for r in RULES if r.name == entry[0])
        found = {(rule.name, imp.module, imp.target) for imp in breaks_of(rule)}
        assert entry in found, f"fixed: remove {entry} from ALLOWED_BREAKS"


READER_SAMPLE = """
from . import probe
from ..results import CellError
from grader import errors, __version__

def later():
    import tensorflow as tf
    importlib.import_module("keras")
"""


def test_reader_finds_every_kind_of_import() -> None:
    """Relative, nested and dynamic imports, and a package's modules imported by name."""
    found = {imp.target for imp in imports_in(READER_SAMPLE, "grader.run.execute")}
    assert found == {
        "grader.run.probe",
        "grader.results",
        "grader.errors",
        "grader",
        "tensorflow",
        "keras",
    }


ORCHESTRATOR_ENTRY = "import grader.cli, grader.batch.classrun, grader.outputs.write"


@pytest.mark.parametrize(
    ("modules", "absent"),
    [
        (ORCHESTRATOR_ENTRY, TENSORFLOW),
        ("import grader.batch.pipeline, grader.batch.runners", ("jinja2", "pandas")),
    ],
    ids=["orchestrator-without-tensorflow", "worker-without-report-writer"],
)
def test_imported_for_real(modules: str, absent: tuple[str, ...]) -> None:
    """The same rules, as a fresh interpreter imports the modules."""
    code = f"{modules}; import sys; print(sorted(set({absent!r}) & set(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


# Owners: whoever moves or splits the code named; each entry goes when it fits.
LONG_MODULES: dict[str, int] = {}
LONG_FUNCTIONS: dict[str, int] = {}
SOURCE_SUFFIX = "_SOURCE"
"""Module-level strings named so hold code run elsewhere (the probe): measured as code."""


def module_lengths() -> dict[str, int]:
    return {
        path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
        for path in SOURCES.values()
    }


def function_lengths() -> dict[str, int]:
    """Every function's lines (``def`` to its last line), nested ones on their own."""
    found: dict[str, int] = {}
    for path in SOURCES.values():
        tree = ast.parse(path.read_text())
        where = path.relative_to(ROOT).as_posix()
        found.update(_functions(tree, where))
        for name, code in _source_strings(tree):
            found.update(_functions(ast.parse(code), f"{where}::{name}"))
    return found


def _functions(tree: ast.AST, where: str) -> dict[str, int]:
    return {
        f"{where}::{node.name}": (node.end_lineno or node.lineno) - node.lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def _source_strings(tree: ast.Module) -> Iterator[tuple[str, str]]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                name = getattr(target, "id", "")
                if name.endswith(SOURCE_SUFFIX) and isinstance(node.value.value, str):
                    yield name, node.value.value


@pytest.mark.parametrize(
    ("kind", "lengths", "limit", "allowed"),
    [
        ("module", module_lengths, MAX_MODULE_LINES, LONG_MODULES),
        ("function", function_lengths, MAX_FUNCTION_LINES, LONG_FUNCTIONS),
    ],
    ids=["modules", "functions"],
)
def test_sizes(
    kind: str, lengths: Callable[[], dict[str, int]], limit: int, allowed: dict[str, int]
) -> None:
    """No module over 400 lines, no function over 50; the allow-list only shrinks."""
    over = {name: n for name, n in lengths().items() if n > limit}
    new = {name: n for name, n in over.items() if n > allowed.get(name, limit)}
    assert not new, f"{kind}s over {limit} lines (or longer than allowed): {new}"
    fixed = sorted(set(allowed) - set(over))
    assert not fixed, f"within {limit} lines now: remove {fixed} from the allow-list"


def started_modules() -> set[str]:
    """Module names grader starts as processes: ``[..., "-m", "grader...", ...]`` lists."""
    found = set()
    for path in SOURCES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.List | ast.Tuple):
                words = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
                found |= {
                    name
                    for flag, name in zip(words, words[1:], strict=False)
                    if flag == "-m" and isinstance(name, str) and within(name, "grader")
                }
    return found


def test_started_modules_are_found() -> None:
    """The launcher, the evaluator and the kit builder are each started with ``-m``."""
    assert len(started_modules()) >= 3, started_modules()


@pytest.mark.parametrize("name", sorted(started_modules()))
def test_started_module_runs_as_main(name: str) -> None:
    """Each ``-m`` path names a module of this checkout that does something when run: a
    ``__main__`` guard or a top-level ``main()`` call (for a package, in its ``__main__.py``)."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin, f"{name} is not importable"
    if spec.submodule_search_locations is not None:
        spec = importlib.util.find_spec(f"{name}.__main__")
        assert spec is not None and spec.origin, f"{name} has no __main__.py"
    assert Path(spec.origin).is_relative_to(PACKAGE), spec.origin  # this checkout's code
    tree = ast.parse(Path(spec.origin).read_text())
    runs = any(_is_main_guard(node) or _calls_main(node) for node in tree.body)
    assert runs, f"{spec.origin}: no __main__ guard and no main() call"


def _calls_main(node: ast.stmt) -> bool:
    call = node.value if isinstance(node, ast.Expr) else None
    return isinstance(call, ast.Call) and getattr(call.func, "id", None) == "main"


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    left, right = node.test.left, node.test.comparators[0]
    names = {getattr(left, "id", None), getattr(right, "id", None)}
    values = {getattr(left, "value", None), getattr(right, "value", None)}
    return "__name__" in names and "__main__" in values
