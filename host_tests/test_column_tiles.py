"""Column tiles (issue 20, item 4: 2-D tiles with recomputed or cached halos, mcugen/tiles.py):
a chain of convolutions at a model's start rewritten as two column tiles computes what the chain
computes; where row bands cannot reach a budget, the schedule search takes the tiles (the
band buffers of a tile are about half as wide), replays them, and the C is bit-exact with the
NumPy reference of the untiled model on the host (also under ASan and UBSan) and in QEMU.
A hand-built graph (ir_graphs.conv_chain: VWW's start in small), no TensorFlow. (VWW at
--max-ram 12K on Cortex-M7 is README's measurement: its file is not in this repository.)"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import ir_graphs as g
from conftest import standard_inputs
from hostc import build_shared, run_sanitized
from mcugen import estimate, row_bands, tiles
from mcugen.compile import (SCRATCH_TIERS, choose_layers_and_schedule, compile_graph, prepare,
                            search_cost, variant_cost)
from mcugen.errors import McugenError
from mcugen.ir import SliceColumns
from mcugen.kernels import lower_layers
from mcugen.qemu import build_firmware, run_firmware
from mcugen.reference import run_reference
from mcugen.targets import load_target

HOST = load_target("host")
# Wide enough that the halos (the columns both tiles compute) cost under
# tiles.MAX_HALO_SHARE of the MACs; few rows, to stay fast.
SHAPE = dict(h=24, w=96)
BUDGET = 5_000  # on the host: row bands reach 6,256 B at best, column tiles 4,608 B


def chain():
    return g.conv_chain(3, **SHAPE)


def compiled(max_ram: int | None, target=HOST):
    return compile_graph(chain(), name="model", target=target, source="conv_chain",
                         memory_check=False, max_ram=max_ram)


def smallest_reachable(target=HOST) -> int:
    with pytest.raises(McugenError, match="smallest reachable") as error:
        compiled(max_ram=64, target=target)
    return int(re.search(r"smallest reachable is ([\d,]+) B", str(error.value))
               .group(1).replace(",", ""))


def reference(graph, inputs: np.ndarray) -> np.ndarray:
    return np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                     for x in inputs])


def written(result, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, text in result.sources.items():
        (folder / name).write_text(text)
    return folder


def test_the_tiles_compute_what_the_chain_computes():
    graph = prepare(chain())
    inputs = standard_inputs(graph.input.size, seed=2)
    expected = reference(graph, inputs)
    ends = tiles.tileable_ends(graph)
    assert ends == [2, 3, 4, 5, 6]
    for end in ends:
        tiled = tiles.column_tiles(graph, end)
        # Two tiles of each of the first `end` ops, then the join, then the rest.
        assert len(tiled.ops) == len(graph.ops) + end + 1
        first_a, first_b = tiled.ops[0], tiled.ops[end]
        # The first op of each tile reads its columns of the caller's whole input: the right
        # tile's left padding is negative (it starts inside the image).
        assert first_a.input == first_b.input == "x"
        assert first_a.padding.right < 0 and first_b.padding.left < 0
        np.testing.assert_array_equal(reference(tiled, inputs), expected, err_msg=str(end))
    # A cached halo: the first tile slices the columns both tiles' last ops read (one of the
    # stride-2 depthwise's input, end 4), the second reads them as its left padding and
    # computes the columns after them only.
    assert [end for end in ends if tiles.cached_halo_width(graph, end)] == [2, 4]
    cached = tiles.column_tiles(graph, 4, cached=True)
    cut = next(op for op in cached.ops if isinstance(op, SliceColumns))
    reader = next(op for op in cached.ops if getattr(op, "halo", None) is not None)
    assert reader.halo == cut.output and cached.tensor(cut.output).shape[2] == 1
    assert reader.padding.left == 1
    assert tiles.halo_macs(graph, cached) < tiles.halo_macs(graph, tiles.column_tiles(graph, 4))
    np.testing.assert_array_equal(reference(cached, inputs), expected)
    assert len(set(map(bytes, expected))) >= len(inputs) - 1  # outputs tell inputs apart


def test_a_chain_read_elsewhere_is_not_tiled():
    graph = prepare(chain())
    with pytest.raises(ValueError, match="column tiles"):
        tiles.column_tiles(graph, 1)
    with pytest.raises(ValueError, match="column tiles"):
        tiles.column_tiles(graph, 2, tiles=3)


def test_tiles_reach_a_budget_that_row_bands_cannot():
    """Before column tiles this budget was refused: row bands' smallest is above it."""
    whole = compiled(None)
    result = compiled(BUDGET)
    schedule = result.schedule
    assert schedule.tiles == "layers 0-3 in 2 column tiles", schedule.describe()
    assert schedule.describe().startswith("the model's layers 0-3 in 2 column tiles, then ")
    assert result.plan.arena_size <= BUDGET < whole.plan.arena_size
    assert schedule.extra_macs == tiles.halo_macs(prepare(chain()), result.graph) > 0
    assert result.report.schedule["extra_macs"] == schedule.extra_macs
    # The search's points are those of the tiled search, the halos' cost included.
    chosen = [p for p in schedule.search if p.chosen]
    assert len(chosen) == 1 and chosen[0].description == schedule.describe()
    assert all(p.extra_instructions >= schedule.extra_macs * tiles.COST_PER_MAC
               for p in schedule.search)
    # The schedule was replayed (row_bands.verify) when it was made; again here.
    row_bands.verify(schedule, result.graph, result.layers)


