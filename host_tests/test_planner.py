"""The memory planner on plain records: exact offsets, the in-place rule, and no collisions
on real models' plans."""

from __future__ import annotations

import numpy as np

from conftest import PERSON_DETECT
from mcugen.compile import compile_graph
from mcugen.frontend.tflite import load_tflite
from mcugen.planner import (Buffer, Overlap, find_overlap_violations, plan_around, plan_memory,
                            streaming_distance)
from mcugen.targets import load_target


def test_buffers_alive_together_never_share_bytes():
    buffers = [Buffer("a", 100, 0, 1), Buffer("b", 100, 1, 2), Buffer("c", 50, 2, 3)]
    plan = plan_memory(buffers)
    assert plan.offsets == {"a": 0, "b": 112, "c": 0}  # aligned to 16; c reuses a's bytes
    assert plan.arena_size == 224
    assert find_overlap_violations(buffers, plan) == []


def test_a_streaming_output_is_written_over_its_input_at_the_safe_distance():
    # out (120 B) may overlap in (100 B) if it starts at least 30 B below it.
    buffers = [Buffer("in", 100, 0, 1), Buffer("out", 120, 1, 2, (Overlap("in", 30),))]
    plan = plan_memory(buffers)
    assert plan.offsets["in"] - plan.offsets["out"] >= 30
    assert plan.arena_size == 144  # instead of 224 side by side
    assert find_overlap_violations(buffers, plan) == []


def test_violations_are_detected():
    buffers = [Buffer("in", 100, 0, 1), Buffer("out", 120, 1, 2, (Overlap("in", 30),))]
    bad = plan_memory([Buffer("in", 100, 0, 1), Buffer("out", 120, 1, 2)])
    bad.offsets.update({"in": 16, "out": 0})
    assert find_overlap_violations(buffers, bad) == [("in", "out")]


def test_a_plan_around_another_keeps_its_unchanged_buffers_where_they_were():
    """planner.plan_around: what a variant choice tries beside a fresh plan (a fresh plan's
    local search may end larger when one buffer is added: VWW at 12K on M7, 12,176 B ->
    12,848 B for a late layer's scratch alive for one step). Unchanged buffers keep their
    offsets, a new or changed one goes first fit around them, and nothing collides."""
    buffers = [Buffer("a", 100, 0, 1), Buffer("b", 100, 1, 2), Buffer("c", 50, 2, 3)]
    plan = plan_memory(buffers)
    assert plan.offsets == {"a": 0, "b": 112, "c": 0}
    scratch = Buffer("scratch", 40, 3, 3, fill_in=True)
    around = plan_around([*buffers, scratch], buffers, plan)
    assert around.offsets == {"a": 0, "b": 112, "c": 0, "scratch": 64}
    assert around.arena_size == plan.arena_size == 224
    # A buffer that changed (c is wider) is placed again; the others stay.
    wider = [buffers[0], buffers[1], Buffer("c", 120, 2, 3)]
    around = plan_around(wider, buffers, plan)
    assert (around.offsets["a"], around.offsets["b"]) == (0, 112)
    assert around.offsets["c"] == 224 and around.arena_size == 352  # above b, which it meets
    assert find_overlap_violations(wider, around) == []


def test_streaming_distance_of_a_pointwise_layer():
    # 4 pixels, 8 -> 16 channels: the output must start P*Cout - (P-1)*Cin = 40 B lower.
    pixels, cin, cout = 4, 8, 16
    write_end = np.arange(1, pixels + 1) * cout
    next_read = np.arange(pixels) * cin
    assert streaming_distance(write_end, next_read) == pixels * cout - (pixels - 1) * cin


def test_person_detect_plan_is_safe_and_beats_ping_pong():
    graph = load_tflite(PERSON_DETECT.read_bytes(), "pd")
    compiled = compile_graph(graph, name="pd", target=load_target("host"), source="pd")
    assert find_overlap_violations(list(compiled.buffers), compiled.plan) == []
    # The largest layer pair (48x48x8 in, 48x48x16 out) alone is 55,296 B side by side; the
    # plan puts outputs over their inputs where the kernels' access orders allow it.
    assert compiled.plan.arena_size < 48 * 48 * 8 + 48 * 48 * 16
    assert compiled.plan.arena_size == 36_896
    # On Cortex-M7 the depthwise layers keep widened input rows in arena scratch (a variant
    # that trades RAM for speed), at most one ring more; a budget of the host's arena is met
    # all the same (row bands, or the lean variants).
    m7 = compile_graph(graph, name="pd", target=load_target("cortex-m7"), source="pd")
    assert 36_896 < m7.plan.arena_size <= 36_896 + max(layer.scratch_bytes for layer in m7.layers)
    assert compile_graph(graph, name="pd", target=load_target("cortex-m7"), source="pd",
                         max_ram=36_896).plan.arena_size <= 36_896



def test_the_planner_overlaps_only_what_the_variants_access_order_allows():
    """A depthwise layer writes in raster order, so its output may go over its input; a
    variant that declares no such order (as a Helium kernel writing in channel blocks would)
    gets no overlap, whatever its op."""
    import dataclasses

    import ir_graphs
    from mcugen.compile import prepare
    from mcugen.kernels import lower_layers
    from mcugen.kernels.variant import Order
    from mcugen.schedule import arena_buffers, layer_by_layer

    one = ir_graphs.depthwise(1, 8, 8, 8, padding=ir_graphs.Padding(1, 1, 1, 1))
    op, y = one.ops[0], one.tensor("y")
    chain = one.replace(  # x -> y -> z -> out: z is an arena buffer written over y
        ops=(op, dataclasses.replace(op, input="y", output="z"),
             dataclasses.replace(op, input="z", output="out")),
        tensors={**one.tensors, "z": dataclasses.replace(y, name="z"),
                 "out": dataclasses.replace(y, name="out")},
        outputs=("out",))
    graph = prepare(chain)
    layers = lower_layers(graph, load_target("host"), "m")
    raster = {b.id: b for b in arena_buffers(graph, layers, layer_by_layer(layers))}
    assert [o.other for o in raster["z"].overlaps] == ["y"]
    separate = tuple(dataclasses.replace(layer, variant=dataclasses.replace(
        layer.variant, access=Order.SEPARATE)) for layer in layers)
    assert all(b.overlaps == () for b in arena_buffers(graph, separate,
                                                       layer_by_layer(separate)))
