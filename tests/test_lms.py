"""LMS intake: Canvas and Moodle names, safe zip extraction, latest of several files,
and the rubric's ``[intake]`` section."""

from __future__ import annotations

import calendar
import io
import os
import zipfile
from pathlib import Path

import nbformat
import pytest

from grader.errors import RubricError, SubmissionsError
from grader.intake import lms
from grader.intake.copies import DEFAULT_THRESHOLD
from grader.intake.lms import gather
from grader.rubric.schema import load_rubric

CANVAS = {
    "smithjane_12345_67890_week6.ipynb": "12345",
    "doejohn_LATE_23456_78901_week6.ipynb": "23456",
    "oconnor-mary_34567_89012_My Notebook (1).ipynb": "34567",
}
MOODLE_FOLDER = "Jane Smith_12345_assignsubmission_file_/week6.ipynb"
MOODLE_FLAT = "John Doe_23456_assignsubmission_file_week6.ipynb"
DAY = 86_400
DATE = (2026, 11, 20, 23, 58, 0)
HONEST = (
    "smithjane_12345_67890_week6.ipynb",
    "Jane Smith_45678_assignsubmission_file_/week6.ipynb",
)
MALICIOUS = {
    "../evil.ipynb": "climbs out",
    "a/../../evil3.ipynb": "climbs out",
    "..\\evil2.ipynb": "climbs out",
    "/abs.ipynb": "an absolute path",
    "\\abs2.ipynb": "an absolute path",
    "C:/win.ipynb": "drive letter",
    "link.ipynb": "a symbolic link",
}
RUBRIC = """
[[checks]]
id = "base_frozen"
points = 2
"""


def notebook(code: str = "x = 1") -> bytes:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code, id="cell-1")])
    return nbformat.writes(nb).encode()


def put(root: Path, relative: str, mtime: float = 1_700_000_000, code: str = "x = 1") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(notebook(code))
    os.utime(path, (mtime, mtime))
    return path


def build_zip(path: Path, names: dict[str, bytes], date: tuple[int, ...] = DATE) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in names.items():
            info = zipfile.ZipInfo(name, date_time=date)
            if name == "link.ipynb":
                info.external_attr = 0o120777 << 16
            bundle.writestr(info, data)
    return path


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_canvas_names_map_to_user_ids(tmp_path: Path) -> None:
    for name in CANVAS:
        put(tmp_path / "in", name)
    put(tmp_path / "in", "s9999_lee.ipynb")
    intake = gather(tmp_path / "in", tmp_path / "work")
    assert [e.student for e in intake.entries] == ["12345", "23456", "34567", "s9999_lee"]
    assert intake.problems == [] and intake.extracted_to is None
    assert all(e.notes == [] and e.ignored == [] for e in intake.entries)


@pytest.mark.parametrize("relative", [MOODLE_FOLDER, MOODLE_FLAT])
def test_moodle_folder_and_flat_names(tmp_path: Path, relative: str) -> None:
    path = put(tmp_path, relative)
    [entry] = gather(tmp_path, tmp_path / "work").entries
    assert entry.path == path
    assert entry.student == relative.split("_")[1]


def test_a_single_notebook(tmp_path: Path) -> None:
    path = put(tmp_path, MOODLE_FLAT)
    [entry] = gather(path, tmp_path / "work").entries
    assert (entry.student, entry.path) == ("23456", path)


def test_rubric_patterns_come_first(tmp_path: Path) -> None:
    put(tmp_path, "smithjane_12345_67890_s1004.ipynb")
    put(tmp_path, "section-b/s1007_kim.ipynb")
    patterns = [r"^section-(?P<student>x)?", r"(?P<student>s\d{4})(?:_\w+)?\.ipynb$"]
    students = [e.student for e in gather(tmp_path, tmp_path / "work", patterns).entries]
    assert students == ["s1004", "s1007"]  # an empty 'student' group falls through


def test_a_pattern_without_a_student_group_is_refused(tmp_path: Path) -> None:
    put(tmp_path, "a.ipynb")
    with pytest.raises(SubmissionsError, match="no named group 'student'"):
        gather(tmp_path, tmp_path / "work", [r"(?P<id>\d+)"])


def test_unsafe_characters_in_a_matched_id_are_replaced(tmp_path: Path) -> None:
    put(tmp_path, "x=HYPER LINK(1).ipynb")
    [entry] = gather(tmp_path, tmp_path / "work", [r"^x(?P<student>.*)\.ipynb"]).entries
    assert entry.student == "HYPER_LINK_1"