def estimated_cost(result, target) -> float:
    """What the search weighs a result by: its schedule's estimated extra instructions (the
    halos' included) and its variants' beyond the fastest ones."""
    fast = lower_layers(result.graph, target, "model")
    return search_cost(result.schedule) + variant_cost(result.graph, result.layers, fast)


def test_row_bands_that_fit_only_with_slower_kernels_give_way_to_cheaper_tiles():
    """At 9,000 B on the M7 row bands fit, but only with lean depthwise kernels (no ring of
    widened rows); the tiles fit with their rings, and cost less even with their halos, so
    the search takes them (before, any row-band schedule that fit was taken: VWW at 14K on
    M7 ran in row bands with every lean kernel, 6,690,331 instructions; in tiles 6,160,491)."""
    core = load_target("cortex-m7")
    graph = prepare(chain())
    fast = lower_layers(graph, core, "model")
    banded_layers, (banded, _, plan, _) = choose_layers_and_schedule(
        graph, fast, 9_000, None, lambda: lower_layers(graph, core, "model", lean=True),
        lambda: tuple(lower_layers(graph, core, "model", small_scratch=tier)
                      for tier in SCRATCH_TIERS))
    assert plan.arena_size <= 9_000 and banded.banded and not banded.tiles
    banded_cost = search_cost(banded) + variant_cost(graph, banded_layers, fast)
    assert variant_cost(graph, banded_layers, fast) > 0
    result = compiled(9_000, core)
    assert result.schedule.tiles and result.plan.arena_size <= 9_000
    assert estimated_cost(result, core) < banded_cost


def test_more_ram_never_costs_more():
    """Budget by budget on the M7, the schedule and variants chosen cost no more (by the
    search's estimate) than those of a smaller budget: the search weighs the RAM a
    schedule leaves to faster variants (VWW on M7, instructions at 12K to 16K, before: 6.25,
    6.63, 6.69, 6.21, 6.02 M; after: 6.25, 6.19, 6.16, 6.12, 6.02 M)."""
    core = load_target("cortex-m7")
    costs = [estimated_cost(compiled(budget, core), core)
             for budget in range(5_000, 12_001, 500)]
    assert all(later <= earlier for earlier, later in zip(costs, costs[1:])), costs


def test_more_ram_never_costs_more_in_row_bands_alone():
    """The same for the row-band search alone (no tiles): a budget weighs, beside its cheapest
    schedule, those a smaller budget would choose (compile.frontier_schedules). Weighing only
    its cheapest and its smallest-arena ones, 9,500 B cost more than 9,000 B here: layer by
    layer fits 9,500 B with lean kernels, and nothing else was weighed (person_detect on M7:
    20K cost 22,000 instructions, estimated, more than 19K)."""
    core = load_target("cortex-m7")
    graph = prepare(chain())
    fast = lower_layers(graph, core, "model")
    costs = []
    for budget in range(7_000, 12_001, 500):
        layers, (schedule, _, plan, _) = choose_layers_and_schedule(
            graph, fast, budget, None, lambda: lower_layers(graph, core, "model", lean=True),
            lambda: tuple(lower_layers(graph, core, "model", small_scratch=tier)
                          for tier in SCRATCH_TIERS))
        assert plan.arena_size <= budget
        costs.append(search_cost(schedule) + variant_cost(graph, layers, fast))
    assert all(later <= earlier for earlier, later in zip(costs, costs[1:])), costs


