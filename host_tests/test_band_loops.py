"""Band schedules as C loops (schedule.Repeat): the periodic steady state of a row-band
schedule runs as a `for` loop in NAME_invoke, bit-exact with the reference; the replay
(row_bands.verify) refuses a loop that does not compute the steps it replaces.

Hand-built graphs (no TensorFlow, no QEMU): the fast tier."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

import ir_graphs as g
from conftest import PERSON_DETECT
from hostc import assert_reference_outputs
from mcugen import row_bands
from mcugen.codegen import build_model_view, layer_views, render_sources
from mcugen.compile import CompiledModel, compile_graph
from mcugen.frontend.tflite import load_tflite
from mcugen.ir import Mean, Padding
from mcugen.measure import measure
from mcugen.planner import plan_memory
from mcugen.schedule import Repeat, Runs, Schedule, Step, arena_buffers, find_repeats
from mcugen.targets import load_target


def blocks(w: int = 6, c: int = 16, **budget) -> CompiledModel:
    """Tall and narrow blocks (many bands of the same shape: the steady state a loop), then
    a MEAN, a global op that ends the layers that may band."""
    graph = g.repeated_blocks(seed=7, h=40, w=w, c=c, blocks=2, last_outputs=2)
    last = graph.outputs[0]
    pooled = dataclasses.replace(graph.tensor(last), name="pooled", shape=(1, 1, 1, 2))
    graph = dataclasses.replace(graph, ops=(*graph.ops, Mean(last, "pooled", keep_dims=True)),
                                tensors={**graph.tensors, "pooled": pooled},
                                outputs=("pooled",))
    return compile_graph(graph, name="model", target=load_target("host"), source="blocks",
                         **budget)


@pytest.fixture(scope="module")
def banded() -> CompiledModel:
    whole = blocks().plan.arena_size
    compiled = blocks(max_ram=whole // 3)
    assert compiled.schedule.banded and compiled.plan.arena_size <= whole // 3
    # Every layer before the MEAN in bands.
    assert compiled.schedule.segments == ((0, len(compiled.layers) - 1),)
    return compiled


def invoke_body(source: str) -> str:
    start = source.index("int model_invoke(")
    return source[start:source.index("\n}\n", start)]


def statements(schedule) -> int:
    """The layer calls NAME_invoke holds: a step outside a loop is one, a loop its body."""
    return sum(len(node.body) if isinstance(node, Repeat) else 1 for node in schedule.program())


def test_the_steady_state_of_a_band_schedule_is_a_loop(banded):
    schedule = banded.schedule
    (repeat,) = schedule.repeats  # one segment, one steady state
    assert repeat.count >= 15 and len(repeat.body) == len(banded.layers) - 1
    # The loop replaces most steps: invoke calls each statement once in the C.
    body = invoke_body(banded.sources["model.c"])
    calls = re.findall(r"^\s+layer\d+_\w+\(", body, re.M)
    assert len(calls) == statements(schedule) < len(schedule.steps) // 4
    assert f"for (int32_t i = 0; i < {repeat.count}; i++) {{" in body
    # Per step, a marker: the loop's markers run once an iteration.
    assert body.count("MCUGEN_LAYER_DONE(") == len(calls)


def test_the_loop_is_bit_exact(banded, tmp_path):
    graph = banded.graph
    inputs = np.random.default_rng(3).integers(-128, 128, (3, graph.input.size),
                                                    dtype=np.int8)
    assert_reference_outputs(banded.sources, graph, tmp_path, inputs)


def broken(schedule, **changes):
    (repeat,) = schedule.repeats
    return dataclasses.replace(schedule, repeats=(dataclasses.replace(repeat, **changes),))


def test_the_replay_refuses_a_broken_loop(banded):
    schedule, graph, layers = banded.schedule, banded.graph, banded.layers
    row_bands.verify(schedule, graph, layers)
    (repeat,) = schedule.repeats
    increments = list(repeat.increments)
    increments[0] = (increments[0][0] + 1, *increments[0][1:])  # its rows drift
    one_more = repeat.count + 1  # past the steps it replaces
    origin = list(repeat.body)  # the first statement reads its input from the wrong row
    step = origin[0]
    origin[0] = dataclasses.replace(step, origins=(step.origins[0] + 1, *step.origins[1:]))
    for wrong in (broken(schedule, increments=tuple(increments)),
                  broken(schedule, count=one_more), broken(schedule, count=1),
                  broken(schedule, body=tuple(origin)),
                  broken(schedule, increments=repeat.increments[:-1])):
        with pytest.raises(AssertionError):
            row_bands.verify(wrong, graph, layers)
    # A loop equal to its unrolled steps is still replayed row by row: steps made from the
    # broken loop itself are refused too.
    wrong = broken(schedule, body=tuple(origin))
    with pytest.raises(AssertionError):
        row_bands.verify(dataclasses.replace(wrong, steps=tuple(row_bands.program_steps(wrong))),
                         graph, layers)


def test_the_search_takes_the_run_that_saves_most():
    periodic = [Step(layer, (row, row + 1), (row, row)) for row in range(2, 12)
                for layer in (0, 1)]
    stray = Step(0, (12, 13), (0, 99))  # breaks the period
    steps = (Step(5, None), *periodic, stray, Step(6, None))
    (repeat,) = find_repeats(steps)
    assert (repeat.start, len(repeat.body), repeat.count) == (1, 2, 10)
    assert repeat.increments == ((1, 1, 1, 1),) * 2
    assert find_repeats(tuple(periodic[:4]) + (stray,)) == ()  # saves too little


def test_a_pipelines_fill_and_drain_fold_into_its_loop():
    """Layer 1 runs a row behind layer 0: the fill (layer 0's first row alone) and the drain
    (layer 1's last row alone) are the loop's body with a statement guarded off, so the whole
    pipeline is one loop (extend_repeats)."""
    def step(layer: int, row: int) -> Step:
        return Step(layer, (row, row + 1), (row, row))

    steps = (step(0, 0), *(step(layer, row - layer) for row in range(1, 10) for layer in (0, 1)),
             step(1, 9))
    (repeat,) = find_repeats(steps)
    assert (repeat.start, repeat.end, repeat.count) == (0, len(steps), 11)
    assert repeat.runs == (Runs(0, 10), Runs(1, 11)) and repeat.moves == ((), ())
    schedule = Schedule(steps, {}, repeats=(repeat,))
    assert schedule.program() == [repeat]
    assert tuple(row_bands.program_steps(schedule)) == steps


def test_the_banded_fill_and_drain_run_in_the_loop_under_guards(banded):
    """The blocks' fill and drain: the loop starts and ends with statements guarded off (one
    `if` for consecutive statements alike), and the replay refuses guards that run a call or
    a move where the schedule has none."""
    schedule, graph, layers = banded.schedule, banded.graph, banded.layers
    (repeat,) = schedule.repeats
    assert repeat.runs and any(runs.first > 0 for runs in repeat.runs) and \
        any(runs.last < repeat.count for runs in repeat.runs)
    body = invoke_body(banded.sources["model.c"])
    guarded = [j for j, runs in enumerate(repeat.runs) if (runs.first, runs.last) !=
               (0, repeat.count)]
    moves = [runs for j, m in enumerate(repeat.moves) for runs in m if runs != repeat.runs[j]]
    assert 0 < body.count("if (band_iteration(i) ") < len(guarded) + len(moves)
    late = next(j for j, runs in enumerate(repeat.runs) if runs.first > 0)
    runs = list(repeat.runs)
    runs[late] = Runs(0, runs[late].last)  # a call before its layer's first row
    with pytest.raises(AssertionError):
        row_bands.verify(broken(schedule, runs=tuple(runs)), graph, layers)
    moving = [(j, k) for j, moves in enumerate(repeat.moves) for k, runs in enumerate(moves)
              if runs.first > repeat.runs[j].first]
    if moving:
        j, k = moving[0]
        moves = [list(m) for m in repeat.moves]
        moves[j][k] = Runs(repeat.runs[j].first, moves[j][k].last)  # a move of rows not held
        with pytest.raises(AssertionError):
            row_bands.verify(broken(schedule, moves=tuple(map(tuple, moves))), graph, layers)
    with pytest.raises(AssertionError):  # the same loop without its guards
        row_bands.verify(broken(schedule, runs=(), moves=()), graph, layers)


def test_whole_layers_share_the_functions_of_their_banded_twins(tmp_path):
    """Bands over the first block only: the second block's layers, whole, call the first
    block's banded functions with every origin 0 (no copy of their own), bit-exact (as
    MobileNetV2 224 at 160K in QEMU, whose layers 21 and 27 do this)."""
    compiled = blocks()
    graph, layers = compiled.graph, compiled.layers
    schedule = row_bands.looped(row_bands.row_band_schedule(graph, layers, ((0, 3),), 1),
                                graph, layers)
    views = layer_views(graph, layers, schedule)
    assert [view.names.function for view in views[:4]] == \
        [views[0].names.function, views[1].names.function] * 2
    assert all(view.banded for view in views[:4]) and not schedule.is_banded(3)
    plan = plan_memory(arena_buffers(graph, layers, schedule))
    sources = render_sources(build_model_view(graph, layers, schedule, plan, "model", "blocks"))
    body = invoke_body(sources["model.c"])
    assert re.search(rf"{views[1].names.function}\([^;]*, 0, {layers[3].output_rows}, 0, 0[,)]",
                     body)  # layer 3, whole: its rows from 0, every origin 0
    inputs = np.random.default_rng(5).integers(-128, 128, (3, graph.input.size),
                                                    dtype=np.int8)
    assert_reference_outputs(sources, graph, tmp_path, inputs)


def test_a_layer_called_once_over_its_input_keeps_its_call(tmp_path):
    """blocks() layer by layer: its last pointwise (16 -> 2 channels, called once, its output
    over its input in the arena) became a constant-propagated clone whose input GCC 12's
    induction variables addressed through its output, with no base left; its pure-const and
    modref analyses took that for a null dereference and the call was deleted (x86-64 GCC
    12.2 -O2: outputs 44 44 for -2 127). Each layer function takes its pointer operands
    through an empty asm on entry (MCUGEN_OPAQUE), so none is a known address: bit-exact."""
    compiled = blocks()
    assert "MCUGEN_OPAQUE(output);" in compiled.sources["model.c"]
    graph = compiled.graph
    inputs = np.random.default_rng(5).integers(-128, 128, (3, graph.input.size),
                                                    dtype=np.int8)
    assert_reference_outputs(compiled.sources, graph, tmp_path, inputs)


@pytest.mark.slow
def test_a_budget_keeps_the_fast_variant_where_its_ring_fits():
    """At --max-ram 18K person_detect runs in bands only with some depthwise layers on a
    slower variant (a small-scratch or lean one: the fast variant's ring of rows costs
    arena); the layers whose ring still fits keep the fast variant (faster code), and the
    arena still fits. (At 20K every depthwise layer keeps its ring: the search leaves them
    the RAM of its smallest-arena schedule.)"""
    graph = load_tflite(PERSON_DETECT.read_bytes(), "pd")
    compiled = compile_graph(graph, name="pd", target=load_target("cortex-m7"), source="pd",
                             memory_check=False, max_ram=18 * 1024)
    assert compiled.schedule.banded and compiled.plan.arena_size <= 18 * 1024
    depthwise = [layer.variant for layer in compiled.layers
                 if type(layer.op).__name__ == "DepthwiseConv2D"]
    fast = [variant for variant in depthwise if variant.trades_ram and not variant.small_scratch]
    assert 0 < len(fast) < len(depthwise)
    assert compiled.schedule.repeats  # and its steady state is a loop


@pytest.mark.parametrize("kernel, padding", [((1, 1), Padding()),
                                             ((3, 3), Padding(1, 1, 1, 1))])
def test_rows_of_whole_blocks_need_no_loop_for_a_leftover_pixel(kernel, padding):
    """The DSP convolution kernels compute two pixels at a time, the pointwise three (two
    where deep); every call takes whole rows, so rows of a width that is whole blocks (6)
    leave no pixel over and their C has no code for one (a loop, or the pointwise's tail of
    one or two pixels): a banded layer's rows are not constants the compiler could see it
    from. (The pointwise's tails follow the rows its calls compute: its one call of five
    rows of 5 pixels leaves one.)"""
    def source(width: int) -> str:
        graph = g.conv(9, 5, width, 8, 8, kernel=kernel, padding=padding)
        compiled = compile_graph(graph, name="model", target=load_target("cortex-m7"),
                                 source="conv")
        assert compiled.layers[0].variant.name in ("pw_conv_s8_dsp", "conv_s8_dsp")
        return compiled.sources["model.c"]

    leftover = re.compile(r"for \(; p < end; \+\+p|if \(p < end\)")
    assert not leftover.search(source(6))
    assert leftover.search(source(5))


def test_band_moves_go_by_words_where_aligned_and_by_memmove_otherwise(banded, tmp_path):
    """A band buffer's rows still to be read move by band_shift_words (16 bytes a pass) where
    both ends and the bytes are whole words (rows of 96 bytes), by memmove where not (rows of
    15 bytes); both bit-exact."""
    body = invoke_body(banded.sources["model.c"])
    assert "band_shift_words(arena" in body and "memmove(arena" not in body
    # Rows of 5 x 3 = 15 bytes.
    odd = blocks(w=5, c=3, max_ram=blocks(w=5, c=3).plan.arena_size * 3 // 4)
    assert odd.schedule.banded
    source = odd.sources["model.c"]
    assert "memmove(arena" in invoke_body(source) and "band_shift_words" not in source
    graph = odd.graph
    inputs = np.random.default_rng(4).integers(-128, 128, (2, graph.input.size),
                                                    dtype=np.int8)
    assert_reference_outputs(odd.sources, graph, tmp_path, inputs)


@pytest.mark.slow
def test_code_in_bands_stays_within_15_percent_of_layer_by_layer():
    """Issue 20: code with bands at most 1.15 times the layer-by-layer code, measured with
    arm-none-eabi-gcc on VWW's start in small (conv_chain) at its smallest budget on the
    Cortex-M7: 1.159 times before the pointwise tails were shared and cut to the pixels the
    bands' calls leave (kernels/pointwise.py SharedColumn, SharedPair) and the band moves
    went out of line (band_shift_words), 1.098 after."""
    target = load_target("cortex-m7")
    graph = g.conv_chain(3, h=32, w=29)

    def code_bytes(**budget) -> tuple[int, CompiledModel]:
        compiled = compile_graph(graph, name="model", target=target, source="conv_chain",
                                 **budget)
        sizes = measure(compiled.sources, "model", target, compiled.plan.arena_size)
        assert sizes is not None, f"{target.compiler} is needed to measure the code"
        return sizes.code_bytes, compiled

    with pytest.raises(row_bands.NoScheduleFits) as smallest:
        compile_graph(graph, name="model", target=target, source="conv_chain", max_ram=64)
    whole, _ = code_bytes()
    banded, compiled = code_bytes(max_ram=smallest.value.smallest)
    assert compiled.schedule.banded and not compiled.schedule.tiles
    assert banded <= 1.15 * whole, (banded, whole)