def test_the_latest_of_several_files_is_graded_with_a_note(tmp_path: Path) -> None:
    names = [
        "smithjane_12345_67890_week6.ipynb",
        "smithjane_12345_67891_week6-1.ipynb",
        "smithjane_LATE_12345_67892_week6-2.ipynb",
    ]
    for name in names:  # the same modification time: the resubmission number decides
        put(tmp_path, name)
    [entry] = gather(tmp_path, tmp_path / "work").entries
    assert entry.path.name == names[2]
    assert entry.ignored == [tmp_path / names[0], tmp_path / names[1]]
    assert entry.notes == [
        f"3 files from this student: graded {names[2]} (the latest); ignored {names[0]}, {names[1]}"
    ]
    os.utime(tmp_path / names[0], (1_700_000_000 + DAY, 1_700_000_000 + DAY))
    [entry] = gather(tmp_path, tmp_path / "work").entries
    assert entry.path.name == names[0]  # the modification time comes first
    assert entry.ignored == [tmp_path / names[1], tmp_path / names[2]]


def test_malicious_zip_entries_are_rejected_and_nothing_escapes(tmp_path: Path) -> None:
    skipped = [
        "__MACOSX/._week6.ipynb",
        ".hidden.ipynb",
        "readme.txt",
        "f/.ipynb_checkpoints/a.ipynb",
    ]
    names = {name: notebook() for name in (*HONEST, *MALICIOUS, *skipped)}
    names["link.ipynb"] = b"../../outside.ipynb"
    archive = build_zip(tmp_path / "class.zip", names)
    work = tmp_path / "deep" / "work"
    intake = gather(archive, work)
    assert intake.extracted_to == work / "intake"
    assert [e.student for e in intake.entries] == ["12345", "45678"]
    assert files_under(tmp_path) == ["class.zip", *sorted(f"deep/work/intake/{n}" for n in HONEST)]
    assert len(intake.problems) == len(MALICIOUS)
    for (name, reason), problem in zip(MALICIOUS.items(), intake.problems, strict=True):
        assert problem.startswith(f"{name!r} in class.zip: rejected: ")
        assert reason in problem
    assert all(e.path.stat().st_mtime == calendar.timegm(DATE) for e in intake.entries)


def test_an_existing_link_in_the_target_cannot_redirect_extraction(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "work" / "intake").mkdir(parents=True)
    (tmp_path / "work" / "intake" / "sub").symlink_to(outside)
    archive = build_zip(tmp_path / "a.zip", {"sub/x.ipynb": notebook()})
    intake = gather(archive, tmp_path / "work")
    assert intake.entries == [] and list(outside.iterdir()) == []
    assert intake.problems == [
        "'sub/x.ipynb' in a.zip: rejected: the path resolves outside the target folder"
    ]


def test_re_extracting_the_same_zip_is_idempotent(tmp_path: Path) -> None:
    archive = build_zip(tmp_path / "a.zip", {name: notebook() for name in HONEST})
    first = gather(archive, tmp_path / "work")
    first.entries[0].path.write_text("changed by hand")
    second = gather(archive, tmp_path / "work")
    assert second == first
    assert all(e.path.read_bytes() == notebook() for e in second.entries)
    assert files_under(tmp_path / "work") == sorted(f"intake/{n}" for n in HONEST)


