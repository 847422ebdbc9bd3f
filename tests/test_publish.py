"""``grader publish student``'s parts: the TOML writer (read back by tomllib), the
published figures in a rubric, the student rubric's tables, what publishing refuses."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from grader.batch.classrun import reference_figures
from grader.batch.selfcheck import visible_rubric
from grader.cli import main
from grader.errors import RubricError, UsageError
from grader.publish.student import publish_student, reference_table, student_document
from grader.publish.tomlwrite import dumps
from grader.rubric.schema import load_rubric

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).parent.parent
COURSE = ROOT / "rubrics" / "transfer_learning.toml"
PACKAGE = "grader[tf] @ git+https://example.edu/course/grader.git"
ODD_TEXTS = ['say "hi"', "back\\slash", "tab\tnew\nline", "bell\x07 del\x7f", "ｖｉｃｔｉｍ 🐱", ""]


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_strings_are_read_back_as_written(text: str) -> None:
    document = {"assignment": {"title": text, text or "k": 1}, "checks": [{"hint": text}]}
    assert tomllib.loads(dumps(document)) == document


def test_the_course_rubric_is_read_back_as_written() -> None:
    raw = tomllib.loads(COURSE.read_text())
    raw.pop("late", None)  # a datetime: never in a student rubric
    assert tomllib.loads(dumps(raw, "a header\nof two lines")) == raw
    assert dumps(raw, "a header").startswith("# a header\n")


@pytest.mark.parametrize("value", [float("nan"), {"a": {"b": 1}}, object()])
def test_what_toml_cannot_hold_is_refused(value: object) -> None:
    with pytest.raises(ValueError):
        dumps({"table": {"key": value}})


def _rubric(tmp_path: Path, reference: str, assignment: str = "") -> Path:
    path = tmp_path / "rubric.toml"
    path.write_text(
        f'[assignment]\ntitle = "T"\n{assignment}\n[reference]\n{reference}\n'
        '[[checks]]\nid = "accuracy"\npoints = 2\n'
    )
    return path


def test_published_runs_become_the_band_grading_uses(tmp_path: Path) -> None:
    path = _rubric(
        tmp_path,
        "check_accuracy = 0.95\ncheck_final = [0.94, 0.96]\ncheck_head = [0.9, 0.92]",
        "hidden_checks = 2",
    )
    rubric = load_rubric(path)
    assert rubric.published_runs["check"] == [
        {"seed": 1, "final": 0.94, "head": 0.9},
        {"seed": 2, "final": 0.96, "head": 0.92},
    ]
    assert visible_rubric(rubric)[1] == 2
    figures = reference_figures(rubric, None, None, "", "check", lambda _: None)  # type: ignore[arg-type]
    band = figures.band()
    assert figures.accuracy == 0.95 and band is not None
    assert band.final == (0.94, 0.96) and band.head == (0.9, 0.92)


@pytest.mark.parametrize(
    ("reference", "assignment", "key"),
    [
        ("check_head = [0.9]", "", "reference.check_head"),
        ("check_final = [0.9]\ncheck_head = [0.9, 0.8]", "", "reference.check_head"),
        ("check_final = 0.9", "", "reference.check_final"),
        ("check_final = [1.5]", "", "reference.check_final"),
        ("", "hidden_checks = -1", "assignment.hidden_checks"),
        ("", "hidden_checks = true", "assignment.hidden_checks"),
    ],
)
def test_bad_published_figures_name_their_key(
    tmp_path: Path, reference: str, assignment: str, key: str
) -> None:
    with pytest.raises(RubricError) as caught:
        load_rubric(_rubric(tmp_path, reference, assignment))
    assert caught.value.key == key


def test_the_student_document_keeps_visible_checks_only() -> None:
    raw = tomllib.loads(COURSE.read_text())
    raw["checks"][3]["hidden"] = True
    raw["assignment"]["canvas_id"] = 12345
    raw["intake"] = {"copy_threshold": 0.8}
    document, hidden, texts = student_document(raw)
    assert hidden == 1 and '"pooling_head"' in texts and raw["checks"][3]["hint"] in texts
    assert f'"{raw["checks"][3]["hint"]}"' in texts  # as TOML and JSON quote it
    assert [c["id"] for c in document["checks"]] == [
        c["id"] for i, c in enumerate(raw["checks"]) if i != 3
    ]
    assert document["assignment"] == {"title": raw["assignment"]["title"]}
    assert set(document) == {"assignment", "checks"} | ({"limits", "quick", "check"} & set(raw))
    assert "reference" not in document and "data" not in document and "intake" not in document


def test_a_hidden_written_check_leaves_none_of_its_own_words() -> None:
    raw = tomllib.loads(COURSE.read_text())
    (q3,) = [c for c in raw["checks"] if c["id"] == "q3_freezing"]
    q3["hidden"] = True
    _, hidden, texts = student_document(raw)
    assert hidden == 1 and q3["question"] in texts and '"q3_freezing"' in texts
    assert '"large gradients"' in texts and '"destroy"' in texts  # its concepts
    assert '"overfitting"' not in texts  # a visible check's concept too: not a secret


def test_the_reference_table_round_trips(tmp_path: Path) -> None:
    from grader.publish.student import PublishedMode

    mode = PublishedMode("check", 0.95, [0.94, 0.96], [0.9, 0.92], 128, {"final": 0.9})
    path = tmp_path / "r.toml"
    document = {
        "assignment": {"title": "T"},
        "reference": reference_table([mode]),
        "checks": [{"id": "accuracy", "points": 2}],
    }
    path.write_text(dumps(document))
    assert load_rubric(path).published_runs["check"][1] == {"seed": 2, "final": 0.96, "head": 0.92}


def test_publishing_refuses_what_it_cannot_publish(tmp_path: Path) -> None:
    no_reference = _rubric(tmp_path, "check_accuracy = 0.9")
    with pytest.raises(UsageError, match="reference notebook"):
        publish_student(no_reference, tmp_path / "out", package=PACKAGE)
    course_data = tmp_path / "data.toml"
    (tmp_path / "keras" / "models").mkdir(parents=True)
    course_data.write_text(
        COURSE.read_text()
        .replace("../reference_solution", str(ROOT / "reference_solution"))
        .replace('# keras_home = "/srv/course/keras"', f'keras_home = "{tmp_path / "keras"}"')
    )
    with pytest.raises(UsageError, match="own Keras cache"):
        publish_student(course_data, tmp_path / "out", package=PACKAGE)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(UsageError, match="not empty"):
        publish_student(COURSE, tmp_path / "full", package=PACKAGE)
    for bare in ("grader[tf]", " Grader ", ""):  # PyPI's grader is another project
        with pytest.raises(UsageError, match="another project"):
            publish_student(COURSE, tmp_path / "new", package=bare)
    assert not (tmp_path / "new").exists()


def test_reference_takes_one_mode() -> None:
    result = CliRunner().invoke(main, ["reference", "--quick", "--mode", "check"])
    assert result.exit_code == 2 and "two modes" in result.output
