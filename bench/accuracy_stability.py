"""Benchmark: does the accuracy check reward the work, not the seed or the caps?

Correct variants of the exercise (every legitimate way of writing it) and known
mistakes, each made from the reference solution by checked substitutions in its
cells, are graded with a first cell ``keras.utils.set_random_seed(k)`` for several
``k``, in each mode:

* ``quick``: the course rubric with ``--quick`` (what instructors run);
* ``check``: the course rubric's self-check caps (what students run);
* ``full``: the course rubric uncapped (slow: fewer seeds);
* ``test``: the test rubric's caps (``tests/fixtures/rubric_fast.toml``, quick).

``--kit`` grades with another build of the offline kit, made once into
``OUT/kits/<name>/`` (its own cache, so its reference runs too): ``threads1`` builds it
with one compute thread, ``pretrain2`` from another pre-training seed (the images are
the same). A student's self-check on a laptop and the instructor's batch on a server
use different builds; their verdicts must agree.

Each mode grades one folder through the library's ``grade_class`` into
``OUT/<mode>/``, so a stopped run resumes where it stopped (the results store) and a
second run only prints. It prints per variant the accuracy points across seeds and,
per mode, the totals the accuracy issue asks for: the share of correct runs at full
credit, the share of mistake runs below full credit, the largest spread of a
variant's points, and the 5th percentile of the margin of the correct runs above the
full-credit line (measured - (reference - tolerance)); and whether each mistake
landed in its expected band.

Example: python bench/accuracy_stability.py --modes quick --seeds 1,2,3 --subset
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader.batch.classrun import GradeRequest, grade_class  # noqa: E402
from grader.rubric.limits import MODE_CHECK, MODE_FULL, MODE_QUICK  # noqa: E402

REFERENCE = ROOT / "reference_solution" / "transfer_learning.ipynb"
COURSE_RUBRIC = ROOT / "rubrics" / "transfer_learning.toml"
TEST_RUBRIC = ROOT / "tests" / "fixtures" / "rubric_fast.toml"
MODES = {
    "quick": (COURSE_RUBRIC, MODE_QUICK),
    "check": (COURSE_RUBRIC, MODE_CHECK),
    "full": (COURSE_RUBRIC, MODE_FULL),
    "test": (TEST_RUBRIC, MODE_QUICK),
}
SEPARATOR = "__seed"
KIT_BUILDS = {
    "default": {},
    "threads1": dict.fromkeys(("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"), "1"),
    "pretrain2": {"GRADER_KIT_PRETRAIN_SEED": "7"},
}
"""The environment each kit build is made in (``default``: this machine's own)."""

Cells = list[str]
Edit = Callable[[Cells], Cells]


def sub(old: str, new: str, cells_expected: int = 1) -> Edit:
    """Replace ``old`` by ``new`` in the cells that hold it, which must be
    ``cells_expected`` (an error otherwise: the reference changed and the variant no
    longer means what it says)."""

    def edit(cells: Cells) -> Cells:
        hits = [i for i, cell in enumerate(cells) if old in cell]
        if len(hits) != cells_expected:
            raise SystemExit(f"variant edit {old!r} matches {len(hits)} cells")
        out = list(cells)
        for i in hits:
            out[i] = out[i].replace(old, new)
        return out

    return edit


def drop_from(marker: str, keep_last: bool = True) -> Edit:
    """Drop the cells from the one holding ``marker`` on (the last one kept: the test
    evaluation)."""

    def edit(cells: Cells) -> Cells:
        start = next(i for i, cell in enumerate(cells) if marker in cell)
        return cells[:start] + (cells[-1:] if keep_last else [])

    return edit


def drop_cells(*markers: str) -> Edit:
    def edit(cells: Cells) -> Cells:
        for marker in markers:
            if not any(marker in cell for cell in cells):
                raise SystemExit(f"variant edit: no cell holds {marker!r}")
        return [cell for cell in cells if not any(m in cell for m in markers)]

    return edit


FINE_TUNE = "base_model.trainable = True"
NO_GAP_LAYER = [
    sub(
        "feature_batch_average = global_average_layer(feature_batch)",
        "feature_batch_average = feature_batch",
    ),
    sub("x = global_average_layer(x)\n", ""),
]


@dataclass(frozen=True)
class Variant:
    name: str
    correct: bool
    edits: tuple[Edit, ...]
    band: tuple[float, float] = (1.0, 1.0)
    """Expected share of the accuracy check's points (low, high); correct work: full."""

    def cells(self, base: Cells) -> Cells:
        for edit in self.edits:
            base = edit(base)
        return base


VARIANTS = (
    Variant("reference", True, ()),
    Variant("head_only", True, (drop_from(FINE_TUNE),)),
    Variant(
        "sequential_rescaling",
        True,
        (
            drop_from(FINE_TUNE),  # Sequential calls the base without training=False
            sub(
                "inputs = tf.keras.Input(shape=IMG_SHAPE)\nx = data_augmentation(inputs)\n"
                "x = preprocess_input(x)\nx = base_model(x, training=False)\n"
                "x = global_average_layer(x)\nx = tf.keras.layers.Dropout(0.2)(x)\n"
                "outputs = prediction_layer(x)\nmodel = tf.keras.Model(inputs, outputs)",
                "model = tf.keras.Sequential([\n    tf.keras.Input(shape=IMG_SHAPE),\n"
                "    data_augmentation,\n    tf.keras.layers.Rescaling(1 / 127.5, offset=-1),\n"
                "    base_model,\n    tf.keras.layers.GlobalAveragePooling2D(),\n"
                "    tf.keras.layers.Dropout(0.2),\n    tf.keras.layers.Dense(1),\n])",
            ),
        ),
    ),
    Variant(
        "global_max_pooling",
        True,
        (
            sub(
                "global_average_layer = tf.keras.layers.GlobalAveragePooling2D()",
                "global_average_layer = tf.keras.layers.GlobalMaxPooling2D()",
            ),
        ),
    ),
    Variant(
        "pooling_on_base",
        True,
        (sub("include_top=False,", "include_top=False, pooling='avg',"), *NO_GAP_LAYER),
    ),
    Variant(
        "augment_in_pipeline",
        True,
        (
            sub("x = data_augmentation(inputs)\n", "x = inputs\n"),
            sub(
                "model = tf.keras.Model(inputs, outputs)",
                "model = tf.keras.Model(inputs, outputs)\ntrain_dataset = train_dataset.map(\n"
                "    lambda im, lab: (data_augmentation(im, training=True), lab))",
            ),
        ),
    ),
    Variant(
        "freeze_loop",
        True,
        (
            sub(
                "base_model.trainable = False",
                "for layer in base_model.layers:\n    layer.trainable = False",
            ),
        ),
    ),
    Variant("lr_1e-3", True, (sub("base_learning_rate = 0.0001", "base_learning_rate = 0.001"),)),
    Variant("no_preprocess_input", False, (sub("x = preprocess_input(x)\n", ""),), band=(0.0, 0.9)),
    Variant(
        "top_kept",
        False,
        (sub("include_top=False", "include_top=True"), *NO_GAP_LAYER),
        band=(0.0, 0.9),
    ),
    Variant(
        "unfrozen_high_lr",
        False,
        (
            sub("base_model.trainable = False", "base_model.trainable = True"),
            sub("base_learning_rate = 0.0001", "base_learning_rate = 0.01"),
        ),
        band=(0.0, 0.9),
    ),
    Variant(
        "never_trained",
        False,
        (drop_cells("history = model.fit", "history_fine = model.fit", "acc = history"),),
        band=(0.0, 0.0),
    ),
    Variant(
        "from_logits_mismatch",
        False,
        (
            sub("from_logits=True", "from_logits=False", cells_expected=2),  # both compiles
        ),
        band=(0.0, 0.9),
    ),
)
SUBSET = ("reference", "head_only", "no_preprocess_input", "never_trained")


def seeded_notebook(variant: Variant, seed: int) -> nbformat.NotebookNode:
    nb = nbformat.read(REFERENCE, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    sources = variant.cells([cell.source for cell in code])
    seed_cell = f"import keras\nkeras.utils.set_random_seed({seed})"
    cells = [nbformat.v4.new_code_cell(s) for s in [seed_cell, *sources]]
    out = nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)
    return out


def write_submissions(folder: Path, variants: list[Variant], seeds: list[int]) -> None:
    """The chosen variants' notebooks, and only those: one an earlier, wider run wrote is
    removed, so that ``--variants`` grades what it names (its results stay in the store,
    and count again when a later run writes it back)."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {f"{v.name}{SEPARATOR}{seed}.ipynb" for v in variants for seed in seeds}
    for left in folder.glob("*.ipynb"):
        if left.name not in wanted:
            left.unlink()
    for variant in variants:
        for seed in seeds:
            path = folder / f"{variant.name}{SEPARATOR}{seed}.ipynb"
            text = nbformat.writes(seeded_notebook(variant, seed))
            if not path.exists() or path.read_text() != text:
                path.write_text(text)


@dataclass
class Run:
    variant: str
    seed: int
    share: float
    """The accuracy check's points as a share of its maximum."""
    points: float
    """The accuracy check's points."""
    margin: float | None
    """measured - the full-credit line the check used (its basis, the reference's lowest
    seed, the sampling error); None when nothing was measured."""


def use_kit(name: str, out: Path) -> Path:
    """Build kit ``name`` (once) into its own cache and grade with it from now on;
    returns the folder this kit's results go into."""
    if name == "default":
        return out
    from grader.kit.assets import CACHE_ENV, ensure_kit

    cache = out / "kits" / name
    saved = {key: os.environ.get(key) for key in KIT_BUILDS[name]}
    os.environ.update(KIT_BUILDS[name])
    try:
        ensure_kit(cache, progress=lambda line: print(f"[kit {name}] {line}", flush=True))
    finally:  # the build's environment only: kernels keep their own thread settings
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value
    os.environ[CACHE_ENV] = str(cache)
    return out / f"kit-{name}"


def grade_mode(
    mode: str,
    variants: list[Variant],
    seeds: list[int],
    out: Path,
    workers: int,
    rubric_override: Path | None = None,
) -> list[Run]:
    rubric, grader_mode = MODES[mode]
    rubric = rubric_override or rubric
    folder = out / mode
    write_submissions(folder / "submissions", variants, seeds)
    request = GradeRequest(
        submissions=folder / "submissions",
        rubric=rubric,
        out=folder / "graded",
        mode=grader_mode,
        workers=workers,
    )
    outcome = grade_class(request, say=lambda line: print(f"[{mode}] {line}", flush=True))
    wanted = {v.name for v in variants}
    runs = []
    for result in outcome.results:
        name, _, seed = result.student.rpartition(SEPARATOR)
        if name not in wanted or int(seed) not in seeds:
            continue
        check = next(c for c in result.checks if c.id == "accuracy")
        measured, line = result.accuracy.get("measured"), result.accuracy.get("full_at")
        margin = None if measured is None or line is None else measured - line
        runs.append(Run(name, int(seed), check.score / check.max_score, check.score, margin))
    return runs


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (the 2nd lowest of 40 at 5%); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered), math.ceil(share * len(ordered))) - 1)]


