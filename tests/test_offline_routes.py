"""The course's data by the routes students download it, served offline in the kernel
(:mod:`grader.run.kernel.habits`): ``!wget``/``!curl`` of a file the kernel's Keras
cache holds, ``!unzip``, and ``urllib.request.urlretrieve``. Real files, a real zip;
the shell lines go through the same input transformer as in the kernel."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from grader.run.kernel import habits
from grader.run.kernel.habits import (
    MODULE_NAME,
    MSG_NOT_SERVED,
    MSG_SERVED,
    SKIPPED_LINE,
    neutralise_shell,
    offline_shell,
)

URL = "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip"
NAME = "cats_and_dogs_filtered.zip"
MEMBER = "cats_and_dogs_filtered/train/cats/cat.0.jpg"


@pytest.fixture
def keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kernel's Keras cache holding the course's archive; the working folder beside it."""
    home = tmp_path / "keras_home"
    (home / "datasets").mkdir(parents=True)
    with zipfile.ZipFile(home / "datasets" / NAME, "w") as zf:
        zf.writestr(MEMBER, b"jpeg bytes")
    monkeypatch.setenv("KERAS_HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


def test_download_lines_become_offline_calls_and_other_shell_lines_notes() -> None:
    lines = [f"!wget -q {URL} -O /tmp/x.zip\n", "  !unzip -q x.zip\n", "!ls\n", "y = !wget a\n"]
    call = f"__import__({MODULE_NAME!r}).offline_shell("
    assert neutralise_shell(lines) == [
        call + repr(f"wget -q {URL} -O /tmp/x.zip") + ")\n",
        "  " + call + repr("unzip -q x.zip") + ")\n",
        f"print({SKIPPED_LINE + '!ls'!r})\n",
        "y = []\n",  # its output assigned: nothing to write
    ]


@pytest.mark.parametrize(
    ("command", "written"),
    [
        (f"wget -q {URL} -O data/{NAME}", f"data/{NAME}"),
        (f"wget {URL} --output-document=d.zip", "d.zip"),
        (f"wget -c {URL} -P downloads", f"downloads/{NAME}"),
        (f"wget --no-check-certificate '{URL}'", NAME),
        (f"curl -L -o c.zip {URL}", "c.zip"),
        (f"curl -sLO {URL}", NAME),
        (f"curl --remote-name {URL}", NAME),
    ],
)
def test_a_download_of_a_cached_file_writes_the_copy_where_the_command_would(
    keras_home: Path, command: str, written: str, capsys: pytest.CaptureFixture[str]
) -> None:
    offline_shell(command)
    assert Path(written).read_bytes() == (keras_home / "datasets" / NAME).read_bytes()
    assert capsys.readouterr().out == MSG_SERVED.format(name=NAME) + "\n"


@pytest.mark.parametrize(
    "command",
    [f"curl -L {URL}", "wget https://example.com/other.zip", "wget", "curl -o - " + URL],
)
def test_what_has_no_copy_or_no_file_to_write_is_a_note(
    keras_home: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    offline_shell(command)
    assert capsys.readouterr().out.startswith(MSG_NOT_SERVED.split("{")[0])
    assert list(Path.cwd().iterdir()) == []


def test_unzip_extracts_as_unzip_would(keras_home: Path) -> None:
    offline_shell(f"wget -q {URL}")
    offline_shell(f"unzip -q -o {NAME} -d data")
    assert (Path("data") / MEMBER).read_bytes() == b"jpeg bytes"
    offline_shell(f"unzip -qq {NAME}")
    assert Path(MEMBER).is_file()


def test_unzip_of_a_missing_archive_says_so(
    keras_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    offline_shell("unzip missing.zip")
    assert "cannot find missing.zip" in capsys.readouterr().out


def test_urlretrieve_serves_the_copy_and_passes_other_urls_on(
    keras_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def no_network(url: str, *args: object, **kwargs: object) -> None:
        calls.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlretrieve", no_network)
    habits.install_urlretrieve()
    path, _ = urllib.request.urlretrieve(URL, "u.zip")
    assert Path(path).read_bytes() == (keras_home / "datasets" / NAME).read_bytes()
    assert urllib.request.urlretrieve(URL)[0] == str(Path.cwd() / NAME)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlretrieve("https://example.com/other.zip", "o.zip")
    assert calls == ["https://example.com/other.zip"]


def test_requests_serves_the_copy_as_a_server_would(
    keras_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = pytest.importorskip("requests")

    sent: list[str] = []

    def no_network(self: object, request: requests.PreparedRequest, **kwargs: object) -> None:
        sent.append(str(request.url))
        raise requests.ConnectionError("no network")

    adapters = pytest.importorskip("requests.adapters")
    monkeypatch.setattr(adapters.HTTPAdapter, "send", no_network)
    habits.install_requests()
    copy = (keras_home / "datasets" / NAME).read_bytes()
    response = requests.get(URL)
    assert response.status_code == 200 and response.content == copy
    streamed = requests.get(URL, stream=True)
    assert b"".join(streamed.iter_content(chunk_size=7)) == copy
    assert zipfile.ZipFile(io.BytesIO(requests.get(URL).content)).namelist() == [MEMBER]
    with pytest.raises(requests.ConnectionError):
        requests.get("https://example.com/other.zip")
    assert sent == ["https://example.com/other.zip"]
