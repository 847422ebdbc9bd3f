"""Python code as HTML with its keywords, strings, comments and numbers marked.

Every piece of the code is escaped here (student code never becomes markup); only the
``<span class="...">`` wrappers are grader's. Code that does not tokenize (a fragment,
a magic) comes back escaped and unmarked.
"""

from __future__ import annotations

import io
import keyword
import tokenize
from html import escape

from markupsafe import Markup

CLASSES = {tokenize.STRING: "s", tokenize.COMMENT: "c", tokenize.NUMBER: "n"}


def highlight_python(code: str) -> Markup:
    """``code`` as escaped HTML, keywords (k), strings (s), comments (c), numbers (n) marked."""
    lines = code.splitlines(keepends=True)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return Markup(escape(code))
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    out, position = [], 0
    for token in tokens:
        kind = CLASSES.get(token.type)
        if token.type == tokenize.NAME and keyword.iskeyword(token.string):
            kind = "k"
        if not kind or token.start[0] > len(lines):
            continue
        start = offsets[token.start[0] - 1] + token.start[1]
        end = offsets[token.end[0] - 1] + token.end[1]
        out.append(escape(code[position:start]))
        out.append(f'<span class="{kind}">{escape(code[start:end])}</span>')
        position = end
    out.append(escape(code[position:]))
    return Markup("".join(out))
