"""The README a student receives with ``grader publish student``'s folder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grader.publish.student import PublishedMode, StudentBundle

COMMANDS = {
    "check": "grader check week6.ipynb --rubric rubric.toml",
    "full": "grader check week6.ipynb --rubric rubric.toml --full",
}
BASIS_WORDS = {"head": "a frozen base, no fine-tuning", "final": "with fine-tuning"}


def student_readme(document: dict[str, Any], bundle: StudentBundle, package: str) -> str:
    """Install, check, what is measured, the figures, the checks, the exit codes."""
    title = document["assignment"].get("title") or "Assignment"
    parts = [
        f"# {title}: check your notebook before you submit it\n",
        "This folder lets you check your notebook the way it will be graded. Keep the "
        "folder together: the rubric reads the kit beside it.\n",
        "## Install (once)\n",
        f'```sh\npython -m pip install "{package}"\n```\n',
        "## Check\n",
        "Run these from this folder, with the path to your notebook:\n",
        "```sh\n" + _commands(bundle) + "\n```\n",
        "Each check is printed as `[PASS]`, `[FAIL]` or, with `--static`, `[----]` (it "
        "needs the notebook to run) with its points and, when it failed, a hint and the "
        "cell to look at. A run also writes a report, `week6.report.html`, next to your "
        "notebook.\n",
        _measured(bundle),
        _checks(document, bundle),
        "## Exit codes (for scripts)\n",
        "`0` no check that ran failed, `1` a check failed (fix your notebook), `2` the "
        "command was wrong, `3` grader could not run (tell your instructor). "
        "Add `--format json` for one JSON object instead of the checklist.\n",
    ]
    return "\n".join(parts)


def _commands(bundle: StudentBundle) -> str:
    lines = ["grader check week6.ipynb --rubric rubric.toml --static   # reads the code only"]
    for mode in bundle.modes:
        note = "# runs it, with short training" if mode.mode == "check" else "# as grading does"
        lines.append(f"{COMMANDS[mode.mode]:<56}{note}")
    if not bundle.modes:
        lines.append(COMMANDS["check"])
    return "\n".join(lines)


def _measured(bundle: StudentBundle) -> str:
    if not bundle.modes:
        return ""
    rows = "\n".join(_row(mode) for mode in bundle.modes)
    return (
        "## What the accuracy check measures\n\n"
        "Your trained model is measured on the practice holdout in `kit/practice_holdout`: "
        "images your notebook never trains or validates on, drawn from a public seed (the "
        "table says how many each command uses). Grading measures on a hidden holdout, "
        "which you never get, so your graded figure can differ a little from the one "
        "you see here.\n\n"
        "The reference solution was run on the same kit and practice holdout, once per "
        "seed; your figure is compared with those runs, as in grading:\n\n"
        "| Command | Reference | Runs (one per seed) | Images | Full points from |\n"
        "|---|---|---|---|---|\n"
        f"{rows}\n"
    )


def _row(mode: PublishedMode) -> str:
    runs = ", ".join(f"{v:.3f}" for v in mode.final)
    spread = f"{min(mode.final):.3f}-{max(mode.final):.3f}" if mode.final else "-"
    bars = "; ".join(
        f"{value:.3f} ({BASIS_WORDS.get(basis, basis)})"
        for basis, value in mode.full_points_from.items()
    )
    flag = " --full" if mode.mode == "full" else ""
    return (
        f"| `grader check{flag}` | {mode.accuracy:.3f} | {runs} (spread {spread}) "
        f"| {mode.images} | {bars or '-'} |"
    )


def _checks(document: dict[str, Any], bundle: StudentBundle) -> str:
    lines = ["## The checks\n"]
    for check in document["checks"]:
        points = check.get("points", 0)
        lines.append(f"- {check.get('title') or check['id']} ({points} point{_s(points)})")
    if bundle.hidden:
        lines.append(
            f"\n{bundle.hidden} more check(s) are run only when your instructor grades; "
            "they are not named here, and `grader check` counts them as not run."
        )
    return "\n".join(lines) + "\n"


def _s(points: float) -> str:
    return "" if points == 1 else "s"
