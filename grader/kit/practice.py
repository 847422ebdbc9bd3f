"""The practice holdout students check against (``grader publish student``), written in
its own process (``python -m grader.kit.practice DEST``): the orchestrator imports
neither NumPy's image drawing nor the kit builder.

Drawn like the course's hidden holdout (:func:`grader.kit.build.write_holdout`), but
from :data:`PRACTICE_SEED`, which is public like the training images: students may see
it, and it is never the holdout grading uses. It lives apart from the builder so that
the kit's version (a digest of the builder's sources) does not change with it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grader.kit.build import HOLDOUT_PER_CLASS, say, write_holdout

PRACTICE_SEED = b"grader-practice-holdout|1"


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python -m grader.kit.practice DEST")
    written = write_holdout(Path(argv[0]), PRACTICE_SEED, HOLDOUT_PER_CLASS)
    say(f"images: practice holdout {written}")


if __name__ == "__main__":
    main(sys.argv[1:])