def test_latest_in_a_zip_follows_the_entry_dates(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr(zipfile.ZipInfo("lee_101_201_week6-1.ipynb", DATE), notebook("y = 2"))
        bundle.writestr(
            zipfile.ZipInfo("lee_101_301_week6.ipynb", (2026, 11, 21, 9, 0, 0)), notebook()
        )
    [entry] = gather(archive, tmp_path / "work").entries
    assert entry.path.name == "lee_101_301_week6.ipynb"
    assert entry.notes == [
        "2 files from this student: graded lee_101_301_week6.ipynb (the latest); "
        "ignored lee_101_201_week6-1.ipynb"
    ]


def test_a_file_that_is_not_a_zip_is_a_submissions_error(tmp_path: Path) -> None:
    fake = tmp_path / "class.zip"
    fake.write_text("this is not a zip")
    with pytest.raises(SubmissionsError, match=r"class\.zip: not a readable zip archive"):
        gather(fake, tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_size_and_count_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = notebook("x = '" + "a" * 5000 + "'")
    archive = build_zip(
        tmp_path / "a.zip", {"a_101_101_x.ipynb": notebook(), "b_202_202_x.ipynb": big}
    )
    monkeypatch.setattr(lms, "MAX_ENTRY_BYTES", 2000)
    intake = gather(archive, tmp_path / "work")
    assert [e.student for e in intake.entries] == ["101"]
    assert intake.problems == ["'b_202_202_x.ipynb' in a.zip: rejected: larger than 2000 bytes"]
    monkeypatch.setattr(lms, "MAX_ENTRY_BYTES", 10**6)
    monkeypatch.setattr(lms, "MAX_TOTAL_BYTES", len(notebook()))
    intake = gather(archive, tmp_path / "work2")
    assert [e.student for e in intake.entries] == ["101"]
    assert intake.problems == [
        f"a.zip: stopped extracting: the notebooks add up to more than {len(notebook())} bytes"
    ]
    monkeypatch.setattr(lms, "MAX_ENTRIES", 1)
    with pytest.raises(SubmissionsError, match="more than 1 entries"):
        gather(archive, tmp_path / "work3")


def test_the_copy_is_bounded_whatever_the_header_says(tmp_path: Path) -> None:
    archive = build_zip(tmp_path / "a.zip", {"a_101_101_x.ipynb": notebook()})
    out = io.BytesIO()
    with zipfile.ZipFile(archive) as bundle, pytest.raises(lms._Rejected, match="larger than 100"):
        lms._copy_bounded(bundle, bundle.infolist()[0], out, 100)
    assert len(out.getvalue()) <= 100


def write_rubric(tmp_path: Path, intake: str) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(f"[intake]\n{intake}\n{RUBRIC}")
    return path


def test_rubric_intake_defaults_and_values(tmp_path: Path) -> None:
    path = tmp_path / "plain.toml"
    path.write_text(RUBRIC)
    assert load_rubric(path).intake.patterns == ()
    assert load_rubric(path).intake.copy_threshold == DEFAULT_THRESHOLD
    text = "patterns = ['^(?P<student>s\\d{4})_']\ncopy_threshold = 0.8"
    intake = load_rubric(write_rubric(tmp_path, text)).intake
    assert intake.patterns == (r"^(?P<student>s\d{4})_",) and intake.copy_threshold == 0.8


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("patterns = ['(?P<student>[a-']", "intake.patterns[0]", "not a valid regex"),
        ("patterns = ['x', '(?P<id>\\d+)']", "intake.patterns[0]", "named group (?P<student>"),
        ("patterns = '(?P<student>x)'", "intake.patterns", "a list of strings"),
        ("copy_threshold = 1.5", "intake.copy_threshold", "above 0 and at most 1"),
        ("copy_threshold = 0", "intake.copy_threshold", "above 0 and at most 1"),
        ("copy_threshold = 'high'", "intake.copy_threshold", "a number"),
        ("threshold = 0.9", "intake.threshold", "unknown key"),
    ],
)
def test_rubric_intake_errors_name_the_key(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    with pytest.raises(RubricError) as info:
        load_rubric(write_rubric(tmp_path, text))
    assert info.value.key == key
    assert problem in str(info.value)


def test_backslash_names_and_duplicate_entries(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("Jane Doe_777_assignsubmission_file_\\week6.ipynb", notebook("x = 1"))
        bundle.writestr("lee_101_201_week6.ipynb", notebook("y = 1"))
        with pytest.warns(UserWarning, match="Duplicate name"):
            bundle.writestr("lee_101_201_week6.ipynb", notebook("y = 2"))
    intake = gather(archive, tmp_path / "work")
    assert [e.student for e in intake.entries] == ["101", "777"]
    assert intake.entries[1].path.parent.name == "Jane Doe_777_assignsubmission_file_"
    assert intake.entries[0].path.read_bytes() == notebook("y = 2")
    assert intake.problems == [
        "'lee_101_201_week6.ipynb' in a.zip: appears more than once; the later entry is kept"
    ]


def test_an_entry_that_cannot_be_written_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "work" / "intake" / "a_101_101_x.ipynb").mkdir(parents=True)  # a folder in the way
    archive = build_zip(
        tmp_path / "a.zip", {"a_101_101_x.ipynb": notebook(), "b_202_202_x.ipynb": notebook()}
    )
    intake = gather(archive, tmp_path / "work")
    assert [e.student for e in intake.entries] == ["202"]
    [problem] = intake.problems
    assert problem.startswith("'a_101_101_x.ipynb' in a.zip: rejected: cannot be written (")
    assert files_under(tmp_path / "work") == ["intake/b_202_202_x.ipynb"]


def test_a_corrupt_entry_is_a_problem(tmp_path: Path) -> None:
    archive = build_zip(tmp_path / "a.zip", {"a_101_101_x.ipynb": notebook()})
    data = bytearray(archive.read_bytes())
    start = data.index(b"a_101_101_x.ipynb") + len("a_101_101_x.ipynb")  # the compressed bytes
    data[start + 5 : start + 25] = bytes(20)
    archive.write_bytes(bytes(data))
    intake = gather(archive, tmp_path / "work")
    assert intake.entries == []
    [problem] = intake.problems
    assert "rejected: cannot be read (" in problem
    assert files_under(tmp_path / "work") == []


def test_one_folder_per_student_with_the_same_file_name(tmp_path: Path) -> None:
    for name in ("alice", "bob"):
        (tmp_path / "class" / name).mkdir(parents=True)
        (tmp_path / "class" / name / "week6.ipynb").write_bytes(notebook())
    (tmp_path / "class" / "week_6_1_final.ipynb").write_bytes(notebook())
    intake = gather(tmp_path / "class", tmp_path / "work")
    students = [e.student for e in intake.entries]
    assert students == ["alice_week6", "bob_week6", "week_6_1_final"]
    assert all(not e.notes for e in intake.entries)
