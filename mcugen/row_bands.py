"""Row-band schedules (patch-based execution by line buffering): the layers of a segment (a run
of consecutive layers) run a few rows at a time, interleaved, so that a tensor living only
inside the segment never exists in full; it is held in a band buffer of the rows that later
steps still read. No row is computed twice: the extra cost is calls and row moves, never MACs.
A schedule may have several segments: each one's band buffers live only while it runs, and
the tensors between segments are whole.

How the steps are found: the last layer of a segment is driven row by row; to compute rows
of a layer, the rows it reads of each input (geometry.input_rows) are computed first,
recursively, a band (at most `band_rows` rows) at a time. So an early, wide tensor holds only
the rows the next layer's window needs before that layer runs on them, and a residual input
only the rows its ADD has not yet read.

Where segments may be: in the layers before the first that cannot run in bands (a global
op: MEAN, FULLY_CONNECTED, a reshape to 1-D, squeeze-and-excitation's broadcast MUL) or that
makes the graph's output. Layout ops band too: a TRANSPOSE or RESHAPE reads its whole input
(at a model's start, the caller's: an NCHW input rearranged to NHWC), a PAD the rows it
shifts, so a converted model is banded from its first layer.

How a band buffer is addressed: a banded layer's function takes, per operand, the first row
its buffer holds (its origin; 0 for a whole tensor). When a step writes rows past the end of a
band buffer, the rows still to be read move to its start first (a `Shift`).
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass

import numpy as np

from .errors import McugenError
from .geometry import columns, input_columns, input_rows, reads_whole_input, rows
from .ir import (Add, Conv2D, DepthwiseConv2D, Graph, Mul, Op, Pad, Quantize, Reshape,
                 SliceColumns, TableLookup, Transpose, op_inputs)
from .kernels import Layer
from .planner import Buffer, live_peak
from .schedule import (Repeat, Schedule, SearchPoint, Shift, Step, arena_buffers, c_statements,
                       find_repeats, narrower_than_rows, row_bytes, step_numbers, whole_step)

# Ops whose kernels can run on a range of output rows (geometry.py: the input rows each
# reads). Global ops (MEAN, fully connected, softmax, squeeze-and-excitation's broadcast MUL)
# end the prefix; layout ops (TRANSPOSE, RESHAPE) read their whole input, so they do not.
BANDED_OPS = (Conv2D, DepthwiseConv2D, Pad, Add, Mul, TableLookup, Quantize, Transpose,
              Reshape, SliceColumns)


def activation_inputs(op: Op, graph: Graph) -> tuple[str, ...]:
    """The op's inputs that are activations, in the order its kernel takes them."""
    key = ("activation_inputs", id(op))  # by identity, as geometry._row_rule says why
    entry = graph.derived.get(key)
    if entry is not None and entry[0] is op:
        return entry[1]
    found = tuple(name for name in op_inputs(op) if not graph.tensor(name).is_constant)
    graph.derived[key] = (op, found)
    return found


def can_band(layer: Layer, graph: Graph) -> bool:
    """Whether the layer can run in row bands: one of our kernels that takes row ranges, on
    image-shaped tensors; an elementwise op only on operands of its output's shape; a layout
    op that reads its whole input (the caller's, or a whole tensor) on an input of any
    shape."""
    op = layer.op
    if not isinstance(op, BANDED_OPS) or not layer.variant.row_ranges \
            or layer.variant.library is not None:
        return False
    shape = graph.tensor(op.output).shape
    inputs = activation_inputs(op, graph)
    if len(shape) != 4 or shape[0] != 1:
        return False
    if reads_whole_input(op):
        return True
    if any(len(graph.tensor(n).shape) != 4 for n in inputs):
        return False
    if isinstance(op, (Add, Mul, TableLookup, Quantize)):
        return len(inputs) == len(op_inputs(op)) and \
            all(graph.tensor(n).shape == shape for n in inputs)
    return True


def buffer_rows(layer: Layer, graph: Graph, begin: int, end: int) -> tuple[int, int]:
    """The input rows [first, last) a banded step computing output rows [begin, end) reads
    from its input's buffer: those its window reads (geometry.input_rows), less, for a kernel
    that keeps the rows it has read in its scratch (Variant.keeps_input_rows: a depthwise
    ring of widened rows), those its previous output row read, which the ring holds. Its band
    buffer then holds only the rows that are new to the ring (VWW's first depthwise reads
    three rows of its input and takes one new row a step)."""
    first, last = input_rows(layer.op, graph, begin, end)
    # Dilated rows down: the ring holds the previous window's rows, a dilation apart, and the
    # next window's are others (dw_conv_s8_mve reads them all again).
    if layer.variant.keeps_input_rows and begin > 0 and layer.op.dilation[0] == 1:
        first = max(first, min(last, input_rows(layer.op, graph, begin - 1, begin)[1]))
    return first, last


