"""The compiler pipeline, stage by stage: IR -> passes -> kernels -> schedule -> memory plan ->
sources.

Kernels are chosen before memory is planned because a kernel's access order decides whether
an output may be written over its input (and how much scratch it needs); the schedule comes
between the two because buffer lifetimes are counted in steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from . import estimate, ir, row_bands, tiles
from .codegen import ModelView, build_model_view, check_arena_kind, render_sources
from .errors import McugenError
from .ir import Graph
from .kernels import Layer, check_layouts, layout_group, lower_layers
from .kernels.cmsis_nn import cmsis_path
from .passes.dead_channels import remove_dead_channels, summarize
from .passes.fold_pad import fold_pad
from .passes.lookup_table import lookup_tables
from .passes.quantize import quantize_constants
from .passes.reshape import elide_reshape
from .planner import Buffer, Plan, plan_around, plan_memory, plan_regions
from .report import Report, build_report, count_macs
from .schedule import Schedule, Step, arena_buffers, layer_by_layer
from .targets import Target


@dataclass(frozen=True)
class CompiledModel:
    graph: Graph  # after the passes: what the C computes, and what the reference interprets
    layers: tuple[Layer, ...]  # one per op: the variant that runs it and its parameters
    schedule: Schedule
    buffers: tuple[Buffer, ...]
    plan: Plan
    view: ModelView
    sources: dict[str, str]  # file name -> text
    report: Report

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.schedule.steps


def prepare(graph: Graph, kernel_set: str = "mcugen") -> Graph:
    """The IR passes, in order; the result is verified. Dead channels are removed for mcugen's
    kernels only: the CMSIS-NN build stands for what TFLM with CMSIS-NN computes."""
    rewrites = [fold_pad, elide_reshape, quantize_constants, lookup_tables]
    if kernel_set == "mcugen":
        rewrites.append(remove_dead_channels)
    for rewrite in rewrites:
        graph = rewrite(graph)
        ir.verify(graph)
    return graph


def compile_graph(graph: Graph, *, name: str, target: Target, source: str,
                  memory_check: bool = True, kernel_set: str = "mcugen",
                  max_ram: int | None = None, fit_ram: int | None = None,
                  weights_section: str | None = None,
                  ram_regions: bool = False, profile: bool = False,
                  arena: str = "static") -> CompiledModel:
    """max_ram: the arena may not exceed it (a row-band schedule if layer by layer does not
    fit; an error naming the smallest reachable arena if none fits). fit_ram: without
    max_ram, the RAM the arena should fit if a row-band schedule can make it. arena: "static"
    (NAME.c holds it) or "caller" (NAME_invoke_arena takes it; codegen.ARENA_KINDS)."""
    check_arena_kind(arena)
    source_graph, graph = graph, prepare(graph, kernel_set)
    layers = lower_layers(graph, target, name, kernel_set)
    graph, layers, (schedule, buffers, plan, whole_arena) = choose_graph_and_schedule(
        graph, layers, max_ram, fit_ram,
        lambda g, lean, small=0: lower_layers(g, target, name, kernel_set, lean=lean,
                                              small_scratch=small))
    if ram_regions:
        plan = plan_regions(buffers, region_capacities(target))
    library = any(layer.variant.library for layer in layers)
    view = build_model_view(graph, layers, schedule, plan, name, source,
                            cmsis_path(target) if library else None, weights_section,
                            target=f"{target.name} ({target.description})",
                            profile_arch=check_profile_target(target) if profile else None,
                            caller_arena=arena == "caller")
    report = build_report(graph, layers, schedule, buffers, plan, target, model=name,
                          source=source, whole_arena=whole_arena,
                          dead_channels=summarize(source_graph, graph).as_dict())
    if memory_check:  # with ram_regions, plan_regions has checked each region
        target.check_fits(report.const_bytes, 0 if ram_regions else report.arena_bytes)
    return CompiledModel(graph, layers, schedule, tuple(buffers), plan, view,
                         render_sources(view), report)


# The small-scratch tiers (Variant.small_scratch) a layer tries, in order, where its fast
# variant's scratch does not fit.
SCRATCH_TIERS = (1, 2)


def choose_graph_and_schedule(graph: Graph, layers: tuple[Layer, ...], max_ram: int | None,
                              fit_ram: int | None,
                              lower: Callable[..., tuple[Layer, ...]]):
    """The graph, its layers and their schedule: choose_layers_and_schedule's where it fits
    the budget with the fastest variants. Otherwise also the cheapest that fits with the
    model's first layers in column tiles (tiles.py), by the same search and cost model plus
    the halos' MACs; of the two that fit, the cheaper, each with the cost of the slower
    variants it needs (variant_cost): VWW at --max-ram 14K fits in row bands only with the
    lean kernels (6,690,331 instructions on M7), in tiles with faster ones (6,160,491)."""
    budget = max_ram if max_ram is not None else fit_ram
    try:
        chosen = choose_layers_and_schedule(graph, layers, max_ram, fit_ram,
                                            lambda: lower(graph, True),
                                            lambda: tuple(lower(graph, False, tier)
                                                          for tier in SCRATCH_TIERS))
        fits = budget is None or chosen[1][2].arena_size <= budget
        failure = None
    except row_bands.NoScheduleFits as error:
        chosen, fits, failure = None, False, error
    if fits:
        slower = 0.0 if budget is None else variant_cost(graph, chosen[0], layers)
        if slower == 0:
            return (graph, *chosen)
        banded_cost = search_cost(chosen[1][0]) + slower
    tiled = _tiled_choice(graph, layers, budget, max_ram, fit_ram, lower)
    if isinstance(tiled, tuple):
        tiled_cost, tiled_choice = tiled
        return tiled_choice if not fits or tiled_cost < banded_cost else (graph, *chosen)
    if failure is not None:
        raise row_bands.NoScheduleFits(budget, min(failure.smallest, tiled))
    return (graph, *chosen)


def search_cost(schedule: Schedule) -> float:
    """The extra instructions the search estimated for the schedule it chose: a tiled one's
    include its halos' (tiles.halo_cost), which are all a tiled graph layer by layer costs
    (its search did not run: COST_PER_MAC a halo MAC); 0 layer by layer."""
    chosen = [p.extra_instructions for p in schedule.search if p.chosen]
    return chosen[0] if chosen else schedule.extra_macs * tiles.COST_PER_MAC


def variant_cost(graph: Graph, layers: tuple[Layer, ...], fast: tuple[Layer, ...]) -> float:
    """The instructions the layers' variants are estimated to cost beyond the fastest ones
    (`fast`, as selection makes them without a budget): Variant.slower_per_mac per MAC."""
    return sum(count_macs(op, graph) * max(0.0, layer.variant.slower_per_mac(op, graph)
                                           - quick.variant.slower_per_mac(op, graph))
               for op, layer, quick in zip(graph.ops, layers, fast))


def _tiled_choice(graph: Graph, layers: tuple[Layer, ...], budget: int, max_ram: int | None,
                  fit_ram: int | None, lower: Callable[..., tuple[Layer, ...]]):
    """The cheapest schedule that fits the budget with layers [0, end) in column tiles, for
    each end where the row-band search may end a segment and the halos cost at most
    estimate.MAX_HALO_SHARE of the model's MACs, recomputed or cached, with its cost:
    row_bands' cost, plus the halo's (tiles.halo_cost), plus the slower variants'
    (variant_cost) once each
    layer has the fastest variant that fits (faster_where_they_fit). Per end, the schedules
    of the search's frontier (frontier_schedules: those of smaller arenas leave the faster
    variants more room); cheapest halos first, until no dearer halo can win. None fitting:
    the smallest arena they reach (a number, not a tuple)."""
    limit = row_bands.longest_prefix(graph, layers)
    # The ends the early arena bound knows (estimate.tiled_ends: halos of at most
    # MAX_HALO_SHARE of the MACs), where the row-band search may end a segment.
    worth = set(estimate.tiled_ends(estimate.graph_shapes(graph))) & \
        set(tiles.tileable_ends(graph))
    options = []
    for end in row_bands.cut_points(graph, layers):
        if 2 <= end <= limit and end in worth:
            # Recomputed halos, and where the chain's last op can read it, a cached one.
            recomputed = tiles.column_tiles(graph, end)
            forms = [recomputed] + ([tiles.column_tiles(graph, end, cached=True)]
                                    if tiles.cached_halo_width(graph, end) > 0 else [])
            recomputed_macs = tiles.halo_macs(graph, recomputed)
            options += [(tiles.halo_cost(recomputed_macs, tiles.halo_macs(graph, tiled)), end,
                         tiled) for tiled in forms]
    whole = plan_memory(arena_buffers(graph, layers, layer_by_layer(layers))).arena_size
    best, smallest = None, whole
    for halo_cost, end, tiled in sorted(options, key=lambda o: o[:2]):
        if best is not None and best[0] <= halo_cost:
            break
        try:
            lean = lower(tiled, True)
        except McugenError:  # a cached halo where no kernel reads one (kernels.planar_rows)
            continue
        schedules, reached = _searched_schedules(tiled, lean, budget)
        smallest = min(reached, smallest)
        if not schedules:
            continue
        fast = lower(tiled, False)
        tiers = (fast, *(lower(tiled, False, tier) for tier in SCRATCH_TIERS))
        for option in schedules:
            searched = search_cost(option[0]) + halo_cost
            chosen = faster_where_they_fit(tiled, lean, tiers, *option, budget, thorough=True)
            cost = searched + variant_cost(tiled, chosen[0], fast)
            if best is None or cost < best[0]:
                best = (cost, (tiled, lean, tiers, option, end, halo_cost))
    if best is None:
        return smallest
    cost, (tiled, lean, tiers, option, end, halo_cost) = best
    tiled_layers, schedule, buffers, plan = faster_where_they_fit(
        tiled, lean, tiers, *option, budget, thorough=True, passes=FIT_BACK_PASSES)
    return cost, (tiled, tiled_layers, (_tiled_schedule(graph, tiled, schedule, end, halo_cost,
                                                        max_ram, fit_ram),
                                        buffers, plan, whole))


def _searched_schedules(graph: Graph, layers: tuple[Layer, ...], budget: int
                        ) -> tuple[list[tuple[Schedule, list[Buffer], Plan]], int]:
    """The search's schedules that fit the budget (frontier_schedules, planned thoroughly),
    with the smallest arena they reach."""
    try:
        found = frontier_schedules(graph, layers, budget, thorough=True)
    except row_bands.NoScheduleFits as error:
        return [], error.smallest
    return found, min(plan.arena_size for _, _, plan in found)


# At most this many schedules of a search's frontier are weighed (each with its variants).
FRONTIER_SCHEDULES = 8


def frontier_schedules(graph: Graph, layers: tuple[Layer, ...], budget: int,
                       thorough: bool = False,
                       first: tuple[Schedule, list[Buffer], Plan] | None = None
                       ) -> list[tuple[Schedule, list[Buffer], Plan]]:
    """The search's cheapest schedule for the budget (`first`, where the caller has it),
    then its cheapest for an arena below that one's, and so on down to the smallest arena
    it reaches: the schedules a smaller budget would choose. A budget's cheapest schedule
    spends its RAM on fewer steps, a smaller one leaves RAM to the faster variants, so the
    cheapest with its variants may be any of them (VWW at 13K on M7: row bands of two rows
    and 6,627,030 instructions, of one row and 6,194,881); weighing them all, more RAM never
    costs more by the estimate (person_detect at 20K took a schedule dearer than 19K's). The
    first may be layer by layer: a budget it fits with the lean variants may still do better
    in bands with faster ones. Raises NoScheduleFits where none fits the budget."""
    found = [first if first is not None else
             choose_schedule(graph, layers, budget, None, thorough=thorough)[:3]]
    while len(found) < FRONTIER_SCHEDULES:
        try:
            below = choose_schedule(graph, layers, found[-1][2].arena_size - 1, None,
                                    thorough=thorough)
        except row_bands.NoScheduleFits:
            break
        found.append(below[:3])
    return found


# Passes of faster_where_they_fit over the layers still lean, for the schedule a search
# chose (the others are weighed after one): the plan is greedy, and a variant that did not fit
# beside fewer fast ones may fit beside more (VWW at 12K on M7: the ring of a depthwise after
# the tiles, 34,668 MACs, 6,160,923 -> 6,122,190 instructions). A second pass runs only where
# the first gave some layer its variant.
FIT_BACK_PASSES = 2


def faster_where_they_fit(graph: Graph, lean: tuple[Layer, ...],
                          tiers: tuple[tuple[Layer, ...], ...], schedule: Schedule,
                          buffers: list[Buffer], plan: Plan, budget: int,
                          thorough: bool = False, passes: int = 1):
    """The lean layers, each given back a faster variant where the schedule's arena still fits the
    budget with it: the largest saving first (_most_saved: a layer's MACs at its variants'
    Variant.slower_per_mac), the tiers' layers in their order (the fastest, then the
    small-scratch ones), the first that fits. (Smallest scratch first instead, VWW at 12K took
    the small layers' rings first: 7,094,026 instructions, not 7,021,435.) Each trial's band
    buffers are its layers' (row_bands.rebanded: a ring needs fewer rows of its input), planned
    afresh or around the plan so far (planner.plan_around), the smaller; thorough: afresh with
    the planner's local search too (column tiles' many band buffers); passes: then again over
    the layers not yet at their fastest tier (FIT_BACK_PASSES). A trial takes a layer's layout
    partners (kernels.layout_group) from the same tier. Returns the layers, their schedule
    (with its loops), buffers and plan."""
    layers, banded = lean, schedule
    waiting = sorted((i for i in range(len(lean))
                      if any(tier[i].variant is not lean[i].variant for tier in tiers)),
                     key=lambda i: (-_most_saved(graph, lean, tiers, i), i))
    for _ in range(passes):
        left, changed = [], False
        for index in waiting:
            for tier in tiers:
                if tier[index].variant is lean[index].variant:
                    continue
                if tier[index].variant is layers[index].variant:
                    break  # no faster tier fitted (the tiers go fastest first)
                # A planar pair's two layers come from one selection (kernels.layout_group).
                group = layout_group(graph, (layers, tier), index)
                trial = tuple(tier[i] if i in group else layer for i, layer in enumerate(layers))
                trial_schedule = row_bands.rebanded(schedule, graph, trial)
                trial_buffers = arena_buffers(graph, trial, trial_schedule)
                trial_plan = min(plan_memory(trial_buffers, search=thorough),
                                 plan_around(trial_buffers, buffers, plan),
                                 key=lambda p: p.arena_size)
                if trial_plan.arena_size <= budget:
                    layers, banded = trial, trial_schedule
                    buffers, plan = trial_buffers, trial_plan
                    changed = True
                    break
            if layers[index].variant is not tiers[0][index].variant:
                left.append(index)
        if not changed:
            break
        waiting = left
    check_layouts(graph, layers)
    if banded is not schedule:
        banded = row_bands.looped(banded, graph, layers)
    return layers, banded, buffers, plan


def _most_saved(graph: Graph, lean: tuple[Layer, ...], tiers: tuple[tuple[Layer, ...], ...],
                index: int) -> float:
    """The instructions the fastest of a layer's tiers saves against its lean variant, by
    Variant.slower_per_mac."""
    op = graph.ops[index]
    lean_cost = lean[index].variant.slower_per_mac(op, graph)
    return count_macs(op, graph) * max(lean_cost - tier[index].variant.slower_per_mac(op, graph)
                                       for tier in tiers)


def _tiled_schedule(graph: Graph, tiled: Graph, schedule: Schedule, end: int,
                    halo_cost: float, max_ram: int | None, fit_ram: int | None) -> Schedule:
    """The schedule found for a tiled graph, saying so (and its search's points with the
    halos' cost, tiles.halo_cost)."""
    label = f"layers 0-{end - 1} in {tiles.TILES} column tiles"
    if any(isinstance(op, ir.SliceColumns) for op in tiled.ops):
        label += ", the halo cached"
    return dataclasses.replace(
        schedule, tiles=label, extra_macs=tiles.halo_macs(graph, tiled),
        reason=f"--max-ram {max_ram:,} B" if max_ram is not None else
        f"layer by layer does not fit the target's {fit_ram:,} B",
        search=tuple(dataclasses.replace(
            p, description=f"the model's {label}, then {p.description}",
            extra_instructions=p.extra_instructions + halo_cost)
            for p in schedule.search))


def choose_layers_and_schedule(graph: Graph, layers: tuple[Layer, ...], max_ram: int | None,
                               fit_ram: int | None, lean: Callable[[], tuple[Layer, ...]],
                               small: Callable[[], tuple[tuple[Layer, ...], ...]] | None = None):
    """The layers and their schedule (choose_schedule). Where layers that trade arena RAM for
    speed (Variant.trades_ram) keep the arena from fitting the budget even in row bands, the
    lean variants (``lean()``) take their place, as before such variants existed, then each
    layer whose fast variant still fits the schedule's arena gets it back (its code is
    smaller and faster), or else its small-scratch variants (``small()``: the layers of each
    tier) where one fits; the layer-by-layer arena reported stays the one without the
    budget."""
    budget = max_ram if max_ram is not None else fit_ram
    if budget is None or not any(layer.variant.trades_ram for layer in layers):
        return layers, choose_schedule(graph, layers, max_ram, fit_ram)
    try:
        chosen = choose_schedule(graph, layers, max_ram, fit_ram)
        if chosen[2].arena_size <= budget:
            return layers, chosen
    except McugenError:
        pass
    whole = plan_memory(arena_buffers(graph, layers, layer_by_layer(layers))).arena_size
    lean_layers = lean()
    schedule, buffers, plan, _ = choose_schedule(graph, lean_layers, max_ram, fit_ram)
    if plan.arena_size > budget:  # nothing fits: the memory check or the error says so
        return lean_layers, (schedule, buffers, plan, whole)
    mixed, schedule, buffers, plan = _cheapest_with_variants(
        graph, layers, lean_layers, (schedule, buffers, plan), budget,
        small() if small is not None else ())
    return mixed, (schedule, buffers, min(plan, plan_memory(buffers),
                                          key=lambda p: p.arena_size), whole)


def _cheapest_with_variants(graph: Graph, fast: tuple[Layer, ...], lean: tuple[Layer, ...],
                            chosen: tuple[Schedule, list[Buffer], Plan], budget: int,
                            small: tuple[tuple[Layer, ...], ...]):
    """Of the lean layers' schedule for the budget (`chosen`, with its buffers and plan) and
    the others of the search's frontier (frontier_schedules), each with the faster variants
    that fit back (faster_where_they_fit): the one whose search cost and variants' cost
    (variant_cost) are the smallest, as faster_where_they_fit returns it."""
    reason = chosen[0].reason
    options = [(dataclasses.replace(schedule, reason=reason), buffers, plan)
               for schedule, buffers, plan in frontier_schedules(graph, lean, chosen[2].arena_size,
                                                                 first=chosen)]
    best = None
    for option in options:
        fitted = faster_where_they_fit(graph, lean, (fast, *small), *option, budget)
        cost = search_cost(option[0]) + variant_cost(graph, fitted[0], fast)
        if best is None or cost < best[0]:
            best = (cost, option)
    return faster_where_they_fit(graph, lean, (fast, *small), *best[1], budget,
                                 passes=FIT_BACK_PASSES)


def choose_schedule(graph: Graph, layers: tuple[Layer, ...], max_ram: int | None,
                    fit_ram: int | None, thorough: bool = False
                    ) -> tuple[Schedule, list[Buffer], Plan, int]:
    """Layer by layer when its arena fits the budget (or there is none), otherwise the
    row-band schedule of least extra cost that fits; with the layer-by-layer arena. thorough:
    the search plans its candidates with the planner's local search (column tiles' many
    band buffers: its greedy orders alone leave gaps)."""
    schedule = layer_by_layer(layers)
    buffers = arena_buffers(graph, layers, schedule)
    plan = plan_memory(buffers)
    budget = max_ram if max_ram is not None else fit_ram
    if budget is None or plan.arena_size <= budget:
        return schedule, buffers, plan, plan.arena_size
    whole = row_bands.Candidate(schedule, plan.arena_size, 0.0)
    try:
        chosen = row_bands.choose(graph, layers, whole, budget,
                                  lambda b: plan_memory(b, search=thorough).arena_size)
    except McugenError:
        if max_ram is not None:
            raise
        return schedule, buffers, plan, plan.arena_size  # the memory check will say so
    reason = f"--max-ram {max_ram:,} B" if max_ram is not None else \
        f"layer by layer does not fit the target's {fit_ram:,} B"
    # Its periodic steady state runs as C loops (the steps, and so the buffers, unchanged).
    schedule = row_bands.looped(dataclasses.replace(chosen.schedule, reason=reason), graph,
                                layers)
    buffers = arena_buffers(graph, layers, schedule)
    return schedule, buffers, plan_memory(buffers), plan.arena_size


def check_profile_target(target: Target) -> str:
    """--profile reads a Cortex-M core's own counter: the target's architecture."""
    if target.is_host:
        raise McugenError("--profile counts with a Cortex-M core's own counter (DWT CYCCNT or "
                          "SysTick); choose a Cortex-M --target, not host")
    return target.arch


def region_capacities(target: Target) -> list[tuple[str, int]]:
    regions = target.arena_regions
    if len(regions) < 2:
        raise McugenError(f"--ram-regions: {target.name} lists "
                          f"{'one RAM region' if regions else 'no RAM regions'} for the arena; "
                          f"a part with several does (see mcugen targets)")
    return [(r.name, r.bytes) for r in regions]
