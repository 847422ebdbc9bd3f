"""The output caps, fed the kernel's own message shapes (no kernel: nbclient's real
message handling, driven with the messages a kernel sends)."""

from __future__ import annotations

from typing import Any

import nbformat

from grader.run.capture import CappedClient

KB = 1024


def client(cells: int = 3, per_cell: int = 4 * KB, total: int | None = None) -> CappedClient:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("") for _ in range(cells)])
    capped = CappedClient(nb, km=None, max_output_bytes=per_cell, max_total_bytes=total)
    capped.reset_execution_trackers()  # as nbclient does when a run starts
    capped.clear_before_next_output = False  # and when a cell starts
    return capped


def message(msg_type: str, content: dict[str, Any], buffers: list[bytes] | None = None) -> dict:
    return {
        "msg_type": msg_type,
        "header": {"msg_type": msg_type, "msg_id": "m"},
        "parent_header": {"msg_id": "parent"},
        "content": content,
        "buffers": buffers or [],
    }


def display(text: str, display_id: str | None = None, update: bool = False) -> dict:
    content: dict[str, Any] = {"data": {"text/plain": text}, "metadata": {}}
    if display_id:
        content["transient"] = {"display_id": display_id}
    return message("update_display_data" if update else "display_data", content)


def stream(text: str) -> dict:
    return message("stream", {"name": "stdout", "text": text})


def widget(
    comm: str, state: dict[str, Any], buffers: list[bytes] | None = None, kind: str = "comm_msg"
) -> dict:
    data: dict[str, Any] = {"method": "update", "state": state}
    if buffers:
        data["buffer_paths"] = [[f"b{i}"] for i in range(len(buffers))]
    return message(kind, {"comm_id": comm, "data": data}, buffers)


def send(capped: CappedClient, index: int, *msgs: dict) -> nbformat.NotebookNode:
    cell = capped.nb.cells[index]
    for msg in msgs:
        capped.process_message(msg, cell, index)
    return cell


def kept(cell: nbformat.NotebookNode) -> int:
    return len(nbformat.writes(nbformat.v4.new_notebook(cells=[cell])))


def test_a_stream_past_the_cap_is_cut_with_one_marker() -> None:
    capped = client()
    cell = send(capped, 0, *[stream("x" * KB) for _ in range(10)])
    assert capped.truncated_cells == [0]
    assert "".join(o.get("text", "") for o in cell.outputs).count("output truncated here") == 1
    assert kept(cell) < 6 * KB


def test_updating_a_small_display_to_a_huge_one_is_dropped() -> None:
    """``update_display_data`` never passes through ``output``: its size is charged too."""
    capped = client()
    cell = send(capped, 0, display("small", "d"), display("y" * 100 * KB, "d", update=True))
    assert capped.truncated_cells == [0] and kept(cell) < 4 * KB
    assert cell.outputs[0]["data"]["text/plain"] == "small"


def test_one_display_shown_many_times_then_replaced_counts_every_copy() -> None:
    capped = client(per_cell=64 * KB)
    cell = send(capped, 0, *[display("s", "d") for _ in range(50)])
    assert capped.truncated_cells == []
    send(capped, 1, display("z" * 2 * KB, "d"))  # 2 kB replacing 50 copies: 100 kB
    assert capped.truncated_cells == [1]
    assert {o["data"]["text/plain"] for o in cell.outputs} == {"s"}


def test_a_progress_display_updated_in_place_stays_within_the_cap() -> None:
    capped = client()
    cell = send(capped, 0, display("0%", "bar"))
    send(capped, 0, *[display(f"{i}%", "bar", update=True) for i in range(1000)])
    assert capped.truncated_cells == [] and cell.outputs[0]["data"]["text/plain"] == "999%"


def test_widget_state_is_charged_by_what_it_keeps() -> None:
    capped = client()
    send(capped, 0, *[widget("bar", {"value": i, "description": "epoch"}) for i in range(2000)])
    assert capped.truncated_cells == []  # a progress widget: the same fields over and over
    send(capped, 1, widget("big", {"value": "v" * 100 * KB}))
    assert capped.truncated_cells == [1]
    send(capped, 2, widget("blob", {}, buffers=[b"\0" * 100 * KB]))
    assert capped.truncated_cells == [1, 2]


def test_every_kind_of_widget_message_and_every_buffer_path_is_charged() -> None:
    """nbclient keeps the state of any ``comm*`` message, and a buffer per path."""
    capped = client(cells=4)
    send(capped, 0, widget("w", {"v": "v" * 100 * KB}, kind="comm_close"))
    assert capped.truncated_cells == [0]
    for i in range(3):  # a 2 kB buffer under a new path each time: each one is kept
        msg = widget("w2", {}, buffers=[b"\0" * 2 * KB])
        msg["content"]["data"]["buffer_paths"] = [[f"p{i}"]]
        send(capped, 1, msg)
    assert capped.truncated_cells == [0, 1]  # 3 x 2.7 kB > 4 kB


def test_metadata_is_charged_with_the_data() -> None:
    capped = client()
    msg = display("tiny")
    msg["content"]["metadata"] = {"big": "m" * 100 * KB}
    cell = send(capped, 0, msg)
    assert capped.truncated_cells == [0] and kept(cell) < 4 * KB


def test_a_loop_of_shown_tracebacks_keeps_the_first_few() -> None:
    capped = client(per_cell=64 * KB)
    error = {"ename": "E" * 10_000, "evalue": "v", "traceback": ["t" * 1000]}
    cell = send(capped, 0, *[message("error", dict(error)) for _ in range(100)])
    errors = [o for o in cell.outputs if o["output_type"] == "error"]
    assert len(errors) == 5 and len(errors[0]["ename"]) == 200


def test_clearing_a_cells_output_gives_its_budget_back() -> None:
    """A live plot redrawn with clear_output: only the last drawing is kept."""
    capped = client()
    clear = message("clear_output", {"wait": False})
    for _ in range(40):
        cell = send(capped, 0, clear, display("f" * 2 * KB))
    assert capped.truncated_cells == [] and len(cell.outputs) == 1


def test_the_whole_notebook_has_a_cap_of_its_own() -> None:
    capped = client(cells=4, per_cell=4 * KB, total=10 * KB)
    for index in range(3):
        send(capped, index, *[stream("x" * KB) for _ in range(3)])  # 3 kB each: under 4 kB
    send(capped, 3, stream("x" * 3 * KB))
    assert capped.truncated_cells == [3]
    assert capped.total_bytes <= 10 * KB


def test_errors_are_kept_past_every_cap() -> None:
    capped = client()
    error = message("error", {"ename": "E", "evalue": "v", "traceback": ["t"]})
    cell = send(capped, 0, stream("x" * 8 * KB), error)
    assert [o["output_type"] for o in cell.outputs][-1] == "error"


def test_clearing_gives_back_nothing_a_widget_or_display_elsewhere_still_keeps() -> None:
    """Widget state survives a clear: charging it then clearing, over and over, must not
    reset the budget (43 MB of state was kept against a 4 MB cap)."""
    capped = client(per_cell=1024 * KB, total=4096 * KB)
    clear = message("clear_output", {"wait": False})
    for i in range(50):
        send(capped, 0, widget("w", {f"key{i}": "s" * 900 * KB}), clear)
    assert capped.truncated_cells == [0]
    kept_state = sum(len(str(v)) for v in capped.widget_state.get("w", {}).values())
    assert kept_state <= 4096 * KB
