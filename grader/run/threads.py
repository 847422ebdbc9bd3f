"""How many threads a TensorFlow process may use: the environment that says so, once.

A grading worker shares the machine with its siblings, so each kernel and each trusted
evaluator it starts is held to a share of the cores: OpenMP and TensorFlow's intra-op
pool get ``threads``, the inter-op pool one. Both :mod:`grader.run.execute` (the
student's kernel) and :mod:`grader.measure.client` (the evaluator) take it from here.
"""

from __future__ import annotations

COMPUTE_VARIABLES = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")
"""Set to the thread count."""
INTEROP_VARIABLE = "TF_NUM_INTEROP_THREADS"
"""Set to 1: graded notebooks run one op at a time at the top level."""


def thread_env(threads: int | None) -> dict[str, str]:
    """The variables holding a process to ``threads`` compute threads; none when
    ``threads`` is None or 0 (TensorFlow decides)."""
    if not threads:
        return {}
    env = dict.fromkeys(COMPUTE_VARIABLES, str(threads))
    env[INTEROP_VARIABLE] = "1"
    return env