def test_the_smallest_reachable_arena_counts_the_tiles_and_the_early_bound_stays_below():
    smallest = smallest_reachable()
    assert smallest < BUDGET
    assert compiled(smallest).plan.arena_size <= smallest
    bound = estimate.arena_lower_bound(estimate.graph_shapes(prepare(chain())))
    assert bound <= smallest


def test_tiled_c_is_bit_exact_on_the_host(tmp_path):
    result = compiled(BUDGET)
    assert result.schedule.tiles
    source = prepare(chain())  # the untiled model: what the tiles must compute
    folder = written(result, tmp_path / "model")
    model = build_shared(folder, "model", source.input.size, source.output.size, tmp_path)
    inputs = standard_inputs(source.input.size, seed=4)
    np.testing.assert_array_equal(np.stack([model(x) for x in inputs]),
                                  reference(source, inputs))


def test_each_tile_s_first_convolution_takes_the_widened_rows_where_their_scratch_fits():
    """conv_s8_rows_dsp widens only the columns a tile reads of the caller's input (its
    negative padding crops it): both tiles' first convolutions take it at a roomy budget, the
    first tile's also at the smallest arena (VWW at 12K: 7,780,114 -> 7,372,186
    instructions, when both fell back to gathering windows, conv_s8_dsp)."""
    core = load_target("cortex-m7")
    for budget, rows_in in ((6_000, (0, 1)), (smallest_reachable(core), (0,))):
        result = compiled(budget, core)
        assert result.plan.arena_size <= budget and result.schedule.tiles
        firsts = [layer for layer in result.layers if layer.op.input == "x"]
        assert len(firsts) == 2 and firsts[0].index == 0
        assert firsts[0].op.padding.right < 0 and firsts[1].op.padding.left < 0
        taken = [tile for tile, layer in enumerate(firsts)
                 if layer.variant.name == "conv_s8_rows_dsp"]
        assert tuple(taken) == rows_in, budget


def test_a_tile_s_stride_2_depthwise_reads_planar_rows_without_scratch():
    """At 6,000 B the first tile's first depthwise layer keeps dw_conv_s8_pairs_dsp's ring,
    and its stride-2 depthwise, whose ring would not fit, reads the channel-planar rows its
    1x1 producer writes (dw_conv_s8_planar_dsp: no scratch, where it took four channels'
    planes, dw_conv_s8_pairs_blocks_dsp, before; VWW at 12K on M7: 6,245,823 -> 6,160,923
    instructions; this firmware runs in QEMU below)."""
    result = compiled(6_000, load_target("cortex-m7"))
    assert result.plan.arena_size <= 6_000 and result.schedule.tiles
    first_tile = [layer for layer in result.layers
                  if "column tile 0:" in layer.op.output][:4]
    assert [layer.variant.name for layer in first_tile] == [
        "conv_s8_rows_dsp", "dw_conv_s8_pairs_dsp", "pw_conv_s8_planar_dsp",
        "dw_conv_s8_planar_dsp"]
    assert first_tile[3].scratch_bytes == 0 < first_tile[1].scratch_bytes


def test_the_second_tile_reads_the_first_tile_s_halo_where_it_fits():
    """At 6,000 B on the M7 the tiles' halo is cached (tiles.column_tiles, cached): the first
    tile keeps the column both tiles' stride-2 depthwise layers read (slice_columns_s8_planar,
    channel-planar as its source), whole, and the second tile's depthwise reads it as its
    left padding (dw_conv_s8_planar_halo_dsp), so the second tile's layers compute fewer
    columns: fewer halo MACs than recomputing (VWW at 12K on M7: 239,232 -> 152,064 MACs,
    6,004,017 -> 5,870,696 instructions, +8.6 % against layer by layer). It is replayed, and
    this firmware runs bit-exact in QEMU below. At the smallest arena the halo's rows do not
    fit: there the halo is recomputed."""
    core = load_target("cortex-m7")
    result = compiled(6_000, core)
    assert result.schedule.tiles == "layers 0-3 in 2 column tiles, the halo cached"
    names = [layer.variant.name for layer in result.layers]
    assert names.count("slice_columns_s8_planar") == 1
    assert names.count("dw_conv_s8_planar_halo_dsp") == 1
    recomputed = tiles.halo_macs(prepare(chain()), tiles.column_tiles(prepare(chain()), 4))
    assert 0 < result.schedule.extra_macs < recomputed
    row_bands.verify(result.schedule, result.graph, result.layers)
    # The halo lives whole from the first tile's slice to the second tile's depthwise.
    cut = next(layer for layer in result.layers if isinstance(layer.op, SliceColumns))
    halo = next(b for b in result.buffers if b.id == cut.op.output)
    assert halo.size == result.graph.tensor(cut.op.output).nbytes
    smallest = compiled(smallest_reachable(core), core)
    assert smallest.schedule.tiles == "layers 0-3 in 2 column tiles"