def longest_prefix(graph: Graph, layers: tuple[Layer, ...]) -> int:
    """How many layers from the first can run in row bands."""
    for layer in layers:
        if not can_band(layer, graph) or layer.op.output in graph.outputs:
            return layer.index
    return len(layers)


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

    def ready(self, tensor: str) -> int:
        """The rows of the tensor its inputs' rows computed so far already give (its inputs
        made before the segment are whole)."""
        index = self.producer[tensor]
        op = self.layers[index].op
        height = self.graph.tensor(tensor).shape[1]
        rows = self.done[tensor]
        while rows < height:
            _, needed = input_rows(op, self.graph, rows, rows + 1)
            if any(self.done.get(name, needed) < needed
                   for name in activation_inputs(op, self.graph)):
                break
            rows += 1
        return rows


def row_band_schedule(graph: Graph, layers: tuple[Layer, ...],
                      segments: tuple[tuple[int, int], ...], band_rows: int,
                      replay: bool = True) -> Schedule:
    """The steps of a schedule whose segments (layers [begin, end), in order, apart) run in
    bands of at most band_rows output rows, the other layers one step each; with the band
    buffers it needs. replay: checked by verify. The search (estimated) makes hundreds of
    candidates and keeps one: it leaves them unchecked, and the one it chooses is replayed
    (looped verifies it, loops included) before it reaches the C."""
    limit = longest_prefix(graph, layers)
    steps: list[Step] = []
    bands: dict[str, int] = {}
    position = 0
    for begin, end in segments:
        if not position <= begin < end - 1 < limit:
            raise ValueError(f"layers [{begin}, {end}) cannot run in row bands here")
        steps += [whole_step(layer) for layer in layers[position:begin]]
        segment_steps, segment_bands = _segment_steps(graph, layers, begin, end, band_rows)
        steps += segment_steps
        bands.update(segment_bands)
        position = end
    steps += [whole_step(layer) for layer in layers[position:]]
    schedule = Schedule(tuple(steps), bands, tuple(segments), band_rows)
    if replay:
        verify(schedule, graph, layers)
    return schedule


def _segment_steps(graph: Graph, layers: tuple[Layer, ...], begin: int, end: int,
                   band_rows: int) -> tuple[list[Step], dict[str, int]]:
    """The segment's steps and band buffers. Memoized per graph: the search asks for the same
    segment in many segmentations (each part of a double segment is also a single one); keyed
    by the layers' identity, as geometry._row_rule keys ops."""
    key = ("segment_steps", id(layers), begin, end, band_rows)
    entry = graph.derived.get(key)
    if entry is None or entry[0] is not layers:
        found = _segment_steps_found(graph, layers, begin, end, band_rows)
        entry = graph.derived[key] = (layers, found)
    steps, bands = entry[1]
    return list(steps), dict(bands)


def _segment_steps_found(graph: Graph, layers: tuple[Layer, ...], begin: int, end: int,
                         band_rows: int) -> tuple[list[Step], dict[str, int]]:
    producer = {layers[i].op.output: i for i in range(begin, end)}
    later_reads = {name for layer in layers[end:]
                   for name in activation_inputs(layer.op, graph)}
    # In layer order (a dict, not a set): the band buffers' order reaches the schedule, the
    # C and report.json, which must not change with PYTHONHASHSEED.
    bands = dict.fromkeys(name for name in producer
                          if name not in later_reads and name not in graph.outputs)
    order = _Order(graph, layers, producer, band_rows, {name: 0 for name in producer}, [])
    last_output = layers[end - 1].op.output
    # Whole tensors read after the segment besides its last output (a column tile's cached
    # halo, tiles.py): each row as soon as its inputs' rows are there, while their band
    # buffers still hold them.
    side = [name for name in producer if name not in bands and name != last_output]
    for row in range(1, graph.tensor(last_output).shape[1] + 1):
        order.ensure(last_output, row)
        for name in side:
            order.ensure(name, order.ready(name))
    for name in producer:  # whole tensors read after the segment
        order.ensure(name, graph.tensor(name).shape[1])
    return _band_steps(graph, layers, order.steps, bands)


