"""``python -m grader``: the same as the ``grader`` command."""

from __future__ import annotations

from grader.cli import entry

if __name__ == "__main__":
    entry()
