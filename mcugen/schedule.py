"""The schedule: the order in which layers compute their outputs, as a list of steps, and the
arena buffers that order implies.

A step is one layer computing one region of its output: a range of rows by a range of
columns (geometry.Region; full-width, except where a variant computes columns:
Variant.columns, column_layers), each operand addressed through a view, the row and column of
the tensor its buffer starts at. Layer by layer, every layer is
one step that computes its whole output. In a row-band schedule (patch-based execution, see
``row_bands``) the layers of a segment run interleaved a few rows at a time, and each tensor
that lives only inside its segment is held in a band buffer of a few rows: the rows a later
step still reads. Everything after this stage (buffer lifetimes, the firmware's
layer markers, per-step instruction counts) counts steps, not ops.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .geometry import Region, windows
from .ir import Graph, Op, Pad, SliceColumns, op_inputs, op_outputs
from .kernels import Layer
from .kernels.variant import Order
from .planner import Buffer, Overlap, streaming_distance


@dataclass(frozen=True)
class Shift:
    """Before a step writes new rows into a full band buffer: the rows [keep, end) that later
    steps still read move to the buffer's start (the buffer held rows from `held` on)."""

    tensor: str
    held: int
    keep: int
    end: int


@dataclass(frozen=True)
class View:
    """Where an operand of a step is read or written from: its buffer holds the tensor from
    this row and this column on (0, 0 for a whole tensor)."""

    row: int
    column: int


@dataclass(frozen=True)
class Step:
    layer: int  # index of the layer (and op)
    rows: tuple[int, int] | None  # output rows [begin, end); None: the whole output at once
    # Banded steps only: the first row each operand's buffer holds (the activation inputs in
    # order, then the output); 0 for a whole tensor. With column_origins, the operands' views.
    origins: tuple[int, ...] | None = None
    shifts: tuple[Shift, ...] = ()  # done just before the step
    # Output columns [begin, end) (with rows: the step's region); None where rows is None.
    columns: tuple[int, int] | None = None
    # Banded steps only: the first column each operand's buffer holds, as origins.
    column_origins: tuple[int, ...] | None = None

    @property
    def region(self) -> Region | None:
        """The output pixels the step computes (None: the whole output, in one call)."""
        if self.rows is None or self.columns is None:
            return None
        return Region(self.rows, self.columns)

    @property
    def views(self) -> tuple[View, ...] | None:
        """Per operand (the activation inputs in order, then the output), its view."""
        if self.origins is None:
            return None
        columns = self.column_origins or (0,) * len(self.origins)
        return tuple(View(row, column) for row, column in zip(self.origins, columns))


def step_numbers(step: Step) -> tuple[int, ...]:
    """The numbers of a banded step that may change from one band to the next: its rows, its
    origins, each shift's held, keep and end rows, then (where the step has them) its columns
    and its column origins."""
    return (*step.rows, *step.origins,
            *(n for shift in step.shifts for n in (shift.held, shift.keep, shift.end)),
            *(step.columns or ()), *(step.column_origins or ()))


def step_shape(step: Step) -> tuple:
    """What must be equal for two banded steps to be one statement of a loop: the layer, its
    operands' count, which tensors its shifts move and whether they move any row (a shift of
    no rows is no statement in the C), and whether it has columns and column origins."""
    return step.layer, len(step.origins), tuple((shift.tensor, shift.end > shift.keep)
                                                for shift in step.shifts), \
        step.columns is not None, step.column_origins is not None


def advanced(step: Step, increments: tuple[int, ...], times: int) -> Step:
    """The step with each of its numbers (step_numbers) advanced `times` times its
    increment."""
    numbers = [n + times * d for n, d in zip(step_numbers(step), increments)]
    rows, origins = tuple(numbers[:2]), tuple(numbers[2:2 + len(step.origins)])
    fields = numbers[2 + len(step.origins):]
    shifts = tuple(Shift(shift.tensor, *fields[3 * k:3 * k + 3])
                   for k, shift in enumerate(step.shifts))
    fields = fields[3 * len(step.shifts):]
    columns = tuple(fields[:2]) if step.columns is not None else None
    column_origins = tuple(fields[len(columns or ()):]) if step.column_origins is not None \
        else None
    return Step(step.layer, rows, origins, shifts, columns, column_origins)