def _band_steps(graph: Graph, layers: tuple[Layer, ...], order: list[tuple[int, int, int]],
                bands: dict[str, None]) -> tuple[list[Step], dict[str, int]]:
    """The banded steps with their origins and shifts, and each band buffer's rows: as many
    as a step's new rows plus the rows that steps after it still read."""
    reads: dict[str, list[tuple[int, int]]] = {name: [] for name in bands}  # (position, first)
    for position, (index, begin, end) in enumerate(order):
        op = layers[index].op
        first, last = buffer_rows(layers[index], graph, begin, end)
        for name in activation_inputs(op, graph):
            if name in bands and last > first:
                reads[name].append((position, first))
    # For each band tensor: the positions of its reads, and the lowest first row read at or
    # after each of them.
    positions = {name: [p for p, _ in r] for name, r in reads.items()}
    lowest_after = {name: np.minimum.accumulate([f for _, f in r][::-1])[::-1].tolist()
                    for name, r in reads.items()}
    keep: dict[int, int] = {}  # per writing step: the first row it or a later step reads
    capacity: dict[str, int] = {name: 1 for name in bands}
    for position, (index, begin, end) in enumerate(order):
        name = layers[index].op.output
        if name in bands:
            later = bisect.bisect_right(positions[name], position)
            lowest = lowest_after[name][later] if later < len(positions[name]) else begin
            keep[position] = min(begin, lowest)
            capacity[name] = max(capacity[name], end - keep[position])
    held = {name: 0 for name in bands}
    steps = []
    full_width = {layer.index: (0, layer.output_columns) for layer in layers}
    for position, (index, begin, end) in enumerate(order):
        op = layers[index].op
        name = op.output
        shifts = ()
        # Also where no row it holds is still to be read: the buffer starts again at this
        # step's rows, moving nothing, so that later steps find room without a move (V1's
        # second depthwise reads two new rows a step from a three-row band: one row moved
        # every other step).
        if name in bands and (end - held[name] > capacity[name]
                              or held[name] < keep[position] == begin):
            shifts = (Shift(name, held[name], keep[position], begin),)
            held[name] = keep[position]
        origins = tuple(held.get(n, 0) for n in activation_inputs(op, graph)) + \
            (held.get(name, 0),)
        # Full-width: every buffer holds whole rows, from column 0.
        steps.append(Step(index, (begin, end), origins, shifts, full_width[index],
                          (0,) * len(origins)))
    return steps, capacity


def rebanded(schedule: Schedule, graph: Graph, layers: tuple[Layer, ...]) -> Schedule:
    """The schedule's segments and band height with these layers' steps and band buffers
    (a layer's variant decides the rows its input's buffer holds: buffer_rows), without
    loops; its other fields kept. Layer by layer: the schedule itself."""
    if not schedule.banded:
        return schedule
    fresh = row_band_schedule(graph, layers, schedule.segments, schedule.band_rows)
    return dataclasses.replace(schedule, steps=fresh.steps, bands=fresh.bands, repeats=())


def looped(schedule: Schedule, graph: Graph, layers: tuple[Layer, ...]) -> Schedule:
    """The schedule with its periodic runs of banded steps as loops (Repeat), replayed."""
    schedule = dataclasses.replace(schedule, repeats=find_repeats(schedule.steps))
    verify(schedule, graph, layers)
    return schedule


def program_steps(schedule: Schedule) -> list[Step]:
    """The steps the C runs, in order: a loop's iterations computed from its body and
    increments, as the C computes them."""
    steps: list[Step] = []
    position = 0
    for node in schedule.program():
        if isinstance(node, Repeat):
            assert node.start == position and node.count >= 2 and node.body, node
            for step, increment in zip(node.body, node.increments):
                assert step.origins is not None and \
                    len(increment) == len(step_numbers(step)), (node, step)
            if node.runs:  # guards: within the loop, its first and last iterations not empty
                assert len(node.runs) == len(node.moves) == len(node.body), node
                assert min(r.first for r in node.runs) == 0 and \
                    max(r.last for r in node.runs) == node.count, node
                for runs, moves in zip(node.runs, node.moves):
                    assert 0 <= runs.first < runs.last <= node.count, node
                    assert all(runs.first <= m.first < m.last <= runs.last for m in moves), node
            for i in range(node.count):
                steps += node.iteration(i)
        else:
            steps.append(node)
        position = len(steps)
    return steps


