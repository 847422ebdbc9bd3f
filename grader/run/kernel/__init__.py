"""Code that runs inside the student's kernel, an untrusted process.

The sandbox launcher, the probe and the habits installer (the one shell-line grammar).
Nothing here imports from grader: the kernel's mount view hides the package, so the
probe and the habits installer are injected as their files' text, and the launcher
runs before the view is made.
"""
