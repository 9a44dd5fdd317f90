"""One geometry module (issue 20, item 1): mcugen/geometry.py is the one place that says how a
spatial op's output pixels read its input. Its window arithmetic is checked against windows
enumerated tap by tap; and every stage that needs a window (the IR's shape check, row bands,
column tiles' columns, the early arena bound, the planner's streaming order, the kernels'
lowering and interiors) is shown to follow geometry's rule by changing the rule and watching
each stage's answer change with it. Hand-built graphs, no TensorFlow."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

import ir_graphs as g
from mcugen import estimate, geometry, ir
from mcugen.errors import McugenError
from mcugen.geometry import Region, Window
from mcugen.kernels.lowering import conv_window, feature_map, interior
from mcugen.schedule import streaming_order


def taps(window: Window, index: int) -> list[int]:
    """The input indices output `index` reads, padding included."""
    return [index * window.stride - window.before + k * window.dilation
            for k in range(window.kernel)]


def small_windows():
    for kernel, stride, dilation, before, after in itertools.product(
            range(1, 5), range(1, 4), range(1, 3), range(-2, 3), range(-1, 3)):
        yield Window(kernel, stride, before, dilation, after)


def test_a_window_reads_what_its_taps_read():
    """Output size, the input range an output range reads, the most one output reads, and
    the interior, for every small window on every small input: as its taps say."""
    checked = 0
    for window, size in itertools.product(small_windows(), range(1, 8)):
        # Outputs: every index whose window ends within the padded input.
        outputs = sum(1 for o in range(size + 8)
                      if taps(window, o)[-1] < size + window.after)
        if outputs < 1 or taps(window, 0)[0] < -window.before:
            continue
        assert window.output_size(size) == outputs, (window, size)
        for begin in range(outputs):
            for end in range(begin + 1, outputs + 1):
                inside = [t for o in range(begin, end) for t in taps(window, o) if 0 <= t < size]
                first, last = window.reads(begin, end, size)
                # Every index read, and no more than the first and last taps bound (a
                # stride or dilation may leave gaps between).
                assert all(first <= t < last for t in inside), (window, size, begin, end)
                if 0 <= taps(window, begin)[0] < size:
                    assert first == taps(window, begin)[0]
                if 0 <= taps(window, end - 1)[-1] < size:
                    assert last == taps(window, end - 1)[-1] + 1
        spans = [window.reads(o, o + 1, size) for o in range(outputs)]
        assert window.most_read(size, outputs) == max(b - a for a, b in spans), (window, size)
        whole = [o for o in range(outputs) if all(0 <= t < size for t in taps(window, o))]
        low, high = window.interior(size, outputs)
        assert list(range(low, high)) == whole, (window, size)
        checked += 1
    assert checked > 1000


def test_a_tile_of_a_window_reads_the_same_input():
    """Window.within: output indices [begin, stop) computed from the input indices they read
    alone, renumbered from 0, read the same input (column tiles are built from it)."""
    for window, size in itertools.product(small_windows(), range(3, 9)):
        if window.before < 0 or window.after < 0:
            continue
        outputs = window.output_size(size)
        for begin, stop in ((0, outputs // 2), (outputs // 2, outputs)):
            if begin >= stop:
                continue
            first, last = window.reads(begin, stop, size)
            tile = window.within((first, last), (begin, stop))
            assert tile.output_size(last - first) == stop - begin, (window, size)
            for o in range(stop - begin):
                assert [t + first if 0 <= t < last - first else None for t in taps(tile, o)] \
                    == [t if 0 <= t < size else None for t in taps(window, begin + o)]


def test_an_op_reads_a_region_of_rows_and_columns():
    """geometry.input_region per kind of op: a window, a layout op (the whole input), two
    images side by side (each operand its own columns), pixel for pixel."""
    chain = g.conv_chain(3, h=12, w=10)
    conv = chain.ops[0]  # 3x3 stride 2, SAME (0 before, 1 after) on 12x10
    assert geometry.input_region(conv, chain, Region((0, 2), (1, 3))) == Region((0, 5), (2, 7))
    assert geometry.input_region(conv, chain, Region((5, 6), (4, 5))) == Region((10, 12), (8, 10))
    assert geometry.output_size(conv, chain) == (6, 5)
    layout = g.layout_first(11, "transpose")
    transpose, pad = layout.ops[0], layout.ops[1]
    assert geometry.input_region(transpose, layout, Region((3, 4), (0, 1))) == \
        Region((0, 4), (0, 14))  # the NCHW input: its C rows of H columns
    assert geometry.input_region(pad, layout, Region((0, 3), (0, 2))) == Region((0, 1), (0, 1))
    joined = g.concat_columns((1, 3, 5, 2))
    concat = joined.ops[0]
    widths = [joined.tensor(n).shape[2] for n in (concat.input, concat.input2)]
    left = widths[0]
    assert geometry.input_region(concat, joined, Region((1, 2), (left - 1, left + 1)), 0) == \
        Region((1, 2), (left - 1, left))
    assert geometry.input_region(concat, joined, Region((1, 2), (left - 1, left + 1)), 1) == \
        Region((1, 2), (0, 1))
    adds = g.residual_adds(1, (1, 6, 5, 3), 2)
    assert geometry.input_region(adds.ops[1], adds, Region((2, 4), (1, 3)), 1) == \
        Region((2, 4), (1, 3))


def test_an_ops_rows_are_its_row_windows_reads():
    """input_rows (the search's hottest call, its arithmetic inlined) is Window.reads of the
    op's window on rows, for every output range of every windowed op of two graphs."""
    for graph in (g.conv_chain(3, h=13, w=10), g.layout_first(11, "reshape")):
        for op in graph.ops:
            found = geometry.windows(op, graph)
            if found is None:
                continue
            height = graph.tensor(op.input).shape[1]
            outputs = graph.tensor(op.output).shape[1]
            for begin in range(outputs):
                for end in range(begin + 1, outputs + 1):
                    assert geometry.input_rows(op, graph, begin, end) == \
                        found[0].reads(begin, end, height)


def shifted(rule):
    """A convolution's rule read one index earlier: the window starts one row and one column
    before where it did (its output size unchanged)."""
    def read(op, graph):
        return tuple(dataclasses.replace(w, before=w.before + 1, after=w.after - 1)
                     for w in rule(op, graph))
    return read


def test_every_stage_reads_a_spatial_ops_rule_from_geometry(monkeypatch):
    """Change the convolutions' rule in geometry.py alone: the IR's shape check, the rows and
    columns row bands and column tiles read, the early arena bound's windows, the kernels'
    windows and interiors, and the planner's streaming order all follow it. A stage with a
    window of its own would keep answering as before."""
    chain = g.conv_chain(3, h=12, w=10)
    convolution = chain.ops[0]
    before = _answers(chain, convolution)
    rule = geometry.WINDOW_RULES[ir.Conv2D]
    monkeypatch.setitem(geometry.WINDOW_RULES, ir.Conv2D, shifted(rule))
    monkeypatch.setitem(geometry.WINDOW_RULES, ir.DepthwiseConv2D, shifted(rule))
    chain = dataclasses.replace(chain)  # a new graph: nothing memoized from the old rule
    after = _answers(chain, convolution)
    rows, columns = geometry.windows(convolution, chain)
    assert (rows.before, columns.before) == (1, 1)
    for stage, answer in after.items():
        assert answer != before[stage], stage
    # What each stage now says is geometry's new rule.
    assert after["rows"] == rows.reads(0, 1, 12) and after["columns"] == columns.reads(0, 1, 10)
    assert after["estimate"] == rows
    assert after["kernel window"][:2] == (rows.before, columns.before)
    assert after["interior"] == (*rows.interior(12, 6), *columns.interior(10, 5))
    # A rule that changes the output size: the IR's shape check refuses the graph.
    ir.verify(chain)
    monkeypatch.setitem(geometry.WINDOW_RULES, ir.Conv2D,
                        lambda op, graph: tuple(dataclasses.replace(w, stride=w.stride + 1)
                                                for w in rule(op, graph)))
    with pytest.raises(McugenError, match="do not agree"):
        ir.verify(dataclasses.replace(chain))


def _answers(graph: ir.Graph, op) -> dict:
    x, y = feature_map(graph.tensor(op.input)), feature_map(graph.tensor(op.output))
    window = conv_window(op, graph)
    _, next_read = streaming_order(op, graph)
    return {"rows": geometry.input_rows(op, graph, 0, 1),
            "columns": geometry.input_columns(op, graph, 0, 1),
            "estimate": estimate.graph_shapes(graph).layers[0].window,
            "kernel window": (window.pad_top, window.pad_left),
            "interior": dataclasses.astuple(interior(x, y, window)),
            "streaming order": tuple(np.asarray(next_read).tolist())}
