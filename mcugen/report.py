"""What a compiled model costs: per layer and in total (MACs, weights, arena), as JSON and text."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from . import __version__
from .codegen import template_environment
from .errors import McugenError
from .ir import Conv2D, DepthwiseConv2D, FullyConnected, Graph, Op, TableLookup, op_inputs
from .kernels import Layer
from .kernels.variant import const_arrays
from .planner import Buffer, Plan, format_plan
from .schedule import Schedule, row_bytes
from .targets import Target


@dataclass(frozen=True)
class LayerStats:
    index: int
    op: str
    kernel: str  # the variant that runs the layer (kernels/*.py)
    isa: str  # the instruction set it needs
    library: str | None  # the library it calls, if any
    input_shape: list[int]
    output_shape: list[int]
    macs: int
    weight_bytes: int  # the model's weights and biases read by this layer
    const_bytes: int  # the tables emitted for it (weights, biases, multipliers, shifts)
    arena_offset: int | None  # None when the output is the caller's buffer
    arena_bytes: int  # size of its output in the arena (0 when it is the caller's)
    steps: list[list[int] | None]  # the output rows [begin, end) of each of its steps
    banded: bool = False  # runs in row bands (in one of the schedule's segments)
    rows_held: int | None = None  # a banded output held in a band buffer: its rows
    instructions: int | None = None  # measured by `mcugen run` (QEMU, exact), per inference
    cycles: float | None = None  # estimated by `mcugen run` (mcugen/cycles.py), per inference
    board_cycles: int | None = None  # measured on the board (--profile; mcugen/profile.py)


@dataclass(frozen=True)
class BufferStats:
    """One buffer of the memory plan: where it lives in the arena and while which layers."""

    id: str
    offset: int
    size: int
    first: int  # the first step that writes it (with one step per layer, the layer)
    last: int  # the last step that reads it
    region: str | None = None  # with --ram-regions: the RAM region (offset is within it)
    kind: str = "activation"  # "scratch": a kernel's working memory during one layer;
    # "band": the rows of a tensor that a row-band schedule holds at once


@dataclass(frozen=True)
class Report:
    model: str
    source: str
    target: str
    layers: list[LayerStats]
    macs: int
    weight_bytes: int
    const_bytes: int
    arena_bytes: int
    input_bytes: int
    output_bytes: int
    memory_plan: str
    measured: dict | None = None  # MeasuredSizes from the target's compiler, when it ran
    buffers: list[BufferStats] = field(default_factory=list)  # the memory plan, as data
    # From `mcugen run`: qemu_board, inferences, instructions, bit_exact, and the cycle estimate
    # (mcugen/cycles.cycles_facts: cycles, cycle_model, clock_hz, milliseconds...).
    run: dict | None = None
    # A row-band schedule (None: layer by layer): segments, band_rows, reason, steps,
    # layer_by_layer_arena, arena, moved_bytes, bands (tensor -> rows held), search (each
    # candidate the search tried: schedule.SearchPoint's fields, the chosen one marked).
    schedule: dict | None = None
    step_layers: list[int] = field(default_factory=list)  # the layer of each step, in order
    # With --ram-regions: each region's name, arena bytes and the region's size.
    regions: list[dict] | None = None
    mcugen_version: str = __version__  # the mcugen that made the C and this report
    # passes.dead_channels: channels, macs (removed), macs_before, layers, constant_kept
    dead_channels: dict | None = None
    folded: list[str] = field(default_factory=list)  # the model's ops evaluated at import
    input_type: str = "int8"  # the caller's buffers' element types
    output_type: str = "int8"
    # --selftest: vectors, kinds, oracle, layers_from_oracle, checksum, data_bytes, ram_bytes,
    # and measured (flash_bytes, ram_bytes of NAME_selftest.o) when the cross compiler ran.
    selftest: dict | None = None
    # `mcugen report --profile-log`: counter, log, blocks, cycles per layer, total, clock_hz,
    # milliseconds (mcugen/profile.py).
    profile: dict | None = None

    @property
    def memory_use(self) -> list[MemoryUse]:
        return memory_use(self)

    @property
    def dead_channel_text(self) -> str | None:
        return dead_channel_text(self.dead_channels)

    @property
    def folded_line(self) -> str:
        """"folded at compile time: SHAPE, STRIDED_SLICE, PACK (3 ops)", or ""."""
        return folded_line(self.folded)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def to_markdown(self) -> str:
        return template_environment().get_template("report.md.j2").render(report=self)

    def to_html(self) -> str:
        from .report_html import render_html

        return render_html(self)

    def files(self) -> dict[str, str]:
        """The report files of an output folder."""
        return {"report.json": self.to_json(), "report.md": self.to_markdown(),
                "report.html": self.to_html()}


@dataclass(frozen=True)
class MemoryUse:
    """What the model takes of one of the target's memories, against its capacity."""

    memory: str  # "flash" or "RAM"
    what: str  # what is counted
    used: int
    capacity: int | None  # None: the target states none (the host)
    capacity_name: str  # e.g. "flash", "largest RAM region (SRAM1)"

    @property
    def percent(self) -> float | None:
        return None if not self.capacity else 100.0 * self.used / self.capacity

    @property
    def over(self) -> bool:
        return self.capacity is not None and self.used > self.capacity

    @property
    def usage(self) -> str:
        """e.g. "323 % used: OVER THE LIMIT by 2,335,012 B" (the report's words)."""
        if self.percent is None:
            return "-"
        text = f"{self.percent:.0f} % used"
        return f"{text}: OVER THE LIMIT by {self.used - self.capacity:,} B" if self.over else text


