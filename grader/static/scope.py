r"""A notebook's statements and name bindings, read for static analysis.

The notebook is one program: each statement becomes a :class:`Site` with its execution
order (cell, line, column) and the function it sits in. :class:`Scope` binds names over
all of them (imports, assignments, ``def``\ s, walrus targets, ``obj["key"] = ...``
items, ``model.add(...)`` calls) and resolves an expression to the dotted name or the
constant it stands for, looking a name up as Python would at that point.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from grader.static.keras_names import IMPLICIT_ALIASES
from grader.static.syntax import (
    UNKNOWN,
    apply_op,
    dotted,
    is_keras,
)

MAX_DEPTH = 25
MAX_LOOP_ITEMS = 32
"""Items of a literal a ``for`` target is bound to, at most (more: unknown)."""
BODY_FIELDS = ("body", "orelse", "finalbody")
BLOCK_FIELDS = ("handlers", "cases")
UNARY_OPS = {ast.USub: lambda v: -v, ast.UAdd: lambda v: +v}
BINARY_OPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}

MODULE, EXPR, DEF, OPAQUE, PARAM = "module", "expr", "def", "opaque", "param"
"""Binding kinds (see :class:`Binding`)."""
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
ABSENT = object()
"""An argument not passed at all."""


@dataclass(eq=False)
class Site:
    """One statement, with its execution order and its own (non-body) child nodes."""

    order: tuple[int, int, int]
    cell: int
    node: ast.stmt
    func: str | None
    exprs: list[ast.AST]
    owners: tuple[ast.AST, ...] = ()
    """The ``def`` and ``class`` statements around it, innermost first: its scopes."""

    @property
    def scope(self) -> ast.AST | None:
        """Where a name the statement binds lives (None: the notebook's globals)."""
        return self.owners[0] if self.owners else None

    @property
    def function(self) -> ast.AST | None:
        """The ``def`` whose body the statement is in (None: none, or a class body)."""
        return self.owners[0] if self.owners and isinstance(self.owners[0], FUNCTIONS) else None


@dataclass(eq=False)
class Binding:
    """``kind`` is module (value: dotted name), expr (value: the ast), def, param (value:
    the ``def`` and the parameter's position, None for keyword-only) or opaque."""

    site: Site
    kind: str
    value: Any
    scope: ast.AST | None
    """The ``def`` or ``class`` the name is local to (None: global)."""


def own_nodes(stmt: ast.stmt) -> list[ast.AST]:
    """A statement's child nodes other than its nested statement blocks."""
    nodes: list[ast.AST] = []
    for name, value in ast.iter_fields(stmt):
        if name not in BODY_FIELDS and name not in BLOCK_FIELDS:
            items = value if isinstance(value, list) else [value]
            nodes.extend(item for item in items if isinstance(item, ast.AST))
    return nodes


def live_blocks(stmt: ast.stmt) -> list[list[ast.stmt]]:
    """Child statement lists, without the dead branch of ``if False:`` / ``while 0:``."""
    if isinstance(stmt, (ast.If, ast.While)) and isinstance(stmt.test, ast.Constant):
        return [stmt.body] if stmt.test.value else [stmt.orelse]
    blocks = [getattr(stmt, name, []) for name in BODY_FIELDS]
    for name in BLOCK_FIELDS:
        blocks.extend(block.body for block in getattr(stmt, name, []))
    return blocks


def _unknown_constants(item: ast.expr) -> ast.expr | None:
    """A loop item with its constants unknown (None), tuples item by item."""
    if isinstance(item, ast.Constant):
        return None
    if isinstance(item, (ast.Tuple, ast.List)):
        return ast.Tuple(elts=[_unknown_constants(e) for e in item.elts], ctx=ast.Load())
    return item


def qualified(node: ast.AST, owners: tuple[ast.AST, ...]) -> str:
    """A ``def``'s name as its calls are indexed: ``Class.method`` for a method."""
    name = getattr(node, "name", "")
    return f"{owners[0].name}.{name}" if owners and isinstance(owners[0], ast.ClassDef) else name


def collect(
    stmts: list[ast.stmt],
    order: int,
    cell: int,
    func: str | None,
    out: list[Site],
    owners: tuple[ast.AST, ...] = (),
) -> None:
    """Each statement as a :class:`Site`; ``func`` is the outermost ``def`` (when a body
    runs), ``owners`` every ``def`` and ``class`` around it (where its names live)."""
    for stmt in stmts:
        where = (order, stmt.lineno, stmt.col_offset)
        out.append(Site(where, cell, stmt, func, own_nodes(stmt), owners))
        inner, inner_owners = func, owners
        if isinstance(stmt, FUNCTIONS):
            inner, inner_owners = func or qualified(stmt, owners), (stmt, *owners)
        elif isinstance(stmt, ast.ClassDef):
            inner_owners = (stmt, *owners)
        for block in live_blocks(stmt):
            collect(block, order, cell, inner, out, inner_owners)


class Scope:
    """Name bindings over the whole notebook, and what an expression resolves to."""

    def __init__(self, sites: list[Site]) -> None:
        self.sites = sites
        self.bindings: dict[str, list[Binding]] = {}
        self.items: dict[tuple[str, str], list[Binding]] = {}
        self.stars: list[tuple[Site, str]] = []
        self.value_binding: dict[ast.AST, Binding] = {}
        self.added: dict[Binding, list[tuple[ast.expr, Site]]] = {}
        self.calls: dict[str, list[Site]] = {}
        self.defs: dict[str, Site] = {}
        self.times: dict[str, tuple] = {}
        self.returns: dict[ast.AST, list[tuple[ast.expr, Site]]] = {}
        self.qualnames: dict[ast.AST, str] = {}
        for site in sites:
            self._bind(site)
        for site in sites:
            self._index_calls(site)

    # bindings

    def _add(self, key: str, site: Site, kind: str, value: Any, scope: ast.AST | None) -> None:
        binding = Binding(site, kind, value, scope)
        self.bindings.setdefault(key, []).append(binding)
        if kind == EXPR:
            self.value_binding[value] = binding

    def _bind(self, site: Site) -> None:
        node, scope = site.node, site.scope
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.asname or alias.name.split(".")[0]
                self._add(name, site, MODULE, alias.name if alias.asname else name, scope)
        elif isinstance(node, ast.ImportFrom):
            module = None if node.level else node.module
            for alias in node.names:
                if alias.name == "*" and module:
                    self.stars.append((site, module))
                elif alias.name != "*":
                    kind = MODULE if module else OPAQUE
                    self._add(
                        alias.asname or alias.name, site, kind, f"{module}.{alias.name}", scope
                    )
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                self._bind_target(target, node.value, site)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            for value in self._loop_values(node.iter, site):
                self._bind_target(node.target, value, site)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            value = node.value if isinstance(node, ast.AnnAssign) else None
            self._bind_target(node.target, value, site)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None:
                    self._bind_target(item.optional_vars, None, site)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self._bind_def(node, site)
        elif isinstance(node, ast.Return) and node.value is not None and site.function:
            self.returns.setdefault(site.function, []).append((node.value, site))
        for expr in site.exprs:
            for sub in ast.walk(expr):
                if isinstance(sub, ast.NamedExpr) and isinstance(sub.target, ast.Name):
                    self._add(sub.target.id, site, EXPR, sub.value, scope)

    def _bind_def(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, site: Site
    ) -> None:
        self._add(node.name, site, DEF, node, site.scope)
        if isinstance(node, ast.ClassDef):
            return
        self.qualnames[node] = qualified(node, site.owners)
        self.defs.setdefault(self.qualnames[node], site)
        args, scope = node.args, node
        for index, arg in enumerate([*args.posonlyargs, *args.args]):
            self._add(arg.arg, site, PARAM, (node, index), scope)
        for arg in args.kwonlyargs:
            self._add(arg.arg, site, PARAM, (node, None), scope)
        for arg in (a for a in (args.vararg, args.kwarg) if a is not None):
            self._add(arg.arg, site, OPAQUE, None, scope)

    def _loop_values(self, iterable: ast.expr, site: Site) -> list[ast.expr | None]:
        """What a ``for`` target is bound to: the items of a literal list, tuple or set
        (maybe through a name bound to one), up to :data:`MAX_LOOP_ITEMS`, a lookup finding
        the last (as after the loop; a call reads each); a constant item (``for t in
        [False, True]``) stays unknown: which one a statement in the body sees is not."""
        if isinstance(iterable, ast.Name):
            binding = self._lookup(iterable.id, site)
            iterable = binding.value if binding is not None and binding.kind == EXPR else iterable
        items = iterable.elts if isinstance(iterable, (ast.List, ast.Tuple, ast.Set)) else []
        if not items or len(items) > MAX_LOOP_ITEMS:
            return [None]
        if any(isinstance(e, ast.Starred) for e in items):
            return [None]
        return [_unknown_constants(e) for e in items]

    def _bind_target(self, target: ast.AST, value: ast.expr | None, site: Site) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            values: list[ast.expr | None] = [None] * len(target.elts)
            if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(values):
                values = list(value.elts)
            for sub, sub_value in zip(target.elts, values, strict=True):
                self._bind_target(sub, sub_value, site)
        elif isinstance(target, ast.Subscript):
            owner, index = dotted(target.value), target.slice
            if owner and value is not None and isinstance(index, ast.Constant):
                binding = Binding(site, EXPR, value, site.scope)
                self.items.setdefault((owner, str(index.value)), []).append(binding)
        elif isinstance(target, ast.Starred):
            self._bind_target(target.value, None, site)
        elif key := dotted(target):
            self._add(key, site, OPAQUE if value is None else EXPR, value, site.scope)

    def _index_calls(self, site: Site) -> None:
        for expr in site.exprs:
            for node in ast.walk(expr):
                if not isinstance(node, ast.Call):
                    continue
                if isinstance(node.func, ast.Name):
                    self.calls.setdefault(node.func.id, []).append(site)
                elif isinstance(node.func, ast.Attribute) and node.func.attr == "add" and node.args:
                    owner = dotted(node.func.value)
                    binding = self._lookup(owner, site) if owner else None
                    if binding is not None:
                        self.added.setdefault(binding, []).append((node.args[0], site))

    def _lookup(self, key: str, site: Site) -> Binding | None:
        """The binding of ``key`` seen from ``site``: its function's locals, the enclosing
        functions' (a class body's own names only from that body), then globals."""
        found = self.bindings.get(key, [])
        enclosing = [o for i, o in enumerate(site.owners) if i == 0 or isinstance(o, FUNCTIONS)]
        for scope in [*enclosing, None]:
            candidates = [b for b in found if b.scope is scope]
            before = [b for b in candidates if b.site.order < site.order]
            if before:
                return before[-1]
            if candidates and site.owners:
                return candidates[0]
        return None

    # resolution

    def _resolve(self, expr: ast.AST, site: Site, depth: int = 0) -> str | None:
        """Dotted name an expression stands for (``tf.keras`` -> ``tensorflow.keras``)."""
        if depth > MAX_DEPTH:
            return None
        if isinstance(expr, ast.Attribute):
            owner = self._resolve(expr.value, site, depth + 1)
            return f"{owner}.{expr.attr}" if owner else None
        if not isinstance(expr, ast.Name):
            return None
        binding = self._lookup(expr.id, site)
        if binding is None:
            stars = [m for s, m in self.stars if s.order < site.order and is_keras(m.split("."))]
            return f"{stars[-1]}.{expr.id}" if stars else IMPLICIT_ALIASES.get(expr.id, expr.id)
        if binding.kind == MODULE:
            return binding.value
        if binding.kind == EXPR:
            return self._resolve(binding.value, binding.site, depth + 1)
        return None

    def _keras_parts(self, expr: ast.AST, site: Site) -> list[str] | None:
        path = self._resolve(expr, site)
        parts = path.split(".") if path else None
        return parts if parts and is_keras(parts) else None

    def _class_name(self, expr: ast.AST, site: Site) -> str | None:
        parts = self._keras_parts(expr, site)
        return parts[-1] if parts else None

    def _const(self, expr: ast.AST, site: Site, depth: int = 0) -> Any:
        """The constant value of an expression, or ``UNKNOWN``."""
        if depth > MAX_DEPTH:
            return UNKNOWN
        if isinstance(expr, ast.Constant):
            return expr.value
        if isinstance(expr, (ast.Name, ast.Attribute)):  # x, or self.x bound in a method
            key = dotted(expr)
            binding = self._lookup(key, site) if key else None
            if binding is None or binding.kind != EXPR:
                return UNKNOWN
            return self._const(binding.value, binding.site, depth + 1)
        if isinstance(expr, ast.UnaryOp):
            value = self._const(expr.operand, site, depth + 1)
            if isinstance(expr.op, ast.Not):
                return UNKNOWN if value is UNKNOWN else not value
            op = UNARY_OPS.get(type(expr.op))
            return UNKNOWN if op is None else apply_op(op, value)
        if isinstance(expr, ast.BinOp) and type(expr.op) in BINARY_OPS:
            left = self._const(expr.left, site, depth + 1)
            right = self._const(expr.right, site, depth + 1)
            return apply_op(BINARY_OPS[type(expr.op)], left, right)
        return UNKNOWN

    # what a name holds

    def _bound_value(self, expr: ast.AST, site: Site) -> Binding | None:
        key = dotted(expr)
        binding = self._lookup(key, site) if key else None
        return binding if binding is not None and binding.kind == EXPR else None

    # call arguments

    def _argument(self, call: ast.Call, site: Site, name: str, positional: tuple[str, ...]) -> Any:
        """Constant passed as ``name`` to ``call`` (whose positional parameters are
        ``positional``), ``UNKNOWN`` or ``ABSENT``; ``**options`` dicts are read too."""
        index = positional.index(name)
        for i, arg in enumerate(call.args):
            if isinstance(arg, ast.Starred):
                return UNKNOWN
            if i == index:
                return self._const(arg, site)
        explicit = [k.value for k in call.keywords if k.arg == name]
        if explicit:
            return self._const(explicit[0], site)
        for keyword in call.keywords:
            value = ABSENT if keyword.arg else self._dict_entry(keyword.value, site, name)
            if value is not ABSENT:
                return value
        return ABSENT

    def _dict_entry(self, expr: ast.AST, site: Site, name: str, depth: int = 0) -> Any:
        """Entry ``name`` of a dict literal, ``dict(...)`` call or name bound to one."""
        if isinstance(expr, ast.Dict):
            for key, value in zip(expr.keys, expr.values, strict=True):
                if key is not None and self._const(key, site) == name:
                    return self._const(value, site)
            return UNKNOWN if None in expr.keys else ABSENT
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
            if expr.func.id != "dict" or self._lookup("dict", site) is not None:
                return UNKNOWN
            for keyword in expr.keywords:
                if keyword.arg == name:
                    return self._const(keyword.value, site)
            opaque = expr.args or any(k.arg is None for k in expr.keywords)
            return UNKNOWN if opaque else ABSENT
        key, binding = dotted(expr), self._bound_value(expr, site)
        if binding is None or depth > MAX_DEPTH:
            return UNKNOWN
        updates = [
            u
            for u in self.items.get((key, name), [])
            if binding.site.order < u.site.order < site.order
        ]
        if updates:
            return self._const(updates[-1].value, updates[-1].site)
        return self._dict_entry(binding.value, binding.site, name, depth + 1)

    # when a statement runs

    def _time(self, site: Site) -> tuple:
        """When a statement runs: a function body runs at the first call of the function
        that comes after its ``def``, within that call (``(call's time..., order)``)."""
        return (*self._func_time(site.func), site.order) if site.func else (site.order,)

    def _func_time(self, name: str) -> tuple:
        first = (self.defs[name].order,)  # never called: as if run where defined
        if name not in self.times:
            self.times[name] = first  # also what a recursive cycle sees
            runs = [self._time(s) for s in self.calls.get(name, [])]
            self.times[name] = min([t for t in runs if t[0] > first[0]] or [first])
        return self.times[name]
