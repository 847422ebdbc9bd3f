"""What a piece of a notebook's syntax says on its own, before any name is looked up:
dotted names, the names a lambda or comprehension binds, ``trainable`` assignments,
constant arithmetic, and what a call passes for a parameter (used by
:mod:`grader.static.scope`)."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from typing import Any

from grader.static.keras_names import KERAS_ROOTS

TRAINABLE = "trainable"
COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
UNKNOWN = object()
"""A value static analysis cannot know."""
RESCALE_SCALE = 1 / 127.5
RESCALE_OFFSET = -1.0
TOLERANCE = 1e-6


def dotted(expr: ast.AST) -> str | None:
    """``a`` or ``a.b.c`` for a name or an attribute chain of names, else None."""
    attrs: list[str] = []
    while isinstance(expr, ast.Attribute):
        attrs.append(expr.attr)
        expr = expr.value
    return ".".join([expr.id, *reversed(attrs)]) if isinstance(expr, ast.Name) else None


def bound_names(node: ast.AST) -> set[str]:
    """Names a lambda or comprehension binds for its inner nodes."""
    if isinstance(node, ast.Lambda):
        args = node.args
        every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        return {arg.arg for arg in every if arg is not None}
    if isinstance(node, COMPREHENSIONS):
        return {
            n.id for gen in node.generators for n in ast.walk(gen.target) if isinstance(n, ast.Name)
        }
    return set()


def scoped_nodes(roots: list[ast.AST]) -> Iterator[tuple[ast.AST, frozenset[str]]]:
    """Every node under ``roots`` in source order, with the lambda/comprehension names around it."""
    stack = [(root, frozenset()) for root in reversed(roots)]
    while stack:
        node, bound = stack.pop()
        yield node, bound
        inner = bound | bound_names(node)
        stack.extend((child, inner) for child in reversed(list(ast.iter_child_nodes(node))))


def is_keras(parts: list[str]) -> bool:
    return parts[0] in KERAS_ROOTS and any(p.startswith("keras") or p == "tf_keras" for p in parts)


def apply_op(op: Any, *values: Any) -> Any:
    """``op(*values)`` when every value is a number, else ``UNKNOWN``."""
    if not all(isinstance(v, (int, float)) for v in values):
        return UNKNOWN
    try:
        return op(*values)
    except (ArithmeticError, TypeError):
        return UNKNOWN


def setattr_trainable(expr: ast.AST) -> tuple[ast.expr, ast.expr] | None:
    if (
        isinstance(expr, ast.Call)
        and isinstance(expr.func, ast.Name)
        and expr.func.id == "setattr"
        and len(expr.args) == 3
        and isinstance(expr.args[1], ast.Constant)
        and expr.args[1].value == TRAINABLE
    ):
        return expr.args[0], expr.args[2]
    return None


def trainable_sets(stmt: ast.stmt) -> list[tuple[ast.expr, ast.expr]]:
    """(object, value) for each ``obj.trainable = value`` / ``setattr`` in one statement."""
    if isinstance(stmt, ast.Expr):
        pair = setattr_trainable(stmt.value)
        return [pair] if pair else []
    if isinstance(stmt, ast.Assign):
        targets, value = stmt.targets, stmt.value
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        targets, value = [stmt.target], stmt.value
    else:
        return []
    return [
        (t.value, value) for t in targets if isinstance(t, ast.Attribute) and t.attr == TRAINABLE
    ]


def default_of(node: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> ast.expr | None:
    """The default value of parameter ``name`` of ``node`` (None: it has none)."""
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    with_default = positional[len(positional) - len(args.defaults) :]
    defaults = {a.arg: d for a, d in zip(with_default, args.defaults, strict=True)}
    pairs = zip(args.kwonlyargs, args.kw_defaults, strict=True)
    defaults.update((a.arg, d) for a, d in pairs if d is not None)
    return defaults.get(name)


def passed_for(call: ast.Call, name: str, index: int | None) -> ast.expr | None:
    """The argument ``call`` passes for parameter ``name`` (position ``index``)."""
    explicit = [k.value for k in call.keywords if k.arg == name]
    if explicit:
        return explicit[0]
    if index is None or index >= len(call.args):
        return None
    if any(isinstance(a, ast.Starred) for a in call.args[: index + 1]):
        return None
    return call.args[index]


def is_mobilenet_rescale(call: ast.Call, const: Callable[[ast.AST], Any]) -> bool:
    """``Rescaling(1./127.5, offset=-1)``: the same mapping as ``preprocess_input``."""
    scale = next((k.value for k in call.keywords if k.arg == "scale"), None)
    offset = next((k.value for k in call.keywords if k.arg == "offset"), None)
    scale = call.args[0] if call.args else scale
    offset = call.args[1] if len(call.args) > 1 else offset
    if scale is None or offset is None:
        return False
    values = (const(scale), const(offset))
    if not all(isinstance(v, (int, float)) for v in values):
        return False
    return (
        abs(values[0] - RESCALE_SCALE) < TOLERANCE and abs(values[1] - RESCALE_OFFSET) < TOLERANCE
    )


def spreads(call: ast.Call) -> bool:
    """A call that passes ``*args`` or ``**kwargs``: which parameter gets what is unknown."""
    starred = any(isinstance(a, ast.Starred) for a in call.args)
    return starred or any(k.arg is None for k in call.keywords)