def report(mode: str, runs: list[Run], variants: list[Variant]) -> dict:
    print(f"\n== {mode}: accuracy points (share of the check's maximum) per seed")
    spreads, landed = [], {}
    for variant in variants:
        mine = sorted((r for r in runs if r.variant == variant.name), key=lambda r: r.seed)
        if not mine:
            continue
        shares = [r.share for r in mine]
        points = [r.points for r in mine]
        if variant.correct:
            spreads.append(max(points) - min(points))
        inside = sum(variant.band[0] <= s <= variant.band[1] for s in shares)
        if not variant.correct:
            landed[variant.name] = f"{inside}/{len(shares)}"
        margins = [f"{r.margin:+.3f}" if r.margin is not None else "-" for r in mine]
        print(
            f"  {'correct' if variant.correct else 'mistake':8}{variant.name:22}"
            f" points {' '.join(f'{s:.2f}' for s in shares)}"
            f"  margin {' '.join(margins)}  in band {inside}/{len(shares)}"
        )
    correct = [r for r in runs if r.variant in {v.name for v in variants if v.correct}]
    mistakes = [r for r in runs if r not in correct]
    totals = {
        "mode": mode,
        "correct_runs": len(correct),
        "correct_full_credit": sum(r.share >= 1.0 for r in correct) / max(1, len(correct)),
        "mistake_runs": len(mistakes),
        "mistakes_below_full": sum(r.share < 1.0 for r in mistakes) / max(1, len(mistakes)),
        "largest_spread_points": max(spreads, default=0.0),  # of a correct variant
        "margin_p5": percentile([r.margin for r in correct if r.margin is not None], 0.05),
        "mistakes_in_band": landed,
    }
    print(f"  totals: {json.dumps(totals)}")
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="quick,check,test", help="of quick, check, full, test")
    parser.add_argument("--seeds", default="1,2,3,4,5", help="comma-separated seeds")
    parser.add_argument("--full-seeds", default="1,2", help="seeds for the slow full mode")
    parser.add_argument("--subset", action="store_true", help=f"only {', '.join(SUBSET)}")
    parser.add_argument("--variants", help="comma-separated variant names (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "accuracy_stability")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--rubric", type=Path, help="grade every mode with this rubric (candidate caps)"
    )
    parser.add_argument("--kit", choices=sorted(KIT_BUILDS), default="default")
    args = parser.parse_args()
    chosen = set(args.variants.split(",")) if args.variants else {v.name for v in VARIANTS}
    unknown = chosen - {v.name for v in VARIANTS}
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    variants = [v for v in VARIANTS if v.name in chosen and (not args.subset or v.name in SUBSET)]
    args.out = use_kit(args.kit, args.out)
    totals = []
    for mode in args.modes.split(","):
        seeds = [int(s) for s in (args.full_seeds if mode == "full" else args.seeds).split(",")]
        runs = grade_mode(mode, variants, seeds, args.out, args.workers, args.rubric)
        totals.append(report(mode, runs, variants))
    print("\n" + json.dumps(totals, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "totals.json").write_text(json.dumps(totals, indent=1) + "\n")


if __name__ == "__main__":
    main()