def verify(schedule: Schedule, graph: Graph, layers: tuple[Layer, ...]) -> None:
    """Replay the schedule region by region as the C runs it (loops included) and check what
    the generated C relies on: each loop iteration (its statements that run, where guards
    fold a fill or drain in) is the unrolled steps it replaces, as the C runs them; every
    row a banded step reads from a buffer (buffer_rows) has been written and is still in
    it, at the origin the step is given, and a kernel that keeps the rows it read runs its
    steps in order from row 0; every row written fits its buffer; a shift keeps what it
    claims; the columns a step reads and writes are in its operands' views (`_verify_columns`). Raises
    AssertionError (a bug in mcugen, never the user's) otherwise."""
    # The steps below are the program's, as the C runs them (calls and the moves of rows
    # before them; c_statements): replaying them replays every loop iteration.
    program = program_steps(schedule)
    assert len(program) == len(schedule.steps) and all(
        c_statements(a) == c_statements(b) for a, b in zip(program, schedule.steps)), \
        "a loop is not its steps"
    present: dict[str, set[int]] = {name: set() for name in schedule.bands}
    held = {name: 0 for name in schedule.bands}
    done: dict[str, int] = {name: rows(graph.tensor(name).shape) for name in graph.inputs}
    columns_checked: set[tuple] = set()
    tiles: dict[str, np.ndarray] = {}  # whole tensors written by column regions (pixels)
    next_row: dict[int, int] = {}  # per layer keeping its input rows: its next step's first
    for step in schedule.steps:
        layer = layers[step.layer]
        op = layer.op
        if step.origins is None or step.rows is None:
            assert op.output not in schedule.bands
            assert step.columns in (None, (0, layer.output_columns)), step  # whole rows
            done[op.output] = rows(graph.tensor(op.output).shape)
            continue
        # The columns do not change with the rows: a layer's steps have one region's columns
        # and one set of views, checked once (rebanded trials replay whole schedules).
        columns_key = (step.layer, step.columns, step.column_origins)
        if columns_key not in columns_checked:
            _verify_columns(step, layer, graph)
            columns_checked.add(columns_key)
        for shift in step.shifts:
            name = shift.tensor
            assert name == op.output and shift.held == held[name], shift
            assert set(range(shift.keep, shift.end)) <= present[name], shift
            present[name] = {r for r in present[name] if shift.keep <= r < shift.end}
            held[name] = shift.keep
        begin, end = step.rows
        if layer.variant.keeps_input_rows:
            assert begin == next_row.get(step.layer, 0), ("rows kept from another step", step)
            next_row[step.layer] = end
        first, last = buffer_rows(layer, graph, begin, end)
        inputs = activation_inputs(op, graph)
        assert len(step.origins) == len(inputs) + 1
        narrow = narrower_than_rows(step, layer)
        for operand, (name, origin) in enumerate(zip(inputs, step.origins)):
            if name in schedule.bands:
                assert not narrow, ("a band buffer holds whole rows: no column region", step)
                assert origin == held[name], (step, name)
                assert set(range(first, last)) <= present[name], (step, name)
                assert last - origin <= schedule.bands[name], (step, name)
            elif narrow and done.get(name, 0) < last:  # rows still in column regions
                read = input_columns(op, graph, *step.columns, operand)
                assert origin == 0 and name in tiles and \
                    tiles[name][first:last, read[0]:read[1]].all(), (step, name)
            else:
                assert origin == 0 and done.get(name, 0) >= last, (step, name)
        name = op.output
        assert step.origins[-1] == held.get(name, 0)
        if name in schedule.bands:
            assert not narrow, ("a band buffer holds whole rows: no column region", step)
            assert end - held[name] <= schedule.bands[name], step
            present[name] |= set(range(begin, end))
        elif narrow:
            done[name] = _written_region(tiles, done.get(name, 0), name,
                                         graph.tensor(name).shape, step)
        else:
            assert done.get(name, 0) == begin and name not in tiles, step
            done[name] = end


def _written_region(tiles: dict[str, np.ndarray], done: int, name: str,
                    shape: tuple[int, ...], step: Step) -> int:
    """A whole tensor's pixels written so far by steps of column regions (`tiles`, rows by
    columns): the step's region, written once, after the rows written whole (done). Returns
    the rows written whole now (done, advanced over the rows whose every column is)."""
    (begin, end), (first, last) = step.rows, step.columns
    written = tiles.setdefault(name, np.zeros((rows(shape), columns(shape)), bool))
    assert begin >= done and not written[begin:end, first:last].any(), \
        ("a column region written twice", step)
    written[begin:end, first:last] = True
    while done < len(written) and written[done].all():
        done += 1
    return done


