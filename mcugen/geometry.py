"""Geometry: the one place that knows how a spatial op's output pixels read its input. Per op,
its window on each axis (rows and columns), its output size, the input region an output
region reads, and its interior (the output pixels whose window needs no padding). The IR's
shape check (ir.verify), the front end's, the early arena bound (estimate.py), row-band
schedules (row_bands.py: their steps, band buffers and replay), column tiles (tiles.py), the
planner's streaming order (schedule.streaming_order) and the kernels' lowering
(kernels/lowering.py: windows and interiors) all read it; a new spatial op joins every
schedule by adding its windows here (`windows`).

Rows are an activation's axis 1 (H of NHWC), columns its axis 2 (W). An op reads its inputs
in one of four ways:
- through a window (CONV_2D, DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, and PAD as a window of one
  tap shifted by its padding): the input pixels under the windows of the output pixels, cut
  at the edges;
- whole (TRANSPOSE, RESHAPE): an output row gathers from anywhere in the input, so the
  whole input is read before the first output row. Exact whatever the order the input is
  laid out in (an NCHW input before its TRANSPOSE to NHWC): the input is read as it is, only
  the output is computed in rows. At a model's start the input is the caller's buffer,
  outside the arena, so a layout op there costs the arena nothing;
- side by side (CONCATENATION of columns, ir.ConcatColumns; SLICE_COLUMNS, ir.SliceColumns):
  rows row for row, each operand's own columns;
- pixel for pixel (elementwise ops): output pixel (r, c) reads pixel (r, c) of each operand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from .ir import (AveragePool2D, ConcatColumns, Conv2D, DepthwiseConv2D, Graph, Op, Pad, Padding,
                 Reshape, SliceColumns, Transpose)

# Ops whose output rows read their whole input (layout ops).
WHOLE_INPUT_OPS = (Transpose, Reshape)


@dataclass(frozen=True)
class Window:
    """A spatial op's window along one axis: output index o reads the input indices
    o * stride - before + k * dilation for k in [0, kernel); those outside [0, size) are
    padding (`before` and `after` padded indices; a negative one crops the input)."""

    kernel: int
    stride: int = 1
    before: int = 0
    dilation: int = 1
    after: int = 0
    # The input indices one output index's window covers, padding included (a field: the
    # schedule search asks `reads` hundreds of thousands of times).
    span: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "span", (self.kernel - 1) * self.dilation + 1)

    def output_size(self, size: int) -> int:
        """The output's extent over an input of `size` (TFLite's ComputeOutSize, explicit
        padding)."""
        return (size + self.before + self.after - self.span) // self.stride + 1

    def reads(self, begin: int, end: int, size: int) -> tuple[int, int]:
        """The input indices [first, last) that output indices [begin, end) read, cut at the
        input's edges (empty, first == last, when they read only padding)."""
        first = begin * self.stride - self.before
        last = (end - 1) * self.stride - self.before + self.span
        first, last = min(max(first, 0), size), min(max(last, 0), size)
        return first, max(first, last)

    def most_read(self, size: int, outputs: int) -> int:
        """The most input indices one output index reads, the window cut at the edges. The cut
        window grows while it starts before index 0 and shrinks once it is whole, so the most
        is at the first output index whose window starts at 0 or the one before."""
        first_inside = min(max(-(-self.before // self.stride), 0), outputs - 1)
        most = 0
        for index in {max(first_inside - 1, 0), first_inside}:
            first, last = self.reads(index, index + 1, size)
            most = max(most, last - first)
        return most

    def within(self, inputs: tuple[int, int], outputs: tuple[int, int]) -> Window:
        """The window of output indices [begin, stop) computed from input indices
        [first, last) alone (a tile, tiles.py), renumbered from 0 on both sides: its padding
        before and after (negative where it crops the input)."""
        (first, last), (begin, stop) = inputs, outputs
        before = self.before + first - begin * self.stride
        after = (stop - begin - 1) * self.stride + self.span - before - (last - first)
        return dataclasses.replace(self, before=before, after=after)

    def interior(self, size: int, outputs: int) -> tuple[int, int]:
        """The output indices [low, high) whose whole window is inside the input (no padding
        tap; empty, low == high, when there are none)."""
        low = min(max(-(-self.before // self.stride), 0), outputs)
        high = max(min((size - self.span + self.before) // self.stride + 1, outputs), low)
        return low, high


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite's SAME padding along one axis, (before, after): the odd index goes after."""
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class Region:
    """Output or input pixels: rows [begin, end) by columns [begin, end)."""

    rows: tuple[int, int]
    columns: tuple[int, int]


def rows(shape: tuple[int, ...]) -> int:
    """An activation's rows: H of a 4-D tensor; any other is one row."""
    return shape[1] if len(shape) == 4 else 1


def columns(shape: tuple[int, ...]) -> int:
    """An activation's columns: W of a 4-D tensor; any other is one column."""
    return shape[2] if len(shape) == 4 else 1


def reads_whole_input(op: Op) -> bool:
    return isinstance(op, WHOLE_INPUT_OPS)


def windows(op: Op, graph: Graph | None) -> tuple[Window, Window] | None:
    """The op's window on rows and on columns (its rule in WINDOW_RULES); None for an op that
    reads no window (whole, side by side, or pixel for pixel). The graph gives a
    convolution's filter size (a pool or a PAD needs none: the front end checks a pool's
    output before it has a graph)."""
    rule = WINDOW_RULES.get(type(op))
    return None if rule is None else rule(op, graph)


def _padded(kernels: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
            padding: Padding) -> tuple[Window, Window]:
    return (Window(kernels[0], stride[0], padding.top, dilation[0], padding.bottom),
            Window(kernels[1], stride[1], padding.left, dilation[1], padding.right))


def _convolution(op: Conv2D | DepthwiseConv2D, graph: Graph) -> tuple[Window, Window]:
    shape = graph.tensor(op.filter).shape  # OHWI, or [1, KH, KW, C]
    return _padded((shape[1], shape[2]), op.stride, op.dilation, op.padding)


def _pool(op: AveragePool2D, graph: Graph | None) -> tuple[Window, Window]:
    return _padded(op.filter_size, op.stride, (1, 1), op.padding)


def _pad(op: Pad, graph: Graph | None) -> tuple[Window, Window]:
    """One tap, shifted by the padding: output row r reads input row r - top."""
    return _padded((1, 1), (1, 1), (1, 1), op.padding)


# Each windowed op's rule: (op, graph) -> its windows on rows and on columns. Everything that
# needs a spatial op's geometry reads it through this module; a new spatial op adds its rule
# here.
WINDOW_RULES: dict[type, Callable[[Op, Graph | None], tuple[Window, Window]]] = {
    Conv2D: _convolution, DepthwiseConv2D: _convolution, AveragePool2D: _pool, Pad: _pad}


def output_size(op: Op, graph: Graph) -> tuple[int, int]:
    """A windowed op's output rows and columns, from its input's (ir.verify checks them)."""
    _, height, width, _ = graph.tensor(op.input).shape
    row_window, column_window = windows(op, graph)
    return row_window.output_size(height), column_window.output_size(width)


def interior(op: Op, graph: Graph) -> Region:
    """The output pixels of a windowed op whose whole window is inside its input."""
    _, height, width, _ = graph.tensor(op.input).shape
    _, out_h, out_w, _ = graph.tensor(op.output).shape
    row_window, column_window = windows(op, graph)
    return Region(row_window.interior(height, out_h), column_window.interior(width, out_w))


def input_rows(op: Op, graph: Graph, begin: int, end: int) -> tuple[int, int]:
    """The rows [first, last) of the op's input(s) that its output rows [begin, end) read."""
    height, stride, before, span = _row_rule(op, graph)
    if stride == 0:  # the whole input
        return 0, height
    # Window.reads, inlined: the schedule search's hottest call (test_geometry compares them).
    first = begin * stride - before
    last = (end - 1) * stride - before + span
    first, last = min(max(first, 0), height), min(max(last, 0), height)
    return first, max(first, last)


def input_columns(op: Op, graph: Graph, begin: int, end: int, operand: int = 0
                  ) -> tuple[int, int]:
    """The columns [first, last) of the op's activation input number `operand` that its
    output columns [begin, end) read."""
    source = graph.tensor(_operand(op, operand)).shape
    width = columns(source)
    if reads_whole_input(op):
        return 0, width
    if operand == 1 and getattr(op, "halo", None) is not None:
        return 0, width  # a column tile's cached halo: read whole, as its padding columns
    found = windows(op, graph)
    if found is not None:
        return found[1].reads(begin, end, width)
    if isinstance(op, ConcatColumns):  # input2's columns follow input's
        offset = 0 if operand == 0 else columns(graph.tensor(op.input).shape)
        first, last = min(max(begin - offset, 0), width), min(max(end - offset, 0), width)
        return first, max(first, last)
    if isinstance(op, SliceColumns):
        return op.begin + begin, op.begin + max(begin, end)
    return min(begin, width), min(max(begin, end), width)  # pixel for pixel (or broadcast)


def input_region(op: Op, graph: Graph, region: Region, operand: int = 0) -> Region:
    """The region of the op's activation input number `operand` (in its INPUTS order, the
    constants left out) that its output region reads."""
    return Region(input_rows(op, graph, *region.rows),
                  input_columns(op, graph, *region.columns, operand))


def _operand(op: Op, operand: int) -> str:
    names = [getattr(op, field) for field in op.INPUTS if field in ("input", "input2", "halo")
             and getattr(op, field) is not None]
    return names[operand]


ROW_FOR_ROW = Window(1)  # output row r reads input row r


def _row_rule(op: Op, graph: Graph) -> tuple[int, int, int, int]:
    """The input's height and the stride, padding before and span of the op's window on rows
    (ROW_FOR_ROW's for an op without one: elementwise, or side by side); stride 0: it reads
    the whole input. Memoized per graph (the schedule search asks it hundreds of thousands of
    times)."""
    # Keyed by the op's identity, the op kept beside its rule (so that its id is not reused):
    # hashing a frozen op hashes its per-channel multipliers, which cost the search more
    # than the rule itself.
    key = ("row_rule", id(op))
    entry = graph.derived.get(key)
    if entry is not None and entry[0] is op:
        return entry[1]
    height = rows(graph.tensor(op.input).shape)
    found = windows(op, graph)
    window = found[0] if found is not None else ROW_FOR_ROW
    rule = (height, 0, 0, 0) if reads_whole_input(op) else \
        (height, window.stride, window.before, window.span)
    graph.derived[key] = (op, rule)
    return rule
