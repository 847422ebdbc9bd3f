"""The kernels' environment: what course notebooks import is installed (no kernel).

A kernel cannot install anything (no network, ``!pip`` neutralised), so the ``course``
extra in ``pyproject.toml`` is what a notebook beyond TensorFlow can use. The official
tutorial's ``plot_model`` cell needs pydot and Graphviz's ``dot`` too.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from tests.conftest import ROOT

MODULE_OF = {
    "scikit-learn": "sklearn",
    "opencv-python-headless": "cv2",
    "tensorflow-datasets": "tensorflow_datasets",
    "importlib-resources": "importlib_resources",
}
"""Import names that differ from the distribution's."""


def course_extra() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = project["optional-dependencies"]["course"]
    return [re.split(r"[<>=\[ ]", d, maxsplit=1)[0] for d in extra]


@pytest.mark.parametrize("distribution", course_extra())
def test_what_course_notebooks_import_is_installed(distribution: str) -> None:
    module = MODULE_OF.get(distribution, distribution.replace("-", "_"))
    assert importlib.util.find_spec(module) is not None, f"pip install -e '.[course]' ({module})"


def test_tfds_resolves_the_tutorials_dataset_without_a_network() -> None:
    """``import tensorflow_datasets`` alone passed while every ``tfds.load`` failed: the
    dataset's own module needs ``importlib_resources``, which TFDS does not require."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import tensorflow_datasets as t; print(t.builder_cls('cats_vs_dogs').VERSION)",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1].count(".") == 2  # a version such as 4.0.1


def test_plot_model_can_draw_pydot_renders_with_graphviz() -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz is not installed (make installs it with apt as root)")
    import pydot

    graph = pydot.Dot(graph_type="digraph")
    graph.add_edge(pydot.Edge("base", "head"))
    assert graph.create(format="png").startswith(b"\x89PNG")


WHEELS = {  # platform: the TensorFlow distribution PyPI has a wheel of there (2026-12-02)
    ("linux", "x86_64"): "tensorflow-cpu",
    ("win32", "AMD64"): "tensorflow-cpu",
    ("darwin", "x86_64"): "tensorflow-cpu",  # the last is 2.16.2, as for tensorflow
    ("darwin", "arm64"): "tensorflow",  # tensorflow-cpu: none
    ("linux", "aarch64"): "tensorflow",  # tensorflow-cpu: none
}
"""Found with ``pip install --dry-run --only-binary=:all: --platform P --python-version
3.11 'tensorflow-cpu>=2.16'`` (and ``tensorflow``) for macosx_12_0_arm64,
macosx_12_0_x86_64, manylinux2014_aarch64, manylinux_2_17_x86_64 and win_amd64."""


@pytest.mark.parametrize(("platform", "machine"), sorted(WHEELS))
def test_the_tf_extra_picks_the_tensorflow_that_has_a_wheel_there(
    platform: str, machine: str
) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    environment = {
        **default_environment(),
        "sys_platform": platform,
        "platform_machine": machine,
        "extra": "tf",
    }
    chosen = [
        requirement.name
        for requirement in map(Requirement, project["optional-dependencies"]["tf"])
        if requirement.name.startswith("tensorflow")
        and (requirement.marker is None or requirement.marker.evaluate(environment))
    ]
    assert chosen == [WHEELS[platform, machine]]