def test_a_ring_depthwise_s_input_band_holds_only_the_rows_new_to_its_ring():
    """dw_conv_s8_pairs_dsp keeps the input rows it has widened in its ring between a banded
    layer's steps (Variant.keeps_input_rows), so its input's band buffer holds only the rows
    new to the ring (row_bands.buffer_rows): the chain's first depthwise (3x3, stride 1)
    reads two rows for its first output row (the padding above) and one new row a step
    after, so its input's band holds two rows, not three, and no shift moves a row of it.
    (VWW at 12K on M7, both tiles' first depthwise: 6,316,852 -> 6,252,614 instructions with
    the smaller plan's tiers, rows moved 106,368 -> 65,328 B, bit-exact.) The replay takes
    the rows a step reads from the variant: with the lean depthwise, which reads three rows
    a step, this schedule is refused."""
    core = load_target("cortex-m7")
    graph = prepare(chain())
    fast = lower_layers(graph, core, "model")
    lean = lower_layers(graph, core, "model", lean=True)
    ring = fast[1]
    assert ring.variant.name == "dw_conv_s8_pairs_dsp" and ring.variant.keeps_input_rows
    assert not lean[1].variant.keeps_input_rows
    banded = row_bands.row_band_schedule(graph, fast, ((0, 4),), 1)
    assert banded.bands[ring.op.input] == 2
    assert row_bands.row_band_schedule(graph, lean, ((0, 4),), 1).bands[ring.op.input] == 3
    assert not [shift for step in banded.steps for shift in step.shifts
                if shift.tensor == ring.op.input and shift.end > shift.keep]
    # Every step after the first takes one row of its input from the buffer.
    steps = [step for step in banded.steps if step.layer == 1]
    assert [row_bands.buffer_rows(ring, graph, *step.rows) for step in steps[:3]] == \
        [(0, 2), (2, 3), (3, 4)]
    with pytest.raises(AssertionError):
        row_bands.verify(banded, graph, lean)


@pytest.mark.slow
def test_tiled_c_is_clean_under_sanitizers(tmp_path):
    result = compiled(BUDGET)
    source = prepare(chain())
    inputs = standard_inputs(source.input.size, seed=4, random_count=2)
    outputs = run_sanitized(written(result, tmp_path / "model"), "model", source.input.size,
                            source.output.size, inputs, tmp_path)
    np.testing.assert_array_equal(outputs, reference(source, inputs))


@pytest.mark.qemu
@pytest.mark.parametrize("budget", ["smallest", "roomy"])
def test_tiled_firmware_is_bit_exact_in_qemu_on_cortex_m7(budget, tmp_path):
    """The DSP kernels (the first convolution's negative padding crops the input; the lean
    variants in bands, the fast ones where their scratch fits), at the smallest arena and
    just below what row bands reach (room for both tiles' fast first convolutions, which
    widen only the columns of the cropped input they read)."""
    core = load_target("cortex-m7")
    budget = smallest_reachable(core) if budget == "smallest" else 6_000
    result = compiled(budget, core)
    assert result.schedule.tiles and result.plan.arena_size <= budget
    source = prepare(chain())
    elf = build_firmware(written(result, tmp_path / "model"), core, tmp_path / "firmware")
    inputs = standard_inputs(source.input.size, seed=5, random_count=2)
    ran = run_firmware(elf, core, inputs, source.output.size)
    np.testing.assert_array_equal(ran.outputs, reference(source, inputs))
