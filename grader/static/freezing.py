"""When the base is frozen: each statement that sets the whole base trainable or not
(``base.trainable = False``, ``setattr``, a loop or comprehension over ``base.layers``;
one over a slice of them only unfreezes: ``for layer in base.layers[-6:]``),
timed as it runs, and the decision: frozen when the last such event before the first
``fit`` froze it. A statement in the student's function that acts on a parameter is
timed at each call that passes a base. Part of :mod:`grader.static.facts`'s analyser.
"""

from __future__ import annotations

import ast
from abc import ABCMeta, abstractmethod

from grader.static.calls import Calls
from grader.static.evidence import CodeRef, StaticFacts
from grader.static.methods import enclosing_method
from grader.static.scope import PARAM, Site
from grader.static.syntax import (
    COMPREHENSIONS,
    UNKNOWN,
    dotted,
    setattr_trainable,
    trainable_sets,
)


class Freezing(Calls, metaclass=ABCMeta):
    """The freeze events over the notebook; the analyser (its only subclass) says what a
    base is and which lines prove a fact."""

    def __init__(self, sites: list[Site]) -> None:
        super().__init__(sites)
        self.events: list[tuple[tuple, bool, CodeRef]] = []
        self.fit_sites: list[Site] = []
        self.uses: dict[str, list[tuple[Site, ast.AST]]] | None = None
        self.reached: set[str] | None = None

    @abstractmethod
    def _is_base(self, expr: ast.AST, site: Site, depth: int = 0) -> bool:
        """Whether ``expr`` at ``site`` is a MobileNetV2 base."""

    @abstractmethod
    def _ref(self, site: Site, whole: bool = False) -> CodeRef:
        """The statement's lines, as evidence."""

    def _layer_loop(
        self, target: ast.AST, iterable: ast.AST, site: Site
    ) -> tuple[str, list[tuple[tuple, Site]], bool] | None:
        """``for layer in base.layers`` (or ``enumerate(base.layers)``, or a slice of
        them, ``base.layers[-6:]``): the loop variable, when the loop acts on a base
        (:meth:`_base_times`), and whether it reaches every layer."""
        if isinstance(iterable, ast.Call) and dotted(iterable.func) == "enumerate":
            if not (isinstance(target, ast.Tuple) and len(target.elts) == 2 and iterable.args):
                return None
            target, iterable = target.elts[1], iterable.args[0]
        whole = not isinstance(iterable, ast.Subscript)
        if not whole:
            assert isinstance(iterable, ast.Subscript)
            iterable = iterable.value if isinstance(iterable.slice, ast.Slice) else iterable
        full = isinstance(iterable, ast.Attribute) and iterable.attr == "layers"
        if not (full and isinstance(target, ast.Name)):
            return None
        assert isinstance(iterable, ast.Attribute)
        times = self._base_times(iterable.value, site)
        return (target.id, times, whole) if times else None

    def _base_times(self, obj: ast.AST, site: Site) -> list[tuple[tuple, Site]]:
        """When the statement at ``site`` acts on a base through ``obj``, and from where:
        when it runs, or, for a parameter of its function, at each call that passes a
        base (its default: when the function first runs), with the call's statement."""
        key = dotted(obj)
        binding = self._lookup(key, site) if key else None
        if binding is None or binding.kind != PARAM:
            return [(self._time(site), site)] if self._is_base(obj, site) else []
        return [
            (self._time(site), site) if at is binding.site else (self._time(at), at)
            for value, at in self.flows(obj, site)
            if self._is_base(value, at)
        ]

    def _value_at(self, value: ast.expr, site: Site, caller: Site) -> object:
        """The constant ``value`` at ``site`` holds when its function is run from the
        statement ``caller``: a parameter's, what that call passes (``set_trainable(base,
        False)`` then ``set_trainable(base, True)`` are two events); else its constant."""
        if caller is not site and isinstance(value, ast.Name):
            binding = self._lookup(value.id, site)
            if binding is not None and binding.kind == PARAM:
                passed = [self._const(v, at) for v, at in self.flows(value, site) if at is caller]
                if passed and len({repr(v) for v in passed}) == 1:
                    return passed[0]
        return self._const(value, site)

    def _is_called(self, name: str) -> bool:
        """Whether the student's ``def`` (or method) ``name`` may run (:meth:`_reached`)."""
        return name in self._reached()

    def _reached(self) -> set[str]:
        """Every ``def`` a running statement reaches, computed once: one at the top level,
        or in a ``def`` reached itself, that calls it or reads its name (``Utils.train``,
        ``steps = [freeze]``, ``partial(train, model)``) when it already exists. A
        ``def`` defined below the one calling it counts; one only read in a ``def`` that
        never runs, or only as another object's attribute (``model.summary()``), not."""
        if self.reached is None:
            edges: dict[str | None, list[tuple[str, Site]]] = {}
            for name in self.defs:
                for site in self._reaching(name):
                    edges.setdefault(site.func, []).append((name, site))
            self.reached, todo = set(), [None]
            while todo:
                for name, site in edges.get(todo.pop(), []):
                    runs_after = self._time(site)[0] > self.defs[name].order
                    if name not in self.reached and runs_after:
                        self.reached.add(name)
                        todo.append(name)
        return self.reached

    def _reaching(self, name: str) -> list[Site]:
        """The statements outside ``def`` ``name`` that call it or read its name: a bare
        name for a function; for a method, an attribute of its class or of an instance."""
        method = enclosing_method((self._node(name), *self.defs[name].owners))
        bare = name.rsplit(".", 1)[-1]
        found = [s for s in self.calls.get(name, []) if s.func != name]
        for site, node in self._name_uses().get(bare, []):
            if site.func == name:
                continue
            if method is None and isinstance(node, ast.Name):
                found.append(site)
            elif method is not None and isinstance(node, ast.Attribute):
                owner = self.class_of(node.value, site) or self.called_class(node.value, site)
                found += [site] if owner is method[1] else []
        return found

    def _node(self, name: str) -> ast.AST | None:
        return next((n for n, q in self.qualnames.items() if q == name), None)

    def _name_uses(self) -> dict[str, list[tuple[Site, ast.AST]]]:
        """Each name read (``x``, or ``.x`` of an attribute), with the statements and the
        nodes reading it."""
        if self.uses is None:
            self.uses = {}
            for site in self.sites:
                for expr in site.exprs:
                    for node in ast.walk(expr):
                        used = node.id if isinstance(node, ast.Name) else None
                        used = node.attr if isinstance(node, ast.Attribute) else used
                        if used is not None and isinstance(getattr(node, "ctx", None), ast.Load):
                            self.uses.setdefault(used, []).append((site, node))
        return self.uses

    def _freeze_events(self, site: Site) -> None:
        """Record each statement that sets the whole base trainable or not (none in a
        ``def`` that is never called: it freezes nothing)."""
        node = site.node
        if site.func and not self._is_called(site.func):
            return
        for obj, value in trainable_sets(node):
            for when, caller in self._base_times(obj, site):
                self._event(self._value_at(value, site, caller), site, when, whole=False)
        loop = None
        if isinstance(node, (ast.For, ast.AsyncFor)):
            loop = self._layer_loop(node.target, node.iter, site)
        for stmt in node.body if loop else []:
            for obj, value in trainable_sets(stmt):
                if loop and isinstance(obj, ast.Name) and obj.id == loop[0]:
                    for when, caller in loop[1]:
                        trainable = self._value_at(value, site, caller)
                        self._event(trainable, site, when, whole=True, every=loop[2])
        for expr in site.exprs:
            for comp in ast.walk(expr):
                if not isinstance(comp, COMPREHENSIONS[:3]) or len(comp.generators) != 1:
                    continue
                gen, pair = comp.generators[0], setattr_trainable(comp.elt)
                found = None if gen.ifs else self._layer_loop(gen.target, gen.iter, site)
                if found and pair and isinstance(pair[0], ast.Name) and pair[0].id == found[0]:
                    for when, caller in found[1]:
                        trainable = self._value_at(pair[1], site, caller)
                        self._event(trainable, site, when, whole=False, every=found[2])

    def _event(
        self, constant: object, site: Site, when: tuple, whole: bool, every: bool = True
    ) -> None:
        """A freeze (``constant`` false) or an unfreeze at ``when``; over some of the
        base's layers only (not ``every``), only an unfreeze: the base is then not all
        frozen, while freezing some layers leaves the others as they were."""
        if constant is not UNKNOWN and (every or constant):
            self.events.append((when, not constant, self._ref(site, whole)))

    def _decide_frozen(self, facts: StaticFacts, trained_fit: Site | None = None) -> None:
        """Frozen when the last whole-base event before the first fit froze it: the first
        fit of a model built on the base where one is known (``trained_fit``; baselines
        and other bases trained before it do not count), else the first fit of all.

        Without any ``fit`` call, a freeze anywhere counts.
        """
        events = sorted(self.events, key=lambda event: event[0])
        if not self.fit_sites:
            chosen = next((e for e in events if e[1]), None)
        else:
            fits = [trained_fit] if trained_fit is not None else self.fit_sites
            horizon = min(self._time(site) for site in fits)
            before = [e for e in events if e[0] < horizon]
            chosen = before[-1] if before and before[-1][1] else None
        facts.frozen_before_fit = chosen is not None
        facts.freeze_ref = chosen[2] if chosen else None
