"""What the trained model is built from: the statements that build the object whose
``fit`` runs, followed back through names, the student's own functions (their return
values and their parameters' arguments), the student's classes (an instance is built
from what its methods bind to ``self``) and layers ``.add``-ed to a ``Sequential``.

A notebook may build several models (a demo of the full ImageNet network before the
real one, a baseline); the checks that read the base's options ask about the one that
is trained, which need not be the first one built.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Callable

from grader.static.calls import Calls
from grader.static.scope import Site

MAX_STEPS = 20000
"""Nodes visited at most: a notebook's whole program is far smaller."""
LAYER_ATTRIBUTES = frozenset({"input", "inputs", "output", "outputs", "layers"})
"""A model's attributes that pass the model itself on (``base.output`` builds on the
base); any other (``base.input_shape``, ``base.trainable``) only reads from it."""


def first_reached(
    scope: Calls, expr: ast.AST, site: Site, wanted: Callable[[ast.Call, Site], bool]
) -> tuple[ast.Call, Site] | None:
    """The first call ``wanted`` accepts among what ``expr`` (at ``site``) is built from,
    nearest first; None when nothing it reaches is one."""
    todo: deque[tuple[ast.AST, Site]] = deque([(expr, site)])
    seen: set[tuple[int, int]] = set()
    steps = 0
    while todo and steps < MAX_STEPS:
        root, where = todo.popleft()
        for node in _built_from(root):
            steps += 1
            if not isinstance(node, (ast.Name, ast.Attribute, ast.Call)):
                continue
            if isinstance(node, ast.Call) and wanted(node, where):
                return node, where
            for value, at in _sources(scope, node, where):
                if (id(value), id(at)) not in seen:
                    seen.add((id(value), id(at)))
                    todo.append((value, at))
    return None


def _sources(scope: Calls, node: ast.AST, site: Site) -> list[tuple[ast.AST, Site]]:
    found: list[tuple[ast.AST, Site]] = [
        *scope.values(node, site),
        *scope.instance_parts(node, site),
    ]
    binding = scope.value_binding.get(node)
    if binding is not None:  # a Sequential() built here, and what was .add-ed to it later
        found += scope.added.get(binding, [])
    return found


def _built_from(root: ast.AST) -> list[ast.AST]:
    """The nodes under ``root`` a value is built from: not what only an attribute such as
    ``.input_shape`` reads, nor the test of a conditional expression."""
    found, todo = [], [root]
    while todo:
        node = todo.pop()
        found.append(node)
        if isinstance(node, ast.Attribute):
            children = [node.value] if node.attr in LAYER_ATTRIBUTES else []
        elif isinstance(node, ast.IfExp):
            children = [node.body, node.orelse]
        else:
            children = list(ast.iter_child_nodes(node))
        todo.extend(reversed(children))
    return found