@dataclass(frozen=True)
class Runs:
    """The iterations [first, last) of a loop in which one of its body's statements (a call,
    or a band move) runs: a software pipeline's fill and drain folded into its loop, each
    statement guarded by the iterations in which its layer (or its move) has work."""

    first: int
    last: int

    def __contains__(self, i: int) -> bool:
        return self.first <= i < self.last


@dataclass(frozen=True)
class Repeat:
    """A loop over banded steps: the steps from `start` on are `count` iterations of the body,
    iteration i's step j being body[j] with its numbers (step_numbers) advanced by i times
    increments[j]. The generated C runs it as a `for` loop whose row and origin arguments are
    affine in the iteration; the schedule's steps stay unrolled, so that lifetimes, markers
    and per-step counts do not change.

    A loop that also runs the pipeline's fill and drain (extended: `extend_repeats`) guards
    statements: body[j]'s call runs in iterations `runs[j]` (every one where runs is empty),
    and its band moves (its shifts that move rows, in order) in `moves[j]`, each within its
    call's; a step of an iteration keeps only the moves that run there (a move of no rows is
    no statement in the C either)."""

    start: int
    body: tuple[Step, ...]
    count: int
    increments: tuple[tuple[int, ...], ...]
    runs: tuple[Runs, ...] = ()
    moves: tuple[tuple[Runs, ...], ...] = ()

    @property
    def end(self) -> int:
        if not self.runs:
            return self.start + self.count * len(self.body)
        return self.start + sum(r.last - r.first for r in self.runs)

    def iteration(self, i: int) -> tuple[Step, ...]:
        """The steps iteration i runs, in order (with guards: only those whose call runs)."""
        steps = []
        for j, (step, increment) in enumerate(zip(self.body, self.increments)):
            if self.runs and i not in self.runs[j]:
                continue
            advanced_step = advanced(step, increment, i)
            shifts, moving = [], iter(self.moves[j] if self.moves else ())
            for shift, body in zip(advanced_step.shifts, step.shifts):
                # The C moves a band only where the body's shift moves rows (step_shape).
                assert moves_rows(body) or not moves_rows(shift), ("a move not in the C", shift)
                if not (self.moves and moves_rows(body)) or i in next(moving):
                    shifts.append(shift)
            steps.append(dataclasses.replace(advanced_step, shifts=tuple(shifts)))
        return tuple(steps)


def moves_rows(shift: Shift) -> bool:
    """Whether a shift is a statement in the C (it moves at least one row)."""
    return shift.end > shift.keep


def c_statements(step: Step) -> tuple:
    """What the C does for a step: its call's numbers, and the moves of rows before it (a
    shift that moves nothing is no statement: it only says where the band starts again,
    which the call's origins carry)."""
    return step.layer, step.rows, step.origins, step.columns, step.column_origins, tuple(
        shift for shift in step.shifts if moves_rows(shift))


@dataclass(frozen=True)
class SearchPoint:
    """One schedule the row-band search looked at (row_bands.choose): what report.html draws
    as the search's trade-off, arena against the cost model's extra instructions."""

    description: str  # Schedule.describe()
    arena_bytes: int  # planned, or live_peak's estimate when the search did not plan it
    planned: bool
    extra_instructions: float  # the cost model's (row_bands.extra_cost), beyond layer by layer
    chosen: bool = False


