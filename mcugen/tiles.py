"""Column tiles (2-D tiles with recomputed halos): the first layers of a model, a chain of
convolutions, run twice, each time for half of the last one's output columns, on only the
columns of every tensor that half reads; the two halves are then joined (ConcatColumns).

Row bands (row_bands.py) hold each tensor inside a segment as a few full-width rows, so their
arena cannot go below the sum of those rows: VWW's first eight layers hold 9,600 B of band
rows, beside the 4,608 B of their last output, 14,208 B in all. A column tile's band rows are
as wide as the columns it reads, a little over half (its halo: the columns both tiles read,
computed twice), so the same bands in column tiles take about 60 % of that. The price is
the halo's MACs, which the cost model counts (COST_PER_MAC), beside the bands' steps.

It is a rewrite of the graph: each tile's ops are the chain's ops with the tile's narrower
tensors and the padding of their edges (0 inside the image; negative, that is cropped, where
the first op reads its part of a whole input). Every kernel then runs as it is, the row-band
search schedules the tiles like any other layers, and its replay verifies them.

Where the chain ends with a depthwise convolution, the halo may instead be cached at its input
(column_tiles' cached): the first tile keeps the columns both tiles' last ops read, whole
height (SliceColumns), and the second tile's last op reads them as its left padding
(ir.DepthwiseConv2D.halo); the second tile's earlier ops then compute only the columns after
them. It costs those columns' rows in RAM (VWW: 768 B) and saves the MACs that produced them,
and their receptive field's (VWW: 87,168 of 239,232 halo MACs): the search weighs both forms.
"""

from __future__ import annotations

import dataclasses

from .geometry import input_columns, windows
from .ir import (Conv2D, ConcatColumns, DepthwiseConv2D, Graph, SliceColumns, Tensor, op_inputs,
                 verify)

TILES = 2  # halves: the arena gained by more tiles is small beside their halos' MACs
# The cost model's instructions per MAC recomputed in a halo: beside the MACs themselves (about
# one instruction per MAC with SMLAD's two), a tile's rows are narrower and pay their per-row
# costs again. Measured: VWW on Cortex-M7 tiled at 12K to 18K costs 1.8-2.0 instructions per
# halo MAC beyond layer by layer, the search's estimate and the variants' (variant_cost).
COST_PER_MAC = 1.85
# A cached halo spares the MACs that computed its columns and their receptive field, but not
# the tiles' narrower rows: the cost model counts this many instructions per MAC spared.
# Measured on Cortex-M7: VWW at 12K, 87,168 fewer MACs and 133,321 fewer instructions (1.53);
# but at 16K, where row bands also fit, cached tiles counted so (391 K estimated, 433 K
# measured) beat row bands (398 K, 349 K) and cost 84 K more, as did the TinyMaix export's.
# Counted at 1.0 a MAC, the estimate of the tiles' narrower rows keeps its margin.
CACHED_SAVING_PER_MAC = 1.0


def _chain(graph: Graph, end: int) -> bool:
    """Whether ops [0, end) are convolutions, each reading only the one before it (the first
    the graph's input), and only their last output is read after them."""
    ops = graph.ops[:end]
    if end < 2 or not all(isinstance(op, (Conv2D, DepthwiseConv2D)) for op in ops):
        return False
    source = graph.inputs[0]
    for op in ops:
        if op.input != source or len(graph.tensor(source).shape) != 4:
            return False
        source = op.output
    inner = {op.output for op in ops[:-1]}
    later = {name for op in graph.ops[end:] for name in op_inputs(op)}
    return not inner & (later | set(graph.outputs))


def tileable_ends(graph: Graph) -> list[int]:
    """The ends (exclusive) of the chains at the model's start that column tiles can run."""
    return [end for end in range(2, len(graph.ops) + 1) if _chain(graph, end)]


