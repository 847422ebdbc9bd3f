"""Static facts about a notebook's code, read with :mod:`ast` and never executed.

When runtime evidence is missing, checks fall back on these facts: which MobileNetV2 base
is built and how, whether it is frozen before the first ``fit``, where data augmentation
sits, which pooling head is used. Only the syntax tree of each code cell is read, after
IPython magics and shell lines are neutralised, so comments, strings and markdown are
never code. The notebook is one program: a name bound in one cell is visible in later
ones, and execution order is cell order then line order. This module never imports
TensorFlow.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

BASE_CLASS = "MobileNetV2"
BASE_POSITIONAL = ("input_shape", "alpha", "include_top", "weights", "input_tensor", "pooling")
POOLING_OPTIONS = ("avg", "max")
KERAS_ROOTS = frozenset({"tensorflow", "keras", "tf_keras", "keras_core", "keras_cv"})
IMPLICIT_ALIASES = {"tf": "tensorflow"}
POOLING_CLASSES = {
    "GlobalAveragePooling2D": "GlobalAveragePooling2D",
    "GlobalAvgPool2D": "GlobalAveragePooling2D",
    "GlobalMaxPooling2D": "GlobalMaxPooling2D",
    "GlobalMaxPool2D": "GlobalMaxPooling2D",
}
AUGMENTATION_PREFIX = "Random"
EXTRA_AUGMENTATION_CLASSES = frozenset({"RandAugment", "AugMix"})
PREPROCESSING_CLASSES = frozenset(
    {"Input", "InputLayer", "Rescaling", "Resizing", "CenterCrop", "Normalization", "Lambda"}
)
INPUT_CLASS = "Input"
SEQUENTIAL_CLASS = "Sequential"
FLATTEN_CLASS = "Flatten"
RESCALING_CLASS = "Rescaling"
PREPROCESS_FUNCTION = "preprocess_input"
PREPROCESS_MODULES = frozenset({"mobilenet_v2", "mobilenet"})
RESCALE_SCALE = 1 / 127.5
RESCALE_OFFSET = -1.0
TOLERANCE = 1e-6
TRAINABLE = "trainable"
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})
MAX_DEPTH = 25
BODY_FIELDS = ("body", "orelse", "finalbody")
BLOCK_FIELDS = ("handlers", "cases")
COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
UNARY_OPS = {ast.USub: lambda v: -v, ast.UAdd: lambda v: +v}
BINARY_OPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}

_MODULE, _EXPR, _DEF, _OPAQUE = "module", "expr", "def", "opaque"
_UNKNOWN = object()
_ABSENT = object()

_CELL_MAGIC = re.compile(r"%%(\w+)")
_MAGIC_START = re.compile(r"[!%?]")
_MAGIC_ASSIGN = re.compile(r"[\w.\[\], ]+=\s*[!%]")
_HELP_SUFFIX = re.compile(r"[\w.]+\?{1,2}$")


@dataclass
class CodeRef:
    """Source lines of one code cell that prove a fact."""

    cell: int
    """Index of the cell in ``nb.cells`` (0-based, markdown cells counted)."""
    line: int
    """First line of ``text`` within the cell (1-based)."""
    text: str
    """The whole statement, each line stripped of trailing whitespace."""


@dataclass
class StaticFacts:
    """What the code of a notebook says, without running it."""

    unparsable_cells: list[int] = field(default_factory=list)
    magic_lines: list[CodeRef] = field(default_factory=list)
    base_calls: list[CodeRef] = field(default_factory=list)
    include_top: bool | None = None
    include_top_ref: CodeRef | None = None
    base_pooling: str | None = None
    base_names: list[str] = field(default_factory=list)
    frozen_before_fit: bool = False
    freeze_ref: CodeRef | None = None
    augmentation_layers: list[str] = field(default_factory=list)
    augmentation_ref: CodeRef | None = None
    augmentation_in_model: bool = False
    augmentation_in_pipeline: bool = False
    augmentation_use_ref: CodeRef | None = None
    pooling_layers: list[str] = field(default_factory=list)
    pooling_ref: CodeRef | None = None
    flatten_used: bool = False
    preprocess_input_used: bool = False
    fit_refs: list[CodeRef] = field(default_factory=list)


# --- magics ---------------------------------------------------------------------------


def _scan_line(line: str, depth: int, quote: str | None) -> tuple[int, str | None, bool]:
    """Bracket depth, open string quote and backslash continuation after ``line``."""
    i = 0
    while i < len(line):
        if quote:
            if line.startswith(quote, i):
                i, quote = i + len(quote), None
            else:
                i += 2 if line[i] == "\\" else 1
            continue
        char = line[i]
        if char == "#":
            return depth, None, False
        if char in "'\"":
            quote = char * 3 if line.startswith(char * 3, i) else char
            i += len(quote)
            continue
        depth = max(0, depth + (char in "([{") - (char in ")]}"))
        i += 1
    continued = line.endswith("\\")
    if quote and len(quote) == 1 and not continued:
        quote = None
    return depth, quote, continued


def _is_magic_line(line: str) -> bool:
    stripped = line.strip()
    return bool(
        _MAGIC_START.match(stripped)
        or _MAGIC_ASSIGN.match(stripped)
        or _HELP_SUFFIX.fullmatch(stripped)
    )


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def neutralise_magics(source: str) -> tuple[str, list[int]]:
    """Replace IPython magics, shell and help lines by ``pass``, keeping line numbers."""
    lines = source.split("\n")
    replaced: list[int] = []
    first = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    cell_magic = _CELL_MAGIC.match(lines[first].strip()) if first < len(lines) else None
    if cell_magic and cell_magic.group(1) not in PYTHON_CELL_MAGICS:
        replaced = [i + 1 for i, line in enumerate(lines) if line.strip()]
        return "\n".join("pass" if line.strip() else line for line in lines), replaced
    depth, quote, continued, magic_indent = 0, None, False, None
    for i, line in enumerate(lines):
        at_start = depth == 0 and quote is None and not continued
        if (
            (cell_magic and i == first)
            or magic_indent is not None
            or (at_start and _is_magic_line(line))
        ):
            indent = _indent(line) if magic_indent is None else magic_indent
            magic_indent = indent if line.endswith("\\") else None
            lines[i] = indent + "pass"
            replaced.append(i + 1)
            continue
        depth, quote, continued = _scan_line(line, depth, quote)
    return "\n".join(lines), replaced


# --- collecting statements ------------------------------------------------------------


@dataclass(eq=False)
class _Site:
    """One statement, with its execution order and its own (non-body) child nodes."""

    order: tuple[int, int, int]
    cell: int
    node: ast.stmt
    func: str | None
    exprs: list[ast.AST]


@dataclass(eq=False)
class _Binding:
    """``kind`` is module (value: dotted name), expr (value: the ast), def or opaque."""

    site: _Site
    kind: str
    value: Any
    scope: str | None


def _own_nodes(stmt: ast.stmt) -> list[ast.AST]:
    """A statement's child nodes other than its nested statement blocks."""
    nodes: list[ast.AST] = []
    for name, value in ast.iter_fields(stmt):
        if name not in BODY_FIELDS and name not in BLOCK_FIELDS:
            items = value if isinstance(value, list) else [value]
            nodes.extend(item for item in items if isinstance(item, ast.AST))
    return nodes


