"""The DSP matrix kernels (pointwise, fully connected, convolution on Cortex-M4, M7, M33:
kernels/pointwise.py, templates/kernels/pw_conv_s8_dsp_helpers.c.j2): the filter layout their
loop reads, their edges bit-exact on every DSP core, and the loop's speed on the Cortex-M7 in
exact instructions and LLVM's cycle estimate. Hand-built graphs, no TensorFlow; the last two
tests need the cross compiler and QEMU (the speed test llvm-mca too)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import ir_graphs as g
from firmware_batch import run_batch
from test_kernels import CASES, P0, case_inputs, reference_outputs, write_sources
from mcugen import codegen
from mcugen.compile import compile_graph
from mcugen.ir import Activation
from mcugen.cycles import estimate_cycles
from mcugen.kernels.pointwise import interleaved_rows
from mcugen.qemu import build_firmware, run_firmware
from mcugen.targets import load_target


@pytest.mark.parametrize("outputs, depth", [(1, 1), (2, 4), (3, 5), (6, 9), (7, 260)])
def test_filter_rows_are_stored_in_pairs_word_by_word(outputs, depth):
    """Rows padded to whole words; per pair of rows, group g's word of the first row then of
    the second; an odd last row alone, in order."""
    rows = np.random.default_rng(depth).integers(-128, 128, (outputs, depth)).astype(np.int8)
    groups = -(-depth // 4)
    padded = np.zeros((outputs, 4 * groups), np.int8)
    padded[:, :depth] = rows
    expected: list[int] = []
    for pair in range(outputs // 2):
        for group in range(groups):
            for row in (2 * pair, 2 * pair + 1):
                expected += padded[row, 4 * group:4 * group + 4].tolist()
    if outputs % 2:
        expected += padded[-1].tolist()
    assert interleaved_rows(rows).tolist() == expected


# The cases of test_kernels that take the DSP matrix product: every pointwise edge (groups of
# four inputs 1, 2, 3, 50, 64, 65, pairs with and without an odd row, odd pixels, one pixel,
# columns in arena scratch, uint8 weight offsets), fully connected layers, convolutions.
MATRIX_CASES = sorted(c for c in CASES if c.startswith(("pw_", "u8_pw_", "fc_", "u8_fc_"))
                      or c in ("conv_3x3_s2_same_3_8", "conv_3x3_17_6_long_rows",
                               "u8_conv_3x3_17_6_long_rows"))


@pytest.mark.qemu
@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m33"])
def test_the_matrix_kernels_are_bit_exact_on_every_dsp_core(core, tmp_path):
    """test_kernels runs every case on the Cortex-M7; the loop's inline assembly must run the
    same on ARMv7E-M's Cortex-M4 and ARMv8-M's Cortex-M33."""
    target = load_target(core)
    compiled = {case: compile_graph(CASES[case](), name=case, target=target, source=case)
                for case in MATRIX_CASES}
    inputs = {case: case_inputs(model) for case, model in compiled.items()}
    runs = run_batch(compiled, inputs, target, tmp_path)  # all in one firmware
    for case, model in compiled.items():
        np.testing.assert_array_equal(runs[case].outputs, reference_outputs(model, inputs[case]),
                                      err_msg=f"{case} on {core}")
    used = {layer.variant.name for model in compiled.values() for layer in model.layers}
    assert {"pw_conv_s8_dsp", "fc_s8_dsp", "conv_s8_dsp"} <= used


@pytest.mark.qemu
def test_a_pointwise_layer_in_the_scheduled_loop_is_bit_exact_on_the_cortex_m7(tmp_path):
    """64 -> 64 channels on 12x12 pixels (VWW's middle layers), with the cycle estimate. It
    prints its speed and asserts none (tests never assert timings): 0.666 MACs per
    instruction and 0.918 per estimated cycle before the interleaved rows and the scheduled
    loop, 0.720 and 1.033 with them."""
    target = load_target("cortex-m7")
    compiled = compile_graph(g.conv(40, 12, 12, 64, 64, (1, 1), padding=P0), name="model",
                             target=target, source="pw_64_64")
    assert [layer.variant.name for layer in compiled.layers] == ["pw_conv_s8_dsp"]
    inference = _bit_exact_inference(compiled, target, tmp_path)
    macs = 12 * 12 * 64 * 64
    assert inference.instructions > macs / 4 and inference.cycles > 0
    print(f"pointwise 64->64 on the Cortex-M7: {macs / inference.instructions:.3f} MACs per "
          f"instruction, {macs / inference.cycles:.3f} per estimated cycle")


@pytest.mark.qemu
def test_the_c_form_of_the_loop_is_bit_exact_too(tmp_path):
    """Without optimization (as under clang, which keeps a frame pointer on Arm) the 2x2
    product is C instead of the loop's inline assembly: the same integers."""
    target = load_target("cortex-m7")
    compiled = {case: compile_graph(CASES[case](), name=case, target=target, source=case)
                for case in ("pw_3_5", "pw_11_17", "pw_260_7_scratch_odd_groups", "u8_pw_11_17")}
    inputs = {case: case_inputs(model) for case, model in compiled.items()}
    runs = run_batch(compiled, inputs, target, tmp_path, extra_cflags=("-O0",))
    for case, model in compiled.items():
        np.testing.assert_array_equal(runs[case].outputs, reference_outputs(model, inputs[case]),
                                      err_msg=case)


@pytest.mark.qemu
def test_a_deep_pointwise_layer_extends_each_weight_word_once_for_three_pixels(tmp_path):
    """128 -> 128 channels on 6x6 pixels (a MobileNet's deep layers): the 3x2 product loads a
    pair of weight words with one LDRD and sign-extends it once for three pixels (20
    instructions per 24 MACs in its loop, 16 per 16 in the 2x2 product's). The whole layer
    took 1.245 instructions per MAC with the 2x2 product, 0.998 with the 3x2 one (exact QEMU
    counts, bit-exact). The cycle estimate is printed, not asserted: 1.226 MACs per estimated
    cycle before, 1.175 after (LDRD issues alone in LLVM's Cortex-M7 model)."""
    target = load_target("cortex-m7")
    compiled = compile_graph(g.conv(41, 6, 6, 128, 128, (1, 1), padding=P0), name="model",
                             target=target, source="pw_128_128")
    [layer] = compiled.layers
    assert layer.variant.name == "pw_conv_s8_dsp" and layer.access.block_pixels == 3
    inference = _bit_exact_inference(compiled, target, tmp_path)
    macs = 6 * 6 * 128 * 128
    print(f"pointwise 128->128 on the Cortex-M7: {macs / inference.instructions:.3f} MACs per "
          f"instruction, {macs / inference.cycles:.3f} per estimated cycle")
    assert inference.instructions / macs < 1.1


def _bit_exact_inference(compiled, target, tmp_path):
    """One input through the compiled model in QEMU, checked bit for bit against the
    reference; its exact instruction count and cycle estimate."""
    elf = build_firmware(write_sources(compiled, tmp_path / "model"), target,
                         tmp_path / "firmware")
    inputs = case_inputs(compiled)[:1]
    result = run_firmware(elf, target, inputs, compiled.graph.output.size, blocks=True)
    np.testing.assert_array_equal(result.outputs, reference_outputs(compiled, inputs))
    return estimate_cycles(result, target).inferences[0]


def _chain(w: int = 5, h: int = 5, couts=(11, 7, 6), legacy=None):
    """Pointwise layers of their own shapes: two under ReLU (one requantization), a linear
    last one (another)."""
    return g.pointwise_chain(1, h, w, 9, couts, (Activation.RELU, Activation.RELU,
                                                 Activation.NONE), legacy)


# (name, graph, --max-ram): the chains the tests below compile for the Cortex-M7.
CHAINS = {
    "five_by_five": (lambda: _chain(), None),  # 25 pixels: one left after whole blocks
    "weight_offsets": (lambda: _chain(legacy=(20, -30, None)), None),
    # In bands of one row: rows of 34 pixels leave one, rows of 35 two (layers 0-1; the last
    # layer runs whole: 272 pixels leave two, 280 one). Calls of at least
    # codegen.SHARED_TAIL_MIN_CALL_MACS (34 x 9 x 112 and more): smaller ones inline their tails.
    "bands_of_34": (lambda: _chain(w=34, h=8, couts=(112, 16, 6)), 8160),
    "bands_of_35": (lambda: _chain(w=35, h=8, couts=(112, 16, 6)), 8400),
    # The same with weight offsets (the two-pixel function's column sums).
    "bands_of_35_weight_offsets": (lambda: _chain(w=35, h=8, couts=(112, 16, 6),
                                                  legacy=(-25, 40, None)), 8400),
}


def _compiled_chain(name: str):
    graph, budget = CHAINS[name]
    compiled = compile_graph(graph(), name="model", target=load_target("cortex-m7"),
                             source=name, max_ram=budget)
    assert [layer.variant.name for layer in compiled.layers] == ["pw_conv_s8_dsp"] * 3
    assert [layer.params.block_pixels for layer in compiled.layers] == [3] * 3
    return compiled


def _function_body(source: str, layer: int) -> str:
    start = source.index(f"MCUGEN_LAYER void layer{layer}_")
    ends = [source.find(mark, start + 1) for mark in ("MCUGEN_LAYER void", "int model_invoke")]
    return source[start:min(end for end in ends if end > 0)]


def test_pointwise_layers_share_one_function_for_the_last_pixel_of_a_call():
    """A call's pixels that are not whole blocks of three end in one pixel: the layers under
    the short requantization, with or without its sign correction (ReLU or linear), call one
    out-of-line function for it (SharedColumn) instead of each inlining the one-pixel
    products; rows of whole blocks need none."""
    source = _compiled_chain("five_by_five").sources["model.c"]
    name = "pw_column_s8_dsp_pw_requantize_doubled"
    assert source.count(f"MCUGEN_LAYER void {name}(") == 1
    assert "pw_requantize_doubled_clamped" in _function_body(source, 0)  # the layer's form
    for layer in (0, 1, 2):
        body = _function_body(source, layer)
        assert f"{name}(output, pixel, scratch" in body and "pw_dot_1x4(" not in body
    whole = compile_graph(_chain(w=6), name="model", target=load_target("cortex-m7"),
                          source="six")
    assert "pw_column_s8_dsp" not in whole.sources["model.c"]


def test_the_odd_last_row_of_a_block_is_one_function_for_the_layers_with_one():
    """Layers with an odd channel count (11 and 7) end each block of three pixels with one
    filter row: they call one out-of-line function for it (SharedOddRow) instead of each
    inlining the 3x1 product; the even layer (6) has none."""
    source = _compiled_chain("five_by_five").sources["model.c"]
    name = "pw_row3_s8_dsp_pw_requantize_doubled"
    assert source.count(f"MCUGEN_LAYER void {name}(") == 1
    for layer in (0, 1):
        body = _function_body(source, layer)
        assert f"{name}(output + oc, scratch, w, k" in body and "pw_dot_3x1(" not in body
    assert "pw_row3_s8_dsp" not in _function_body(source, 2)


@pytest.mark.parametrize("chain, left", [("bands_of_34", 1), ("bands_of_35", 2)])
def test_a_banded_pointwise_function_has_only_the_tail_its_calls_leave(chain, left):
    """The schedule says how many rows each call computes: in bands of one row, rows of 34
    pixels leave one pixel after whole blocks of three and rows of 35 leave two, so a banded
    layer's function calls the one-pixel tail function or the two-pixel one (SharedPair), not
    both (a compiler could drop the other only for constant rows), and has neither inline."""
    compiled = _compiled_chain(chain)
    assert compiled.schedule.segments == ((0, 2),)
    assert {step.rows[1] - step.rows[0] for step in compiled.schedule.steps
            if step.layer < 2} == {1}
    source = compiled.sources["model.c"]
    for layer in (0, 1):
        body = _function_body(source, layer)
        assert ("pw_pair_s8_dsp_" in body) == (left == 2)
        assert ("pw_column_s8_dsp_" in body) == (left == 1)
        assert "pw_dot_2x2(" not in body and "pw_dot_1x4(" not in body
    # The last layer runs whole, alone with its requantization: 272 pixels leave two, 280 one.
    body = _function_body(source, 2)
    assert ("pw_dot_2x2(" in body) == (left == 1)
    assert ("pw_dot_1x4(" in body) == (left == 2)


def test_short_banded_calls_inline_their_tails():
    """Calls of fewer than codegen.SHARED_TAIL_MIN_CALL_MACS (rows of 7 and 5 pixels of 9 to
    24 channels in bands of one row, as column tiles' short rows of VWW's narrow layers)
    inline their tails at constant sizes, where the shared functions' run-time sizes would
    cost each call hundreds of instructions."""
    for w, product in ((7, "pw_dot_1x4("), (5, "pw_dot_2x2(")):
        compiled = compile_graph(_chain(w=w, h=8, couts=(24, 8, 6)), name="model",
                                 target=load_target("cortex-m7"), source="short",
                                 max_ram={7: 624, 5: 448}[w])
        assert compiled.schedule.segments == ((0, 2),)
        source = compiled.sources["model.c"]
        assert "pw_column_s8_dsp_" not in source and "pw_pair_s8_dsp_" not in source
        for layer in (0, 1):
            assert product in _function_body(source, layer)
    assert codegen.SHARED_TAIL_MIN_CALL_MACS > 7 * 9 * 24


@pytest.mark.qemu
def test_the_shared_last_pixel_and_the_banded_tails_are_bit_exact(tmp_path):
    """Every chain above in QEMU on the Cortex-M7, against the reference: the shared
    last-pixel and odd-row functions with and without weight offsets, and the banded layers'
    tails (the shared two-pixel one among them)."""
    target = load_target("cortex-m7")

    def one(name: str) -> None:
        compiled = _compiled_chain(name)
        elf = build_firmware(write_sources(compiled, tmp_path / name / "model"), target,
                             tmp_path / name / "firmware")
        inputs = case_inputs(compiled)
        result = run_firmware(elf, target, inputs, compiled.graph.output.size)
        np.testing.assert_array_equal(result.outputs, reference_outputs(compiled, inputs),
                                      err_msg=name)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(one, CHAINS))
