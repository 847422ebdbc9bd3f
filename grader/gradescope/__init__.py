"""Gradescope running grader itself: the autograder bundle and what runs inside it.

* :mod:`~grader.gradescope.bundle` (the instructor's machine): ``grader gradescope
  build`` writes the zip Gradescope builds its image from;
* :mod:`~grader.gradescope.autograder` (inside Gradescope's container): ``setup.sh``'s
  grading part (``grader gradescope setup``) and ``run_autograder`` (``grader
  gradescope run``);
* :mod:`~grader.gradescope.results`: one submission's ``results.json``, to Gradescope's
  specification.
"""
