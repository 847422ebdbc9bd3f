"""The one Jinja2 environment of grader's pages, and the filters its templates use.

Every template under ``templates/`` renders with autoescaping on (strict undefined, so a
misspelt name is an error, not an empty string): student-controlled text is escaped
wherever it lands. Only one piece of a page is marked safe: the class page's sort
script (a template with no variables, allowed by its hash).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from grader.outputs.highlight import python_tokens

TEMPLATE_PACKAGE = "grader.outputs"
TEMPLATE_FOLDER = "templates"
SORT_SCRIPT_TEMPLATE = "sort_table.js.j2"
"""Sorts the class page's students table in the browser (it reads no student text)."""
NOT_AVAILABLE = "—"


@functools.lru_cache(maxsize=1)
def environment() -> Environment:
    """The Jinja2 environment shared by all pages (autoescape everywhere, strict undefined)."""
    env = Environment(
        loader=PackageLoader(TEMPLATE_PACKAGE, TEMPLATE_FOLDER),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["points"] = format_points
    env.filters["percent"] = format_percent
    env.filters["python_tokens"] = python_tokens
    return env


def render(template: str, **context: Any) -> str:
    """``template`` (a file under ``templates/``) rendered with ``context``."""
    return environment().get_template(template).render(**context)


@functools.lru_cache(maxsize=1)
def sort_script() -> str:
    """The class page's table sorter, as the page holds it: its hash is what the page's
    Content-Security-Policy allows."""
    return render(SORT_SCRIPT_TEMPLATE)


def script_hash(script: str) -> str:
    """The Content-Security-Policy source allowing exactly this inline script."""
    digest = hashlib.sha256(script.encode()).digest()
    return "sha256-" + base64.b64encode(digest).decode()


def is_number(value: Any) -> bool:
    """True for a finite int or float (bools excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def format_points(value: Any) -> str:
    """Points without noise: ``3.0`` → ``3``, ``2.5`` → ``2.5``."""
    if not is_number(value):
        return NOT_AVAILABLE if value is None else str(value)
    return f"{value:g}"


def format_percent(value: Any) -> str:
    """An accuracy as a percentage; values in [0, 1] are fractions, larger ones percents."""
    if not is_number(value):
        return NOT_AVAILABLE if value is None else str(value)
    percent = value * 100 if 0 <= value <= 1 else value
    return f"{percent:.1f} %"
