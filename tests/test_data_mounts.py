"""The course's data where a notebook names it on a Drive or Kaggle mount (issue 17).

Read from the code before the kernel starts (:mod:`grader.run.dataroutes`), served
read-only at that path inside the kernel's own view; the view itself is checked with the
real launcher, as root, like the isolation tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader.errors import RubricError
from grader.rubric.schema import load_rubric
from grader.run import machine, sandbox, uids
from grader.run.dataroutes import MAX_SERVED, MOUNT_ROOTS, named_paths, serve, system_folder
from grader.run.execute import kernel_limits
from grader.run.kernel import bubblewrap
from tests.conftest import ROOT
from tests.test_isolation import AS_ROOT, X86_64, policy_for, python_paths

NAMES = {"cats_and_dogs_filtered", "cats_and_dogs.zip", "cats_and_dogs_filtered.zip"}
DRIVE = "/content/drive/MyDrive"


def paths(*sources: str) -> list[str]:
    return named_paths(sources, NAMES, MOUNT_ROOTS)


@pytest.mark.parametrize(
    ("source", "served"),
    [
        (f"PATH = '{DRIVE}/cats_and_dogs_filtered'", [f"{DRIVE}/cats_and_dogs_filtered"]),
        (  # a folder inside it: the dataset's folder is served, whole
            f"train_dir = '{DRIVE}/Colab Notebooks/cats_and_dogs_filtered/train/'",
            [f"{DRIVE}/Colab Notebooks/cats_and_dogs_filtered"],
        ),
        (
            "base = '/kaggle/input/cats-and-dogs-filtered'\n"
            "PATH = os.path.join(base, 'cats_and_dogs_filtered')",
            ["/kaggle/input/cats-and-dogs-filtered/cats_and_dogs_filtered"],
        ),
        (
            f'!unzip -q "{DRIVE}/data/cats_and_dogs_filtered.zip" -d /content',
            [f"{DRIVE}/data/cats_and_dogs_filtered.zip"],
        ),
        (  # relative to Colab's working folder
            "PATH = 'drive/My Drive/cats_and_dogs_filtered'",
            ["drive/My Drive/cats_and_dogs_filtered"],
        ),
    ],
)
def test_a_path_the_code_names_under_a_mount_is_served_up_to_the_datasets_name(
    source: str, served: list[str]
) -> None:
    assert paths(source) == served


def test_nothing_outside_the_mounts_and_nothing_that_climbs_out_of_them_is_served() -> None:
    assert paths("PATH = '/tmp/cats_and_dogs_filtered'") == []  # unzipped there by the code
    assert paths("p = '/content/drive/../../etc/cats_and_dogs_filtered'") == []
    assert paths("p = 'drive/../../cats_and_dogs_filtered'") == []
    assert paths(f"p = f'{DRIVE}/{{name}}'") == []  # an f-string's field: not known here
    assert paths(f"p = '{DRIVE}/notes'") == []  # a mount named, the dataset never
    saves = f"model.save('{DRIVE}/transfer.keras')\nPATH = 'x/cats_and_dogs_filtered'"
    assert paths(saves) == []  # a file to write is no base folder (it became one before)
    assert paths(f"p = '{DRIVE}/a\tb/cats_and_dogs_filtered'") == []  # no such name
    assert paths(f"p = '{DRIVE}/{'x' * 256}/cats_and_dogs_filtered'") == []  # past NAME_MAX


def test_served_paths_are_few_and_none_inside_another() -> None:
    source = f"a = '{DRIVE}/cats_and_dogs_filtered'\nb = '{DRIVE}'\nc = 'cats_and_dogs.zip'"
    assert paths(source) == [f"{DRIVE}/cats_and_dogs.zip", f"{DRIVE}/cats_and_dogs_filtered"]
    many = "\n".join(f"p{i} = '{DRIVE}/f{i}/cats_and_dogs_filtered'" for i in range(40))
    assert len(paths(many)) == MAX_SERVED


def keras_home(tmp_path: Path) -> Path:
    datasets = tmp_path / "keras_home" / "datasets"
    (datasets / "cats_and_dogs_filtered" / "train" / "cats").mkdir(parents=True)
    (datasets / "cats_and_dogs_filtered" / "train" / "cats" / "cat.0.jpg").write_bytes(b"jpg")
    with zipfile.ZipFile(tmp_path / "kit.zip", "w") as archive:
        archive.writestr("cats_and_dogs_filtered/train/cats/cat.0.jpg", b"jpg")
    os.symlink(tmp_path / "kit.zip", datasets / "cats_and_dogs.zip")  # links to the kit
    return tmp_path / "keras_home"


def test_serving_binds_absolute_paths_links_relative_ones_and_names_working_folders(
    tmp_path: Path,
) -> None:
    home, work = keras_home(tmp_path), tmp_path / "work"
    work.mkdir()
    sources = [
        "from google.colab import drive\ndrive.mount('/content/drive')",
        f"zip_path = '{DRIVE}/cats_and_dogs.zip'\nPATH = 'drive/MyDrive/cats_and_dogs_filtered'",
    ]
    served = serve(sources, home, work, MOUNT_ROOTS)
    folder = str((home / "datasets" / "cats_and_dogs_filtered").resolve())
    assert set(served.binds) == {
        (str(tmp_path / "kit.zip"), f"{DRIVE}/cats_and_dogs.zip"),
        # the mount point is named, and the dataset's names: joined there too, at a guess
        (str(tmp_path / "kit.zip"), "/content/drive/cats_and_dogs.zip"),
        (folder, "/content/drive/cats_and_dogs_filtered"),
    }
    link = work / "drive" / "MyDrive" / "cats_and_dogs_filtered"
    assert link.resolve() == (home / "datasets" / "cats_and_dogs_filtered").resolve()
    assert (link / "train" / "cats" / "cat.0.jpg").read_bytes() == b"jpg"
    assert served.working == ("/content",)
    assert serve(["x = 1"], home, work, MOUNT_ROOTS).binds == ()


def test_the_policy_and_bubblewraps_command_line_carry_what_is_served(tmp_path: Path) -> None:
    home, work = keras_home(tmp_path), tmp_path / "work"
    work.mkdir()
    served = serve([f"p = '{DRIVE}/cats_and_dogs_filtered'"], home, work, MOUNT_ROOTS)
    limits = kernel_limits(load_rubric(ROOT / "rubrics" / "transfer_learning.toml").limits)
    box = sandbox.KernelSandbox(root=tmp_path, limits=limits, served=served)
    policy = box._policy()
    source = str((home / "datasets" / "cats_and_dogs_filtered").resolve())
    assert policy["serve"] == [[source, f"{DRIVE}/cats_and_dogs_filtered"]]
    assert policy["private_tmp"] == [*machine.PRIVATE_TMP, "/content"]
    args = bubblewrap.argv(policy, "bwrap", None)
    at = args.index(f"{DRIVE}/cats_and_dogs_filtered")
    assert args[at - 2 : at] == ["--ro-bind", source]
    tmpfs = args.index("/content")
    assert args[tmpfs - 1] == "--tmpfs" and tmpfs < at  # the working folder first, then data


def test_a_rubric_names_the_mounts_it_serves(tmp_path: Path) -> None:
    text = (ROOT / "rubrics" / "transfer_learning.toml").read_text()
    reference = (ROOT / "reference_solution" / "transfer_learning.ipynb").as_posix()
    text = text.replace("../reference_solution/transfer_learning.ipynb", reference)
    assert load_rubric(ROOT / "rubrics" / "transfer_learning.toml").mounts == MOUNT_ROOTS
    for mounts, expected in (('["/data/course/"]', ("/data/course",)), ("[]", ())):
        (tmp_path / "r.toml").write_text(text.replace("[data]\n", f"[data]\nmounts = {mounts}\n"))
        assert load_rubric(tmp_path / "r.toml").mounts == expected
    for bad in ('["/"]', '["data"]', '["/a/../etc"]', '"/content"', '["/usr/share/data"]'):
        (tmp_path / "r.toml").write_text(text.replace("[data]\n", f"[data]\nmounts = {bad}\n"))
        with pytest.raises(RubricError, match="data.mounts"):
            load_rubric(tmp_path / "r.toml")


def test_a_course_mount_root_may_not_overlap_a_system_folder() -> None:
    for root in ("/usr", "/usr/share/course", "/proc/1", "/tmp/data", "/etc", "/var/lib"):
        assert system_folder(root) is not None, root
    for root in ("/content/drive", "/kaggle/input", "/data/course", "/mnt/shared", "/usr2"):
        assert system_folder(root) is None, root
    assert system_folder("/") is not None  # holds them all (refused earlier as "/")
    for root in ("/./etc", "//usr", "/content/../usr/lib", sys.prefix, sys.prefix + "/data"):
        assert system_folder(root) is not None, root  # as the view reads it; this Python


INSIDE = r"""
import errno, json, os, sys
drive = "/content/drive/MyDrive/cats_and_dogs_filtered"
try:
    open(drive + "/planted", "w")
    planted = 0
