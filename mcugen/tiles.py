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
"""

from __future__ import annotations

import dataclasses

from .geometry import input_columns, windows
from .ir import Conv2D, ConcatColumns, DepthwiseConv2D, Graph, Tensor, op_inputs, verify

TILES = 2  # halves: the arena gained by more tiles is small beside their halos' MACs
# The cost model's instructions per MAC recomputed in a halo: beside the MACs themselves (about
# one instruction per MAC with SMLAD's two), a tile's rows are narrower and pay their per-row
# costs again. Measured: VWW on Cortex-M7 tiled at 12K to 18K costs 1.8-2.0 instructions per
# halo MAC beyond layer by layer, the search's estimate and the variants' (variant_cost).
COST_PER_MAC = 1.85


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


def column_tiles(graph: Graph, end: int, tiles: int = TILES) -> Graph:
    """The graph with ops [0, end) (a chain, tileable_ends) run as `tiles` column tiles of
    their last output, joined into that output by ConcatColumns."""
    if tiles != 2 or not _chain(graph, end):
        raise ValueError(f"ops [0, {end}) cannot run in {tiles} column tiles")
    last = graph.tensor(graph.ops[end - 1].output)
    width = last.shape[2]
    tensors = dict(graph.tensors)
    ops: list = []
    outputs = []
    for tile, (begin, stop) in enumerate(((0, width // 2), (width // 2, width))):
        chain = _tile_chain(graph, end, tile, begin, stop, tensors)
        ops += chain
        outputs.append(chain[-1].output)
    ops.append(ConcatColumns(outputs[0], outputs[1], last.name))
    tiled = dataclasses.replace(graph, tensors=tensors, ops=tuple(ops) + graph.ops[end:])
    verify(tiled)
    return tiled


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


def halo_macs(graph: Graph, tiled: Graph) -> int:
    """The MACs the tiles compute twice."""
    from .report import count_macs

    return sum(count_macs(op, tiled) for op in tiled.ops) - \
        sum(count_macs(op, graph) for op in graph.ops)
