"""What the trained model is built from: the statements that build the object whose
``fit`` runs, followed back through names, the student's own functions (their return
values and their parameters' arguments) and layers ``.add``-ed to a ``Sequential``.

A notebook may build several models (a demo of the full ImageNet network before the
real one, a baseline); the checks that read the base's options ask about the one that
is trained, which need not be the first one built.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Callable

from grader.static.scope import Scope, Site

MAX_STEPS = 20000
"""Nodes visited at most: a notebook's whole program is far smaller."""


def first_reached(
    scope: Scope, expr: ast.AST, site: Site, wanted: Callable[[ast.Call, Site], bool]
) -> tuple[ast.Call, Site] | None:
    """The first call ``wanted`` accepts among what ``expr`` (at ``site``) is built from,
    nearest first; None when nothing it reaches is one."""
    todo: deque[tuple[ast.AST, Site]] = deque([(expr, site)])
    seen: set[tuple[int, int]] = set()
    steps = 0
    while todo and steps < MAX_STEPS:
        root, where = todo.popleft()
        for node in ast.walk(root):
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


def _sources(scope: Scope, node: ast.AST, site: Site) -> list[tuple[ast.AST, Site]]:
    found: list[tuple[ast.AST, Site]] = list(scope.values(node, site))
    binding = scope.value_binding.get(node)
    if binding is not None:  # a Sequential() built here, and what was .add-ed to it later
        found += scope.added.get(binding, [])
    return found