except OSError as exc:
    planted = exc.errno
with open("/content/out.txt", "w") as handle:  # Colab's working folder: writable
    handle.write("ok")
with open("/content/drive/MyDrive/model.keras", "w") as handle:  # beside the data too
    handle.write("ok")
print(json.dumps({
    "files": sorted(os.listdir(drive + "/train/cats")),
    "zip": os.path.getsize("/kaggle/input/x/cats_and_dogs.zip"),
    "planted": planted, "content": sorted(os.listdir("/content")),
}))
"""


@X86_64
@AS_ROOT
def test_as_root_the_data_is_in_the_kernels_view_read_only_and_nothing_else_changes(
    tmp_path: Path,
) -> None:
    home = keras_home(tmp_path)
    run = tmp_path / "run"
    (run / "work").mkdir(parents=True)
    uid = uids.next_uid()
    os.chown(run / "work", uid, uid)
    os.chmod(run, 0o711)
    os.chmod(tmp_path, 0o755)
    data = str(home / "datasets" / "cats_and_dogs_filtered")
    for folder, _, files in os.walk(data):  # the kernel's own: only the bind refuses writes
        os.chown(folder, uid, uid)
        for name in files:
            os.chown(os.path.join(folder, name), uid, uid)
    policy = policy_for(run, uid, [*python_paths(), data, str(tmp_path / "kit.zip")], [])
    policy["private_tmp"] = [*policy["private_tmp"], "/content"]
    policy["serve"] = [
        [data, "/content/drive/MyDrive/cats_and_dogs_filtered"],
        [str(tmp_path / "kit.zip"), "/kaggle/input/x/cats_and_dogs.zip"],
    ]
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    argv = [sys.executable, "-m", "grader.run.kernel.launch", str(tmp_path / "policy.json")]
    proc = subprocess.run(
        [*argv, "--", sys.executable, "-c", INSIDE],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["files"] == ["cat.0.jpg"] and seen["zip"] == (tmp_path / "kit.zip").stat().st_size
    assert seen["planted"] == 30  # EROFS: served read-only, though the kernel owns it
    assert seen["content"] == ["drive", "out.txt"]
    assert not Path("/content").exists() and not Path("/kaggle").exists()  # nothing on the host
