"""report.html: the report as a page that needs nothing but a browser (inline SVG, no script,
no network). Python decides every number and coordinate here; templates/report.html.j2 only
lays them out, and Jinja escapes every string (model names and file names come from users).

The page is rendered from the Report alone and generically: the layer table shows every field
of LayerStats, so fields added later appear without a change here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jinja2

from .errors import McugenError
from .resources import templates_dir

BAR_WIDTH = 200  # px of the longest bar in a per-layer column
ROW_HEIGHT = 18
LABEL_WIDTH = 190
VALUE_WIDTH = 90  # px for the figure after each bar
PLAN_WIDTH = 760  # px of the memory plan's layer axis
PLAN_HEIGHT = 300  # px of its offset axis
MARGIN = 50
COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")
# The per-layer quantities drawn as bars, when the report has them (instructions and cycles:
# after a run).
LAYER_BARS = (("macs", "MACs", "#4e79a7"), ("weight_bytes", "weights (bytes)", "#59a14f"),
              ("instructions", "instructions (QEMU)", "#e15759"),
              ("cycles", "estimated cycles", "#b07aa1"),
              ("board_cycles", "cycles on the board", "#76b7b2"))


@dataclass(frozen=True)
class Bar:
    y: float
    text_y: float
    width: float
    value: str  # the figure, right of the bar
    tooltip: str


@dataclass(frozen=True)
class Column:
    """One quantity across the layers: a bar per layer, scaled to its largest value."""

    title: str
    colour: str
    x: float  # where the bars start
    value_x: float  # where the figures start
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Label:
    y: float
    text: str


@dataclass(frozen=True)
class LayerChart:
    labels: tuple[Label, ...]  # the layers, down the left
    columns: tuple[Column, ...]
    title_y: float
    bar_height: float
    width: int
    height: int


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str  # shown as a tooltip


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class MemoryPlan:
    rects: tuple[Rect, ...]
    x_ticks: tuple[Tick, ...]  # layer numbers, above the plot: position is x
    x_ticks_y: float
    y_ticks: tuple[Tick, ...]  # offsets, right of the plot: position is the baseline's y
    y_ticks_x: float
    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    x_title_y: float
    y_title_y: float
    x_title: str  # "layer", or "step" when banded layers run in several steps


@dataclass(frozen=True)
class Segment:
    x: float
    width: float
    text_x: float
    colour: str
    label: str


@dataclass(frozen=True)
class Budget:
    """One stacked bar: what the model uses of a memory, against the target's capacity."""

    title: str
    segments: tuple[Segment, ...]
    total: str
    capacity: str  # "" when the target states none
    capacity_x: float | None  # where the capacity's line is drawn
    over: bool  # more than the capacity: drawn to stand out
    width: int
    bar_y: float
    bar_height: float
    line_bottom: float
    text_y: float
    height: int


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]  # right-aligned columns


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    radius: float
    colour: str
    filled: bool  # planned; hollow: the search's estimate only
    title: str  # shown as a tooltip


@dataclass(frozen=True)
class TradeOff:
    """The schedule search's candidates: the cost model's extra instructions across, the
    arena up; the chosen one marked."""

    dots: tuple[Dot, ...]
    chosen: Dot
    x_ticks: tuple[Tick, ...]  # below the plot: position is x
    x_ticks_y: float
    y_ticks: tuple[Tick, ...]  # left of the plot: position is the baseline's y
    y_ticks_x: float
    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    x_title_y: float
    count: int  # candidates drawn


@dataclass(frozen=True)
class Page:
    title: str
    alerts: tuple[str, ...]  # what must stand out at the top: a memory over the target's
    facts: tuple[tuple[str, str], ...]
    chart: LayerChart | None
    plan: MemoryPlan | None
    trade_off: TradeOff | None
    budgets: tuple[Budget, ...]
    layers: Table
    memory_plan_text: str


def render_html(report) -> str:
    try:
        template = _environment().get_template("report.html.j2")
    except jinja2.TemplateError as error:
        raise McugenError(f"cannot load the HTML report template: {error}") from None
    return template.render(page=page_of(report))


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir()), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True)


def page_of(report) -> Page:
    return Page(
        title=f"{report.model}: mcugen report for {report.target}",
        alerts=_alerts(report),
        facts=_facts(report),
        chart=_layer_chart(report),
        plan=_memory_plan(report),
        trade_off=_trade_off(report),
        budgets=_budgets(report),
        layers=_layer_table(report),
        memory_plan_text=report.memory_plan)


def _alerts(report) -> tuple[str, ...]:
    uses = getattr(report, "memory_use", None) or ()
    return tuple(f"{use.memory}: {use.used:,} B of the target's {use.capacity:,} B "
                 f"({use.capacity_name}), {use.usage} (built with --no-memory-check)"
                 for use in uses if use.over)