def _verify_columns(step: Step, layer: Layer, graph: Graph) -> None:
    """A banded step's columns: inside its output; each input's columns that its output
    region reads (geometry.input_columns), and the output's it writes, lie in the operand's
    buffer from its view's column on (a band buffer holds whole rows, as a whole tensor
    does); a region narrower than a row only for a variant that computes one
    (Variant.columns). Every buffer holds whole rows from column 0 (a whole tensor, a band
    of rows): no schedule makes buffers of columns yet, so every view starts at column 0."""
    op = layer.op
    assert step.columns is not None and 0 <= step.columns[0] < step.columns[1] <= \
        layer.output_columns, ("columns outside the output", step)
    assert layer.variant.columns or step.columns == (0, layer.output_columns), (
        f"kernel {layer.variant.name} computes whole rows (no Variant.columns): no column "
        f"region", step)
    inputs = activation_inputs(op, graph)
    spans = [(*input_columns(op, graph, *step.columns, operand),
              columns(graph.tensor(name).shape)) for operand, name in enumerate(inputs)]
    spans.append((*step.columns, columns(graph.tensor(op.output).shape)))
    origins = step.column_origins
    assert origins is not None and len(origins) == len(spans) == len(step.origins), step
    for origin, (first, last, width) in zip(origins, spans):
        assert origin <= first and last <= origin + width, ("columns outside the view", step)
    assert not any(origins), ("every buffer holds whole rows from column 0", step)


# ---------------------------------------------------------------------------------------------
# Choosing a schedule


# The cost model of a schedule beyond layer by layer, in instructions: a call per step (its
# arguments, the layer's set-up, the marker) and the bytes the shifts move. Rough figures for
# Cortex-M cores; only their ratio matters for the choice.
STEP_COST = 150
SHIFT_COST_PER_BYTE = 0.5
BAND_ROWS = (1, 2, 4)
PLANS_TRIED = 12  # candidates planned, cheapest first, before giving up on a budget
SMALLEST_PLANNED = 4  # then the smallest estimates, planned


@dataclass(frozen=True)
class Candidate:
    schedule: Schedule
    arena_bytes: int  # planned, or estimated (live_peak) before planning
    extra_cost: float  # the cost model's extra instructions over layer by layer


def extra_cost(schedule: Schedule, graph: Graph) -> float:
    banded = [s for s in schedule.steps if s.origins is not None]
    moved = sum((shift.end - shift.keep) * row_bytes(graph, shift.tensor)
                for step in banded for shift in step.shifts)
    layers = sum(end - begin for begin, end in schedule.segments)
    return (len(banded) - layers) * STEP_COST + moved * SHIFT_COST_PER_BYTE


def cut_points(graph: Graph, layers: tuple[Layer, ...]) -> list[int]:
    """Where a segment may begin or end: 0, the end of the layers that can band, and each
    boundary where the bytes of the tensors crossing it are a local minimum (the narrow
    tensors between blocks), so that segments end on small whole tensors."""
    limit = longest_prefix(graph, layers)
    crossing = []
    for cut in range(1, limit + 1):
        # The graph's input is the caller's (outside the arena): a later layer reading it
        # (a column tile's first, tiles.py) does not make a cut dearer.
        made = {layer.op.output for layer in layers[:cut]}
        read = {n for layer in layers[cut:] for n in activation_inputs(layer.op, graph)}
        crossing.append(sum(graph.tensor(n).nbytes for n in made & read))
    minima = [cut for cut in range(1, limit + 1)
              if (cut == 1 or crossing[cut - 1] <= crossing[cut - 2])
              and (cut == limit or crossing[cut - 1] <= crossing[cut])]
    return sorted({0, limit, *minima})


def single_segments(cuts: list[int]) -> list[tuple[tuple[int, int], ...]]:
    return [((a, b),) for i, a in enumerate(cuts) for b in cuts[i + 1:] if b - a >= 2]


def double_segments(cuts: list[int]) -> list[tuple[tuple[int, int], ...]]:
    """Two segments that meet at a cut, the first from layer 0 (where MobileNets' peak is)."""
    return [((0, m), (m, b)) for i, m in enumerate(cuts) for b in cuts[i + 1:]
            if m >= 2 and b - m >= 2]


