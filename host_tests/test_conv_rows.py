"""The widened-rows convolution on DSP cores (kernels/conv_rows.py, a MobileNet's first
layer): its weight layout, which convolutions take it, its edges bit-exact on every DSP core
(the unrolled products are inline assembly under GCC and C otherwise), and its speed on the
Cortex-M7 in exact instructions. Hand-built graphs, no TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

import ir_graphs as g
from firmware_batch import run_batch
from test_kernels import CASES, M7, case_inputs, reference_outputs, write_sources
from mcugen.compile import compile_graph
from mcugen.cycles import estimate_cycles
from mcugen.kernels.conv_rows import weight_pairs
from mcugen.qemu import build_firmware, run_firmware
from mcugen.targets import load_target

ROWS = "conv_s8_rows_dsp"
CONV_CASES = sorted(c for c in CASES if c.startswith(("conv_", "u8_conv_")))


def test_weights_are_int16_pairs_four_channels_a_word_group():
    """Per block of four channels, per window row, per pair of lanes: the four channels' pairs
    (lane 0 in the low half); a window row's odd last lane pairs with 0, as do channels past
    the last; doubled on request."""
    weights = np.arange(-60, 60, dtype=np.int8)[:5 * 2 * 3 * 1].reshape(5, 2, 3, 1)
    words = weight_pairs(weights, 2, doubled=False)
    assert words.size == 2 * 2 * 2 * 4  # two blocks, two rows, two pairs, four channels

    def pair(word: int) -> tuple[int, int]:
        w = int(word) & 0xFFFFFFFF
        return (np.int16(np.uint16(w & 0xFFFF)), np.int16(np.uint16(w >> 16)))

    for block in range(2):
        for ky in range(2):
            for p in range(2):
                for j in range(4):
                    channel = 4 * block + j
                    lanes = [0, 0] if channel >= 5 else \
                        [*weights[channel, ky, :, 0].tolist(), 0][2 * p:2 * p + 2]
                    at = ((block * 2 + ky) * 2 + p) * 4 + j
                    assert pair(words[at]) == tuple(lanes), (block, ky, p, j)
    doubled = weight_pairs(weights, 2, doubled=True)
    assert [pair(w) for w in doubled] == [tuple(2 * v for v in pair(w)) for w in words]


def test_first_convolutions_take_it_and_long_rows_or_wide_windows_do_not():
    taken = {case: compile_graph(CASES[case](), name="model", target=M7,
                                 source=case).layers[0].variant.name for case in CONV_CASES}
    for case in ("conv_3x3_s2_same_3_8", "conv_rows_s1_3_6",
                 "conv_rows_s2_odd_width_3_5", "conv_rows_pad_beyond_2_9",
                 "conv_rows_5x5_s2_1_4"):
        assert taken[case] == ROWS, case
    # Rows beyond its loads' reach, windows of many words (code size), dilation, uint8
    # weights: gathered.
    for case in ("conv_rows_too_long_3_4", "conv_3x3_17_6_long_rows", "conv_10x4_s2_ds_cnn",
                 "conv_3x3_dilated_4_4", "u8_conv_3x3_s2_same_3_8"):
        assert taken[case] == "conv_s8_dsp", case


def run_cases(target, cases, tmp_path, extra_cflags=()) -> set[str]:
    """The cases bit-exact on the target's board, all in one firmware (firmware_batch.py);
    the variants they took."""
    compiled = {case: compile_graph(CASES[case](), name=case, target=target, source=case)
                for case in cases}
    inputs = {case: case_inputs(model) for case, model in compiled.items()}
    runs = run_batch(compiled, inputs, target, tmp_path, extra_cflags=tuple(extra_cflags))
    for case, model in compiled.items():
        np.testing.assert_array_equal(runs[case].outputs, reference_outputs(model, inputs[case]),
                                      err_msg=f"{case} on {target.name}")
    return {layer.variant.name for model in compiled.values() for layer in model.layers}


@pytest.mark.qemu
@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m7", "cortex-m33"])
def test_every_convolution_case_is_bit_exact_on_every_dsp_core(core, tmp_path):
    assert ROWS in run_cases(load_target(core), CONV_CASES, tmp_path)


@pytest.mark.qemu
def test_the_c_form_of_the_products_is_bit_exact_too(tmp_path):
    """Without optimization (as under clang) the products are C, not inline assembly."""
    cases = [c for c in CONV_CASES if c.startswith("conv_rows_") or c == "conv_3x3_mixed_shifts"]
    assert ROWS in run_cases(M7, cases, tmp_path, extra_cflags=["-O0"])


@pytest.mark.qemu
def test_a_mobilenet_first_convolution_on_the_cortex_m7(tmp_path):
    """96x96x3 -> 48x48x8, 3x3 stride 2, ReLU6 (the zoo's v1 alpha 0.25 first layer): 0.407
    MACs per instruction and 0.542 per estimated cycle when each window was gathered and
    extended per pixel (conv_s8_dsp); the widened rows: 0.554 and 0.622 (in the zoo's model,
    0.450 and 0.626 before, 0.671 and 0.770 after). Exact instruction counts, bit-exact."""
    graph = g.conv(125, 96, 96, 3, 8, stride=(2, 2), padding=g.Padding(0, 1, 0, 1))
    compiled = compile_graph(graph, name="model", target=M7, source="first_conv")
    assert [layer.variant.name for layer in compiled.layers] == [ROWS]
    elf = build_firmware(write_sources(compiled, tmp_path / "model"), M7, tmp_path / "firmware")
    inputs = case_inputs(compiled)[:1]
    result = run_firmware(elf, M7, inputs, compiled.graph.output.size, blocks=True)
    np.testing.assert_array_equal(result.outputs, reference_outputs(compiled, inputs))
    inference = estimate_cycles(result, M7).inferences[0]
    macs = 48 * 48 * 8 * 27
    print(f"first convolution on the Cortex-M7: {macs / inference.instructions:.3f} MACs per "
          f"instruction, {macs / inference.cycles:.3f} per estimated cycle")
    assert macs / inference.instructions > 0.5
