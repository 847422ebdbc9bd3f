"""Code that runs inside the student's kernel, an untrusted process.

The sandbox launcher and the probe. Nothing here imports from grader: the kernel's
mount view hides the package, so the probe is injected as its file's text and the
launcher runs before the view is made.
"""
