"""Notebook code cut into the pieces a report colours: keywords, strings, comments, numbers.

:func:`python_tokens` only cuts, with Pygments and IPython's own lexer (both come with
ipykernel), so a cell with magics (``%matplotlib inline``, ``!pip install``) or a
fragment that does not parse is still coloured where it can be, and every line keeps
its indentation. The ``<span class="...">`` around each marked piece is written by the
``python`` macro of ``templates/code.html.j2``, where autoescaping keeps every piece of
student code text.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from pygments.token import Comment, Keyword, Number, String

if TYPE_CHECKING:
    from pygments.lexer import Lexer
    from pygments.token import _TokenType

KEYWORD, STRING, COMMENT, NUMBER = "k", "s", "c", "n"
CLASSES = ((Keyword, KEYWORD), (String, STRING), (Comment, COMMENT), (Number, NUMBER))


def python_tokens(code: str) -> list[tuple[str, str]]:
    """``code`` as ``(class, text)`` pieces that join back to it with its line ends as
    ``\\n``: class ``k`` (keyword, a magic's name), ``s`` (string), ``c`` (comment),
    ``n`` (number), or ``""`` for the rest. Neighbouring pieces of one class are one."""
    pieces: list[tuple[str, str]] = []
    for token, text in _lexer().get_tokens(code):
        kind = _class_of(token)
        if pieces and pieces[-1][0] == kind:
            pieces[-1] = (kind, pieces[-1][1] + text)
        elif text:
            pieces.append((kind, text))
    return pieces


def _class_of(token: _TokenType) -> str:
    return next((kind for family, kind in CLASSES if token in family), "")


@cache
def _lexer() -> Lexer:
    """IPython's lexer, imported when a page first shows code (IPython takes 0.25 s)."""
    from IPython.lib.lexers import IPython3Lexer

    # Pygments drops a cell's leading and trailing blank lines unless told not to.
    return IPython3Lexer(stripnl=False, ensurenl=False)