def _facts(report) -> tuple[tuple[str, str], ...]:
    facts = [("compiled from", str(report.source)), ("target", str(report.target)),
             ("made by", f"mcugen {getattr(report, 'mcugen_version', '?')}"),
             ("layers", f"{len(report.layers):,}"),
             ("MACs per inference", f"{report.macs:,}"),
             *((("dead channels", report.dead_channel_text),)
               if getattr(report, "dead_channel_text", None) else ()),
             ("weights and biases", f"{report.weight_bytes:,} B"),
             ("constant tables in flash", f"{report.const_bytes:,} B"),
             ("arena (static RAM for activations)", f"{report.arena_bytes:,} B"),
             ("input / output (caller's buffers)",
              f"{report.input_bytes:,} B {report.input_type} / {report.output_bytes:,} B "
              f"{report.output_type}")]
    if getattr(report, "folded", None):
        facts.append(("constant folding", report.folded_line))
    regions = getattr(report, "regions", None)
    if regions:
        facts.append(("arena by RAM region", ", ".join(
            f"{r['name']} {r['arena_bytes']:,} B of {r['region_bytes']:,}" for r in regions)))
    schedule = getattr(report, "schedule", None)
    facts.append(("schedule", "layer by layer" if not schedule else
                  f"{schedule['description']} ({schedule['reason']}): arena "
                  f"{schedule['layer_by_layer_arena']:,} B layer by layer -> "
                  f"{schedule['arena']:,} B; extra MACs {schedule['extra_macs']:,}; "
                  f"{schedule['steps']:,} steps; "
                  f"{schedule['moved_bytes']:,} B of rows moved"))
    run = getattr(report, "run", None)
    if run:
        per = run.get("instructions")
        facts.append(("measured in QEMU",
                      f"{per:,} instructions per inference on {run.get('qemu_board')} "
                      f"({report.macs / per:.3f} MACs per instruction), "
                      f"{'bit-exact' if run.get('bit_exact') else 'NOT bit-exact'} with the "
                      f"{run.get('checked_against', 'reference')} on "
                      f"{run.get('inferences')} inputs" if per else str(run)))
        cycles = run.get("cycles")
        if cycles:
            at_clock = (f", {run['milliseconds']:.2f} ms at {report.target}'s "
                        f"{run['clock_hz'] / 1e6:g} MHz" if run.get("milliseconds") else "")
            facts.append(("estimated cycles",
                          f"{cycles:,.0f} per inference ({report.macs / cycles:.3f} MACs per "
                          f"cycle){at_clock}: {run.get('cycle_model')}, weighted by QEMU's "
                          f"execution counts; without {run.get('cycles_ignore')}"))
        elif run.get("cycles_not_estimated"):
            facts.append(("estimated cycles", f"not estimated: {run['cycles_not_estimated']}"))
    profile = getattr(report, "profile", None)
    if profile:
        from .profile import profile_line

        facts.append(("measured on the board", profile_line(profile, report.macs)
                      + f" (from {profile['log']})"))
    selftest = getattr(report, "selftest", None)
    if selftest:
        from .selftest import selftest_summary

        facts.append(("self-check", selftest_summary(selftest)))
    return tuple(facts)


def _layer_chart(report) -> LayerChart | None:
    """The layers down the left, one column of bars per quantity the report has."""
    if not report.layers:
        return None
    top = ROW_HEIGHT + 4  # room for the column titles
    columns, x = [], float(LABEL_WIDTH)
    for field, title, colour in LAYER_BARS:
        values = [getattr(layer, field, None) for layer in report.layers]
        if all(v is None for v in values):
            continue
        largest = max((v for v in values if v is not None), default=0) or 1
        bars = tuple(
            Bar(y=top + i * ROW_HEIGHT + 3, text_y=top + i * ROW_HEIGHT + 14,
                width=(v or 0) / largest * BAR_WIDTH,
                value=_figure(v),
                tooltip=f"layer {layer.index} {layer.op}: {_figure(v)}")
            for i, (layer, v) in enumerate(zip(report.layers, values)))
        columns.append(Column(title=title, colour=colour, x=x, value_x=x + BAR_WIDTH + 4,
                              bars=bars))
        x += BAR_WIDTH + VALUE_WIDTH
    labels = tuple(Label(y=top + i * ROW_HEIGHT + 14, text=f"{layer.index} {layer.op}")
                   for i, layer in enumerate(report.layers))
    return LayerChart(labels=labels, columns=tuple(columns), title_y=ROW_HEIGHT - 4,
                      bar_height=ROW_HEIGHT - 5, width=int(x) + 10,
                      height=top + len(labels) * ROW_HEIGHT + 4)


