"""The DSP depthwise variant with SMLAD on pairs of taps (kernels/depthwise_pairs.py): its MAC
plans against the direct sum, its per-channel records, where selection takes it, the lean
variant where a RAM budget needs it (all Python: hand-built IR graphs, no TensorFlow, no
toolchain), the lean variant's border function shared by layers, and its output written over
its input in QEMU on Cortex-M7 (the cross compiler and QEMU). test_kernels runs its C on its
edge cases (dw_* and u8_dw_*)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

import ir_graphs as g
from mcugen import ir
from mcugen.compile import compile_graph, prepare
from mcugen.kernels.depthwise_pairs import LANES, mac_plan, record_lanes
from mcugen.planner import find_overlap_violations
from mcugen.qemu import build_firmware, run_firmware
from mcugen.reference import run_reference
from mcugen.targets import load_target

M7 = load_target("cortex-m7")

ACLE = {  # (data lane, weight lane) pairs each intrinsic multiplies, summed
    "__smlad": ((0, 0), (1, 1)), "__smladx": ((0, 1), (1, 0)),
    "__smlabb": ((0, 0),), "__smlabt": ((0, 1),), "__smlatb": ((1, 0),), "__smlatt": ((1, 1),),
}


def run_plan(plan, data: np.ndarray, weights: np.ndarray) -> list[int]:
    """The block's accumulators as the C computes them: data [KH][columns] of the block,
    weights [KH][KW], each intrinsic on the words its MAC names."""
    acc = [None] * plan.outputs
    for mac in plan.macs:
        word = data[mac.row, LANES * mac.word:LANES * mac.word + LANES]
        taps = plan.weight_taps[mac.weight]
        lanes = [weights[mac.row, kx] if kx >= 0 else 0 for kx in taps]
        total = sum(int(word[d]) * int(lanes[w]) for d, w in ACLE[mac.function])
        acc[mac.output] = (0 if mac.first else acc[mac.output]) + total
    return acc


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k_h, k_w", [(3, 3), (1, 1), (3, 1), (3, 2), (5, 5), (3, 7), (2, 4)])
def test_every_tap_is_multiplied_once(stride, k_h, k_w):
    rng = np.random.default_rng(k_h * 10 + k_w + stride)
    pair = mac_plan(2, stride, k_h, k_w)
    single = mac_plan(1, stride, k_h, k_w, pair.weight_taps)
    weights = rng.integers(-255, 256, (k_h, k_w))
    for plan in (pair, single):
        data = rng.integers(-128, 128, (k_h, LANES * plan.words))
        want = [int((data[:, q * stride:q * stride + k_w] * weights).sum())
                for q in range(plan.outputs)]
        assert run_plan(plan, data, weights) == want
        # Each output's accumulator starts from the bias exactly once.
        assert sorted(m.output for m in plan.macs if m.first) == list(range(plan.outputs))


def test_a_3x3_pair_is_three_ldrd_and_twelve_macs():
    """The issue's count: two output columns of one channel take 3 LDRD (one a kernel row)
    and 12 SMLAD/SMLAxy for 18 MACs, with two weight words a kernel row."""
    pair = mac_plan(2, 1, 3, 3)
    assert pair.words == 2 and len(pair.weight_taps) == 2 and len(pair.macs) == 12
    assert sum(m.function == "__smlad" for m in pair.macs) == 6
    stride2 = mac_plan(2, 2, 3, 3)  # five columns: LDRD and LDR a row, still 12 MACs
    assert stride2.words == 3 and len(stride2.macs) == 12


def test_records_hold_the_doubled_weights_of_a_uint8_model():
    graph = g.depthwise(120, 5, 6, 5, legacy_zero_point=70)
    layer = compile_graph(graph, name="m", target=M7, source="t").layers[0]
    assert layer.variant.name == "dw_conv_s8_pairs_dsp"
    params = layer.params
    weights = compile_graph(graph, name="m", target=M7, source="t").graph
    tensor = weights.tensor(weights.ops[0].filter)
    centred = tensor.data.astype(np.int64)[0] - tensor.zero_point  # [KH, KW, Cout]
    lanes = record_lanes(params)  # [Cout][KH][words][2]
    for index, taps in enumerate(params.pair.weight_taps):
        for lane, kx in enumerate(taps):
            want = 2 * centred[:, kx, :].T if kx >= 0 else 0
            np.testing.assert_array_equal(lanes[:, :, index, lane], want)
    assert np.abs(centred).max() > 127  # beyond int8: the int16 lanes hold them


def test_selection_keeps_the_other_dsp_variant_for_dilation():
    graph = g.depthwise(121, 9, 9, 8, dilation=(2, 2), padding=ir.Padding(2, 2, 2, 2))
    layer = compile_graph(graph, name="m", target=M7, source="t").layers[0]
    assert layer.variant.name == "dw_conv_s8_dsp"


def test_a_ram_budget_the_ring_would_exceed_takes_the_lean_variant():
    """The ring of widened rows costs arena RAM: where a --max-ram budget is met only without
    it, the layer takes a variant without the ring (the small-scratch tier, a few channels'
    rows at a time); without a budget, the fast one."""
    def compiled(max_ram):
        graph = g.depthwise(122, 24, 24, 16)
        return compile_graph(graph, name="m", target=M7, source="t", memory_check=False,
                             max_ram=max_ram)

    fast = compiled(None)
    assert fast.layers[0].variant.name == "dw_conv_s8_pairs_dsp"
    assert fast.layers[0].scratch_bytes > 0
    lean = compiled(fast.plan.arena_size - 1)
    assert lean.layers[0].variant.name == "dw_conv_s8_pairs_blocks_dsp"
    assert lean.layers[0].scratch_bytes < fast.layers[0].scratch_bytes
    assert lean.plan.arena_size < fast.plan.arena_size
    same = compiled(fast.plan.arena_size)
    assert same.layers[0].variant.name == "dw_conv_s8_pairs_dsp"


@pytest.mark.qemu
@pytest.mark.parametrize("stride", [(1, 1), (2, 2)])
def test_the_output_is_written_over_the_input_safely(stride, tmp_path):
    """x -> y -> z -> out, three depthwise layers: the variant reads the input rows a whole
    output row needs into its ring before writing that row, so the planner may place each
    output over its input as for a pixel-by-pixel kernel (block of 1); the firmware is
    bit-exact."""
    one = g.depthwise(123, 9, 10, 8)
    op, y = one.ops[0], one.tensor("y")
    last = dataclasses.replace(op, input="z", output="out", stride=stride,
                               padding=ir.Padding(0, 1, 0, 1) if stride == (2, 2) else op.padding)
    out_shape = (1, 4, 5, 8) if stride == (2, 2) else y.shape
    chain = one.replace(
        ops=(op, dataclasses.replace(op, input="y", output="z"), last),
        tensors={**one.tensors, "z": dataclasses.replace(y, name="z"),
                 "out": dataclasses.replace(y, name="out", shape=out_shape)},
        outputs=("out",))
    compiled = compile_graph(chain, name="model", target=M7, source="chain")
    assert {layer.variant.name for layer in compiled.layers} == {"dw_conv_s8_pairs_dsp"}
    assert all(layer.access.block_pixels == 1 for layer in compiled.layers)
    buffers = {b.id: b for b in compiled.buffers}
    (overlap,) = buffers["z"].overlaps
    assert overlap.other == "y"
    offsets = compiled.plan.offsets
    assert offsets["z"] < offsets["y"] < offsets["z"] + buffers["z"].size  # in place
    assert find_overlap_violations(list(compiled.buffers), compiled.plan) == []
    (tmp_path / "model").mkdir()
    for file, text in compiled.sources.items():
        (tmp_path / "model" / file).write_text(text)
    elf = build_firmware(tmp_path / "model", M7, tmp_path / "firmware")
    graph = prepare(chain)
    inputs = np.random.default_rng(5).integers(-128, 128, (3, graph.input.size)).astype(np.int8)
    result = run_firmware(elf, M7, inputs, graph.output.size)
    expected = np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                         for x in inputs])
    np.testing.assert_array_equal(result.outputs, expected)


def dilated_chain() -> ir.Graph:
    """x -> y -> z -> u -> out: four dilated depthwise layers (the lean DSP variant: the pairs
    variant does not take dilation) of 8, 8 (multiplier 2), 16 and 16 channels, the last of
    stride 2 on its predecessor's input shape: sizes, channel counts and clamps (RELU6 in
    its output's scale, then RELU) differ, the window does not."""
    dilation, padding, relu = (2, 2), ir.Padding(2, 2, 2, 2), ir.Activation.RELU
    parts = [g.depthwise(124, 9, 10, 8, dilation=dilation, padding=padding),
             g.depthwise(125, 9, 10, 8, multiplier=2, dilation=dilation, padding=padding),
             g.depthwise(126, 9, 10, 16, dilation=dilation, padding=padding, activation=relu),
             g.depthwise(127, 9, 10, 16, stride=(2, 2), dilation=dilation, padding=padding,
                         activation=relu)]
    names = [("x", "y"), ("y", "z"), ("z", "u"), ("u", "out")]
    tensors, ops = {}, []
    for k, (part, (source, target)) in enumerate(zip(parts, names)):
        op = part.ops[0]
        renamed = {"x": source, "y": target, "w": f"w{k}", "b": f"b{k}"}
        for name, tensor in part.tensors.items():
            if name != "x" or k == 0:  # a layer's input is the previous layer's output
                tensors[renamed[name]] = dataclasses.replace(tensor, name=renamed[name])
        ops.append(dataclasses.replace(op, input=source, filter=f"w{k}", bias=f"b{k}",
                                       output=target))
    return parts[0].replace(tensors=tensors, ops=tuple(ops), inputs=("x",), outputs=("out",))


