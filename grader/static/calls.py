"""The student's own functions, followed: a call of a ``def`` stands for each value it
returns; a parameter for the argument each call passes, and for its default where a
call leaves it out. Part of :mod:`grader.static.facts`'s analyser.
"""

from __future__ import annotations

import ast

from grader.static.scope import DEF, FUNCTIONS, PARAM, Scope, Site
from grader.static.syntax import default_of, dotted, passed_for, spreads


class Calls(Scope):
    """What flows into a name or out of a call through the student's functions."""

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
        for caller in dict.fromkeys(self.calls.get(node.name, [])):  # each site once
            for call in self._calls_of(node, caller):
                calls += 1
                passed = None if spreads(call) else passed_for(call, key, index)
                if passed is not None:
                    found.append((passed, caller))
        default = default_of(node, key)
        if default is not None and (calls == 0 or len(found) < calls):  # a call omits it
            found.insert(0, (default, binding.site))
        return found

    def _definition(self, func: ast.AST, site: Site) -> ast.AST | None:
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
