"""Row geometry: for each op that can compute a range of its output rows, which rows of its
inputs that range reads. Row-band schedules (row_bands.py) order their steps, size their
band buffers and replay them from it alone; a new spatial op joins them by adding its rule
here (estimate.graph_shapes describes the same rule for the early arena bound).

Rows are an activation's axis 1 (H of NHWC). An op reads its inputs in one of four ways:
- through a window (CONV_2D, DEPTHWISE_CONV_2D): the rows under the windows of the output
  rows, cut at the edges;
- shifted (PAD): output row r is input row r - top, or padding;
- whole (TRANSPOSE, RESHAPE): an output row gathers from anywhere in the input, so the
  whole input is read before the first output row. Exact whatever the order the input is
  laid out in (an NCHW input before its TRANSPOSE to NHWC): the input is read as it is, only
  the output is computed in rows. At a model's start the input is the caller's buffer,
  outside the arena, so a layout op there costs the arena nothing;
- row for row (elementwise ops): output row r reads row r of each operand.
"""

from __future__ import annotations

from .ir import Conv2D, DepthwiseConv2D, Graph, Op, Pad, Reshape, Transpose

# Ops whose output rows read their whole input (layout ops).
WHOLE_INPUT_OPS = (Transpose, Reshape)


def rows(shape: tuple[int, ...]) -> int:
    """An activation's rows: H of a 4-D tensor; any other is one row."""
    return shape[1] if len(shape) == 4 else 1


def reads_whole_input(op: Op) -> bool:
    return isinstance(op, WHOLE_INPUT_OPS)


def input_rows(op: Op, graph: Graph, begin: int, end: int) -> tuple[int, int]:
    """The rows [first, last) of the op's input(s) that its output rows [begin, end) read."""
    height, stride, top, extent = _row_rule(op, graph)
    if stride == 0:  # the whole input
        return 0, height
    first = begin * stride - top
    last = (end - 1) * stride - top + extent
    first, last = min(max(first, 0), height), min(max(last, 0), height)
    return first, max(first, last)


def _row_rule(op: Op, graph: Graph) -> tuple[int, int, int, int]:
    """Output row r reads input rows [r * stride - top, r * stride - top + extent), cut at
    the input's height; stride 0: the whole input. Memoized per graph (the schedule search
    asks it hundreds of thousands of times)."""
    # Keyed by the op's identity, the op kept beside its rule (so that its id is not reused):
    # hashing a frozen op hashes its per-channel multipliers, which cost the search more
    # than the rule itself.
    key = ("row_rule", id(op))
    entry = graph.derived.get(key)
    if entry is not None and entry[0] is op:
        return entry[1]
    height = rows(graph.tensor(op.input).shape)
    if reads_whole_input(op):
        rule = (height, 0, 0, 0)
    elif isinstance(op, (Conv2D, DepthwiseConv2D)):
        kernel = graph.tensor(op.filter).shape[1]
        rule = (height, op.stride[0], op.padding.top, (kernel - 1) * op.dilation[0] + 1)
    elif isinstance(op, Pad):
        rule = (height, 1, op.padding.top, 1)
    else:  # elementwise: the same rows
        rule = (height, 1, 0, 1)
    graph.derived[key] = (op, rule)
    return rule