@dataclass(frozen=True)
class Schedule:
    steps: tuple[Step, ...]
    bands: dict[str, int]  # tensor held in a band buffer -> rows the buffer holds
    segments: tuple[tuple[int, int], ...] = ()  # layers [begin, end) that run in row bands
    band_rows: int = 0  # rows a banded step computes at most
    reason: str = ""  # why the schedule is not layer by layer
    search: tuple[SearchPoint, ...] = ()  # the candidates the search tried, when it ran
    # With column tiles (tiles.py): the source model's layers they run, e.g. "layers 0-7 in 2
    # column tiles" (the steps then count the tiled graph's layers), and the MACs their halos
    # compute twice.
    tiles: str = ""
    extra_macs: int = 0
    repeats: tuple[Repeat, ...] = ()  # runs of steps emitted as loops, in order, apart

    @property
    def banded(self) -> bool:
        return bool(self.segments)

    def is_banded(self, layer: int) -> bool:
        return any(begin <= layer < end for begin, end in self.segments)

    def describe(self) -> str:
        """The segments, e.g. "layers 0-12, 13-22 in bands of at most 1 row"."""
        if not self.banded:
            return f"the model's {self.tiles}, then layer by layer" if self.tiles else \
                "layer by layer"
        segments = ", ".join(f"{begin}-{end - 1}" for begin, end in self.segments)
        rows = f"{self.band_rows} row{'s' if self.band_rows > 1 else ''}"
        bands = f"layers {segments} in row bands of at most {rows}"
        return f"the model's {self.tiles}, then {bands}" if self.tiles else bands

    def program(self) -> list[Step | Repeat]:
        """The steps as the C runs them: each step outside a loop, and the loops."""
        program: list[Step | Repeat] = []
        position = 0
        for repeat in self.repeats:
            program += self.steps[position:repeat.start]
            program.append(repeat)
            position = repeat.end
        return program + list(self.steps[position:])

    def band_bytes(self, graph: Graph, tensor: str) -> int:
        """The size of a band buffer: its rows of the tensor."""
        return self.bands[tensor] * row_bytes(graph, tensor)


MIN_REPEAT_STEPS = 4  # a loop replaces at least this many steps beyond its body


def find_repeats(steps: tuple[Step, ...]) -> tuple[Repeat, ...]:
    """The periodic runs of banded steps, as loops: the run that saves the most statements
    first, then the same in what is left on either side of it."""
    # Per step: its loop shape (None for a whole step, never in a loop) and its numbers.
    shapes = [step_shape(step) if step.origins is not None else None for step in steps]
    numbers = [step_numbers(step) if step.origins is not None else () for step in steps]
    repeats: list[Repeat] = []
    pending = [(0, len(steps))]
    while pending:
        begin, end = pending.pop()
        best = _most_saving(shapes, numbers, begin, end)
        if best is None:
            continue
        start, period, count = best
        body = steps[start:start + period]
        increments = tuple(_difference(numbers[start + j], numbers[start + period + j])
                           for j in range(period))
        repeats.append(Repeat(start, body, count, increments))
        pending += [(begin, start), (start + count * period, end)]
    return extend_repeats(steps, tuple(sorted(repeats, key=lambda r: r.start)))


def extend_repeats(steps: tuple[Step, ...], repeats: tuple[Repeat, ...]) -> tuple[Repeat, ...]:
    """Each loop with as much as it can take of the unrolled steps before and after it (up to
    its neighbours): a band pipeline's fill and drain run the body's statements in the same
    order, each layer from the iteration where its rows begin to the one where they end, so
    that iterations before and after the loop are its body with statements guarded off
    (Repeat.runs, Repeat.moves). A statement whose call or move differs from the step it
    would be is guarded off from there outwards; the steps left over stay unrolled."""
    extended: list[Repeat] = []
    for n, repeat in enumerate(repeats):
        floor = extended[-1].end if extended else 0
        ceiling = repeats[n + 1].start if n + 1 < len(repeats) else len(steps)
        before = _matched(steps, repeat, -1, floor)
        after = _matched(steps, repeat, +1, ceiling)
        extended.append(_guarded(repeat, before, after))
    return tuple(extended)