def _live_blocks(stmt: ast.stmt) -> list[list[ast.stmt]]:
    """Child statement lists, without the dead branch of ``if False:`` / ``while 0:``."""
    if isinstance(stmt, (ast.If, ast.While)) and isinstance(stmt.test, ast.Constant):
        return [stmt.body] if stmt.test.value else [stmt.orelse]
    blocks = [getattr(stmt, name, []) for name in BODY_FIELDS]
    for name in BLOCK_FIELDS:
        blocks.extend(block.body for block in getattr(stmt, name, []))
    return blocks


def _collect(stmts: list[ast.stmt], order: int, cell: int, func: str | None, out: list) -> None:
    for stmt in stmts:
        out.append(_Site((order, stmt.lineno, stmt.col_offset), cell, stmt, func, _own_nodes(stmt)))
        inner = func
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner = func or stmt.name
        for block in _live_blocks(stmt):
            _collect(block, order, cell, inner, out)


def _key(expr: ast.AST) -> str | None:
    """``a`` or ``a.b.c`` for a name or an attribute chain of names, else None."""
    attrs: list[str] = []
    while isinstance(expr, ast.Attribute):
        attrs.append(expr.attr)
        expr = expr.value
    return ".".join([expr.id, *reversed(attrs)]) if isinstance(expr, ast.Name) else None


