"""Helium (MVE) on Cortex-M55 and M85: the vectorised requantization against TFLite's
arithmetic on its edge values, the firmware of a real model running the Helium kernels (the
report's variants, Helium instructions in the linked image) bit-exact with TFLM, the Helium
depthwise written over its input, and the Cortex-M85 target (cross-compiled and measured with
its own flags, run on the M55 board). The kernel-level cases are in test_kernels.py."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import ir_graphs
from conftest import PERSON_DETECT, mobilenet_tflite
from mcugen import quant
from mcugen.build import BuildOptions
from mcugen.codegen import template_environment
from mcugen.ir import Activation, Padding
from mcugen.compile import compile_graph, prepare
from mcugen.kernels.variant import Isa
from mcugen.measure import STRICT
from mcugen.planner import find_overlap_violations
from mcugen.qemu import build_firmware, run_firmware
from mcugen.reference import run_reference
from mcugen.run import run
from mcugen.targets import load_target

M55 = load_target("cortex-m55")
M85 = load_target("cortex-m85")
BOARD = M55.qemu_board
# Layers without a Helium variant (softmax, data movement) stay portable C.
PORTABLE_ONLY = {"softmax_s8", "pad_s8", "transpose_s8", "copy_s8"}


def disassembly(path: Path) -> str:
    """objdump of an object or image, decoding Helium (VMLADAV prints as its alias VMLAV)."""
    return subprocess.run(["arm-none-eabi-objdump", "-d", "-marmv8.1-m.main", str(path)],
                          capture_output=True, text=True, check=True).stdout


# ---------------------------------------------------------------------------------------------
# The requantization: VQRDMULH, the lowering of negative values, VRSHL


GROUPS = 96  # of four lanes per inference
REQUANT_MODEL_C = """#include <stdint.h>
#include <string.h>
#include "model.h"

{fixedpoint}
{mve}
/* Per group of four lanes: acc, multiplier, shift in; the general requantization, the
 * right-shift form, both with lane 0's multiplier and shift for all lanes, and the high
 * multiply alone out. */
