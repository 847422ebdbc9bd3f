"""The kernels' environment: what course notebooks import is installed (no kernel).

A kernel cannot install anything (no network, ``!pip`` neutralised), so the ``course``
extra in ``pyproject.toml`` is what a notebook beyond TensorFlow can use. The official
tutorial's ``plot_model`` cell needs pydot and Graphviz's ``dot`` too.
"""

from __future__ import annotations

import importlib.util
import re
import shutil

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from tests.conftest import ROOT

MODULE_OF = {
    "scikit-learn": "sklearn",
    "opencv-python-headless": "cv2",
    "tensorflow-datasets": "tensorflow_datasets",
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


def test_plot_model_can_draw_pydot_renders_with_graphviz() -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz is not installed (make installs it with apt as root)")
    import pydot

    graph = pydot.Dot(graph_type="digraph")
    graph.add_edge(pydot.Edge("base", "head"))
    assert graph.create(format="png").startswith(b"\x89PNG")
