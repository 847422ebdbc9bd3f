"""What static analysis finds: the facts of a notebook's code and the lines that prove them.

Plain records (no analysis here), read by the checks and the reports; the analyser that
fills them is :mod:`grader.static.facts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CodeRef:
    """Source lines of one code cell that prove a fact."""

    cell: int
    """Index of the cell in ``nb.cells`` (0-based, markdown cells counted)."""
    line: int
    """First line of ``text`` within the cell (1-based)."""
    text: str
    """The whole statement, each line stripped of trailing whitespace."""


@dataclass
class StaticFacts:
    """What the code of a notebook says, without running it."""

    unparsable_cells: list[int] = field(default_factory=list)
    magic_lines: list[CodeRef] = field(default_factory=list)
    base_calls: list[CodeRef] = field(default_factory=list)
    include_top: bool | None = None
    include_top_ref: CodeRef | None = None
    base_pooling: str | None = None
    base_names: list[str] = field(default_factory=list)
    other_bases: list[str] = field(default_factory=list)
    """Other pretrained bases the code builds (``InceptionV3``, ...), in order, once each."""
    frozen_before_fit: bool = False
    freeze_ref: CodeRef | None = None
    augmentation_layers: list[str] = field(default_factory=list)
    augmentation_ref: CodeRef | None = None
    augmentation_in_model: bool = False
    augmentation_in_pipeline: bool = False
    augmentation_use_ref: CodeRef | None = None
    augmentation_in_generator: bool = False
    """An ``ImageDataGenerator`` with augmentation arguments makes batches (``flow...``)."""
    pooling_layers: list[str] = field(default_factory=list)
    pooling_ref: CodeRef | None = None
    flatten_used: bool = False
    preprocess_input_used: bool = False
    fit_refs: list[CodeRef] = field(default_factory=list)
