"""Compute every requantization constant once, as TFLM's kernels do in Prepare.

After this pass each op carries what its Eval needs besides tensors: per-channel multipliers
and shifts, the fused activation's int8 range, softmax's input scaling and diff_min, MEAN's
in/out multiplier. The arithmetic lives in ``mcugen.quant``; this module only decides which
scales go in, and rejects what TFLite itself would reject.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import quant
from ..errors import McugenError
from ..ir import (Activation, Add, AddRescale, AveragePool2D, ConcatColumns, Conv2D,
                  SliceColumns,
                  DepthwiseConv2D, Dequantize, FullyConnected, Graph, HardSwish, Mean, Mul, Op,
                  Pad, Quantize, Relu, Requant, Reshape, Softmax, TableLookup, Tensor, Transpose,
                  op_inputs)


def quantize_constants(graph: Graph) -> Graph:
    """Return ``graph`` with the derived quantization fields of every op filled in."""
    ops = tuple(_quantize_op(graph, index, op) for index, op in enumerate(graph.ops))
    return graph.replace(ops=ops)


def _quantize_op(graph: Graph, index: int, op: Op) -> Op:
    where = f"op {index} ({op.OP})"
    if isinstance(op, (Quantize, Dequantize)):  # the ops between types (ir.verify checks them)
        return _RULES[type(op)](graph, op, where)
    if not isinstance(op, (Conv2D, DepthwiseConv2D, FullyConnected)):  # no weights or bias
        for name in op_inputs(op):
            _require_int8_per_tensor(graph.tensor(name), where)
    for name in (op.input, op.output):
        _require_int8_per_tensor(graph.tensor(name), where)
    rule = _RULES.get(type(op))
    if rule is None:
        raise McugenError(f"{where}: no quantization rule for this op")
    return rule(graph, op, where)


def _require_int8_per_tensor(tensor: Tensor, where: str) -> None:
    if tensor.dtype != "int8" or tensor.q is None or tensor.q.per_channel:
        raise McugenError(f"{where}: tensor {tensor.name!r} is not per-tensor int8")


def _require_symmetric_weights(weights: Tensor, where: str, legacy: bool = False) -> None:
    """int8 weights are symmetric; a uint8 model's are per tensor with any zero point (held
    shifted to int8 by the front end)."""
    if legacy and weights.q is not None and not weights.q.per_channel:
        return
    if weights.q is None or any(zp != 0 for zp in weights.q.zero_point):
        raise McugenError(f"{where}: weights {weights.name!r} are not symmetric int8 "
                          "(zero point 0), which TFLite's int8 kernels require")


def _requant(real_scales: list[float]) -> Requant:
    pairs = [quant.quantize_multiplier(scale) for scale in real_scales]
    return Requant(multiplier=tuple(m for m, _ in pairs), shift=tuple(s for _, s in pairs))


def _convolution(graph: Graph, op: Conv2D | DepthwiseConv2D, where: str) -> Op:
    """PopulateConvolutionQuantizationParams: one multiplier per output channel, even for a
    per-tensor filter scale."""
    x, weights, y = graph.tensor(op.input), graph.tensor(op.filter), graph.tensor(op.output)
    _require_symmetric_weights(weights, where, op.legacy)
    channels = y.shape[-1]
    if len(weights.q.scale) not in (1, channels):
        raise McugenError(f"{where}: {len(weights.q.scale)} filter scales for {channels} "
                          "output channels")
    if op.legacy:
        # A uint8 model's kernels take the scalar multiplier that Prepare computes for uint8
        # inputs only: GetQuantizedConvolutionMultipler, as a per-tensor FULLY_CONNECTED.
        scales = [quant.fully_connected_effective_scale(x.scale, weights.q.scale[0],
                                                        y.scale)] * channels
    else:
        scales = quant.per_channel_effective_scales(x.scale, weights.q.scale, y.scale,
                                                    channels)
    act_min, act_max = quant.activation_range(op.activation, y.scale, y.zero_point)
    return dataclasses.replace(op, requant=_requant(scales), act_min=act_min, act_max=act_max)


def _fully_connected(graph: Graph, op: FullyConnected, where: str) -> Op:
    """CalculateOpDataFullyConnected: per-channel weights use the convolution formula, a
    per-tensor weight scale GetQuantizedConvolutionMultipler's float32 product."""
    x, weights, y = graph.tensor(op.input), graph.tensor(op.weights), graph.tensor(op.output)
    _require_symmetric_weights(weights, where, op.legacy)
    if weights.q.per_channel:
        scales = quant.per_channel_effective_scales(x.scale, weights.q.scale, y.scale,
                                                    weights.shape[0])
    else:
        scales = [quant.fully_connected_effective_scale(x.scale, weights.q.scale[0], y.scale)]
    act_min, act_max = quant.activation_range(op.activation, y.scale, y.zero_point)
    return dataclasses.replace(op, requant=_requant(scales), act_min=act_min, act_max=act_max)


