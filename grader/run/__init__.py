"""The orchestrator's side of a kernel run.

nbclient with capped outputs, the sandbox and its cgroups, limits, and the probe's
injection. What runs inside the kernel itself is :mod:`grader.run.kernel`.
"""
