"""What a kernel's cells leave behind: their output, capped, and their errors.

nbclient's client with a cap on the output kept per cell, and :func:`collect_errors`,
the exceptions the executed notebook records.

A cell printing without end would otherwise grow the grader's memory until its time
limit. nbclient has no hook for single outputs, so :class:`CappedClient` overrides its
``output`` method: past the cap the stream is cut, a visible marker is added once, and
further outputs of that cell are dropped. Error outputs are always kept (shortened):
they are evidence. Two kinds of message change what is kept without passing through
``output``: an update of a display (``update_display_data``, or a display with an id
already shown, which replaces every copy) and a widget's state (``comm_open``,
``comm_msg``, with binary buffers). :meth:`CappedClient.process_message` charges what
each would add to the kept notebook (the new size less the old, times the copies) to the
same budgets, and drops it past them. Besides each cell's cap, the whole notebook's
outputs have one (``max_total_bytes``).
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
MAX_ERRORS_PER_CELL = 5
"""Error outputs kept per cell (a cell raises once; a loop of shown tracebacks is not
evidence, and each is charged like any output)."""
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class CappedClient(NotebookClient):
    """A NotebookClient keeping at most ``max_output_bytes`` of output per cell, and
    ``max_total_bytes`` in the whole notebook (default: eight cells' worth)."""

    def __init__(
        self,
        nb: nbformat.NotebookNode,
        km: AsyncKernelManager,
        max_output_bytes: int,
        max_total_bytes: int | None = None,
        **kw: Any,
    ):
        super().__init__(nb, km=km, **kw)
        self.max_output_bytes = max_output_bytes
        self.max_total_bytes = max_total_bytes or 8 * max_output_bytes
        self.output_bytes: dict[int, int] = {}
        self.total_bytes = 0
        self.truncated_cells: list[int] = []
        self.display_sizes: dict[str, int] = {}
        self.clearable: dict[int, int] = {}
        """Per cell, what its own outputs were charged (a clear gives it back)."""
        self.widget_sizes: dict[tuple[str, ...], int] = {}

    def room(self, cell_index: int) -> int:
        """Bytes of output the cell may still add."""
        cell_room = self.max_output_bytes - self.output_bytes.get(cell_index, 0)
        return min(cell_room, self.max_total_bytes - self.total_bytes)

    def refund(self, msg: dict[str, Any], cell_index: int) -> None:
        """A cleared cell's own outputs go, so does their charge; what displays elsewhere
        and widget state kept is never given back (a clear removes neither), nor is
        anything when an output widget takes the clear instead of the cell."""
        if self.output_hook_stack[msg.get("parent_header", {}).get("msg_id")]:
            return
        given = self.clearable.pop(cell_index, 0)
        self.output_bytes[cell_index] = self.output_bytes.get(cell_index, 0) - given
        self.total_bytes -= given

    def charge(self, cell_index: int, size: int, clearable: bool = False) -> None:
        if clearable:
            self.clearable[cell_index] = self.clearable.get(cell_index, 0) + size
        self.output_bytes[cell_index] = self.output_bytes.get(cell_index, 0) + size
        self.total_bytes += size

    def process_message(
        self, msg: dict[str, Any], cell: nbformat.NotebookNode, cell_index: int
    ) -> nbformat.NotebookNode | None:
        if msg.get("msg_type") == "clear_output":
            self.refund(msg, cell_index)
        growth = self.side_growth(msg)
        if growth > 0 and growth > self.room(cell_index):
            self.mark(cell.outputs, cell_index)
            return None
        self.charge(cell_index, growth)
        self.remember_sizes(msg)
        return super().process_message(msg, cell, cell_index)

    def side_growth(self, msg: dict[str, Any]) -> int:
        """What ``msg`` adds to the kept notebook besides a new output of its own."""
        content = msg.get("content") or {}
        if str(msg.get("msg_type", "")).startswith("comm"):
            return sum(new - self.widget_sizes.get(key, 0) for key, new in widget_sizes(msg))
        display_id = (content.get("transient") or {}).get("display_id")
        if not display_id or display_id not in self._display_id_map:
            return 0
        copies = sum(len(shown) for shown in self._display_id_map[display_id].values())
        return (data_size(content) - self.display_sizes.get(display_id, 0)) * copies

    def remember_sizes(self, msg: dict[str, Any]) -> None:
        content = msg.get("content") or {}
        if str(msg.get("msg_type", "")).startswith("comm"):
            self.widget_sizes.update(widget_sizes(msg))
        display_id = (content.get("transient") or {}).get("display_id")
        if display_id:
            self.display_sizes[display_id] = data_size(content)

    def output(
        self, outs: list, msg: dict[str, Any], display_id: str | None, cell_index: int
    ) -> nbformat.NotebookNode | None:
        content = msg.get("content", {})
        if msg.get("msg_type") == "error":
            return self.error_output(outs, msg, cell_index)
        if cell_index in self.truncated_cells:
            return None
        size, room = data_size(content), self.room(cell_index)
        own = not self.output_hook_stack[msg.get("parent_header", {}).get("msg_id")]
        if size <= room:
            self.charge(cell_index, size, clearable=own)
            return super().output(outs, msg, display_id, cell_index)
        if msg.get("msg_type") == "stream" and room > 0:
            content["text"] = str(content.get("text", ""))[:room]
            self.charge(cell_index, room, clearable=own)
            super().output(outs, msg, display_id, cell_index)
        return self.mark(outs, cell_index)

    def error_output(
        self, outs: list, msg: dict[str, Any], cell_index: int
    ) -> nbformat.NotebookNode | None:
        """Errors are evidence: kept past the cap (shortened), the first few of a cell."""
        content = msg.get("content", {})
        content["traceback"] = [
            str(line)[:MAX_ERROR_CHARS]
            for line in content.get("traceback", [])[-MAX_TRACEBACK_LINES:]
        ]
        content["ename"] = str(content.get("ename", ""))[:200]
        content["evalue"] = str(content.get("evalue", ""))[:MAX_ERROR_CHARS]
        if sum(o.get("output_type") == "error" for o in outs) >= MAX_ERRORS_PER_CELL:
            return None
        self.charge(cell_index, data_size({"data": content}))
        return super().output(outs, msg, None, cell_index)

    def mark(self, outs: list, cell_index: int) -> nbformat.NotebookNode | None:
        """The visible marker, once per cell; later outputs of the cell are dropped."""
        if cell_index in self.truncated_cells:
            return None
        self.truncated_cells.append(cell_index)
        limit_kb = self.max_output_bytes // 1024
        marker = nbformat.v4.new_output(
            "stream", name="stderr", text=TRUNCATED_MARKER.format(limit=limit_kb)
        )
        outs.append(marker)
        return marker


def data_size(content: dict[str, Any]) -> int:
    """The size of an output's payload as kept (its data, else its text, and its
    metadata), in characters."""
    payload = [content.get("data") or content.get("text") or "", content.get("metadata")]
    return len(json.dumps(payload, default=str, ensure_ascii=False))


def widget_sizes(msg: dict[str, Any]) -> list[tuple[tuple[str, ...], int]]:
    """A widget message's state fields and binary buffers, each with its kept size, keyed
    as nbclient keeps them (a field by name, a buffer by its path); none for a message
    without a state, which nbclient does not keep."""
    content = msg.get("content") or {}
    comm = str(content.get("comm_id", ""))
    data = content.get("data") if isinstance(content.get("data"), dict) else {}
    state = data.get("state")
    if not isinstance(state, dict):
        return []
    sizes = [((comm, str(k)), len(json.dumps(v, default=str))) for k, v in state.items()]
    paths = data.get("buffer_paths") if isinstance(data.get("buffer_paths"), list) else []
    for path, buffer in zip(paths, msg.get("buffers") or [], strict=False):
        key = (comm, "buffer", *map(str, path if isinstance(path, list) else [path]))
        sizes.append((key, len(buffer) * 4 // 3))
    return sizes


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