def estimated(graph: Graph, layers: tuple[Layer, ...],
              segmentations: list[tuple[tuple[int, int], ...]], band_rows: int
              ) -> list[Candidate]:
    found = []
    for segments in segmentations:
        schedule = row_band_schedule(graph, layers, segments, band_rows, replay=False)
        found.append(Candidate(schedule, live_peak(arena_buffers(graph, layers, schedule)),
                               extra_cost(schedule, graph)))
    return found


class _Tried:
    """Every candidate the search looked at, once per (segments, band rows), in the order it
    first saw them: with its planned arena once it was planned, else the estimate."""

    def __init__(self) -> None:
        self.points: dict[tuple, tuple[Candidate, bool]] = {}

    def add(self, candidates: list[Candidate], planned: bool) -> list[Candidate]:
        for candidate in candidates:
            key = (candidate.schedule.segments, candidate.schedule.band_rows)
            if planned or key not in self.points:
                self.points[key] = (candidate, planned)
        return candidates

    def chosen(self, candidate: Candidate) -> Candidate:
        """The chosen candidate, its schedule carrying the points (the chosen one marked)."""
        mine = (candidate.schedule.segments, candidate.schedule.band_rows)
        points = tuple(SearchPoint(c.schedule.describe(), c.arena_bytes, planned,
                                   c.extra_cost, key == mine)
                       for key, (c, planned) in self.points.items())
        return dataclasses.replace(candidate, schedule=dataclasses.replace(
            candidate.schedule, search=points))


def choose(graph: Graph, layers: tuple[Layer, ...], whole: Candidate, budget: int,
           plan_arena) -> Candidate:
    """The cheapest schedule whose arena (`plan_arena(buffers)`) fits the budget: layer by
    layer when it does. Otherwise one segment between two cut points, or two; in bands of one
    row, then of more rows (fewer steps) where those fit too; the candidates whose estimate
    fits are planned, cheapest first, then those of the smallest estimates. None fitting: an
    error naming the smallest arena found (the same candidates whatever the budget, so that
    asking for that arena gets it). The chosen schedule carries every candidate tried
    (Schedule.search), layer by layer among them."""
    if whole.arena_bytes <= budget:
        return whole
    tried = _Tried()
    tried.add([whole], planned=True)
    cuts = cut_points(graph, layers)
    found = tried.add(estimated(graph, layers, single_segments(cuts) + double_segments(cuts), 1),
                      planned=False)
    hopeful = sorted((c for c in found if c.arena_bytes <= budget),
                     key=lambda c: (c.extra_cost, c.arena_bytes))[:PLANS_TRIED]
    for band_rows in BAND_ROWS[1:]:
        hopeful += [c for c in tried.add(estimated(graph, layers,
                                                   [c.schedule.segments for c in hopeful],
                                                   band_rows), planned=False)
                    if c.arena_bytes <= budget]
    for candidate in sorted(hopeful, key=lambda c: (c.extra_cost, c.arena_bytes))[:PLANS_TRIED]:
        arena = plan_arena(arena_buffers(graph, layers, candidate.schedule))
        planned, = tried.add([Candidate(candidate.schedule, arena, candidate.extra_cost)],
                             planned=True)
        if arena <= budget:
            return tried.chosen(planned)
    # The smallest estimates, planned: what the error names is what this budget would get.
    smallest = tried.add([Candidate(c.schedule, plan_arena(arena_buffers(graph, layers,
                                                                         c.schedule)),
                                    c.extra_cost)
                          for c in sorted(found, key=lambda c: c.arena_bytes)[:SMALLEST_PLANNED]],
                         planned=True)
    fitting = [c for c in smallest if c.arena_bytes <= budget]
    if fitting:
        return tried.chosen(min(fitting, key=lambda c: (c.extra_cost, c.arena_bytes)))
    raise NoScheduleFits(budget, min([whole.arena_bytes] + [c.arena_bytes for c in smallest]))


class NoScheduleFits(McugenError):
    """No schedule the search tried fits the budget; `smallest` is the smallest arena found."""

    def __init__(self, budget: int, smallest: int) -> None:
        super().__init__(f"no schedule fits an arena of {budget:,} B: the smallest reachable "
                         f"is {smallest:,} B")
        self.budget, self.smallest = budget, smallest
