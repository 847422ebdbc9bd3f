"""What a kernel's cells leave behind: their output, capped, and their errors.

nbclient's client with a cap on the output kept per cell, and :func:`collect_errors`,
the exceptions the executed notebook records.

A cell printing without end would otherwise grow the grader's memory until its time
limit. nbclient has no hook for single outputs, so :class:`CappedClient` overrides its
one ``output`` method: past the cap the stream is cut, a visible marker is added once,
and further outputs of that cell are dropped. Error outputs are always kept (shortened):
they are evidence.
"""

from __future__ import annotations

import json
import re
from typing import Any

import nbformat
from jupyter_client import AsyncKernelManager
from nbclient import NotebookClient

from grader.results import CellError

TRUNCATED_MARKER = "\n[grader: output truncated here - more than {limit} kB]\n"
MAX_ERROR_CHARS = 20_000
MAX_TRACEBACK_LINES = 50
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class CappedClient(NotebookClient):
    """A NotebookClient keeping at most ``max_output_bytes`` of output per cell."""

    def __init__(
        self, nb: nbformat.NotebookNode, km: AsyncKernelManager, max_output_bytes: int, **kw: Any
    ):
        super().__init__(nb, km=km, **kw)
        self.max_output_bytes = max_output_bytes
        self.output_bytes: dict[int, int] = {}
        self.truncated_cells: list[int] = []

    def output(
        self, outs: list, msg: dict[str, Any], display_id: str | None, cell_index: int
    ) -> nbformat.NotebookNode | None:
        content = msg.get("content", {})
        if msg.get("msg_type") == "error":
            content["traceback"] = [
                line[:MAX_ERROR_CHARS]
                for line in content.get("traceback", [])[-MAX_TRACEBACK_LINES:]
            ]
            content["evalue"] = str(content.get("evalue", ""))[:MAX_ERROR_CHARS]
            return super().output(outs, msg, display_id, cell_index)
        if cell_index in self.truncated_cells:
            return None
        used = self.output_bytes.get(cell_index, 0)
        size = len(json.dumps(content.get("data") or content.get("text") or ""))
        self.output_bytes[cell_index] = used + size
        if used + size <= self.max_output_bytes:
            return super().output(outs, msg, display_id, cell_index)
        self.truncated_cells.append(cell_index)
        if msg.get("msg_type") == "stream" and used < self.max_output_bytes:
            content["text"] = str(content.get("text", ""))[: self.max_output_bytes - used]
            super().output(outs, msg, display_id, cell_index)
        limit_kb = self.max_output_bytes // 1024
        marker = nbformat.v4.new_output(
            "stream", name="stderr", text=TRUNCATED_MARKER.format(limit=limit_kb)
        )
        outs.append(marker)
        return marker


def collect_errors(nb: nbformat.NotebookNode, skip: set[int] | None = None) -> list[CellError]:
    """Error outputs of the notebook's cells (cells in ``skip`` are left out)."""
    errors = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or index in (skip or set()):
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                errors.append(
                    CellError(
                        cell=index,
                        ename=str(output.get("ename", "")),
                        evalue=str(output.get("evalue", "")),
                        traceback=strip_ansi("\n".join(output.get("traceback", []))),
                    )
                )
    return errors


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)
