"""Classes the student writes, followed as their calls run.

A model built by a class (``clf = Classifier(shape)``, ``model = clf.build()``) is read
like one built by functions: ``self.base = ...`` in any method is visible to the other
methods and through the instance (``clf.base``); ``self.augment()`` and ``clf.build()``
stand for what those methods return; a method's parameters receive what its calls pass
(the instance itself goes to ``self``); ``Classifier(...)`` calls ``__init__``. An
instance is built from every value its methods bind to ``self`` (a subclassed
``keras.Model`` holds its base there). Part of :mod:`grader.static.facts`'s analyser.
"""

from __future__ import annotations

import ast
from typing import Any

from grader.static.scope import DEF, EXPR, FUNCTIONS, MAX_DEPTH, PARAM, Binding, Scope, Site
from grader.static.syntax import dotted

SELF = "self"
"""The key an attribute of the instance is bound under, whatever ``self`` is called."""
INIT = "__init__"
UNBOUND_DECORATORS = frozenset({"staticmethod", "classmethod"})


def enclosing_method(owners: tuple[ast.AST, ...]) -> tuple[Any, ast.ClassDef] | None:
    """The method (a ``def`` directly in a class body) around a statement, and its class."""
    for inner, outer in zip(owners, owners[1:], strict=False):
        if isinstance(inner, FUNCTIONS) and isinstance(outer, ast.ClassDef):
            return inner, outer
    return None


def self_name(method: Any) -> str | None:
    """What a method calls its instance: its first parameter (None for a static or class
    method, or one without parameters)."""
    decorators = {dotted(d) for d in method.decorator_list}
    params = [*method.args.posonlyargs, *method.args.args]
    return None if decorators & UNBOUND_DECORATORS or not params else params[0].arg


class Methods(Scope):
    """The student's classes: their methods, instances and ``self`` attributes."""

    def __init__(self, sites: list[Site]) -> None:
        self.attributes: dict[ast.ClassDef, list[Binding]] = {}
        super().__init__(sites)

    # bindings: self.x in a method belongs to the class

    def _instance_key(self, key: str, owners: tuple[ast.AST, ...]) -> ast.ClassDef | None:
        """The class whose instance ``key`` (``self.base``) names from inside its method."""
        found = enclosing_method(owners)
        head, _, rest = key.partition(".")
        if found is None or not rest or head != self_name(found[0]):
            return None
        return found[1]

    def _add(self, key: str, site: Site, kind: str, value: Any, scope: ast.AST | None) -> None:
        cls = self._instance_key(key, site.owners)
        if cls is None:
            super()._add(key, site, kind, value, scope)
            return
        attribute = f"{SELF}.{key.partition('.')[2]}"
        super()._add(attribute, site, kind, value, cls)
        self.attributes.setdefault(cls, []).append(self.bindings[attribute][-1])

    def _lookup(self, key: str, site: Site) -> Binding | None:
        head, _, rest = key.partition(".")
        cls = self._instance_key(key, site.owners)
        if cls is None and rest:
            cls = self.class_of(ast.Name(id=head), site)
        if cls is None:  # not an instance of the student's class: a plain name
            return super()._lookup(key, site)
        candidates = [b for b in self.bindings.get(f"{SELF}.{rest}", []) if b.scope is cls]
        if not candidates:  # not the class's own (or ``obj.x = ...`` outside it)
            return super()._lookup(key, site)
        before = [b for b in candidates if b.site.order < site.order]
        return before[-1] if before else candidates[0]

    def _index_calls(self, site: Site) -> None:
        super()._index_calls(site)
        for expr in site.exprs:
            for node in ast.walk(expr):
                method = self.method_called(node.func, site) if isinstance(node, ast.Call) else None
                if method is not None:
                    self.calls.setdefault(self.qualnames[method], []).append(site)

    # what a call reaches

    def class_of(self, expr: ast.AST, site: Site, depth: int = 0) -> ast.ClassDef | None:
        """The student's class ``expr`` is an instance of: ``self`` in its method, or a name
        bound (maybe through aliases) to a call of the class."""
        if depth > MAX_DEPTH or not isinstance(expr, (ast.Name, ast.Call)):
            return None
        if isinstance(expr, ast.Call):
            return self.called_class(expr.func, site)
        binding = Scope._lookup(self, expr.id, site)
        if binding is None:
            return None
        if binding.kind == PARAM and binding.value[1] == 0:
            found = enclosing_method((binding.value[0], *binding.site.owners))
            return found[1] if found and self_name(found[0]) == expr.id else None
        if binding.kind == EXPR:
            return self.class_of(binding.value, binding.site, depth + 1)
        return None

    def called_class(self, func: ast.AST, site: Site) -> ast.ClassDef | None:
        """The student's class a call's function names (``Classifier`` in ``Classifier()``)."""
        binding = Scope._lookup(self, func.id, site) if isinstance(func, ast.Name) else None
        if binding is None or binding.kind != DEF:
            return None
        return binding.value if isinstance(binding.value, ast.ClassDef) else None

    def method_called(self, func: ast.AST, site: Site) -> Any:
        """The method a call runs: ``obj.m`` or ``self.m`` on the student's class, or
        ``Cls.m`` on the class itself; the class called runs its ``__init__``. Of two
        methods of one name, the last one defined (the one Python keeps)."""
        if isinstance(func, ast.Attribute):
            cls = self.class_of(func.value, site) or self.called_class(func.value, site)
            name = func.attr
        else:
            cls, name = self.called_class(func, site), INIT
        if cls is None:
            return None
        found = [m for m in cls.body if isinstance(m, FUNCTIONS) and m.name == name]
        return found[-1] if found else None

    def implicit_args(self, method: Any, func: ast.AST, site: Site) -> int:
        """How many of ``method``'s first parameters a call through ``func`` fills itself:
        one for a class method, and for a plain method called on an instance (or a class
        called: ``__init__``'s ``self``); none for a static method or a function."""
        found = self.defs.get(self.qualnames.get(method, ""))
        if found is None or enclosing_method((method, *found.owners)) is None:
            return 0
        decorators = {dotted(d) for d in method.decorator_list}
        if "staticmethod" in decorators:
            return 0
        if "classmethod" in decorators or not isinstance(func, ast.Attribute):
            return 1
        return 0 if self.called_class(func.value, site) is not None else 1

    def instance_parts(self, expr: ast.AST, site: Site) -> list[tuple[ast.expr, Site]]:
        """What an instance of the student's class is built from: each value its methods
        bind to ``self`` (none for any other expression)."""
        cls = self.class_of(expr, site) if isinstance(expr, ast.Call) else None
        bindings = self.attributes.get(cls, []) if cls is not None else []
        return [(b.value, b.site) for b in bindings if b.kind == EXPR]