def _figure(value) -> str:
    """A bar's figure: whole numbers (estimated cycles are rounded)."""
    return "-" if value is None else f"{value:,.0f}" if isinstance(value, float) else f"{value:,}"


def _memory_plan(report) -> MemoryPlan | None:
    """Buffers as rectangles: steps (time) across, arena offsets down. A step is a layer, or
    with row bands one band of rows of a layer: the axis says which it counts."""
    buffers = list(getattr(report, "buffers", None) or ())
    if not buffers or report.arena_bytes <= 0:
        return None
    steps = max(max(b.last for b in buffers) + 1, len(report.layers), 1)
    by_layer = steps == len(report.layers)
    unit = "layer" if by_layer else "step"
    x_scale = PLAN_WIDTH / steps
    y_scale = PLAN_HEIGHT / report.arena_bytes
    # With --ram-regions the regions' arenas are drawn one below the other, in their order.
    bases, base = {}, 0
    for region in getattr(report, "regions", None) or ():
        bases[region["name"]] = base
        base += region["arena_bytes"]
    rects = []
    for number, buffer in enumerate(sorted(buffers, key=lambda b: (b.first, b.offset))):
        region = getattr(buffer, "region", None)
        y = bases.get(region, 0) + buffer.offset
        scratch = getattr(buffer, "kind", "activation") == "scratch"
        rects.append(Rect(
            x=MARGIN + buffer.first * x_scale, y=MARGIN + y * y_scale,
            width=max((buffer.last - buffer.first + 1) * x_scale - 1, 1),
            height=max(buffer.size * y_scale, 1),
            colour="#bab0ac" if scratch else COLOURS[number % len(COLOURS)],
            title=f"{buffer.id}: {buffer.size:,} B at offset {buffer.offset:,}"
                  f"{' in ' + region if region else ''}, "
                  f"{unit}s {buffer.first} to {buffer.last}"))
    x_every = max(1, steps // 15)
    x_ticks = tuple(Tick(MARGIN + (i + 0.5) * x_scale, str(i)) for i in range(0, steps, x_every))
    y_ticks = tuple(Tick(MARGIN + f * PLAN_HEIGHT + 4, f"{round(f * report.arena_bytes):,}")
                    for f in (0, 0.25, 0.5, 0.75, 1))
    return MemoryPlan(rects=tuple(rects), x_ticks=x_ticks, x_ticks_y=MARGIN - 6,
                      y_ticks=y_ticks, y_ticks_x=MARGIN + PLAN_WIDTH + 4,
                      width=PLAN_WIDTH + 2 * MARGIN + 40, height=PLAN_HEIGHT + 2 * MARGIN,
                      left=MARGIN, top=MARGIN, plot_width=PLAN_WIDTH, plot_height=PLAN_HEIGHT,
                      x_title_y=MARGIN - 22, y_title_y=MARGIN + PLAN_HEIGHT + 18,
                      x_title="layer" if by_layer else
                      f"step ({steps:,} steps for {len(report.layers)} layers: a banded layer "
                      f"runs in several)")


def _trade_off(report) -> TradeOff | None:
    """The candidates the schedule search tried (report.schedule's search), when it ran."""
    points = ((getattr(report, "schedule", None) or {}).get("search")) or []
    if not points:
        return None
    top_arena = max(p["arena_bytes"] for p in points) or 1
    top_cost = max(p["extra_instructions"] for p in points) or 1
    left, top = MARGIN + 30, MARGIN // 2

    def place(point) -> tuple[float, float]:
        return (left + point["extra_instructions"] / top_cost * PLAN_WIDTH,
                top + (1 - point["arena_bytes"] / top_arena) * PLAN_HEIGHT)

    dots = []
    for point in points:
        x, y = place(point)
        dots.append(Dot(
            x=x, y=y, radius=7 if point["chosen"] else 4,
            colour="#e15759" if point["chosen"] else COLOURS[0], filled=point["planned"],
            title=f"{point['description']}: arena {point['arena_bytes']:,} B "
                  f"({'planned' if point['planned'] else 'estimated'}), "
                  f"{point['extra_instructions']:,.0f} extra instructions (cost model)"
                  f"{', chosen' if point['chosen'] else ''}"))
    chosen = next(dot for dot, point in zip(dots, points) if point["chosen"])
    fractions = (0, 0.25, 0.5, 0.75, 1)
    return TradeOff(
        dots=tuple(dots), chosen=chosen,
        x_ticks=tuple(Tick(left + f * PLAN_WIDTH, f"{f * top_cost:,.0f}") for f in fractions),
        x_ticks_y=top + PLAN_HEIGHT + 16,
        y_ticks=tuple(Tick(top + (1 - f) * PLAN_HEIGHT + 4, f"{round(f * top_arena):,}")
                      for f in fractions),
        y_ticks_x=left - 6, width=PLAN_WIDTH + left + MARGIN, height=PLAN_HEIGHT + top + 50,
        left=left, top=top, plot_width=PLAN_WIDTH, plot_height=PLAN_HEIGHT,
        x_title_y=top + PLAN_HEIGHT + 36, count=len(points))


def _budgets(report) -> tuple[Budget, ...]:
    measured = getattr(report, "measured", None) or {}
    if measured:
        flash = [("code", measured.get("code_bytes", 0)),
                 ("constant tables", measured.get("weight_bytes", 0))]
        ram = [("arena", measured.get("arena_bytes", report.arena_bytes)),
               ("other static data", measured.get("other_ram_bytes", 0)),
               ("stack (worst case)", measured.get("stack_bytes", 0))]
    else:  # not compiled for a core here: what the compiler knows
        flash = [("constant tables", report.const_bytes)]
        ram = [("arena", report.arena_bytes)]
    flash_capacity, ram_capacity, ram_name = _capacities(report.target)
    return (_budget("flash", flash, flash_capacity, "flash"),
            _budget("RAM", ram, ram_capacity, ram_name))


def _capacities(target_name: str) -> tuple[int | None, int | None, str]:
    from .targets import load_target

    try:
        target = load_target(target_name)
    except (McugenError, KeyError, ValueError):  # a report from elsewhere: draw without limits
        return None, None, "RAM"
    if target.is_host:
        return None, None, "RAM"
    region = f"largest RAM region ({target.largest_ram})" if target.kind == "part" else "RAM"
    return target.flash_bytes, target.ram_bytes, region


def _budget(title: str, parts: list[tuple[str, int]], capacity: int | None,
            capacity_name: str) -> Budget:
    used = sum(size for _, size in parts)
    scale_to = max(used, capacity or 0, 1)
    left, width = 10, PLAN_WIDTH
    segments, x = [], float(left)
    label_x = float(left)
    for number, (name, size) in enumerate(parts):
        w = size / scale_to * width
        label = f"{name} {size:,} B"
        segments.append(Segment(x=x, width=w, text_x=max(x, label_x) + 2,
                                colour=COLOURS[number % len(COLOURS)], label=label))
        label_x = max(x, label_x) + 7 * len(label) + 12  # labels of thin segments must not overlap
        x += w
    return Budget(
        title=title, segments=tuple(segments), total=f"{used:,} B",
        capacity=(f"{capacity_name} of the target: {capacity:,} B ({used / capacity:.0%} used"
                  + (f": OVER THE LIMIT by {used - capacity:,} B)" if used > capacity else ")")
                  if capacity else ""),
        capacity_x=left + capacity / scale_to * width if capacity else None,
        over=bool(capacity) and used > capacity,
        width=max(int(label_x) + 20, width + 2 * left), bar_y=4, bar_height=20, line_bottom=28,
        text_y=40,
        height=48)


def _layer_table(report) -> Table:
    if not report.layers:
        return Table(header=(), rows=(), numeric=())
    names = [f.name for f in dataclasses.fields(report.layers[0])]
    rows = tuple(tuple(_cell(getattr(layer, name, None)) for name in names)
                 for layer in report.layers)
    numeric = tuple(all(isinstance(getattr(layer, name, None), (int, float, type(None)))
                        for layer in report.layers) for name in names)
    return Table(header=tuple(name.replace("_", " ") for name in names), rows=rows,
                 numeric=numeric)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):  # large ones (estimated cycles) whole, as the integers
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        return "x".join(map(str, value))  # a shape
    if isinstance(value, (list, tuple)):
        return _steps_cell(value)
    return str(value)


def _steps_cell(steps) -> str:
    """A layer's steps (LayerStats.steps: each its output rows [begin, end), or None for the
    whole output) in a few words, however many there are: "whole", or "48 steps, rows 0-96 in
    bands of 2"."""
    ranges = [s for s in steps if isinstance(s, (list, tuple)) and len(s) == 2]
    if not ranges:
        return "whole" if len(steps) == 1 else f"{len(steps):,} steps"
    heights = sorted({end - begin for begin, end in ranges})
    bands = (f"{heights[0]}" if len(heights) == 1 else f"{heights[0]}-{heights[-1]}")
    rows = f"rows {min(b for b, _ in ranges)}-{max(e for _, e in ranges)}"
    count = f"{len(steps):,} step{'s' * (len(steps) > 1)}"
    return f"{count}, {rows} in bands of {bands}"