def _matched(steps: tuple[Step, ...], repeat: Repeat, direction: int, limit: int
             ) -> list[tuple[int, int, tuple[int, ...]]]:
    """Walking out of the loop (direction -1: back from its start down to step `limit`; +1:
    on from its end up to `limit`), the iterations beyond it as the steps there are: per
    iteration, in the order walked, (iteration, statement, the indices of its moves that run
    among its shifts that move rows) for each body statement whose call is the step's."""
    period = len(repeat.body)
    moving = [[k for k, shift in enumerate(step.shifts) if moves_rows(shift)]
              for step in repeat.body]
    calls = set(range(period))  # statements still running
    moves = [set(range(len(m))) for m in moving]
    order = range(period - 1, -1, -1) if direction < 0 else range(period)
    position = repeat.start - 1 if direction < 0 else repeat.end
    i = -1 if direction < 0 else repeat.count
    matched: list[tuple[int, int, tuple[int, ...]]] = []
    within = (lambda p: p >= limit) if direction < 0 else (lambda p: p < limit)
    while calls and within(position):
        for j in order:
            if j not in calls or not within(position):
                continue
            runs = _runs_as(steps[position], advanced(repeat.body[j], repeat.increments[j], i),
                            repeat.body[j], moving[j], moves[j])
            if runs is None:
                calls.discard(j)  # and in every iteration further out
                continue
            moves[j] = runs
            matched.append((i, j, tuple(sorted(runs))))
            position += direction
        i += direction
    return matched


def _runs_as(actual: Step, candidate: Step, body: Step, moving: list[int], running: set[int]
             ) -> set[int] | None:
    """Whether a body statement's candidate (its numbers advanced to an iteration outside the
    loop) is the actual step in the C (c_statements) once some of its running moves are
    guarded off: the moves that run, or None."""
    if actual.origins is None or c_statements(actual)[:5] != c_statements(candidate)[:5]:
        return None
    if any(moves_rows(shift) and not moves_rows(b) for shift, b in zip(candidate.shifts,
                                                                       body.shifts)):
        return None  # a move the loop's C does not have
    actual_moves = c_statements(actual)[5]
    runs = {k for k in running if candidate.shifts[moving[k]] in actual_moves}
    if tuple(candidate.shifts[moving[k]] for k in sorted(runs)) != actual_moves:
        return None
    return runs


def _guarded(repeat: Repeat, before: list, after: list) -> Repeat:
    """The loop over its own iterations and those matched before and after it, iteration 0
    its first: each statement's call and moves guarded by the iterations they run in."""
    if not before and not after:
        return repeat
    earliest = min((i for i, _, _ in before), default=0)
    latest = max((i for i, _, _ in after), default=repeat.count - 1)
    period = len(repeat.body)
    moving = [sum(moves_rows(shift) for shift in step.shifts) for step in repeat.body]
    first = [0] * period
    last = [repeat.count] * period
    move_first = [[0] * n for n in moving]
    move_last = [[repeat.count] * n for n in moving]
    for i, j, runs in before:  # walked outwards: each match is further out
        first[j] = i
        for k in runs:
            move_first[j][k] = i
    for i, j, runs in after:
        last[j] = i + 1
        for k in runs:
            move_last[j][k] = i + 1
    shift = -earliest
    return Repeat(
        start=repeat.start - len(before),
        body=tuple(advanced(step, increment, earliest)
                   for step, increment in zip(repeat.body, repeat.increments)),
        count=latest + 1 + shift, increments=repeat.increments,
        runs=tuple(Runs(a + shift, b + shift) for a, b in zip(first, last)),
        moves=tuple(tuple(Runs(a + shift, b + shift) for a, b in zip(f, g))
                    for f, g in zip(move_first, move_last)))