def column_tiles(graph: Graph, end: int, tiles: int = TILES, cached: bool = False) -> Graph:
    """The graph with ops [0, end) (a chain, tileable_ends) run as `tiles` column tiles of
    their last output, joined into that output by ConcatColumns. cached: the columns of the
    last op's input that both tiles read are computed by the first tile alone, which keeps
    them whole (a SliceColumns of its rows, the cached halo), and the second tile's last op
    reads them as its left padding (ir.DepthwiseConv2D.halo): every earlier op of the second
    tile then computes fewer columns too (VWW's first eight layers: 87,168 of 239,232 halo
    MACs, for a 768-byte halo). Only a depthwise last op takes a halo (cached_halo_width)."""
    if tiles != 2 or not _chain(graph, end):
        raise ValueError(f"ops [0, {end}) cannot run in {tiles} column tiles")
    last = graph.tensor(graph.ops[end - 1].output)
    width = last.shape[2]
    tensors = dict(graph.tensors)
    halves = ((0, width // 2), (width // 2, width))
    if cached and cached_halo_width(graph, end) <= 0:
        raise ValueError(f"ops [0, {end}) have no halo to cache")
    left = _tile_chain(graph, end, 0, *halves[0], tensors)
    right = _tile_chain(graph, end, 1, *halves[1], tensors) if not cached else \
        _halo_reading_chain(graph, end, halves, left, tensors)
    if cached:
        left = [*left[:-1], _halo_slice(graph, end, halves, left, tensors), left[-1]]
    ops = [*left, *right, ConcatColumns(left[-1].output, right[-1].output, last.name)]
    tiled = dataclasses.replace(graph, tensors=tensors, ops=tuple(ops) + graph.ops[end:])
    verify(tiled)
    return tiled


def cached_halo_width(graph: Graph, end: int) -> int:
    """The columns of op end - 1's input that both tiles read (0 where that op is not a
    depthwise convolution, which alone takes a cached halo)."""
    op = graph.ops[end - 1]
    if not isinstance(op, DepthwiseConv2D):
        return 0
    width = graph.tensor(op.output).shape[2]
    _, left_end = input_columns(op, graph, 0, width // 2)
    right_begin, _ = input_columns(op, graph, width // 2, width)
    return max(0, left_end - right_begin)


def _halo_name(graph: Graph, end: int, columns: tuple[int, int]) -> str:
    source = graph.ops[end - 1].input
    return f"{source} (column tile 0's halo: columns {columns[0]}-{columns[1] - 1})"


def _halo_slice(graph: Graph, end: int, halves, left: list, tensors: dict[str, Tensor]
                ) -> SliceColumns:
    """The first tile's copy of the columns both tiles' last ops read, whole."""
    op = graph.ops[end - 1]
    _, left_end = input_columns(op, graph, *halves[0])
    right_begin, _ = input_columns(op, graph, *halves[1])
    name = _halo_name(graph, end, (right_begin, left_end))
    source = tensors[left[-1].input]
    tensors[name] = dataclasses.replace(
        source, name=name, shape=(1, source.shape[1], left_end - right_begin, source.shape[3]))
    return SliceColumns(left[-1].input, name, right_begin)


def _halo_reading_chain(graph: Graph, end: int, halves, left: list,
                        tensors: dict[str, Tensor]) -> list:
    """The second tile: ops [0, end - 1) on the columns after the halo, then the last op
    reading the halo as its left padding."""
    op = graph.ops[end - 1]
    begin, stop = halves[1]
    first, last = input_columns(op, graph, begin, stop)
    _, left_end = input_columns(op, graph, *halves[0])
    chain = _tile_chain(graph, end - 1, 1, left_end, last, tensors)
    window = windows(op, graph)[1].within((first, last), (begin, stop))
    out = graph.tensor(op.output)
    name = f"{out.name} (column tile 1: columns {begin}-{stop - 1})"
    tensors[name] = dataclasses.replace(out, name=name,
                                        shape=(1, out.shape[1], stop - begin, out.shape[3]))
    halo = left_end - first
    padding = dataclasses.replace(op.padding, left=window.before + halo, right=window.after)
    assert window.before == 0, "the halo is inside the image"
    return [*chain, dataclasses.replace(op, input=chain[-1].output, output=name,
                                        padding=padding,
                                        halo=_halo_name(graph, end, (first, left_end)))]


def _tile_chain(graph: Graph, end: int, tile: int, begin: int, stop: int,
                tensors: dict[str, Tensor]) -> list:
    """The ops of one tile, output columns [begin, stop) of op end - 1, with their tensors
    added to `tensors`: from the last op back, each op's columns are those its reader reads."""
    columns = {}
    for op in reversed(graph.ops[:end]):
        columns[op.output] = (begin, stop)
        begin, stop = input_columns(op, graph, begin, stop)
    columns[graph.ops[0].input] = (begin, stop)
    chain = []
    source = graph.ops[0].input
    for index, op in enumerate(graph.ops[:end]):
        (first, last), (begin, stop) = columns[op.input], columns[op.output]
        if index == 0:  # the whole input, read from its column `first` on: cropped
            first, last = 0, graph.tensor(op.input).shape[2]
        tile_columns = windows(op, graph)[1].within((first, last), (begin, stop))
        out = graph.tensor(op.output)
        name = f"{out.name} (column tile {tile}: columns {begin}-{stop - 1})"
        tensors[name] = dataclasses.replace(out, name=name,
                                            shape=(1, out.shape[1], stop - begin, out.shape[3]))
        padding = dataclasses.replace(op.padding, left=tile_columns.before,
                                      right=tile_columns.after)
        assert tile_columns.output_size(last - first) == stop - begin
        chain.append(dataclasses.replace(op, input=source, output=name, padding=padding))
        source = name
    return chain


def halo_cost(recomputed: int, halo: int) -> float:
    """The instructions the cost model gives a tiling beyond its steps, from the halo MACs of
    its recomputed form and its own (the same, or fewer where the halo is cached):
    COST_PER_MAC per recomputed halo MAC (its MACs, and the tiles' narrower rows), less
    CACHED_SAVING_PER_MAC per MAC a cached halo spares."""
    return recomputed * COST_PER_MAC - (recomputed - halo) * CACHED_SAVING_PER_MAC


def halo_macs(graph: Graph, tiled: Graph) -> int:
    """The MACs the tiles compute twice."""
    from .report import count_macs

    return sum(count_macs(op, tiled) for op in tiled.ops) - \
        sum(count_macs(op, graph) for op in graph.ops)