def memory_use(report: Report) -> list[MemoryUse]:
    """Flash and RAM against the target's: measured sizes when the target's compiler ran,
    otherwise the constant tables and the arena (what the memory check compares). A build with
    --no-memory-check may be over; the reports then say so loudly."""
    from .targets import load_target

    measured = report.measured or {}
    if measured:
        flash = ("code + constant tables (measured)",
                 measured.get("code_bytes", 0) + measured.get("weight_bytes", 0))
        ram = ("arena + other static data + stack (measured)",
               measured.get("arena_bytes", report.arena_bytes)
               + measured.get("other_ram_bytes", 0) + measured.get("stack_bytes", 0))
    else:
        flash = ("constant tables", report.const_bytes)
        ram = ("arena", report.arena_bytes)
    try:
        target = load_target(report.target)
    except (McugenError, KeyError, ValueError):  # a report from elsewhere: no limits
        target = None
    if target is None or target.is_host:
        return [MemoryUse("flash", *flash, None, "flash"), MemoryUse("RAM", *ram, None, "RAM")]
    region = f"largest RAM region ({target.largest_ram})" if target.kind == "part" else "RAM"
    return [MemoryUse("flash", *flash, target.flash_bytes, "flash"),
            MemoryUse("RAM", *ram, target.ram_bytes, region)]


def dead_channel_text(summary: dict | None) -> str | None:
    """e.g. "1,708 channels removed in 17 layers: 3,747,573 of 7,489,664 MACs (50.0 %)";
    None when there were none (passes.dead_channels)."""
    if not summary or not (summary["channels"] or summary["constant_kept"]):
        return None
    text = (f"{summary['channels']:,} channels removed in {summary['layers']} layers: "
            f"{summary['macs']:,} of {summary['macs_before']:,} MACs "
            f"({100 * summary['macs'] / max(summary['macs_before'], 1):.1f} %)")
    if summary["constant_kept"]:
        text += (f"; {summary['constant_kept']} constant channels kept (their readers cannot "
                 f"fold them)")
    return text


def folded_line(kinds: list[str] | tuple[str, ...]) -> str:
    if not kinds:
        return ""
    count = len(kinds)
    return (f"folded at compile time: {', '.join(dict.fromkeys(kinds))} "
            f"({count} op{'s' if count != 1 else ''})")


def op_label(op: Op) -> str:
    """The op's TFLite name; an op compiled to a lookup table says which op it was."""
    return f"{op.source} (table)" if isinstance(op, TableLookup) else op.OP