def _bound_names(node: ast.AST) -> set[str]:
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


def _scoped_nodes(roots: list[ast.AST]) -> Iterator[tuple[ast.AST, frozenset[str]]]:
    """Every node under ``roots`` in source order, with the lambda/comprehension names around it."""
    stack = [(root, frozenset()) for root in reversed(roots)]
    while stack:
        node, bound = stack.pop()
        yield node, bound
        inner = bound | _bound_names(node)
        stack.extend((child, inner) for child in reversed(list(ast.iter_child_nodes(node))))


def _is_keras(parts: list[str]) -> bool:
    return parts[0] in KERAS_ROOTS and any(p.startswith("keras") or p == "tf_keras" for p in parts)


def _is_random(parts: list[str] | None) -> bool:
    if not parts or "layers" not in parts:
        return False
    return parts[-1].startswith(AUGMENTATION_PREFIX) or parts[-1] in EXTRA_AUGMENTATION_CLASSES


def _apply(op: Any, *values: Any) -> Any:
    """``op(*values)`` when every value is a number, else ``_UNKNOWN``."""
    if not all(isinstance(v, (int, float)) for v in values):
        return _UNKNOWN
    try:
        return op(*values)
    except (ArithmeticError, TypeError):
        return _UNKNOWN


def _setattr_trainable(expr: ast.AST) -> tuple[ast.expr, ast.expr] | None:
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


def _trainable_sets(stmt: ast.stmt) -> list[tuple[ast.expr, ast.expr]]:
    """(object, value) for each ``obj.trainable = value`` / ``setattr`` in one statement."""
    if isinstance(stmt, ast.Expr):
        pair = _setattr_trainable(stmt.value)
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


# --- the analyser ----------------------------------------------------------------------