def _average_pool(graph: Graph, op: AveragePool2D, where: str) -> Op:
    """TFLM's pooling Prepare refuses int8 with different input and output qparams (the
    kernel averages raw values and never requantizes)."""
    x, y = graph.tensor(op.input), graph.tensor(op.output)
    scale_diff = abs(float(np.float32(x.scale) - np.float32(y.scale)))
    if scale_diff > 1.0e-6 or x.zero_point != y.zero_point:
        raise McugenError(f"{where}: int8 AVERAGE_POOL_2D needs equal input and output "
                          f"quantization, got scale {x.scale} zp {x.zero_point} -> "
                          f"scale {y.scale} zp {y.zero_point}")
    act_min, act_max = quant.activation_range(op.activation, y.scale, y.zero_point)
    return dataclasses.replace(op, act_min=act_min, act_max=act_max)


def _mean(graph: Graph, op: Mean, where: str) -> Op:
    """The reduce kernel's Prepare: QuantizeMultiplier(in_scale / out_scale); the kernel
    folds 1/(H*W) into it at Eval (quant.mean_multiplier)."""
    x, y = graph.tensor(op.input), graph.tensor(op.output)
    return dataclasses.replace(op, requant=_requant([x.scale / y.scale]))


def _softmax(graph: Graph, op: Softmax, where: str) -> Op:
    x, y = graph.tensor(op.input), graph.tensor(op.output)
    if y.zero_point != -128 or np.float32(y.scale) != np.float32(1.0 / 256):
        raise McugenError(f"{where}: int8 SOFTMAX output must have scale 1/256 and zero "
                          f"point -128, got scale {y.scale} zp {y.zero_point}")
    try:
        multiplier, left_shift, diff_min = quant.softmax_params(op.beta, x.scale)
    except ValueError:
        # TFLM's SOFTMAX Prepare fails the same way (QuantizeMultiplierGreaterThanOne).
        raise McugenError(
            f"{where}: the model is degenerate: the input of its SOFTMAX has scale "
            f"{x.scale:.3g}, so its logits span about {255 * x.scale:.1g} and every input gives "
            f"nearly the same output. TFLM refuses such a model too (its SOFTMAX needs "
            f"beta x scale x 2^26 > 1, here {op.beta * x.scale * 2.0 ** 26:.2f}). This is what "
            f"untrained weights give: check that the weights are trained, that their batch "
            f"norms hold real statistics (not mean 0, variance 1), and that the calibration "
            f"images look like the real inputs") from None
    return dataclasses.replace(op, input_multiplier=multiplier, input_left_shift=left_shift,
                               diff_min=diff_min)


def _add(graph: Graph, op: Add, where: str) -> Op:
    x1, x2, y = (graph.tensor(n) for n in (op.input, op.input2, op.output))
    try:
        input1, input2, output = quant.add_multipliers(x1.scale, x2.scale, y.scale)
    except ValueError as error:
        raise McugenError(f"{where}: {error}: the output scale {y.scale} is too small for "
                          f"input scales {x1.scale} and {x2.scale}") from None
    rescale = AddRescale(left_shift=quant.ADD_LEFT_SHIFT, input1=input1, input2=input2,
                         output=output)
    act_min, act_max = quant.activation_range(op.activation, y.scale, y.zero_point)
    return dataclasses.replace(op, rescale=rescale, act_min=act_min, act_max=act_max)


