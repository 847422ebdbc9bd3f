"""The reference's figures a rubric publishes for students who have no reference
notebook (``[reference] <mode>_accuracy``, ``<mode>_final``, ``<mode>_head``)."""

from __future__ import annotations

from typing import Any

from grader.errors import RubricError
from grader.rubric.tomlfields import fraction

PUBLISHED_KEYS = {"quick": "quick_accuracy", "full": "full_accuracy", "check": "check_accuracy"}
PUBLISHED_RUNS = ("final", "head")
"""Per mode, ``[reference] <mode>_final`` / ``<mode>_head``: the reference's figure in each
seed's run, after its last and after its first ``fit`` (``grader publish student``)."""


def published_runs(name: str, reference: dict[str, Any]) -> dict[str, list[dict]]:
    """``<mode>_final`` (and ``<mode>_head``, one per run) as the stored runs' records."""
    found: dict[str, list[dict]] = {}
    for mode in PUBLISHED_KEYS:
        figures = {}
        for run in PUBLISHED_RUNS:
            key = f"{mode}_{run}"
            if key in reference:
                values = reference[key]
                if not isinstance(values, list) or not values:
                    raise RubricError(name, f"reference.{key}", f"expected a list, got {values!r}")
                figures[run] = [fraction(name, f"reference.{key}", v) for v in values]
        if not figures:
            continue
        final, head = figures.get("final"), figures.get("head")
        if final is None or (head is not None and len(head) != len(final)):
            raise RubricError(
                name, f"reference.{mode}_head", f"needs {mode}_final, one figure per run"
            )
        heads = head or [None] * len(final)
        pairs = enumerate(zip(final, heads, strict=True), start=1)
        found[mode] = [{"seed": seed, "final": f, "head": h} for seed, (f, h) in pairs]
    return found