class _Analyzer:
    """Name bindings over the whole notebook, then one pass that gathers the facts."""

    def __init__(self, sites: list[_Site], sources: dict[int, list[str]]) -> None:
        self.sites, self.sources = sites, sources
        self.bindings: dict[str, list[_Binding]] = {}
        self.items: dict[tuple[str, str], list[_Binding]] = {}
        self.stars: list[tuple[_Site, str]] = []
        self.value_binding: dict[ast.AST, _Binding] = {}
        self.added: dict[_Binding, list[tuple[ast.expr, _Site]]] = {}
        self.calls: dict[str, list[_Site]] = {}
        self.defs: dict[str, _Site] = {}
        self.events: list[tuple[tuple, bool, CodeRef]] = []
        self.fit_sites: list[_Site] = []
        self.times: dict[str, tuple] = {}
        self.memo: dict[tuple[str, ast.AST, _Site], bool] = {}
        for site in sites:
            self._bind(site)
        for site in sites:
            self._index_calls(site)

    # bindings

    def _add(self, key: str, site: _Site, kind: str, value: Any, scope: str | None) -> None:
        binding = _Binding(site, kind, value, scope)
        self.bindings.setdefault(key, []).append(binding)
        if kind == _EXPR:
            self.value_binding[value] = binding

    def _bind(self, site: _Site) -> None:
        node, scope = site.node, site.func
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.asname or alias.name.split(".")[0]
                self._add(name, site, _MODULE, alias.name if alias.asname else name, scope)
        elif isinstance(node, ast.ImportFrom):
            module = None if node.level else node.module
            for alias in node.names:
                if alias.name == "*" and module:
                    self.stars.append((site, module))
                elif alias.name != "*":
                    kind = _MODULE if module else _OPAQUE
                    self._add(
                        alias.asname or alias.name, site, kind, f"{module}.{alias.name}", scope
                    )
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                self._bind_target(target, node.value, site)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
            value = node.value if isinstance(node, ast.AnnAssign) else None
            self._bind_target(node.target, value, site)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None:
                    self._bind_target(item.optional_vars, None, site)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self._bind_def(node, site)
        for expr in site.exprs:
            for sub in ast.walk(expr):
                if isinstance(sub, ast.NamedExpr) and isinstance(sub.target, ast.Name):
                    self._add(sub.target.id, site, _EXPR, sub.value, scope)

    def _bind_def(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, site: _Site
    ) -> None:
        self._add(node.name, site, _DEF, node, site.func)
        if isinstance(node, ast.ClassDef):
            return
        self.defs.setdefault(node.name, site)
        args = node.args
        every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        for arg in (a for a in every if a is not None):
            self._add(arg.arg, site, _OPAQUE, None, site.func or node.name)

    def _bind_target(self, target: ast.AST, value: ast.expr | None, site: _Site) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            values: list[ast.expr | None] = [None] * len(target.elts)
            if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(values):
                values = list(value.elts)
            for sub, sub_value in zip(target.elts, values, strict=True):
                self._bind_target(sub, sub_value, site)
        elif isinstance(target, ast.Subscript):
            owner, index = _key(target.value), target.slice
            if owner and value is not None and isinstance(index, ast.Constant):
                binding = _Binding(site, _EXPR, value, site.func)
                self.items.setdefault((owner, str(index.value)), []).append(binding)
        elif isinstance(target, ast.Starred):
            self._bind_target(target.value, None, site)
        elif key := _key(target):
            self._add(key, site, _OPAQUE if value is None else _EXPR, value, site.func)

    def _index_calls(self, site: _Site) -> None:
        for expr in site.exprs:
            for node in ast.walk(expr):
                if not isinstance(node, ast.Call):
                    continue
                if isinstance(node.func, ast.Name):
                    self.calls.setdefault(node.func.id, []).append(site)
                elif isinstance(node.func, ast.Attribute) and node.func.attr == "add" and node.args:
                    owner = _key(node.func.value)
                    binding = self._lookup(owner, site) if owner else None
                    if binding is not None:
                        self.added.setdefault(binding, []).append((node.args[0], site))

    def _lookup(self, key: str, site: _Site) -> _Binding | None:
        """The binding of ``key`` seen from ``site``: function locals first, then globals."""
        found = self.bindings.get(key, [])
        scopes = [site.func, None] if site.func else [None]
        for scope in scopes:
            candidates = [b for b in found if b.scope == scope]
            before = [b for b in candidates if b.site.order < site.order]
            if before:
                return before[-1]
            if candidates and site.func:
                return candidates[0]
        return None

    # resolution

    def _resolve(self, expr: ast.AST, site: _Site, depth: int = 0) -> str | None:
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
            stars = [m for s, m in self.stars if s.order < site.order and _is_keras(m.split("."))]
            return f"{stars[-1]}.{expr.id}" if stars else IMPLICIT_ALIASES.get(expr.id, expr.id)
        if binding.kind == _MODULE:
            return binding.value
        if binding.kind == _EXPR:
            return self._resolve(binding.value, binding.site, depth + 1)
        return None

    def _keras_parts(self, expr: ast.AST, site: _Site) -> list[str] | None:
        path = self._resolve(expr, site)
        parts = path.split(".") if path else None
        return parts if parts and _is_keras(parts) else None

    def _class_name(self, expr: ast.AST, site: _Site) -> str | None:
        parts = self._keras_parts(expr, site)
        return parts[-1] if parts else None

    def _const(self, expr: ast.AST, site: _Site, depth: int = 0) -> Any:
        """The constant value of an expression, or ``_UNKNOWN``."""
        if depth > MAX_DEPTH:
            return _UNKNOWN
        if isinstance(expr, ast.Constant):
            return expr.value
        if isinstance(expr, ast.Name):
            binding = self._lookup(expr.id, site)
            if binding is None or binding.kind != _EXPR:
                return _UNKNOWN
            return self._const(binding.value, binding.site, depth + 1)
        if isinstance(expr, ast.UnaryOp):
            value = self._const(expr.operand, site, depth + 1)
            if isinstance(expr.op, ast.Not):
                return _UNKNOWN if value is _UNKNOWN else not value
            op = UNARY_OPS.get(type(expr.op))
            return _UNKNOWN if op is None else _apply(op, value)
        if isinstance(expr, ast.BinOp) and type(expr.op) in BINARY_OPS:
            left = self._const(expr.left, site, depth + 1)
            right = self._const(expr.right, site, depth + 1)
            return _apply(BINARY_OPS[type(expr.op)], left, right)
        return _UNKNOWN

    # what an expression is

    def _is_base(self, expr: ast.AST, site: _Site, depth: int = 0) -> bool:
        """A ``MobileNetV2(...)`` call, or a name bound (maybe through aliases) to one."""
        if depth > MAX_DEPTH:
            return False
        if isinstance(expr, ast.Call):
            return self._class_name(expr.func, site) == BASE_CLASS
        key = _key(expr)
        binding = self._lookup(key, site) if key else None
        return bool(binding and binding.kind == _EXPR) and self._is_base(
            binding.value, binding.site, depth + 1
        )

    def _bound_value(self, expr: ast.AST, site: _Site) -> _Binding | None:
        key = _key(expr)
        binding = self._lookup(key, site) if key else None
        return binding if binding is not None and binding.kind == _EXPR else None

    def _seq_items(self, call: ast.Call, site: _Site) -> list[tuple[ast.expr, _Site]]:
        """Layers of a ``Sequential([...])`` call, plus those ``.add``-ed to its variable."""
        given = call.args[0] if call.args else None
        given = next((k.value for k in call.keywords if k.arg == "layers"), given)
        items = [(e, site) for e in getattr(given, "elts", [])]
        binding = self.value_binding.get(call)
        return items + (self.added.get(binding, []) if binding else [])

    def _is_aug(self, expr: ast.AST, site: _Site, depth: int = 0) -> bool:
        """A random augmentation layer, or a container/name holding only augmentation."""
        key = ("aug", expr, site)
        if key not in self.memo:
            self.memo[key] = depth <= MAX_DEPTH and self._is_aug_uncached(expr, site, depth)
        return self.memo[key]

    def _is_aug_uncached(self, expr: ast.AST, site: _Site, depth: int) -> bool:
        if isinstance(expr, ast.Call):
            parts = self._keras_parts(expr.func, site)
            if _is_random(parts):
                return True
            if parts and parts[-1] == SEQUENTIAL_CLASS:
                return self._is_aug_group(self._seq_items(expr, site), depth)
            return False
        if isinstance(expr, (ast.List, ast.Tuple)):
            return self._is_aug_group([(e, site) for e in expr.elts], depth)
        binding = self._bound_value(expr, site)
        return binding is not None and self._is_aug(binding.value, binding.site, depth + 1)

    def _is_aug_group(self, items: list[tuple[ast.expr, _Site]], depth: int) -> bool:
        return any(self._is_aug(e, s, depth + 1) for e, s in items) and not any(
            self._is_model_part(e, s, depth + 1) for e, s in items
        )

    def _is_model_part(self, expr: ast.AST, site: _Site, depth: int = 0) -> bool:
        """The base, or a Keras layer/model that is neither augmentation nor preprocessing."""
        key = ("model", expr, site)
        if key not in self.memo:
            self.memo[key] = depth <= MAX_DEPTH and self._is_model_uncached(expr, site, depth)
        return self.memo[key]

    def _is_model_uncached(self, expr: ast.AST, site: _Site, depth: int) -> bool:
        if self._is_base(expr, site):
            return True
        if isinstance(expr, ast.Call):
            parts = self._keras_parts(expr.func, site)
            if not parts or _is_random(parts):
                return False
            if parts[-1] == SEQUENTIAL_CLASS:
                items = self._seq_items(expr, site)
                return any(self._is_model_part(e, s, depth + 1) for e, s in items)
            return parts[-1] not in PREPROCESSING_CLASSES
        binding = self._bound_value(expr, site)
        return binding is not None and self._is_model_part(binding.value, binding.site, depth + 1)

    def _from_input(self, expr: ast.AST, site: _Site, bound: frozenset[str]) -> bool:
        """Whether a value derives from a ``keras.Input(...)`` through assignments."""
        todo, seen = [(expr, site, bound)], set()
        while todo:
            root, where, names = todo.pop()
            for node, inner in _scoped_nodes([root]):
                if isinstance(node, ast.Call) and self._class_name(node.func, where) == INPUT_CLASS:
                    return True
                if isinstance(node, ast.Name) and node.id not in names | inner:
                    binding = self._lookup(node.id, where)
                    if binding and binding.kind == _EXPR and binding not in seen:
                        seen.add(binding)
                        todo.append((binding.value, binding.site, frozenset()))
        return False

    def _in_pipeline(self, call: ast.Call, site: _Site) -> bool:
        """Whether ``ds.map(...)`` arguments use augmentation (directly or in a def)."""
        for arg in [*call.args, *(k.value for k in call.keywords)]:
            for node in ast.walk(arg):
                if isinstance(node, (ast.Name, ast.Call)) and self._is_aug(node, site):
                    return True
                binding = self._lookup(node.id, site) if isinstance(node, ast.Name) else None
                if binding and binding.kind == _DEF and not isinstance(binding.value, ast.ClassDef):
                    body = [n for stmt in binding.value.body for n in ast.walk(stmt)]
                    if any(
                        isinstance(n, (ast.Name, ast.Call)) and self._is_aug(n, site) for n in body
                    ):
                        return True
        return False

    # MobileNetV2 arguments

    def _argument(self, call: ast.Call, site: _Site, name: str) -> Any:
        """Constant passed as ``name`` to the base call, ``_UNKNOWN`` or ``_ABSENT``."""
        index = BASE_POSITIONAL.index(name)
        for i, arg in enumerate(call.args):
            if isinstance(arg, ast.Starred):
                return _UNKNOWN
            if i == index:
                return self._const(arg, site)
        explicit = [k.value for k in call.keywords if k.arg == name]
        if explicit:
            return self._const(explicit[0], site)
        for keyword in call.keywords:
            value = _ABSENT if keyword.arg else self._dict_entry(keyword.value, site, name)
            if value is not _ABSENT:
                return value
        return _ABSENT

    def _dict_entry(self, expr: ast.AST, site: _Site, name: str, depth: int = 0) -> Any:
        """Entry ``name`` of a dict literal, ``dict(...)`` call or name bound to one."""
        if isinstance(expr, ast.Dict):
            for key, value in zip(expr.keys, expr.values, strict=True):
                if key is not None and self._const(key, site) == name:
                    return self._const(value, site)
            return _UNKNOWN if None in expr.keys else _ABSENT
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
            if expr.func.id != "dict" or self._lookup("dict", site) is not None:
                return _UNKNOWN
            for keyword in expr.keywords:
                if keyword.arg == name:
                    return self._const(keyword.value, site)
            opaque = expr.args or any(k.arg is None for k in expr.keywords)
            return _UNKNOWN if opaque else _ABSENT
        key, binding = _key(expr), self._bound_value(expr, site)
        if binding is None or depth > MAX_DEPTH:
            return _UNKNOWN
        updates = [
            u
            for u in self.items.get((key, name), [])
            if binding.site.order < u.site.order < site.order
        ]
        if updates:
            return self._const(updates[-1].value, updates[-1].site)
        return self._dict_entry(binding.value, binding.site, name, depth + 1)

    def _is_mobilenet_rescale(self, call: ast.Call, site: _Site) -> bool:
        """``Rescaling(1./127.5, offset=-1)``: the same mapping as ``preprocess_input``."""
        scale = next((k.value for k in call.keywords if k.arg == "scale"), None)
        offset = next((k.value for k in call.keywords if k.arg == "offset"), None)
        scale = call.args[0] if call.args else scale
        offset = call.args[1] if len(call.args) > 1 else offset
        if scale is None or offset is None:
            return False
        values = (self._const(scale, site), self._const(offset, site))
        if not all(isinstance(v, (int, float)) for v in values):
            return False
        return (
            abs(values[0] - RESCALE_SCALE) < TOLERANCE
            and abs(values[1] - RESCALE_OFFSET) < TOLERANCE
        )

    # freezing and time

    def _layer_loop_var(self, target: ast.AST, iterable: ast.AST, site: _Site) -> str | None:
        """Loop variable of ``for layer in base.layers`` (or ``enumerate(base.layers)``)."""
        if isinstance(iterable, ast.Call) and _key(iterable.func) == "enumerate":
            if not (isinstance(target, ast.Tuple) and len(target.elts) == 2 and iterable.args):
                return None
            target, iterable = target.elts[1], iterable.args[0]
        full = isinstance(iterable, ast.Attribute) and iterable.attr == "layers"
        if full and isinstance(target, ast.Name) and self._is_base(iterable.value, site):
            return target.id
        return None

    def _freeze_events(self, site: _Site) -> None:
        """Record each statement that sets the whole base trainable or not."""
        node = site.node
        for obj, value in _trainable_sets(node):
            if self._is_base(obj, site):
                self._event(value, site, whole=False)
        if isinstance(node, (ast.For, ast.AsyncFor)):
            var = self._layer_loop_var(node.target, node.iter, site)
            for stmt in node.body if var else []:
                for obj, value in _trainable_sets(stmt):
                    if isinstance(obj, ast.Name) and obj.id == var:
                        self._event(value, site, whole=True)
        for expr in site.exprs:
            for comp in ast.walk(expr):
                if not isinstance(comp, COMPREHENSIONS[:3]) or len(comp.generators) != 1:
                    continue
                gen, pair = comp.generators[0], _setattr_trainable(comp.elt)
                var = None if gen.ifs else self._layer_loop_var(gen.target, gen.iter, site)
                if var and pair and isinstance(pair[0], ast.Name) and pair[0].id == var:
                    self._event(pair[1], site, whole=False)

    def _event(self, value: ast.expr, site: _Site, whole: bool) -> None:
        constant = self._const(value, site)
        if constant is not _UNKNOWN:
            self.events.append((self._time(site), not constant, self._ref(site, whole)))

    def _time(self, site: _Site) -> tuple:
        """When a statement runs: a function body runs at the first call of the function."""
        return (self._func_time(site.func) if site.func else site.order, site.order)

    def _func_time(self, name: str) -> tuple:
        definition = self.defs[name]
        if name not in self.times:
            self.times[name] = definition.order  # also what a recursive cycle sees
            callers = [s for s in self.calls.get(name, []) if s.order > definition.order]
            times = [self._func_time(s.func) if s.func else s.order for s in callers]
            self.times[name] = min(times, default=definition.order)
        return self.times[name]

    def _ref(self, site: _Site, whole: bool = False) -> CodeRef:
        """The statement's lines; for a compound statement only its header unless ``whole``."""
        node = site.node
        end = node.end_lineno or node.lineno
        if not whole and (hasattr(node, "body") or hasattr(node, "cases")):
            ends = [getattr(e, "end_lineno", None) or node.lineno for e in site.exprs]
            end = max([node.lineno, *ends])
        lines = self.sources[site.cell][node.lineno - 1 : end]
        return CodeRef(site.cell, node.lineno, "\n".join(line.rstrip() for line in lines))

    # the pass over all statements

    def run(self, facts: StaticFacts) -> StaticFacts:
        for site in self.sites:
            self._freeze_events(site)
            for node, bound in _scoped_nodes(site.exprs):
                if isinstance(node, ast.Call):
                    self._visit_call(node, site, bound, facts)
                elif (
                    isinstance(node, (ast.Name, ast.Attribute)) and not facts.preprocess_input_used
                ):
                    facts.preprocess_input_used = self._is_preprocess_use(node, site)
        self._decide_frozen(facts)
        names = [k for k, bs in self.bindings.items() if "." not in k and self._binds_base(bs)]
        facts.base_names = sorted(names, key=lambda k: self.bindings[k][0].site.order)
        return facts

    def _binds_base(self, bindings: list[_Binding]) -> bool:
        return any(b.kind == _EXPR and self._is_base(b.value, b.site) for b in bindings)

    def _visit_call(
        self, call: ast.Call, site: _Site, bound: frozenset[str], facts: StaticFacts
    ) -> None:
        parts = self._keras_parts(call.func, site)
        name = parts[-1] if parts else None
        if name == BASE_CLASS:
            facts.base_calls.append(self._ref(site))
            if len(facts.base_calls) == 1:
                self._base_options(call, site, facts)
        elif _is_random(parts):
            facts.augmentation_ref = facts.augmentation_ref or self._ref(site)
            if name not in facts.augmentation_layers:
                facts.augmentation_layers.append(name)
        elif name in POOLING_CLASSES:
            facts.pooling_ref = facts.pooling_ref or self._ref(site)
            if POOLING_CLASSES[name] not in facts.pooling_layers:
                facts.pooling_layers.append(POOLING_CLASSES[name])
        elif name == FLATTEN_CLASS:
            facts.flatten_used = True
        elif name == RESCALING_CLASS and self._is_mobilenet_rescale(call, site):
            facts.preprocess_input_used = True
        elif name == SEQUENTIAL_CLASS:
            items = self._seq_items(call, site)
            if any(self._is_model_part(e, s) for e, s in items):
                used = next((s for e, s in items if self._is_aug(e, s)), None)
                self._use_augmentation(facts, used, in_model=True)
        method = call.func.attr if isinstance(call.func, ast.Attribute) else None
        if method == "fit":
            facts.fit_refs.append(self._ref(site))
            self.fit_sites.append(site)
        elif method == "map" and self._in_pipeline(call, site):
            self._use_augmentation(facts, site, in_model=False)
        if not facts.augmentation_in_model and self._is_aug(call.func, site):
            values = [*call.args, *(k.value for k in call.keywords)]
            if any(self._from_input(v, site, bound) for v in values):
                self._use_augmentation(facts, site, in_model=True)

    def _use_augmentation(self, facts: StaticFacts, site: _Site | None, in_model: bool) -> None:
        if site is None:
            return
        if in_model:
            facts.augmentation_in_model = True
        else:
            facts.augmentation_in_pipeline = True
        facts.augmentation_use_ref = facts.augmentation_use_ref or self._ref(site)

    def _base_options(self, call: ast.Call, site: _Site, facts: StaticFacts) -> None:
        top = self._argument(call, site, "include_top")
        facts.include_top = True if top is _ABSENT else None if top is _UNKNOWN else bool(top)
        facts.include_top_ref = self._ref(site)
        pooling = self._argument(call, site, "pooling")
        facts.base_pooling = (
            pooling if isinstance(pooling, str) and pooling in POOLING_OPTIONS else None
        )

    def _is_preprocess_use(self, node: ast.Name | ast.Attribute, site: _Site) -> bool:
        aliased = isinstance(site.node, ast.Assign) and node is site.node.value
        if aliased or not isinstance(node.ctx, ast.Load):
            return False
        parts = self._keras_parts(node, site)
        return bool(parts) and parts[-1] == PREPROCESS_FUNCTION and parts[-2] in PREPROCESS_MODULES

    def _decide_frozen(self, facts: StaticFacts) -> None:
        """Frozen when the last whole-base event before the first fit froze it.

        Without any ``fit`` call, a freeze anywhere counts.
        """
        events = sorted(self.events, key=lambda event: event[0])
        if not self.fit_sites:
            chosen = next((e for e in events if e[1]), None)
        else:
            horizon = min(self._time(site) for site in self.fit_sites)
            before = [e for e in events if e[0] < horizon]
            chosen = before[-1] if before and before[-1][1] else None
        facts.frozen_before_fit = chosen is not None
        facts.freeze_ref = chosen[2] if chosen else None


# --- entry points ----------------------------------------------------------------------


def analyze_sources(cells: list[tuple[int, str]]) -> StaticFacts:
    """Facts about code cells given as (index in the notebook, source), in notebook order."""
    facts = StaticFacts()
    sites: list[_Site] = []
    sources: dict[int, list[str]] = {}
    for order, (index, source) in enumerate(cells):
        text = (source or "").replace("\r\n", "\n").replace("\r", "\n")
        code, replaced = neutralise_magics(text)
        lines = sources[index] = text.split("\n")
        facts.magic_lines.extend(CodeRef(index, n, lines[n - 1].rstrip()) for n in replaced)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(code)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            facts.unparsable_cells.append(index)
            continue
        _collect(tree.body, order, index, None, sites)
    return _Analyzer(sites, sources).run(facts)


def analyze_notebook(nb: Any) -> StaticFacts:
    """Facts about an nbformat v4 notebook (or a dict with ``cells``); markdown is skipped."""
    cells = nb.get("cells", []) if isinstance(nb, dict) else getattr(nb, "cells", [])
    code: list[tuple[int, str]] = []
    for index, cell in enumerate(cells or []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        code.append((index, source if isinstance(source, str) else ""))
    return analyze_sources(code)
