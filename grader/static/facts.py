"""Static facts about a notebook's code, read with :mod:`ast` and never executed.

When runtime evidence is missing, checks fall back on these facts: which MobileNetV2 base
is built and how, whether it is frozen before the first ``fit``, where data augmentation
sits, which pooling head is used. Only the syntax tree of each code cell is read, after
IPython magics and shell lines are neutralised (:mod:`grader.static.magics`), so comments,
strings and markdown are never code. The notebook is one program: a name bound in one
cell is visible in later ones, and execution order is cell order then line order (names
are bound and resolved by :mod:`grader.static.scope`). This module never imports TensorFlow.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Callable
from typing import Any

from grader.static.evidence import CodeRef, StaticFacts
from grader.static.freezing import Freezing
from grader.static.keras_names import (
    BASE_CLASS,
    FLATTEN_CLASS,
    GENERATOR_AUGMENTS,
    GENERATOR_CLASS,
    GENERATOR_FLOWS,
    INPUT_CLASS,
    POOLING_CLASSES,
    PREPROCESS_FUNCTION,
    PREPROCESS_MODULES,
    PREPROCESSING_CLASSES,
    RESCALING_CLASS,
    SEQUENTIAL_CLASS,
    is_augmentation_call,
    is_other_base,
)
from grader.static.magics import neutralise_magics
from grader.static.scope import (
    ABSENT,
    DEF,
    EXPR,
    MAX_DEPTH,
    Binding,
    Site,
    collect,
)
from grader.static.syntax import (
    UNKNOWN,
    is_mobilenet_rescale,
    scoped_nodes,
)
from grader.static.trained import first_reached

BASE_POSITIONAL = ("input_shape", "alpha", "include_top", "weights", "input_tensor", "pooling")
POOLING_OPTIONS = ("avg", "max")


# --- the analyser ----------------------------------------------------------------------


class _Analyzer(Freezing):
    """One pass over every statement that gathers the facts, on the notebook's bindings."""

    def __init__(self, sites: list[Site], sources: dict[int, list[str]]) -> None:
        super().__init__(sites)  # Freezing's events and fit_sites too
        self.sources = sources
        self.fit_calls: list[tuple[ast.Call, Site]] = []
        self.bases: list[tuple[ast.Call, Site]] = []
        self.augmenting_generators: set[str] = set()
        self.memo: dict[tuple[str, ast.AST, Site], bool] = {}

    # what an expression is

    def _is_base(self, expr: ast.AST, site: Site, depth: int = 0) -> bool:
        """A ``MobileNetV2(...)`` call, or a name bound (maybe through aliases) to one."""
        return self._memoized(self._is_base_uncached, expr, site, depth)

    def _is_base_uncached(self, expr: ast.AST, site: Site, depth: int) -> bool:
        if isinstance(expr, ast.Call) and self._class_name(expr.func, site) == BASE_CLASS:
            return True
        return self._through(self._is_base, expr, site, depth)

    def _through(
        self,
        decide: Callable[[ast.AST, Site, int], bool],
        expr: ast.AST,
        site: Site,
        depth: int,
        every: bool = True,
    ) -> bool:
        """``decide`` of what ``expr`` stands for: a name's value, or a parameter's (the
        argument of any call); a call of the student's ``def``, every value it returns (a
        branch that returns ``None`` gives none), or any of them when not ``every``."""
        if isinstance(expr, ast.Call):
            found = [decide(v, s, depth + 1) for v, s in self.flows(expr, site)]
            return bool(found) and (all(found) if every else any(found))
        return any(decide(v, s, depth + 1) for v, s in self.values(expr, site))

    def _seq_items(self, call: ast.Call, site: Site) -> list[tuple[ast.expr, Site]]:
        """Layers of a ``Sequential([...])`` call, plus those ``.add``-ed to its variable."""
        given = call.args[0] if call.args else None
        given = next((k.value for k in call.keywords if k.arg == "layers"), given)
        items = [(e, site) for e in getattr(given, "elts", [])]
        binding = self.value_binding.get(call)
        return items + (self.added.get(binding, []) if binding else [])

    def _memoized(
        self, decide: Callable[[ast.AST, Site, int], bool], expr: ast.AST, site: Site, depth: int
    ) -> bool:
        """``decide(expr, site, depth)`` once per question, expression and statement (the
        same name is asked about from many places); False beyond :data:`MAX_DEPTH`."""
        key = (decide.__name__, expr, site)
        if key not in self.memo:
            self.memo[key] = False  # while it is being decided: a cycle through it is no
            self.memo[key] = depth <= MAX_DEPTH and decide(expr, site, depth)
        return self.memo[key]

    def _is_aug(self, expr: ast.AST, site: Site, depth: int = 0) -> bool:
        """A random augmentation layer, or a container/name holding only augmentation."""
        return self._memoized(self._is_aug_uncached, expr, site, depth)

    def _is_aug_uncached(self, expr: ast.AST, site: Site, depth: int) -> bool:
        if isinstance(expr, ast.Call):
            parts = self._keras_parts(expr.func, site)
            if is_augmentation_call(parts):
                return True
            if parts and parts[-1] == SEQUENTIAL_CLASS:
                return self._is_aug_group(self._seq_items(expr, site), depth)
            if parts:
                return False
        if isinstance(expr, (ast.List, ast.Tuple)):
            return self._is_aug_group([(e, site) for e in expr.elts], depth)
        return self._through(self._is_aug, expr, site, depth)

    def _is_aug_group(self, items: list[tuple[ast.expr, Site]], depth: int) -> bool:
        return any(self._is_aug(e, s, depth + 1) for e, s in items) and not any(
            self._is_model_part(e, s, depth + 1) for e, s in items
        )

    def _is_model_part(self, expr: ast.AST, site: Site, depth: int = 0) -> bool:
        """The base, or a Keras layer/model that is neither augmentation nor preprocessing."""
        return self._memoized(self._is_model_uncached, expr, site, depth)

    def _is_model_uncached(self, expr: ast.AST, site: Site, depth: int) -> bool:
        if self._is_base(expr, site):
            return True
        parts = self._keras_parts(expr.func, site) if isinstance(expr, ast.Call) else None
        if parts and isinstance(expr, ast.Call):
            if is_augmentation_call(parts):
                return False
            if parts[-1] == SEQUENTIAL_CLASS:
                items = self._seq_items(expr, site)
                return any(self._is_model_part(e, s, depth + 1) for e, s in items)
            return parts[-1] not in PREPROCESSING_CLASSES
        return self._through(self._is_model_part, expr, site, depth, every=False)

    def _from_input(self, expr: ast.AST, site: Site, bound: frozenset[str]) -> bool:
        """Whether a value derives from a ``keras.Input(...)`` through assignments."""
        todo, seen = [(expr, site, bound)], set()
        while todo:
            root, where, names = todo.pop()
            for node, inner in scoped_nodes([root]):
                if isinstance(node, ast.Call) and self._class_name(node.func, where) == INPUT_CLASS:
                    return True
                if isinstance(node, ast.Name) and node.id not in names | inner:
                    binding = self._lookup(node.id, where)
                    if binding and binding.kind == EXPR and binding not in seen:
                        seen.add(binding)
                        todo.append((binding.value, binding.site, frozenset()))
        return False

    def _in_pipeline(self, call: ast.Call, site: Site) -> bool:
        """Whether ``ds.map(...)`` arguments use augmentation (directly or in a def)."""
        for arg in [*call.args, *(k.value for k in call.keywords)]:
            for node in ast.walk(arg):
                if isinstance(node, (ast.Name, ast.Call)) and self._is_aug(node, site):
                    return True
                binding = self._lookup(node.id, site) if isinstance(node, ast.Name) else None
                if binding and binding.kind == DEF and not isinstance(binding.value, ast.ClassDef):
                    body = [n for stmt in binding.value.body for n in ast.walk(stmt)]
                    if any(
                        isinstance(n, (ast.Name, ast.Call)) and self._is_aug(n, site) for n in body
                    ):
                        return True
        return False

    def _ref(self, site: Site, whole: bool = False) -> CodeRef:
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
            for node, bound in scoped_nodes(site.exprs):
                if isinstance(node, ast.Call):
                    self._visit_call(node, site, bound, facts)
                elif (
                    isinstance(node, (ast.Name, ast.Attribute)) and not facts.preprocess_input_used
                ):
                    facts.preprocess_input_used = self._is_preprocess_use(node, site)
        trained = self._trained_base()
        self._decide_frozen(facts, trained[2] if trained else None)
        chosen = trained[:2] if trained else (self.bases[0] if self.bases else None)
        if chosen is not None:
            self._base_options(*chosen, facts)
        names = [k for k, bs in self.bindings.items() if "." not in k and self._binds_base(bs)]
        facts.base_names = sorted(names, key=lambda k: self.bindings[k][0].site.order)
        return facts

    def _trained_base(self) -> tuple[ast.Call, Site, Site] | None:
        """The base the first-trained model built on one is built from, and that ``fit``'s
        statement (see :mod:`grader.static.trained`)."""

        def is_base(node: ast.Call, where: Site) -> bool:
            return self._class_name(node.func, where) == BASE_CLASS

        fits = [(c, s) for c, s in self.fit_calls if isinstance(c.func, ast.Attribute)]
        for call, site in sorted(fits, key=lambda fit: self._time(fit[1])):
            if site.func and not self._is_called(site.func):
                continue  # a def never called trains nothing
            assert isinstance(call.func, ast.Attribute)
            found = first_reached(self, call.func.value, site, is_base)
            if found is not None:  # else another model's fit, or an ImageDataGenerator's
                return (*found, site)
        return None

    def _binds_base(self, bindings: list[Binding]) -> bool:
        return any(b.kind == EXPR and self._is_base(b.value, b.site) for b in bindings)

    def _func_parts(self, func: ast.AST, site: Site) -> list[list[str] | None]:
        """The Keras path a call's function names; for a ``for`` target bound to a literal
        list's items (``for P in [GlobalAveragePooling2D, Flatten]: P()``), each item's."""
        binding = self._lookup(func.id, site) if isinstance(func, ast.Name) else None
        if binding is None or not isinstance(binding.site.node, (ast.For, ast.AsyncFor)):
            return [self._keras_parts(func, site)]
        items = [b for b in self.bindings[func.id] if b.site is binding.site and b.kind == EXPR]
        return [self._keras_parts(b.value, b.site) for b in items if b.value is not None]

    def _visit_call(
        self, call: ast.Call, site: Site, bound: frozenset[str], facts: StaticFacts
    ) -> None:
        for parts in self._func_parts(call.func, site):
            self._visit_class(call, site, parts, facts)
        self._visit_method(call, site, bound, facts)

    def _visit_class(
        self, call: ast.Call, site: Site, parts: list[str] | None, facts: StaticFacts
    ) -> None:
        """A call of a Keras class: the base, another base, augmentation, pooling, ..."""
        name = parts[-1] if parts else None
        if name == BASE_CLASS:
            facts.base_calls.append(self._ref(site))
            self.bases.append((call, site))
        elif parts and is_other_base(parts):
            if parts[-1] not in facts.other_bases:
                facts.other_bases.append(parts[-1])
        elif name == GENERATOR_CLASS and self._generator_augments(call, site):
            facts.augmentation_ref = facts.augmentation_ref or self._ref(site)
            if isinstance(site.node, ast.Assign) and site.node.value is call:
                self.augmenting_generators |= {
                    t.id for t in site.node.targets if isinstance(t, ast.Name)
                }
        elif is_augmentation_call(parts):
            facts.augmentation_ref = facts.augmentation_ref or self._ref(site)
            if name not in facts.augmentation_layers:
                facts.augmentation_layers.append(name)
        elif name in POOLING_CLASSES:
            facts.pooling_ref = facts.pooling_ref or self._ref(site)
            if POOLING_CLASSES[name] not in facts.pooling_layers:
                facts.pooling_layers.append(POOLING_CLASSES[name])
        elif name == FLATTEN_CLASS:
            facts.flatten_used = True
        elif name == RESCALING_CLASS and is_mobilenet_rescale(call, lambda e: self._const(e, site)):
            facts.preprocess_input_used = True
        elif name == SEQUENTIAL_CLASS:
            items = self._seq_items(call, site)
            if any(self._is_model_part(e, s) for e, s in items):
                used = next((s for e, s in items if self._is_aug(e, s)), None)
                self._use_augmentation(facts, used, in_model=True)

    def _visit_method(
        self, call: ast.Call, site: Site, bound: frozenset[str], facts: StaticFacts
    ) -> None:
        """A method call: ``fit``, a pipeline's ``map``, a generator's ``flow``, and an
        augmentation layer applied to the model's input."""
        method = call.func.attr if isinstance(call.func, ast.Attribute) else None
        if method == "fit":
            facts.fit_refs.append(self._ref(site))
            self.fit_sites.append(site)
            self.fit_calls.append((call, site))
        elif method == "map" and self._in_pipeline(call, site):
            self._use_augmentation(facts, site, in_model=False)
        elif method in GENERATOR_FLOWS and self._is_augmenting_generator(call.func.value, site):
            facts.augmentation_in_generator = True
            facts.augmentation_use_ref = facts.augmentation_use_ref or self._ref(site)
        if not facts.augmentation_in_model and self._is_aug(call.func, site):
            values = [*call.args, *(k.value for k in call.keywords)]
            if any(self._from_input(v, site, bound) for v in values):
                self._use_augmentation(facts, site, in_model=True)

    def _generator_augments(self, call: ast.Call, site: Site) -> bool:
        """``ImageDataGenerator(rotation_range=20, ...)``: not a rescale-only generator."""
        values = [self._const(k.value, site) for k in call.keywords if k.arg in GENERATOR_AUGMENTS]
        return any(v not in (0, False, None) for v in values)

    def _is_augmenting_generator(self, expr: ast.AST, site: Site) -> bool:
        if isinstance(expr, ast.Name):
            return expr.id in self.augmenting_generators
        return isinstance(expr, ast.Call) and (
            self._class_name(expr.func, site) == GENERATOR_CLASS
            and self._generator_augments(expr, site)
        )

    def _use_augmentation(self, facts: StaticFacts, site: Site | None, in_model: bool) -> None:
        if site is None:
            return
        if in_model:
            facts.augmentation_in_model = True
        else:
            facts.augmentation_in_pipeline = True
        facts.augmentation_use_ref = facts.augmentation_use_ref or self._ref(site)

    def _base_options(self, call: ast.Call, site: Site, facts: StaticFacts) -> None:
        top = self._argument(call, site, "include_top", BASE_POSITIONAL)
        facts.include_top = True if top is ABSENT else None if top is UNKNOWN else bool(top)
        facts.include_top_ref = self._ref(site)
        pooling = self._argument(call, site, "pooling", BASE_POSITIONAL)
        facts.base_pooling = (
            pooling if isinstance(pooling, str) and pooling in POOLING_OPTIONS else None
        )

    def _is_preprocess_use(self, node: ast.Name | ast.Attribute, site: Site) -> bool:
        aliased = isinstance(site.node, ast.Assign) and node is site.node.value
        if aliased or not isinstance(node.ctx, ast.Load):
            return False
        parts = self._keras_parts(node, site)
        return bool(parts) and parts[-1] == PREPROCESS_FUNCTION and parts[-2] in PREPROCESS_MODULES


# --- entry points ----------------------------------------------------------------------


def analyze_sources(cells: list[tuple[int, str]]) -> StaticFacts:
    """Facts about code cells given as (index in the notebook, source), in notebook order."""
    facts = StaticFacts()
    sites: list[Site] = []
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
        collect(tree.body, order, index, None, sites)
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
