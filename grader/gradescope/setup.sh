#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image from the
# zip (unpacked into /autograder/source). Written by `grader gradescope build`.
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
# grader's cache (the kit, the reference's figures) outside root's home, which a
# kernel's own uid cannot enter.
export GRADER_CACHE="${GRADER_CACHE:-$ROOT/cache}"
SOURCE="$ROOT/source"

# The install part (needs the network, which Gradescope gives setup.sh).
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv graphviz
python3 -m venv "$ROOT/venv"
"$ROOT/venv/bin/python" -m pip install --quiet --upgrade pip
"$ROOT/venv/bin/python" -m pip install --quiet "$SOURCE/package[tf,course]"

# The grading part: the offline asset kit and the reference's figures, made here once
# so that no student waits for them; the bundle made readable by root alone.
"$ROOT/venv/bin/grader" gradescope setup --root "$ROOT"