@pytest.fixture(scope="module")
def dilated_chain_m7():
    compiled = compile_graph(dilated_chain(), name="model", target=M7, source="chain")
    assert [layer.variant.name for layer in compiled.layers] == ["dw_conv_s8_dsp"] * 4
    return compiled


def test_lean_depthwise_layers_share_their_pixel_functions(dilated_chain_m7):
    """The lean variant's border pixels (tap pointers) are one out-of-line function for every
    layer with the same taps and requantization, its channel count and clamp arguments; its
    interior pixels one for the layers that read the same input shape with the same clamp
    (a stride-1 layer and the stride-2 one after it). A band schedule that keeps several
    depthwise layers lean (VWW at 20K: three; MobileNetV2 at 160K: eight) pays for the
    unrolled taps once, not once a layer. A layer alone with its interior, or with a depth
    multiplier other than 1, keeps its own, inlined."""
    source = dilated_chain_m7.sources["model.c"]
    params = [view.params for view in dilated_chain_m7.view.layers]
    border = params[0].shared_border
    assert border is not None and params[1].shared_border is None
    assert params[2].shared_border == params[3].shared_border == border
    assert source.count(f"MCUGEN_LAYER void {border.name}(") == 1
    calls = re.findall(rf"{border.name}\(taps, weights, (\w+), (\d+), (-?\d+, -?\d+), output\)",
                       source)
    assert [(table, channels) for table, channels, _ in calls] == [
        ("model_layer0_channels", "8"), ("model_layer2_channels", "16"),
        ("model_layer3_channels", "16")]
    assert len({clamp for _, _, clamp in calls}) == 2  # RELU6 and RELU: clamps of their own
    inside = params[2].shared_inside
    assert inside is not None and params[3].shared_inside == inside
    assert params[0].shared_inside is None  # alone with its input shape: inlined
    assert source.count(f"MCUGEN_LAYER void {inside.name}(") == 1
    assert len(re.findall(rf"{inside.name}\(input \+ ", source)) == 2
    assert re.findall(r"void (layer\d)_dw_conv_s8_dsp_border\(", source) == ["layer1"]
    assert re.findall(r"void (layer\d)_dw_conv_s8_dsp_inside\(", source) == ["layer0", "layer1"]


@pytest.mark.qemu
def test_a_shared_border_function_is_bit_exact(dilated_chain_m7, tmp_path):
    (tmp_path / "model").mkdir()
    for file, text in dilated_chain_m7.sources.items():
        (tmp_path / "model" / file).write_text(text)
    elf = build_firmware(tmp_path / "model", M7, tmp_path / "firmware")
    graph = dilated_chain_m7.graph
    inputs = np.random.default_rng(6).integers(-128, 128, (3, graph.input.size)).astype(np.int8)
    result = run_firmware(elf, M7, inputs, graph.output.size)
    expected = np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                         for x in inputs])
    np.testing.assert_array_equal(result.outputs, expected)
