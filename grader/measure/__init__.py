"""Trusted measurement.

The evaluator (``python -m grader.measure.evaluator``, a process of its own) loads a
student's saved model and measures it on the hidden holdout; :mod:`.client` is the
orchestrator's side of it; :mod:`.reference` runs and caches the reference's figures.
"""
