from __future__ import annotations

from pathlib import Path

import pytest

from grader.errors import RubricError
from grader.rubric.schema import KNOWN_CHECKS, SELF_CHECK_CAPS, load_rubric

COURSE = Path(__file__).parent.parent / "rubrics" / "transfer_learning.toml"
MINIMAL = """
[[checks]]
id = "base_frozen"
points = 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


def test_course_rubric_loads_with_every_check() -> None:
    rubric = load_rubric(COURSE)
    code = [c.id for c in rubric.checks if c.kind == "code"]
    written = [c for c in rubric.checks if c.kind == "written"]
    assert code == list(KNOWN_CHECKS)
    assert [c.id for c in written] == [
        "q1_transfer_learning",
        "q2_fine_tuning",
        "q3_freezing",
        "q4_augmentation",
    ]
    assert all(len(c.concepts) == 4 and c.question and c.aliases for c in written)
    assert rubric.max_score == 14
    assert rubric.reference_notebook is not None and rubric.reference_notebook.exists()
    assert all(c.hint and c.title for c in rubric.checks)
    assert rubric.keras_home is None  # the offline kit by default


def test_minimal_rubric_gets_defaults(tmp_path: Path) -> None:
    rubric = load_rubric(write(tmp_path, MINIMAL))
    assert rubric.limits.cell_timeout_s == 240
    assert (rubric.quick.max_epochs, rubric.quick.later_fit_steps) == (4, 2)
    assert rubric.checks[0].title == "base_frozen"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[limits]\ncell_timeout = 3\n" + MINIMAL, "limits.cell_timeout", "unknown key"),
        ("[limits]\ncell_timeout_s = 'long'\n" + MINIMAL, "limits.cell_timeout_s", "a number"),
        ("[limits]\ncell_timeout_s = -1\n" + MINIMAL, "limits.cell_timeout_s", "positive"),
        ("[quick]\nmax_epochs = true\n" + MINIMAL, "quick.max_epochs", "an integer"),
        ("[[checks]]\nid = 'base_frozen'\npoints = 'two'\n", "checks[0].points", "a number"),
        ("[[checks]]\nid = 'magic'\npoints = 1\n", "checks[0].id", "unknown check 'magic'"),
        (
            "[[checks]]\nid = 'augmentation'\npoints = 1\ncolour = 'red'\n",
            "checks[0].colour",
            "unknown key",
        ),
        (MINIMAL + MINIMAL, "checks[1].id", "appears twice"),
        (MINIMAL + "routes = ['layers']\n", "checks[0].routes", "some of model, pipeline"),
        ("[assignment]\ntitle = 3\n" + MINIMAL, "assignment.title", "a string"),
        ("[reference]\nnotebook = 5\n" + MINIMAL, "reference.notebook", "a path string"),
        ("[extra]\n" + MINIMAL, "extra", "unknown key"),
        ("[assignment]\ntitle = 'x'\n", "checks", "at least one"),
    ],
)
def test_wrong_key_or_type_names_file_and_key(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RubricError) as info:
        load_rubric(path)
    assert info.value.key == key
    assert problem in str(info.value)
    assert str(info.value).startswith(f"{path}: {key}: ")


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RubricError, match="not valid TOML"):
        load_rubric(write(tmp_path, "[[checks]\n"))
    with pytest.raises(RubricError, match="cannot read the rubric"):
        load_rubric(tmp_path / "absent.toml")


def test_paths_resolve_against_the_rubric_folder(tmp_path: Path) -> None:
    rubric = load_rubric(write(tmp_path, "[data]\nkeras_home = 'cache'\n" + MINIMAL))
    assert rubric.keras_home == (tmp_path / "cache").resolve()


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[[checks]]\nid = 'accuracy'\npoints = 2\nfloor = 1.5\n", "checks[0].floor", "between"),
        ("checks = [1]\n", "checks[0]", "a [[checks]] table"),
        (
            "[reference]\nnotebook = 'missing.ipynb'\n" + MINIMAL,
            "reference.notebook",
            "no such notebook",
        ),
    ],
)
def test_more_invalid_rubrics(tmp_path: Path, text: str, key: str, problem: str) -> None:
    with pytest.raises(RubricError) as info:
        load_rubric(write(tmp_path, text))
    assert info.value.key == key and problem in str(info.value)


def test_self_check_caps_default_and_override(tmp_path: Path) -> None:
    rubric = load_rubric(write(tmp_path, "[check]\nmax_steps_per_epoch = 5\n" + MINIMAL))
    assert rubric.selfcheck.max_steps_per_epoch == 5
    assert (rubric.selfcheck.eager_steps, rubric.selfcheck.holdout_images) == (
        SELF_CHECK_CAPS.eager_steps,
        SELF_CHECK_CAPS.holdout_images,
    )
    assert rubric.quick.eager_steps == 0 and rubric.quick.holdout_images == 0
    with pytest.raises(RubricError, match="check.eager_steps: must be positive"):
        load_rubric(write(tmp_path, "[check]\neager_steps = -1\n" + MINIMAL))


def test_every_default_is_its_dataclass_s(tmp_path: Path) -> None:
    """A key left out of the rubric takes the dataclass's default, written there once."""
    import datetime as dt

    from grader.rubric.schema import CheckSpec, LatePolicy, QuickMode

    text = "[late]\ndue = 2026-11-20T23:59:00Z\n[[checks]]\nid = 'accuracy'\npoints = 2\n"
    text += "[[checks]]\nid = 'q1'\nkind = 'written'\nquestion = 'Why?'\npoints = 1\n"
    text += "concepts = [['because']]\n"
    rubric = load_rubric(write(tmp_path, text))
    accuracy, written = rubric.checks
    assert accuracy == CheckSpec(id="accuracy", title="accuracy", points=2.0)
    assert (written.hint, written.hidden) == (CheckSpec.hint, CheckSpec.hidden)
    due = dt.datetime(2026, 11, 20, 23, 59, tzinfo=dt.timezone.utc)
    assert rubric.late == LatePolicy(due=due)
    assert rubric.selfcheck.max_steps_per_epoch == QuickMode().max_steps_per_epoch