def _difference(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(y - x for x, y in zip(a, b))


def _most_saving(shapes: list, numbers: list, begin: int, end: int
                 ) -> tuple[int, int, int] | None:
    """Among the runs within steps [begin, end): (start, period, count) of the one that
    replaces the most steps, if one replaces enough."""
    best, best_saved = None, MIN_REPEAT_STEPS - 1
    for start in range(begin, end):
        if shapes[start] is None:
            continue
        for period in range(1, (end - start) // 2 + 1):
            if end - start - period <= best_saved:
                break  # not even a run to the end could save more
            if shapes[start + period] != shapes[start]:
                continue
            count = _iterations(shapes, numbers, start, period, end)
            if (count - 1) * period > best_saved:
                best, best_saved = (start, period, count), (count - 1) * period
    return best


def _iterations(shapes: list, numbers: list, start: int, period: int, end: int) -> int:
    """How many times the body, steps [start, start + period), runs from start with each of
    its statements' numbers advancing by the same increment every time (1: not even twice)."""
    if any(shapes[start + period + j] != shapes[start + j] or shapes[start + j] is None
           for j in range(period)):
        return 1
    increments = [_difference(numbers[start + j], numbers[start + period + j])
                  for j in range(period)]
    count = 2
    while start + (count + 1) * period <= end:
        base = start + count * period
        if not all(shapes[base + j] == shapes[start + j] and numbers[base + j] == tuple(
                n + count * d for n, d in zip(numbers[start + j], increments[j]))
                   for j in range(period)):
            break
        count += 1
    return count


def row_bytes(graph: Graph, tensor: str) -> int:
    t = graph.tensor(tensor)
    _, _, width, channels = t.shape
    return width * channels * np.dtype(t.dtype).itemsize


def layer_by_layer(layers: tuple[Layer, ...]) -> Schedule:
    """One step per layer, each computing its whole output."""
    return Schedule(tuple(whole_step(layer) for layer in layers), {})


def whole_step(layer: Layer) -> Step:
    """The layer's whole output in one step: all its rows and columns where its kernel takes
    a row range, else no region (the kernel has no rows to take)."""
    if not layer.variant.row_ranges:
        return Step(layer.index, None)
    return Step(layer.index, (0, layer.output_rows), columns=(0, layer.output_columns))


def narrower_than_rows(step: Step, layer: Layer) -> bool:
    """Whether a step gives its layer a region narrower than its rows, or a view from another
    column than 0: what only a variant with `columns` computes."""
    return step.origins is not None and step.columns is not None and (
        step.columns != (0, layer.output_columns) or any(step.column_origins or ()))


def column_layers(schedule: Schedule, layers: tuple[Layer, ...]) -> frozenset[int]:
    """The layers some step gives a region narrower than a row (or a view from another
    column): their functions also take the step's columns and each operand's column origin
    (kernels/layer.j2 `signature`). AssertionError (a bug in the schedule, never the user's)
    where such a layer's variant computes whole rows only (Variant.columns)."""
    found = frozenset(step.layer for step in schedule.steps
                      if narrower_than_rows(step, layers[step.layer]))
    for index in sorted(found):
        variant = layers[index].variant
        assert variant.columns, (
            f"layer {index}'s kernel {variant.name} computes whole rows (no Variant.columns): "
            f"a step gives it columns narrower than its rows or a view from another column")
    return found


def scratch_id(index: int) -> str:
    """The planner's id for layer index's scratch buffer (no tensor is named like this)."""
    return f"<scratch of layer {index}>"


def arena_buffers(graph: Graph, layers: tuple[Layer, ...], schedule: Schedule
                  ) -> list[Buffer]:
    """One buffer per intermediate activation (graph input and output live in the caller's
    memory), alive from the first step that writes it to the last step that reads it, with
    the overlaps that the layers' access orders allow; a band buffer for a tensor held in row
    bands; one per layer scratch, alive while its layer's steps run."""
    steps = schedule.steps
    external = set(graph.inputs) | set(graph.outputs)
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    layer_steps: dict[int, list[int]] = {}
    # Per layer, not per step: a banded schedule has many steps per layer, and the search
    # asks this of hundreds of candidates.
    names = [(op_outputs(layer.op), op_inputs(layer.op)) for layer in layers]
    for position, step in enumerate(steps):  # positions increase: the last step is this one
        layer_steps.setdefault(step.layer, []).append(position)
        outputs, inputs = names[step.layer]
        for name in outputs:
            first.setdefault(name, position)
            last[name] = position
        for name in inputs:
            last[name] = position
    buffers = []
    for layer in layers:
        positions = layer_steps[layer.index]
        op = layer.op
        for name in op_outputs(op):
            if name in external:
                continue
            if name in schedule.bands:
                buffers.append(Buffer(name, schedule.band_bytes(graph, name), first[name],
                                      last[name]))
                continue
            # A banded layer's operands are addressed from their origins: none overlaps.
            overlaps = () if schedule.is_banded(layer.index) else tuple(
                Overlap(other=source, distance=distance)
                for source, distance in _overwritable_inputs(layer, graph)
                if source not in external and last[source] == positions[-1])
            # A column tile's cached halo (tiles.py) is small and lives through the second
            # tile: the planner also places it into the gaps of the others' plan.
            buffers.append(Buffer(name, graph.tensor(name).nbytes, first[name], last[name],
                                  overlaps, placed_last=isinstance(op, SliceColumns)))
        if layer.scratch_bytes:
            buffers.append(Buffer(scratch_id(layer.index), layer.scratch_bytes, positions[0],
                                  positions[-1], fill_in=True))
    return buffers


def _overwritable_inputs(layer: Layer, graph: Graph) -> list[tuple[str, int]]:
    """The inputs the layer's output may be written over, with the distance its access order
    needs between the two. Memoized per graph, keyed by the layer's identity (the layer kept
    beside it): the schedule search asks it of every layer of every candidate."""
    key = ("overwritable_inputs", id(layer))
    entry = graph.derived.get(key)
    if entry is None or entry[0] is not layer:
        entry = graph.derived[key] = (layer, _overwritable_inputs_found(layer, graph))
    return entry[1]


def _overwritable_inputs_found(layer: Layer, graph: Graph) -> list[tuple[str, int]]:
    op, access = layer.op, layer.access
    if access.order is Order.ELEMENTWISE:
        shape = graph.tensor(op.output).shape
        return [(name, 0) for name in dict.fromkeys(op_inputs(op))
                if graph.tensor(name).shape == shape and not graph.tensor(name).is_constant]
    if access.order is Order.RASTER:
        return [(op.input, streaming_distance(*streaming_order(op, graph,
                                                               access.block_pixels)))]
    return []


def streaming_order(op: Op, graph: Graph, block_pixels: int = 1
                    ) -> tuple[np.ndarray, np.ndarray]:
    """For a kernel writing in raster order, per output pixel p: the end of the output bytes
    written up to p, and the first input byte read by pixel p's window or a later one (see
    planner.streaming_distance)."""
    _, in_h, in_w, in_c = graph.tensor(op.input).shape
    _, out_h, out_w, out_c = graph.tensor(op.output).shape
    oy, ox = np.divmod(np.arange(out_h * out_w, dtype=np.int64), out_w)
    # A window (geometry.windows: a convolution's, or PAD's one shifted tap) may start before
    # its input's first row or column when padded.
    rows, columns = windows(op, graph)
    first_row = np.clip(oy * rows.stride - rows.before, 0, in_h - 1)
    first_col = np.clip(ox * columns.stride - columns.before, 0, in_w - 1)
    if isinstance(op, Pad):  # a padding row reads nothing: its next read is the next real one
        first_col = np.where(oy < rows.before, 0, first_col)
    first_read = (first_row * in_w + first_col) * in_c
    # Kernels read pixel p's input while they write pixel p, so the reads still to come when
    # pixel p is written begin at the lowest first read of pixel p and every later pixel.
    next_read = np.minimum.accumulate(first_read[::-1])[::-1]
    # A kernel that computes a block of pixels together may write any of them while it still
    # reads the first pixel of the block.
    block_start = np.arange(out_h * out_w) // block_pixels * block_pixels
    next_read = next_read[block_start]
    write_end = (np.arange(1, out_h * out_w + 1, dtype=np.int64)) * out_c
    return write_end, next_read
