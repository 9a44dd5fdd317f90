"""Row-band schedules (patch-based execution by line buffering): the first layers of the graph,
the prefix, run a few rows at a time, interleaved, so that a tensor living only inside the
prefix never exists in full; it is held in a band buffer of the rows that later steps still
read. No row is computed twice: the extra cost is calls and row moves, never MACs.

How the steps are found: the last layer of the prefix is driven row by row; to compute rows
of a layer, the rows its window needs from each input are computed first, recursively, a band
(at most `band_rows` rows) at a time. So an early, wide tensor holds only the rows the next
layer's window needs before that layer runs on them, and a residual input only the rows its
ADD has not yet read.

How a band buffer is addressed: a banded layer's function takes, per operand, the first row
its buffer holds (its origin; 0 for a whole tensor). When a step writes rows past the end of a
band buffer, the rows still to be read move to its start first (a `Shift`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import McugenError
from .ir import Add, Conv2D, DepthwiseConv2D, Graph, Mul, Op, Pad, TableLookup, op_inputs
from .kernels import Layer
from .schedule import Schedule, Shift, Step, arena_buffers, row_bytes

# Ops whose kernels can run on a range of output rows from a band of input rows. Global ops
# (MEAN, fully connected, softmax, squeeze-and-excitation's broadcast MUL) end the prefix.
BANDED_OPS = (Conv2D, DepthwiseConv2D, Pad, Add, Mul, TableLookup)


def activation_inputs(op: Op, graph: Graph) -> list[str]:
    """The op's inputs that are activations, in the order its kernel takes them."""
    return [name for name in op_inputs(op) if not graph.tensor(name).is_constant]


def can_band(layer: Layer, graph: Graph) -> bool:
    """Whether the layer can run in row bands: one of our kernels that takes row ranges, on
    image-shaped tensors; an elementwise op only on operands of its output's shape."""
    op = layer.op
    if not isinstance(op, BANDED_OPS) or not layer.variant.row_ranges \
            or layer.variant.library is not None:
        return False
    shape = graph.tensor(op.output).shape
    inputs = activation_inputs(op, graph)
    if len(shape) != 4 or any(len(graph.tensor(n).shape) != 4 for n in inputs):
        return False
    if isinstance(op, (Add, Mul, TableLookup)):
        return len(inputs) == len(op_inputs(op)) and \
            all(graph.tensor(n).shape == shape for n in inputs)
    return True


def longest_prefix(graph: Graph, layers: tuple[Layer, ...]) -> int:
    """How many layers from the first can run in row bands."""
    for layer in layers:
        if not can_band(layer, graph) or graph.output in (layer.op.output,):
            return layer.index
    return len(layers)


def input_rows(op: Op, graph: Graph, begin: int, end: int) -> tuple[int, int]:
    """The rows [first, last) of the op's input(s) that its output rows [begin, end) read."""
    height = graph.tensor(op.input).shape[1]
    if isinstance(op, (Conv2D, DepthwiseConv2D)):
        kernel = graph.tensor(op.filter).shape[1]
        first = begin * op.stride[0] - op.padding.top
        last = (end - 1) * op.stride[0] - op.padding.top + (kernel - 1) * op.dilation[0] + 1
    elif isinstance(op, Pad):
        first, last = begin - op.padding.top, end - op.padding.top
    else:  # elementwise: the same rows
        first, last = begin, end
    first, last = min(max(first, 0), height), min(max(last, 0), height)
    return first, max(first, last)


@dataclass
class _Order:
    """The steps found so far, and how many rows of each tensor they computed."""

    graph: Graph
    layers: tuple[Layer, ...]
    producer: dict[str, int]
    band_rows: int
    done: dict[str, int]
    steps: list[tuple[int, int, int]]

    def ensure(self, tensor: str, rows: int) -> None:
        """Compute rows [0, rows) of the tensor, if a prefix layer makes it."""
        if tensor not in self.producer:
            return
        index = self.producer[tensor]
        op = self.layers[index].op
        height = self.graph.tensor(tensor).shape[1]
        while self.done[tensor] < rows:
            begin = self.done[tensor]
            end = min(begin + self.band_rows, height)
            _, needed = input_rows(op, self.graph, begin, end)
            for name in activation_inputs(op, self.graph):
                self.ensure(name, needed)
            self.steps.append((index, begin, end))
            self.done[tensor] = end


