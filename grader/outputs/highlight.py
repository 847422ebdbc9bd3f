"""Python code cut into the pieces a report colours: keywords, strings, comments, numbers.

:func:`python_tokens` only cuts; the ``<span class="...">`` around each marked piece is
written by the ``python`` macro of ``templates/code.html.j2``, where autoescaping keeps
every piece of student code text. Code that does not tokenize (a fragment, a magic)
comes back as one unmarked piece.
"""

from __future__ import annotations

import io
import keyword
import tokenize

CLASSES = {tokenize.STRING: "s", tokenize.COMMENT: "c", tokenize.NUMBER: "n"}
KEYWORD = "k"


def python_tokens(code: str) -> list[tuple[str, str]]:
    """``code`` as ``(class, text)`` pieces that join back to it: class ``k`` (keyword),
    ``s`` (string), ``c`` (comment), ``n`` (number), or ``""`` for the rest."""
    lines = code.splitlines(keepends=True)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return [("", code)]
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    pieces, position = [], 0
    for token in tokens:
        kind = CLASSES.get(token.type)
        if token.type == tokenize.NAME and keyword.iskeyword(token.string):
            kind = KEYWORD
        if not kind or token.start[0] > len(lines):
            continue
        start = offsets[token.start[0] - 1] + token.start[1]
        end = offsets[token.end[0] - 1] + token.end[1]
        pieces += [("", code[position:start]), (kind, code[start:end])]
        position = end
    pieces.append(("", code[position:]))
    return [(kind, text) for kind, text in pieces if text]
