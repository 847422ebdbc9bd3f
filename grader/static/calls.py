"""The student's own functions, followed: a call of a ``def`` stands for each value it
returns; a parameter for the argument each call passes, and for its default where a
call leaves it out. Part of :mod:`grader.static.facts`'s analyser.
"""

from __future__ import annotations

import ast
from typing import Any

from grader.static.methods import Methods
from grader.static.scope import DEF, FUNCTIONS, MAX_DEPTH, PARAM, Site
from grader.static.syntax import UNKNOWN, default_of, dotted, passed_for, spreads


def passed_at(index: int | None, implicit: int) -> int | None:
    """Where a call passes parameter ``index`` by position, when the call fills the first
    ``implicit`` parameters itself (``self``, ``cls``): None for those, and for a
    keyword-only one (``index`` None)."""
    return index - implicit if index is not None and index >= implicit else None


class Calls(Methods):
    """What flows into a name or out of a call through the student's functions."""

    def __init__(self, sites: list[Site]) -> None:
        self.param_consts: dict[int, Any] = {}
        """A parameter binding's constant (:meth:`_const`), decided once."""
        super().__init__(sites)

    def values(self, expr: ast.AST, site: Site) -> list[tuple[ast.expr, Site]]:
        """What an expression may stand for: the value its name was bound to, and what
        flows into it through the student's functions (:meth:`flows`)."""
        binding = None if isinstance(expr, ast.Call) else self._bound_value(expr, site)
        bound = [(binding.value, binding.site)] if binding is not None else []
        return bound + self.flows(expr, site)

    def flows(self, expr: ast.AST, site: Site) -> list[tuple[ast.expr, Site]]:
        """What an expression may stand for through a ``def``: a call of one, each value
        it returns; one of its parameters, its default and what each call passes."""
        if isinstance(expr, ast.Call):
            definition = self._definition(expr.func, site)
            return self.returns.get(definition, []) if definition is not None else []
        key = dotted(expr)
        binding = self._lookup(key, site) if key else None
        if binding is None or binding.kind != PARAM:
            return []
        node, index = binding.value
        found: list[tuple[ast.expr, Site]] = []
        calls = 0
        for caller in dict.fromkeys(self.calls.get(self.qualnames[node], [])):  # each once
            for call in self._calls_of(node, caller):
                calls += 1
                at = passed_at(index, self.implicit_args(node, call.func, caller))
                passed = None if spreads(call) else passed_for(call, key, at)
                if passed is not None:
                    found.append((passed, caller))
        default = default_of(node, key)
        if default is not None and (calls == 0 or len(found) < calls):  # a call omits it
            found.insert(0, (default, binding.site))
        return found

    def _const(self, expr: ast.AST, site: Site, depth: int = 0) -> Any:
        """:meth:`Scope._const`, and a parameter's constant: the one value every call
        passes it (or its default, where a call leaves it out)."""
        value = super()._const(expr, site, depth)
        if value is not UNKNOWN or not isinstance(expr, ast.Name) or depth > MAX_DEPTH:
            return value
        binding = self._lookup(expr.id, site)
        if binding is None or binding.kind != PARAM:
            return value
        key = id(binding)  # what a parameter holds does not depend on where it is read
        if key not in self.param_consts:
            self.param_consts[key] = UNKNOWN  # while it is being decided: a cycle is unknown
            values = [self._const(v, s, depth + 1) for v, s in self.flows(expr, site)]
            agreed = values and UNKNOWN not in values and len({repr(v) for v in values}) == 1
            self.param_consts[key] = values[0] if agreed else UNKNOWN
            if not agreed and depth:  # maybe only too deep from here: a shallower read decides
                return self.param_consts.pop(key)
        return self.param_consts[key]

    def _definition(self, func: ast.AST, site: Site) -> ast.AST | None:
        if isinstance(func, ast.Attribute) or self.called_class(func, site) is not None:
            return self.method_called(func, site)
        binding = self._lookup(func.id, site) if isinstance(func, ast.Name) else None
        if binding is None or binding.kind != DEF or not isinstance(binding.value, FUNCTIONS):
            return None
        return binding.value

    def _calls_of(self, node: ast.AST, caller: Site) -> list[ast.Call]:
        return [
            call
            for expr in caller.exprs
            for call in ast.walk(expr)
            if isinstance(call, ast.Call) and self._definition(call.func, caller) is node
        ]
