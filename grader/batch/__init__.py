"""The orchestrator's flows (trusted, no TensorFlow).

One submission (:func:`grader.batch.pipeline.grade_one`), a class (local runners, Dask,
the results store, progress) and the student's self-check.
"""
