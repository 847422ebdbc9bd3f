"""Which function decides each rubric check: one table from check id to check.

Structural checks and the accuracy check read :class:`~grader.checks.facts.Facts`;
written answers read the notebook's markdown. :func:`decide` is the one entry point,
so the pipeline and the self-check decide every kind of check the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from grader.checks.accuracy import CHECK_ACCURACY, check_accuracy
from grader.checks.facts import Facts
from grader.checks.structural import (
    CHECK_AUGMENTATION,
    CHECK_BASE_FROZEN,
    CHECK_INCLUDE_TOP_FALSE,
    CHECK_POOLING_HEAD,
    check_augmentation,
    check_base_frozen,
    check_include_top_false,
    check_pooling_head,
)
from grader.checks.written import check_written
from grader.results import CheckResult
from grader.rubric.schema import KIND_WRITTEN, CheckSpec

CHECKS: dict[str, Callable[[CheckSpec, Facts], CheckResult]] = {
    CHECK_INCLUDE_TOP_FALSE: check_include_top_false,
    CHECK_BASE_FROZEN: check_base_frozen,
    CHECK_AUGMENTATION: check_augmentation,
    CHECK_POOLING_HEAD: check_pooling_head,
    CHECK_ACCURACY: check_accuracy,
}
"""The automatic checks by rubric id (a written item's id is the rubric's own)."""


def decide(spec: CheckSpec, facts: Facts) -> CheckResult:
    """The verdict of one rubric check (marked hidden when the rubric hides it)."""
    if spec.kind == KIND_WRITTEN:
        return check_written(spec, facts.notebook)
    return CHECKS[spec.id](spec, facts)