int model_invoke(const int8_t *input, int8_t *output)
{{
    for (int32_t g = 0; g < {groups}; ++g) {{
        int32_t acc[4], m[4], s[4], left[4], right[4], out[20];
        memcpy(acc, input + 48 * g, 16);
        memcpy(m, input + 48 * g + 16, 16);
        memcpy(s, input + 48 * g + 32, 16);
        for (int32_t i = 0; i < 4; ++i) {{
            left[i] = s[i] > 0 ? s[i] : 0;
            right[i] = s[i] < 0 ? s[i] : 0;
        }}
        const int32x4_t a = vldrwq_s32(acc), mv = vldrwq_s32(m);
        vstrwq_s32(out, mve_requantize(a, mv, vldrwq_s32(left), vldrwq_s32(right)));
        vstrwq_s32(out + 4, mve_requantize_right(a, mv, vldrwq_s32(right)));
        vstrwq_s32(out + 8, mve_requantize_n(a, m[0], left[0], right[0]));
        vstrwq_s32(out + 12, mve_requantize_right_n(a, m[0], right[0]));
        vstrwq_s32(out + 16, mve_high_n(a, m[0]));
        memcpy(output + 80 * g, out, 80);
    }}
    return 0;
}}
"""
REQUANT_MODEL_H = f"""#include <stdint.h>
typedef int8_t model_input_t;
typedef int8_t model_output_t;
#define MODEL_INPUT_SIZE {48 * GROUPS}
#define MODEL_OUTPUT_SIZE {80 * GROUPS}
#define MODEL_ARENA_SIZE 0
int model_invoke(const int8_t *input, int8_t *output);
"""


def requant_cases(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[groups, 4] accumulators, multipliers, shifts: exact halves of both signs (the one
    place VRSHL's rounding differs from TFLite's), random values over the whole int32 range,
    the extremes, multipliers 0 and 2^31 - 1, shifts from -31 to left shifts."""
    count = 4 * GROUPS
    shift = rng.integers(-31, 0, count)
    multiplier = rng.integers(1 << 30, 1 << 31, count)
    acc = rng.integers(-(1 << 31), 1 << 31, count, dtype=np.int64)
    # With multiplier 2^30 the high multiply is floor((acc + 1) / 2): acc = 2h gives h.
    halves = slice(0, count // 3)
    e = -shift[halves]
    k = rng.integers(-(1 << 10), 1 << 10, e.size)
    h = np.clip(k * (1 << e) + np.where(rng.random(e.size) < 0.5, 1, -1) * (1 << (e - 1)),
                -(1 << 30), (1 << 30) - 1)
    multiplier[halves], acc[halves] = 1 << 30, 2 * h
    extremes = slice(count // 3, count // 3 + 16)
    acc[extremes] = [-(1 << 31), (1 << 31) - 1, 0, 1, -1, 2, -2, 3, -3] + [-(1 << 31)] * 7
    multiplier[count // 3 + 9:count // 3 + 13] = [0, (1 << 31) - 1, 1, (1 << 31) - 1]
    # Whole groups with shifts of 0 and left shifts (acc << left wraps as int32 in both).
    for group, shifts in ((GROUPS - 4, [0, 0, 0, 0]), (GROUPS - 3, [1, 4, 0, -1]),
                          (GROUPS - 2, [7, 7, 7, 7]), (GROUPS - 1, [0, -3, 12, 0])):
        shift[4 * group:4 * group + 4] = shifts
        acc[4 * group:4 * group + 4] = rng.integers(-(1 << 24), 1 << 24, 4)
    acc[-1] = (1 << 31) - 1  # wraps when shifted left
    return (acc.astype(np.int32).reshape(GROUPS, 4), multiplier.astype(np.int32).reshape(GROUPS, 4),
            shift.astype(np.int32).reshape(GROUPS, 4))


@pytest.mark.qemu
def test_requantization_is_tflites_on_edge_values_in_qemu(tmp_path):
    env = template_environment()
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.h").write_text(REQUANT_MODEL_H)
    (model / "model.c").write_text(REQUANT_MODEL_C.format(
        fixedpoint=env.get_template("fixedpoint.c.j2").render(),
        mve=env.get_template("isa/mve.c.j2").render(), groups=GROUPS))
    elf = build_firmware(model, BOARD, tmp_path / "firmware")
    rng = np.random.default_rng(10)
    cases = [requant_cases(rng) for _ in range(3)]
    inputs = np.stack([np.concatenate([np.stack(c, axis=1).reshape(-1).view(np.int8)])
                       for c in cases])
    result = run_firmware(elf, BOARD, inputs, 80 * GROUPS)
    for (acc, multiplier, shift), out in zip(cases, result.outputs):
        out = out.view(np.int32).reshape(GROUPS, 5, 4)
        mbqm = quant.multiply_by_quantized_multiplier
        np.testing.assert_array_equal(out[:, 0], mbqm(acc, multiplier, shift))
        right = (shift <= -1).all(axis=1)
        np.testing.assert_array_equal(out[right, 1], mbqm(acc, multiplier, shift)[right])
        lane0 = (multiplier[:, :1], shift[:, :1])
        np.testing.assert_array_equal(out[:, 2], mbqm(acc, *lane0))
        right = shift[:, 0] <= -1
        np.testing.assert_array_equal(out[right, 3], mbqm(acc, *lane0)[right])
        np.testing.assert_array_equal(out[:, 4], mbqm(acc, multiplier[:, :1], 0))


def test_the_edge_values_include_exact_halves_of_both_signs():
    """The cases hit the rounding that VRSHL alone gets wrong (negative exact halves)."""
    acc, multiplier, shift = requant_cases(np.random.default_rng(10))
    high = quant.saturating_rounding_doubling_high_mul(acc, multiplier).astype(np.int64)
    e = np.maximum(-shift, 0)
    half = (e > 0) & ((high & ((1 << e) - 1)) == (1 << np.maximum(e - 1, 0)))
    assert (half & (high < 0)).sum() > 20 and (half & (high > 0)).sum() > 20
    half_up = (high + (1 << np.maximum(e - 1, 0)) * (e > 0)) >> e
    assert (half_up != quant.multiply_by_quantized_multiplier(acc, multiplier, shift)).any()


# ---------------------------------------------------------------------------------------------
# Real models: the Helium kernels are what runs


@pytest.fixture(scope="module")
def mobilenet_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("helium") / "v1_a025_96.tflite"
    path.write_bytes(mobilenet_tflite(arch="v1", seed=1, alpha=0.25, height=96, width=96,
                                      channels=3, classes=2))
    return path


@pytest.mark.tensorflow
@pytest.mark.qemu
def test_mobilenet_runs_the_helium_kernels_bit_exact_on_cortex_m55(mobilenet_file, tmp_path):
    summary = run(BuildOptions(model=mobilenet_file, target="cortex-m55"), None, tmp_path)
    assert summary.tflm_outputs is not None and summary.matches
    kernels = {layer.kernel for layer in summary.build.compiled.report.layers}
    assert kernels - PORTABLE_ONLY == {"conv_s8_pixels_mve", "dw_conv_s8_mve", "pw_conv_s8_mve",
                                       "pw_conv_s8_pixels_mve", "mean_s8_mve"}
    assert all(layer.isa == Isa.MVE.value for layer in summary.build.compiled.report.layers
               if layer.kernel not in PORTABLE_ONLY)
    image = disassembly(tmp_path / "firmware" / "firmware.elf")
    for instruction in ("vmlav.s8", "vmlava.s8", "vqrdmulh.s32", "vrshl.s32", "vldrbt.u8",
                        "vstrb.16", "le\tlr"):
        assert instruction in image, instruction
    # Helium gets this model to more than two MACs per instruction (the DSP code: 0.38).
    assert summary.build.compiled.report.macs > 2 * summary.qemu.instructions[0]


@pytest.mark.qemu
def test_person_detect_runs_bit_exact_on_cortex_m55(tmp_path):
    summary = run(BuildOptions(model=PERSON_DETECT, target="cortex-m55"), None, tmp_path)
    assert summary.matches
    assert "dw_conv_s8_mve" in {layer.kernel for layer in summary.build.compiled.report.layers}


def _bit_exact_case_in_qemu(case: str, work: Path):
    """test_kernels' case on the M55 board, bit-exact with the reference: its compile and run."""
    import test_kernels

    compiled = test_kernels.compile_case(case, M55)
    elf = build_firmware(test_kernels.write_sources(compiled, work / "model"), M55,
                         work / "firmware")
    inputs = test_kernels.case_inputs(compiled)
    result = run_firmware(elf, M55, inputs, compiled.graph.output.size)
    np.testing.assert_array_equal(result.outputs,
                                  test_kernels.reference_outputs(compiled, inputs))
    return compiled, result


def _graph_in_qemu(compiled, work: Path, seed: int, count: int):
    """A compiled one-layer graph on the M55 board on `count` random inputs, bit-exact with
    the reference: its run."""
    (work / "model").mkdir(parents=True)
    for file, text in compiled.sources.items():
        (work / "model" / file).write_text(text)
    elf = build_firmware(work / "model", BOARD, work / "firmware")
    graph = compiled.graph
    inputs = np.random.default_rng(seed).integers(-128, 128, (count, graph.input.size))
    inputs = inputs.astype(np.int8)
    result = run_firmware(elf, BOARD, inputs, graph.output.size)
    expected = np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                         for x in inputs])
    np.testing.assert_array_equal(result.outputs, expected)
    return result


@pytest.mark.qemu
def test_first_layers_are_convolved_a_window_per_vector_or_two(tmp_path):
    """A grayscale first layer (3x3 convolution, or depthwise to 8 channels) takes
    conv_s8_pixels_mve: each window one vector, four pixels' windows held while the channels
    go by; an RGB one or DS-CNN's 10x4, windows of two or three vectors in scratch columns.
    Bit-exact and well under the matrix product's and the ring's counts (5,425, 1,828, 7,991
    and 61,859 instructions with conv_s8_mve and dw_conv_s8_mve; 2,992, 836, 5,285 and 32,423
    with it)."""
    for case, most in (("conv_3x3_s2_same_1_11", 4000), ("dw_3x3_s2_m8_c1", 1300),
                       ("conv_3x3_3_5", 6500), ("conv_10x4_s2_ds_cnn", 45000)):
        compiled, result = _bit_exact_case_in_qemu(case, tmp_path / case)
        assert [layer.variant.name for layer in compiled.layers] == ["conv_s8_pixels_mve"]
        assert max(result.instructions) < most, (case, result.instructions)


def _depthwise_lanes(graph) -> bool:
    (layer,) = compile_graph(graph, name="m", target=M55, source="dw").layers
    assert layer.variant.name == "dw_conv_s8_mve"
    return layer.params.channel_lanes


def test_the_depthwise_takes_channel_lanes_where_they_cost_fewer_instructions():
    """Channel lanes (four channels of a pixel per pass) on narrow rows, pixel lanes (four
    pixels of a channel) on wide ones, by the loops' measured counts: rows of 5 pixels take
    channel lanes at 64 channels and at 13 (3,656 instructions in pixel lanes, 3,360 in channel
    lanes), not at 5 (a partial group of one costs as much as a full one); rows of 8 pixels
    never. Only where the kernel holds its vectors in Q registers: an
    activation that spans int8 (a ReLU6 of a narrow range needs vectors of bounds), one run
    per window (not 5x5), one input channel per output channel."""
    none = Activation.NONE
    assert _depthwise_lanes(ir_graphs.depthwise(1, 5, 5, 64, activation=none))
    assert _depthwise_lanes(ir_graphs.depthwise(2, 6, 6, 128, stride=(2, 2),
                                                padding=Padding(0, 1, 0, 1),
                                                activation=none))
    assert _depthwise_lanes(ir_graphs.depthwise(3, 5, 5, 13, activation=none))
    assert not _depthwise_lanes(ir_graphs.depthwise(3, 5, 5, 5, activation=none))
    assert not _depthwise_lanes(ir_graphs.depthwise(4, 8, 8, 64, activation=none))
    assert not _depthwise_lanes(ir_graphs.depthwise(5, 5, 5, 64))  # ReLU6, narrow range
    assert not _depthwise_lanes(ir_graphs.depthwise(6, 5, 5, 64, kernel=(5, 5),
                                                    padding=Padding(2, 2, 2, 2),
                                                    activation=none))
    assert not _depthwise_lanes(ir_graphs.depthwise(7, 5, 5, 32, multiplier=2,
                                                    activation=none))


@pytest.mark.qemu
def test_narrow_depthwise_rows_are_bit_exact_and_cheaper_in_channel_lanes(tmp_path):
    """DS-CNN's depthwise shape (rows of 5 pixels, here 5 rows of 64 channels) and a
    MobileNet's stride-2 depthwise to 3x3 at 128 channels, in QEMU: bit-exact, and under the
    pixel lanes' counts (15,912 and 15,891 instructions; 13,018 and 14,342 with channel
    lanes, 12,218 and 13,766 with their biases and sums by LDM and STM)."""
    none = Activation.NONE
    cases = ((ir_graphs.depthwise(7, 5, 5, 64, activation=none), 14000),
             (ir_graphs.depthwise(5, 6, 6, 128, stride=(2, 2),
                                  padding=Padding(0, 1, 0, 1), activation=none),
              15000))
    for i, (case, most) in enumerate(cases):
        compiled = compile_graph(case, name="model", target=M55, source="dw")
        assert compiled.layers[0].params.channel_lanes
        result = _graph_in_qemu(compiled, tmp_path / str(i), seed=i, count=3)
        assert max(result.instructions) < most, result.instructions


@pytest.mark.qemu
def test_wide_depthwise_rows_go_eight_pixels_a_pass(tmp_path):
    """Rows of 8 pixels or more: two blocks of four pixels narrowed to int16 together for the
    offset, clamp and one scatter store; the last 5 to 7 pixels of a row likewise, by one
    predicated store. A stride-2 layer from 48x48x16 (rows of 24: three passes), 13x13x24 (a
    pass, then a block of four and one pixel together) and 6x6x64 (four and two together):
    bit-exact, and under the counts of four pixels a pass (71,235, 31,625 and 21,969
    instructions; 67,308, 27,198 and 19,269 so)."""
    cases = ((ir_graphs.depthwise(3, 48, 48, 16, stride=(2, 2), padding=Padding(0, 1, 0, 1)),
              69000, True, False),
             (ir_graphs.depthwise(6, 13, 13, 24), 28500, True, True),
             (ir_graphs.depthwise(11, 6, 6, 64), 20500, False, True))
    for i, (case, most, eight, combined) in enumerate(cases):
        compiled = compile_graph(case, name="model", target=M55, source="dw")
        params = compiled.layers[0].params
        assert (params.eight_pixels, params.combined_tail) == (eight, combined)
        result = _graph_in_qemu(compiled, tmp_path / str(i), seed=i, count=2)
        assert max(result.instructions) < most, result.instructions


def test_the_combined_tails_store_predicate_reaches_the_core_as_generated(tmp_path):
    """The last 4 + 2 pixels of a row are stored by one scatter under the predicate 0x33ff
    (16-bit lanes: all even ones, the first two odd ones). GCC 12 folded that constant to
    0xffff and stored two bytes past each row (v3-small's 5x5 layers then wrote into the next
    buffer, which no single-layer case shows); hidden from its folding, the constant is
    loaded as generated (13311)."""
    compiled = compile_graph(ir_graphs.depthwise(11, 6, 6, 64), name="m", target=M55,
                             source="dw")
    assert compiled.layers[0].params.combined_tail_predicate == "0x33ff"
    for file, text in compiled.sources.items():
        (tmp_path / file).write_text(text)
    subprocess.run(["arm-none-eabi-gcc", *M55.cflags, *STRICT, "-S", str(tmp_path / "m.c"),
                    "-o", str(tmp_path / "m.s")], check=True)
    assembly = (tmp_path / "m.s").read_text()
    assert "vstrbt.16" in assembly and "#13311" in assembly


@pytest.mark.qemu
def test_the_depthwise_ring_takes_six_groups_of_channels_by_their_own_offsets(tmp_path):
    """v2's 48-channel depthwise (stride 2, here from 16x16): the ring's transposing stores of
    six groups of eight channels share the slot as their base, each group's plane offsets in
    its own vector, in ring functions that stay calls. Bit-exact, and under the count with an
    add per group (30,600 instructions; 27,562 so)."""
    graph = ir_graphs.depthwise(9, 16, 16, 48, stride=(2, 2), padding=Padding(0, 1, 0, 1))
    compiled = compile_graph(graph, name="model", target=M55, source="dw")
    params = compiled.layers[0].params
    assert params.group_offsets and params.ring_calls
    assert "__attribute__((noinline)) static void layer0_dw_conv_s8_mve_take" in \
        compiled.sources["model.c"]
    result = _graph_in_qemu(compiled, tmp_path, seed=9, count=2)
    assert max(result.instructions) < 29000, result.instructions


@pytest.mark.qemu
def test_pointwise_rows_of_three_chunks_or_more_take_eight_accumulators(tmp_path):
    """Two rows by four channels in the eight even registers (r0 to r14): each input chunk
    loaded once for the four channels (it was loaded once per pair of channels). Bit-exact
    and under the two-pass block's counts: 940, 645 and 1,948 instructions before (unrolled;
    looped without and with a tail), 909, 561 and 1,714 with it."""
    for case, most in (("pw_64_7_eight_accumulators", 925), ("pw_144_4_even_loop", 600),
                       ("pw_273_5_even_loop_tail", 1830)):
        compiled, result = _bit_exact_case_in_qemu(case, tmp_path / case)
        assert [layer.variant.name for layer in compiled.layers] == ["pw_conv_s8_mve"]
        assert 'register int32_t a7 __asm__("lr");' in compiled.sources["model.c"]
        assert max(result.instructions) < most, (case, result.instructions)


@pytest.mark.qemu
def test_an_average_pool_of_up_to_255_taps_sums_eight_channels_a_load(tmp_path):
    """int16 lanes (eight channels per load) where no sum of int8 taps can overflow them:
    bit-exact at 255 taps with the extremes' inputs, and under the int32 lanes' counts
    (4,330 and 1,459 instructions before, 2,946 and 852 with them)."""
    for case, most in (("avgpool_15x17_global_c9_int16", 3600),
                       ("avgpool_7x7_global_c13", 1150)):
        compiled, result = _bit_exact_case_in_qemu(case, tmp_path / case)
        assert "vldrbq_z_s16" in compiled.sources["model.c"]
        assert max(result.instructions) < most, (case, result.instructions)


@pytest.mark.qemu
def test_host_code_has_no_helium_and_helium_code_stops_other_cores(tmp_path):
    case = ir_graphs.depthwise(1, 6, 6, 8)
    host = compile_graph(case, name="m", target=load_target("host"), source="c").sources["m.c"]
    m55 = compile_graph(case, name="m", target=M55, source="c").sources["m.c"]
    assert "arm_mve.h" not in host and "vmladav" not in host
    assert "arm_mve.h" in m55 and "__ARM_FEATURE_MVE" in m55 and "#error" in m55
    for file, text in compile_graph(case, name="m", target=M55, source="c").sources.items():
        (tmp_path / file).write_text(text)
    m7 = subprocess.run(["arm-none-eabi-gcc", *load_target("cortex-m7").cflags, *STRICT, "-c",
                         str(tmp_path / "m.c"), "-o", str(tmp_path / "m7.o")],
                        capture_output=True, text=True)
    assert m7.returncode != 0 and "generated for a core with Helium" in m7.stderr


def test_sums_and_pixel_offsets_take_their_lanes_by_the_same_vmov_pattern():
    """The dot-product blocks put four sums in a vector by two VMOVs of two registers, whose
    lane order QEMU cannot vouch for on silicon; the pixel offsets the scatter stores pair them
    with must come from the same two instructions (mve_vmov_lanes), so that any lane order
    stores each sum at its own pixel."""
    case = ir_graphs.depthwise(1, 6, 6, 8)
    source = compile_graph(case, name="m", target=M55, source="c").sources["m.c"]
    pattern = re.compile(r'"vmov %q\[(\w+)\]\[(\d)\], %q\[\w+\]\[(\d)\], %\[(\w+)\], %\[(\w+)\]')
    helper = source[source.index("mve_vmov_lanes(uint32_t"):]
    helper = helper[:helper.index("}")]

    def lanes(text: str) -> list[tuple[str, str, str, str]]:
        """(lane, lane, register's position, register's position) of each VMOV, in order."""
        found = [m.groups() for m in pattern.finditer(text)]
        return [(a, b, c[-1], d[-1]) for _, a, b, c, d in found]

    block = source[source.index("layer0_dw_conv_s8_mve_dot4"):]
    assert lanes(helper) == [("2", "0", "0", "2"), ("3", "1", "1", "3")]
    assert lanes(block)[:2] == lanes(helper)
    assert "pixel_offsets = mve_vmov_lanes(0, 8, 16, 24)" in source


def test_eight_pixel_results_take_their_lanes_as_their_offsets_do():
    """pw_conv_s8_pixels_mve with two pixels per vector: the block's assembly puts pixels 0-3
    and 4-7 in two vectors by the helper's VMOV pattern and narrows them into the bottom and
    top halves of one; the scatter store's offsets are made by the same helper and the same
    narrowings, so each result lands at its own pixel whatever lane order silicon has."""
    case = ir_graphs.conv(3, 5, 7, 8, 16, (1, 1), padding=Padding(0, 0, 0, 0))
    source = compile_graph(case, name="m", target=M55, source="c").sources["m.c"]
    pattern = re.compile(r'"vmov %q\[(\w+)\]\[(\d)\], %q\[\w+\]\[(\d)\], %\[(\w+)\], %\[(\w+)\]')
    block = source[source.index("layer0_pw_conv_s8_pixels_mve_dot("):]
    block = block[:block.index("return w;")]
    found = [(q, a, b, c, d) for q, a, b, c, d in pattern.findall(block)]
    assert found == [("s0", "2", "0", "a0", "a2"), ("s0", "3", "1", "a1", "a3"),
                     ("u0", "2", "0", "a0", "a2"), ("u0", "3", "1", "a1", "a3")]
    assert block.index('"vqmovnb.s32 %q[u1], %q[u1]') < block.index('"vqmovnt.s32 %q[u1], %q[s0]')
    assert ("pixel_offsets = vmovntq_u32(vmovnbq_u32(vdupq_n_u16(0), "
            "mve_vmov_lanes(0, 16, 32, 48)), mve_vmov_lanes(64, 80, 96, 112))") in source


# ---------------------------------------------------------------------------------------------
# In place: the depthwise writes whole rows after reading them into its ring


@pytest.mark.qemu
def test_the_helium_depthwise_is_written_over_its_input_safely(tmp_path):
    """x -> y -> z -> out, three depthwise layers: z is written over y at the distance of the
    variant's access order (whole output rows), and the firmware is bit-exact."""
    one = ir_graphs.depthwise(3, 9, 10, 8)
    op, y = one.ops[0], one.tensor("y")
    chain = one.replace(
        ops=(op, dataclasses.replace(op, input="y", output="z"),
             dataclasses.replace(op, input="z", output="out")),
        tensors={**one.tensors, "z": dataclasses.replace(y, name="z"),
                 "out": dataclasses.replace(y, name="out")},
        outputs=("out",))
    compiled = compile_graph(chain, name="model", target=M55, source="chain")
    assert {layer.variant.name for layer in compiled.layers} == {"dw_conv_s8_mve"}
    assert all(layer.access.block_pixels == 10 for layer in compiled.layers)
    buffers = {b.id: b for b in compiled.buffers}
    (overlap,) = buffers["z"].overlaps
    # The writes of output row r may come before the reads of its window: two input rows of
    # 10 x 8 bytes ahead of a pixel-by-pixel kernel's distance.
    assert overlap.other == "y" and overlap.distance == 2 * 10 * 8
    offsets = compiled.plan.offsets
    assert offsets["z"] < offsets["y"] < offsets["z"] + buffers["z"].size  # in place
    assert find_overlap_violations(list(compiled.buffers), compiled.plan) == []
    for file, text in compiled.sources.items():
        (tmp_path / "model").mkdir(exist_ok=True)
        (tmp_path / "model" / file).write_text(text)
    elf = build_firmware(tmp_path / "model", BOARD, tmp_path / "firmware")
    graph = prepare(chain)
    inputs = np.random.default_rng(4).integers(-128, 128, (3, graph.input.size)).astype(np.int8)
    result = run_firmware(elf, BOARD, inputs, graph.output.size)
    expected = np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                         for x in inputs])
    np.testing.assert_array_equal(result.outputs, expected)