def _mul(graph: Graph, op: Mul, where: str) -> Op:
    """CalculateOpDataMul: one multiplier for scale1 * scale2 / scale_out, in double."""
    x1, x2, y = (graph.tensor(n) for n in (op.input, op.input2, op.output))
    act_min, act_max = quant.activation_range(op.activation, y.scale, y.zero_point)
    return dataclasses.replace(op, requant=_requant([x1.scale * x2.scale / y.scale]),
                               act_min=act_min, act_max=act_max)


def _relu(graph: Graph, op: Relu, where: str) -> Op:
    """TFLM's RELU requantizes from the input to the output scale and clamps at the output's
    zero. Its RELU6 clamps the raw input between the input's zero and six and writes that,
    ignoring the output's quantization, although the converter gives the output its own
    ([0, 6]) range. We follow TFLM, the interpreter on the microcontroller, to the bit; TFLite's
    desktop interpreter requantizes there and can differ when the two quantizations do."""
    x, y = graph.tensor(op.input), graph.tensor(op.output)
    if op.activation is Activation.RELU:
        return dataclasses.replace(op, requant=_requant([x.scale / y.scale]),
                                   act_min=max(quant.INT8_MIN, y.zero_point),
                                   act_max=quant.INT8_MAX)
    return dataclasses.replace(op, act_min=x.zero_point,
                               act_max=quant.float_to_quantized_int8(6.0, x.scale, x.zero_point))


def _hard_swish(graph: Graph, op: HardSwish, where: str) -> Op:
    x, y = graph.tensor(op.input), graph.tensor(op.output)
    try:
        quant.hard_swish_params(x.scale, y.scale)
    except ValueError as error:
        raise McugenError(f"{where}: {error}") from None
    return op


def _same_quantization(graph: Graph, op: Op, where: str) -> Op:
    """Ops that move or clamp bytes without rescaling need equal input and output qparams."""
    x, y = graph.tensor(op.input), graph.tensor(op.output)
    if np.float32(x.scale) != np.float32(y.scale) or x.zero_point != y.zero_point:
        raise McugenError(f"{where}: input and output quantization differ (scale {x.scale} zp "
                          f"{x.zero_point} -> scale {y.scale} zp {y.zero_point}); this op "
                          "does not rescale")
    return op


# A larger in/out scale ratio would overflow TFLite's int32 left shift of an 8-bit value.
MAX_REQUANTIZE_LEFT_SHIFT = 22


def _quantize(graph: Graph, op: Quantize, where: str) -> Op:
    """TFLM's PrepareQuantizeReference: for an 8-bit input, QuantizeMultiplier of
    in_scale / out_scale in double (1.0 gives (2^30, 1), which Requantize takes as equal
    scales). A float input needs nothing: AffineQuantize divides by the output scale."""
    x, y = graph.tensor(op.input), graph.tensor(op.output)
    if x.dtype == "float32":
        return op
    requant = _requant([float(x.scale) / float(y.scale)])
    if requant.shift[0] > MAX_REQUANTIZE_LEFT_SHIFT:
        raise McugenError(f"{where}: the input scale {x.scale} is over 2^"
                          f"{MAX_REQUANTIZE_LEFT_SHIFT} times the output scale {y.scale}; "
                          "TFLite's requantization would overflow")
    return dataclasses.replace(op, requant=requant)


def _unchanged(graph: Graph, op: Op, where: str) -> Op:
    return op


def _concatenation(graph: Graph, op: ConcatColumns, where: str) -> Op:
    """Joining copies bytes: both operands need the output's qparams (tiles.py makes the op
    from one tensor's two halves, so they always have them)."""
    for operand in (op.input, op.input2):
        _same_quantization(graph, dataclasses.replace(op, input=operand), where)
    return op


_RULES = {
    Conv2D: _convolution, DepthwiseConv2D: _convolution, FullyConnected: _fully_connected,
    AveragePool2D: _average_pool, Mean: _mean, Softmax: _softmax, Add: _add, Mul: _mul,
    Relu: _relu, HardSwish: _hard_swish, Transpose: _same_quantization,
    Pad: _unchanged, Reshape: _unchanged, TableLookup: _unchanged, Quantize: _quantize,
    Dequantize: _unchanged, ConcatColumns: _concatenation, SliceColumns: _same_quantization,
}