def count_macs(op: Op, graph: Graph) -> int:
    """Multiply-accumulates of the convolutions and fully connected layers."""
    if isinstance(op, (Conv2D, DepthwiseConv2D)):
        _, kh, kw, filter_c = graph.tensor(op.filter).shape
        per_output = kh * kw * (filter_c if isinstance(op, Conv2D) else 1)
        return graph.tensor(op.output).size * per_output
    if isinstance(op, FullyConnected):
        return graph.tensor(op.weights).size * (graph.tensor(op.output).size
                                                // graph.tensor(op.weights).shape[0])
    return 0


def format_regions(buffers: list[Buffer], plan: Plan) -> str:
    """The memory plan's picture: of the arena, or of each RAM region's."""
    if plan.regions is None:
        return format_plan(buffers, plan)
    parts = []
    for index, (name, size) in enumerate(plan.regions):
        inside = [b for b in buffers if plan.region(b.id) == index]
        parts.append(f"{name} ({size:,} B):\n" + format_plan(inside, Plan(plan.offsets, size)))
    return "\n\n".join(parts)


def schedule_stats(schedule: Schedule, graph: Graph, plan: Plan, whole_arena: int
                   ) -> dict | None:
    if not schedule.banded and not schedule.tiles:
        return None
    moved = sum((shift.end - shift.keep) * row_bytes(graph, shift.tensor)
                for step in schedule.steps for shift in step.shifts)
    return dict(segments=[list(s) for s in schedule.segments], band_rows=schedule.band_rows,
                description=schedule.describe(), reason=schedule.reason,
                steps=len(schedule.steps), layer_by_layer_arena=whole_arena,
                arena=plan.arena_size, moved_bytes=moved, extra_macs=schedule.extra_macs,
                bands=dict(schedule.bands),
                search=[asdict(point) for point in schedule.search])


def build_report(graph: Graph, layers: tuple[Layer, ...], schedule: Schedule,
                 buffers: list[Buffer], plan: Plan, target: Target, *, model: str,
                 source: str, whole_arena: int | None = None,
                 dead_channels: dict | None = None) -> Report:
    steps = schedule.steps
    stats = []
    for layer in layers:
        op = layer.op
        constants = [graph.tensor(n) for n in op_inputs(op) if graph.tensor(n).is_constant]
        in_arena = op.output in plan.offsets
        stats.append(LayerStats(
            index=layer.index, op=op_label(op), kernel=layer.variant.name,
            isa=layer.variant.isa.value, library=layer.variant.library,
            input_shape=list(graph.tensor(op.input).shape),
            output_shape=list(graph.tensor(op.output).shape),
            macs=count_macs(op, graph),
            weight_bytes=sum(t.nbytes for t in constants),
            const_bytes=sum(a.nbytes for a in const_arrays(layer.params)),
            arena_offset=plan.offsets[op.output] if in_arena else None,
            arena_bytes=(schedule.band_bytes(graph, op.output) if op.output in schedule.bands
                         else graph.tensor(op.output).nbytes) if in_arena else 0,
            banded=schedule.is_banded(layer.index),
            rows_held=schedule.bands.get(op.output),
            steps=[list(step.rows) if step.rows else None
                   for step in steps if step.layer == layer.index]))
    return Report(
        model=model, source=source, target=target.name, layers=stats,
        macs=sum(s.macs for s in stats), weight_bytes=sum(s.weight_bytes for s in stats),
        const_bytes=sum(s.const_bytes for s in stats), arena_bytes=plan.arena_size,
        input_bytes=graph.input.nbytes, output_bytes=graph.output.nbytes,
        memory_plan=format_regions(buffers, plan),
        buffers=[BufferStats(b.id, plan.offsets[b.id], b.size, b.first, b.last,
                             None if plan.regions is None else plan.regions[plan.region(b.id)][0],
                             "scratch" if b.fill_in else
                             "band" if b.id in schedule.bands else "activation")
                 for b in buffers if b.id in plan.offsets],
        regions=None if plan.regions is None else [
            dict(name=name, arena_bytes=size,
                 region_bytes=next(r.bytes for r in target.ram_regions if r.name == name))
            for name, size in plan.regions],
        schedule=schedule_stats(schedule, graph, plan,
                                plan.arena_size if whole_arena is None else whole_arena),
        step_layers=[step.layer for step in steps], dead_channels=dead_channels,
        folded=list(graph.folded), input_type=graph.input.dtype,
        output_type=graph.output.dtype)