# ---------------------------------------------------------------------------------------------
# Cortex-M85: the same instruction set; QEMU has no M85 board


@pytest.mark.tensorflow
@pytest.mark.qemu
def test_cortex_m85_is_compiled_with_its_flags_measured_and_bit_exact_on_the_m55_board(
        mobilenet_file, tmp_path):
    summary = run(BuildOptions(model=mobilenet_file, target="cortex-m85"), None, tmp_path)
    assert summary.matches and summary.build.compiled.report.target == "cortex-m85"
    sizes = summary.build.measured
    assert sizes is not None and sizes.code_bytes > 0 and sizes.stack_bytes > 0
    kernels = {layer.kernel for layer in summary.build.compiled.report.layers}
    assert "pw_conv_s8_mve" in kernels and "dw_conv_s8_mve" in kernels
    # The measured object is built for the M85's architecture, and holds Helium code.
    source = tmp_path / "model" / "model.c"
    obj = tmp_path / "m85.o"
    subprocess.run(["arm-none-eabi-gcc", *M85.cflags, *STRICT, "-I", str(source.parent), "-c",
                    str(source), "-o", str(obj)], check=True)
    attributes = subprocess.run(["arm-none-eabi-readelf", "-A", str(obj)], capture_output=True,
                                text=True, check=True).stdout
    assert "v8.1-M.mainline" in attributes and "MVE" in attributes
    assert "vmlava.s8" in disassembly(obj)