def row_band_schedule(graph: Graph, layers: tuple[Layer, ...], prefix: int,
                      band_rows: int) -> Schedule:
    """The steps of a schedule whose layers [0, prefix) run in bands of at most band_rows
    output rows, then the others one step each; with the band buffers it needs."""
    if not 0 < prefix <= longest_prefix(graph, layers):
        raise ValueError(f"layers [0, {prefix}) cannot all run in row bands")
    producer = {layers[i].op.output: i for i in range(prefix)}
    later_reads = {name for layer in layers[prefix:]
                   for name in activation_inputs(layer.op, graph)}
    bands = {name for name in producer if name not in later_reads and name != graph.output}
    order = _Order(graph, layers, producer, band_rows, {name: 0 for name in producer}, [])
    last_output = layers[prefix - 1].op.output
    for row in range(1, graph.tensor(last_output).shape[1] + 1):
        order.ensure(last_output, row)
    for name in producer:  # whole tensors read after the prefix
        order.ensure(name, graph.tensor(name).shape[1])
    steps, capacity = _band_steps(graph, layers, order.steps, bands)
    for layer in layers[prefix:]:
        steps.append(Step(layer.index, (0, layer.output_rows)
                          if layer.variant.row_ranges else None))
    return Schedule(tuple(steps), capacity, prefix, band_rows)


def _band_steps(graph: Graph, layers: tuple[Layer, ...], order: list[tuple[int, int, int]],
                bands: set[str]) -> tuple[list[Step], dict[str, int]]:
    """The banded steps with their origins and shifts, and each band buffer's rows: as many
    as a step's new rows plus the rows that steps after it still read."""
    reads: dict[str, list[tuple[int, int]]] = {name: [] for name in bands}  # (position, first)
    for position, (index, begin, end) in enumerate(order):
        op = layers[index].op
        first, last = input_rows(op, graph, begin, end)
        for name in activation_inputs(op, graph):
            if name in bands and last > first:
                reads[name].append((position, first))
    # keep[p]: for the step at position p writing a band tensor, the first row still read by
    # a later step (or the step's own first new row).
    keep: dict[int, int] = {}
    capacity: dict[str, int] = {name: 1 for name in bands}
    for position, (index, begin, end) in enumerate(order):
        name = layers[index].op.output
        if name in bands:
            later = [first for p, first in reads[name] if p > position]
            keep[position] = min([begin, *later])
            capacity[name] = max(capacity[name], end - keep[position])
    held = {name: 0 for name in bands}
    steps = []
    for position, (index, begin, end) in enumerate(order):
        op = layers[index].op
        name = op.output
        shifts = ()
        if name in bands and end - held[name] > capacity[name]:
            shifts = (Shift(name, held[name], keep[position], begin),)
            held[name] = keep[position]
        origins = tuple(held.get(n, 0) for n in activation_inputs(op, graph)) + \
            (held.get(name, 0),)
        steps.append(Step(index, (begin, end), origins, shifts))
    return steps, capacity


# ---------------------------------------------------------------------------------------------
# Choosing a schedule


# The cost model of a schedule beyond layer by layer, in instructions: a call per step (its
# arguments, the layer's set-up, the marker) and the bytes the shifts move. Rough figures for
# Cortex-M cores; only their ratio matters for the choice.
STEP_COST = 150
SHIFT_COST_PER_BYTE = 0.5
BAND_ROWS = (1, 2, 3, 4, 6, 8, 12, 16)


@dataclass(frozen=True)
class Candidate:
    schedule: Schedule
    arena_bytes: int
    extra_cost: float  # the cost model's extra instructions over layer by layer


def extra_cost(schedule: Schedule, graph: Graph, layers: tuple[Layer, ...]) -> float:
    banded = [s for s in schedule.steps if s.layer < schedule.prefix]
    moved = sum((shift.end - shift.keep) * row_bytes(graph, shift.tensor)
                for step in banded for shift in step.shifts)
    return (len(banded) - schedule.prefix) * STEP_COST + moved * SHIFT_COST_PER_BYTE


def candidates(graph: Graph, layers: tuple[Layer, ...], plan_arena) -> list[Candidate]:
    """Every row-band schedule worth trying (each prefix length that can band, each band
    height), with the arena `plan_arena(buffers)` gives it and its extra cost."""
    found = []
    for prefix in range(2, longest_prefix(graph, layers) + 1):
        for band_rows in BAND_ROWS:
            schedule = row_band_schedule(graph, layers, prefix, band_rows)
            arena = plan_arena(arena_buffers(graph, layers, schedule))
            found.append(Candidate(schedule, arena, extra_cost(schedule, graph, layers)))
    return found


def choose(graph: Graph, layers: tuple[Layer, ...], whole: Candidate, budget: int,
           plan_arena) -> Candidate:
    """The cheapest schedule whose arena fits the budget: layer by layer when it does."""
    if whole.arena_bytes <= budget:
        return whole
    found = candidates(graph, layers, plan_arena)
    fitting = [c for c in found if c.arena_bytes <= budget]
    if not fitting:
        smallest = min([whole, *found], key=lambda c: c.arena_bytes).arena_bytes
        raise McugenError(f"no schedule fits an arena of {budget:,} B: the smallest reachable "
                          f"is {smallest:,} B")
    return min(fitting, key=lambda c: (c.extra_cost, c.arena_bytes))
