"""Layers that call Arm's CMSIS-NN (``--kernels cmsis-nn``), which the user brings.

CMSIS-NN picks its code path (pure C, DSP, Helium/MVE) at compile time from the compiler's
feature macros; the generated C checks that the path is the one its scratch sizes were
computed for. The variants mirror what its dispatching wrappers would call, called directly
(the dispatch is a function of static shapes, so it is decided here). Scratch sizes follow its
``*_get_buffer_size`` functions (read at CMSIS-NN commit 99f736a6, v7.0.0+). Its kernels read
and write in their own orders (im2col, channel blocks): none may write over its input.

Where CMSIS-NN has no kernel for a layer (MEAN, PAD, copies, lookup tables, long softmax
rows), selection falls back to ours.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import (Add, AveragePool2D, Conv2D, DepthwiseConv2D, FullyConnected, Graph, Mul, Op,
                  Softmax)
from ..targets import Target
from .elementwise import AddConstants, MulConstants, operand2_table
from .lowering import (Clamp, FeatureMap, Window, bias_array, clamp, conv_window, feature_map,
                       folded_bias, input_offset, model_bias, requantization)
from .pointwise import is_pointwise
from .softmax import lower_softmax
from .variant import ConstArray, Isa, LayerNames, Order, Variant

LIBRARY = "CMSIS-NN"


@dataclass(frozen=True)
class CmsisPath:
    """The CMSIS-NN code path a target's compiler selects: MVE wins over DSP when both exist."""

    dsp: bool
    mve: bool

    @property
    def label(self) -> str:
        return "MVE" if self.mve else "DSP" if self.dsp else "pure C"


def cmsis_path(target: Target) -> CmsisPath:
    return CmsisPath(dsp="dsp" in target.features, mve="mve" in target.features)


# On MVE, depthwise kernels read up to 3 elements past the end of the per-channel tables and
# the weights; every per-channel table of a CMSIS-NN layer gets this many zeros appended there.
MVE_OVER_READ = 4
# arm_softmax_s8 shifts a 32-bit value right by 12 - clz(sum of exps) + 23, which exceeds 31
# (undefined in C) once the sum of exps (up to row_size * 2^19) reaches 2^28; ours shifts in
# 64 bits. Below this row size the two are the same function.
CMSIS_SOFTMAX_MAX_ROW = 511


def table_padding(target: Target) -> int:
    return MVE_OVER_READ if cmsis_path(target).mve else 0


# ---------------------------------------------------------------------------------------------
# Scratch sizes


def convolve_s8_scratch_bytes(in_c: int, kh: int, kw: int, path: CmsisPath) -> int:
    """arm_convolve_s8_get_buffer_size: MVE im2col holds 4 columns rounded up to 16 bytes;
    the others 2 columns of int16 rounded up to 4 elements."""
    columns = in_c * kh * kw
    if path.mve:
        return 4 * 16 * -(-columns // 16)
    return 2 * 2 * -(-columns // 4) * 4


def depthwise_conv_s8_opt_scratch_bytes(channels: int, kh: int, kw: int,
                                        path: CmsisPath) -> int:
    """arm_depthwise_conv_s8_opt_get_buffer_size (pure C forwards to the generic kernel)."""
    if path.mve:
        return 4 * 124 * kh * kw  # 4 x CH_IN_BLOCK_MVE
    if path.dsp:
        return 2 * channels * kh * kw
    return 0


def avgpool_s8_scratch_bytes(channels: int, path: CmsisPath) -> int:
    """arm_avgpool_s8_get_buffer_size: one int32 sum per channel on DSP only."""
    return 4 * channels if path.dsp and not path.mve else 0


def _conv_scratch(op: Conv2D, graph: Graph, target: Target) -> int:
    _, kh, kw, in_c = graph.tensor(op.filter).shape
    return convolve_s8_scratch_bytes(in_c, kh, kw, cmsis_path(target))


def _dw_opt_scratch(op: DepthwiseConv2D, graph: Graph, target: Target) -> int:
    _, kh, kw, channels = graph.tensor(op.filter).shape
    return depthwise_conv_s8_opt_scratch_bytes(channels, kh, kw, cmsis_path(target))


def _avgpool_scratch(op: AveragePool2D, graph: Graph, target: Target) -> int:
    return avgpool_s8_scratch_bytes(graph.tensor(op.input).shape[3], cmsis_path(target))


# ---------------------------------------------------------------------------------------------
# Parameters: everything the call's static structs hold.


@dataclass(frozen=True)
class CmsisSymbols:
    """Names of the layer's static const structs."""

    params: str
    quant: str
    input_dims: str
    filter_dims: str
    bias_dims: str
    output_dims: str


def _symbols(names: LayerNames) -> CmsisSymbols:
    return CmsisSymbols(*(names.symbol(role) for role in (
        "params", "quant", "input_dims", "filter_dims", "bias_dims", "output_dims")))


@dataclass(frozen=True)
class CmsisConvParams:
    function: str
    symbols: CmsisSymbols
    input: FeatureMap
    output: FeatureMap
    window: Window
    depth_multiplier: int  # depthwise only
    input_offset: int
    clamp: Clamp
    filter: ConstArray  # the model's layout; depthwise weights padded on MVE
    bias: ConstArray  # the model's: CMSIS-NN adds the input offset itself
    multiplier: ConstArray
    shift: ConstArray
    context_bytes: int  # the arena scratch passed as the context buffer (0: NULL)
    upscale: bool  # the function takes an (unused) upscaling argument


def _conv_lowering(function: str, scratch, upscale: bool = False):
    def lower(op: Conv2D | DepthwiseConv2D, graph: Graph, target: Target,
              names: LayerNames) -> CmsisConvParams:
        weights = graph.tensor(op.filter).data
        out_c = graph.tensor(op.output).shape[3]
        padding = table_padding(target)
        out = requantization(op, graph, names, out_c, padding)
        filter = ConstArray(names.table("filter"), "int8_t", weights.reshape(-1))
        if isinstance(op, DepthwiseConv2D):
            filter = filter.padded(padding)
        return CmsisConvParams(
            function=function, symbols=_symbols(names),
            input=feature_map(graph.tensor(op.input)),
            output=feature_map(graph.tensor(op.output)),
            window=conv_window(op, graph),
            depth_multiplier=getattr(op, "depth_multiplier", 1),
            input_offset=input_offset(op, graph), clamp=out.clamp, filter=filter,
            bias=bias_array(names, model_bias(op, graph, out_c), padding),
            multiplier=out.multiplier, shift=out.shift,
            context_bytes=scratch(op, graph, target), upscale=upscale)
    return lower


@dataclass(frozen=True)
class CmsisFullyConnectedParams:
    """Per-channel: multiplier and shift tables; per-tensor: one pair in the params struct.
    On MVE the kernel starts from precomputed kernel sums, bias + input_offset * sum(w)
    (arm_vector_sum_s8), which are exactly our folded bias, and ignores the bias: they are
    constants, so they go to flash as the context buffer instead of arena scratch."""

    function: str
    symbols: CmsisSymbols
    rows: int
    depth: int
    outputs: int
    input_offset: int
    clamp: Clamp
    filter: ConstArray
    bias: ConstArray | None
    kernel_sums: ConstArray | None
    multiplier: ConstArray | None  # per channel
    shift: ConstArray | None
    tensor_multiplier: int | None  # per tensor
    tensor_shift: int | None


def _fc_lowering(function: str):
    def lower(op: FullyConnected, graph: Graph, target: Target,
              names: LayerNames) -> CmsisFullyConnectedParams:
        weights = graph.tensor(op.weights).data
        outputs, depth = weights.shape
        padding = table_padding(target)
        bias = model_bias(op, graph, outputs)
        per_channel = len(op.requant.multiplier) > 1
        out = requantization(op, graph, names, outputs, padding)
        kernel_sums = plain_bias = None
        if cmsis_path(target).mve:
            folded = folded_bias(bias, weights, graph.tensor(op.input).zero_point)
            kernel_sums = bias_array(names, folded, padding, role="kernel_sums")
        else:
            plain_bias = bias_array(names, bias, padding)
        return CmsisFullyConnectedParams(
            function=function, symbols=_symbols(names),
            rows=graph.tensor(op.input).size // depth, depth=depth, outputs=outputs,
            input_offset=input_offset(op, graph), clamp=out.clamp,
            filter=ConstArray(names.table("filter"), "int8_t", weights.reshape(-1)),
            bias=plain_bias, kernel_sums=kernel_sums,
            multiplier=out.multiplier if per_channel else None,
            shift=out.shift if per_channel else None,
            tensor_multiplier=None if per_channel else op.requant.multiplier[0],
            tensor_shift=None if per_channel else op.requant.shift[0])
    return lower


@dataclass(frozen=True)
class CmsisPoolParams:
    symbols: CmsisSymbols
    input: FeatureMap
    output: FeatureMap
    window: Window
    clamp: Clamp
    context_bytes: int


def _lower_avgpool(op: AveragePool2D, graph: Graph, target: Target,
                   names: LayerNames) -> CmsisPoolParams:
    window = conv_window(op, graph)
    return CmsisPoolParams(symbols=_symbols(names), input=feature_map(graph.tensor(op.input)),
                           output=feature_map(graph.tensor(op.output)), window=window,
                           clamp=clamp(op, graph),
                           context_bytes=_avgpool_scratch(op, graph, target))


@dataclass(frozen=True)
class CmsisElementwiseParams:
    size: int  # elements per call
    calls: int  # 1, or one call per pixel when the second operand is broadcast over pixels
    input_offset: int
    input2_offset: int
    operand2: ConstArray | None  # a constant second operand, as a table
    clamp: Clamp
    constants: AddConstants | MulConstants


def _lower_elementwise(op: Add | Mul, graph: Graph, target: Target,
                       names: LayerNames) -> CmsisElementwiseParams:
    out = graph.tensor(op.output)
    channels = out.shape[-1]
    same = _same_shapes(op, graph, target)
    if isinstance(op, Add):
        r = op.rescale
        constants = AddConstants(r.left_shift, *r.input1, *r.input2, *r.output)
    else:
        constants = MulConstants(op.requant.multiplier[0], op.requant.shift[0])
    return CmsisElementwiseParams(
        size=out.size if same else channels, calls=1 if same else out.size // channels,
        input_offset=input_offset(op, graph), input2_offset=input_offset(op, graph, "input2"),
        operand2=operand2_table(op, graph, names), clamp=clamp(op, graph), constants=constants)


# ---------------------------------------------------------------------------------------------
# Preconditions


def _general_conv(op: Conv2D, graph: Graph, target: Target) -> bool:
    return not is_pointwise(op, graph)


def _generic_depthwise(op: DepthwiseConv2D, graph: Graph, target: Target) -> bool:
    """The wrapper's generic case. (The MVE wrapper's one-input-channel conversion to a
    convolution is skipped: that case has ch_mult > 1 and runs the generic kernel, which
    needs no scratch.)"""
    return op.depth_multiplier != 1 or op.dilation != (1, 1)


def _depthwise_3x3(op: DepthwiseConv2D, graph: Graph, target: Target) -> bool:
    kh, kw = graph.tensor(op.filter).shape[1:3]
    return (not cmsis_path(target).mve and (kh, kw) == (3, 3) and op.padding.top <= 1
            and op.padding.left <= 1)


def _short_softmax(op: Softmax, graph: Graph, target: Target) -> bool:
    return graph.tensor(op.output).shape[-1] <= CMSIS_SOFTMAX_MAX_ROW


def _same_shapes(op: Add | Mul, graph: Graph, target: Target) -> bool:
    """CMSIS-NN's elementwise kernels take two vectors of one length: no broadcasting."""
    shape = graph.tensor(op.output).shape
    return graph.tensor(op.input).shape == graph.tensor(op.input2).shape == shape


def _broadcast_over_pixels(op: Mul, graph: Graph, target: Target) -> bool:
    """[1,H,W,C] x [1,1,1,C] (squeeze-and-excitation): one CMSIS-NN call per pixel."""
    out = graph.tensor(op.output).shape
    second = graph.tensor(op.input2).shape
    return (len(out) == 4 and graph.tensor(op.input).shape == out
            and second in ((1, 1, 1, out[3]), (out[3],)))


def _per_channel(op: FullyConnected, graph: Graph, target: Target) -> bool:
    return len(op.requant.multiplier) > 1


def _per_tensor(op: FullyConnected, graph: Graph, target: Target) -> bool:
    return not _per_channel(op, graph, target)


def _cmsis(function: str, ops: tuple[type, ...], template: str, lower, applies, **more
           ) -> Variant:
    more.setdefault("returns_status", True)
    return Variant(function, ops, Isa.PORTABLE, template, Order.SEPARATE, lower,
                   applies=applies, library=LIBRARY, **more)


def _no_dispatch(op: Op, graph: Graph, target: Target) -> bool:
    return True


CONVOLVE_1X1_FAST = _cmsis(  # no scratch with gcc on any path (armclang's stays unused)
    "arm_convolve_1x1_s8_fast", (Conv2D,), "cmsis_conv_s8",
    _conv_lowering("arm_convolve_1x1_s8_fast", lambda *_: 0), is_pointwise)
CONVOLVE = _cmsis(
    "arm_convolve_s8", (Conv2D,), "cmsis_conv_s8",
    _conv_lowering("arm_convolve_s8", _conv_scratch, upscale=True), _general_conv,
    scratch_bytes=_conv_scratch)
DEPTHWISE_GENERIC = _cmsis(
    "arm_depthwise_conv_s8", (DepthwiseConv2D,), "cmsis_dw_conv_s8",
    _conv_lowering("arm_depthwise_conv_s8", lambda *_: 0), _generic_depthwise)
DEPTHWISE_3X3 = _cmsis(
    "arm_depthwise_conv_3x3_s8", (DepthwiseConv2D,), "cmsis_dw_conv_s8",
    _conv_lowering("arm_depthwise_conv_3x3_s8", lambda *_: 0), _depthwise_3x3)
DEPTHWISE_OPT = _cmsis(
    "arm_depthwise_conv_s8_opt", (DepthwiseConv2D,), "cmsis_dw_conv_s8",
    _conv_lowering("arm_depthwise_conv_s8_opt", _dw_opt_scratch), _no_dispatch,
    scratch_bytes=_dw_opt_scratch)
FULLY_CONNECTED_PER_CHANNEL = _cmsis(
    "arm_fully_connected_per_channel_s8", (FullyConnected,), "cmsis_fc_s8",
    _fc_lowering("arm_fully_connected_per_channel_s8"), _per_channel)
FULLY_CONNECTED = _cmsis(
    "arm_fully_connected_s8", (FullyConnected,), "cmsis_fc_s8",
    _fc_lowering("arm_fully_connected_s8"), _per_tensor)
AVGPOOL = _cmsis("arm_avgpool_s8", (AveragePool2D,), "cmsis_avgpool_s8", _lower_avgpool,
                 _no_dispatch, scratch_bytes=_avgpool_scratch)
SOFTMAX = _cmsis("arm_softmax_s8", (Softmax,), "cmsis_softmax_s8", lower_softmax,
                 _short_softmax, returns_status=False)
ELEMENTWISE_ADD = _cmsis("arm_elementwise_add_s8", (Add,), "cmsis_add_s8",
                         _lower_elementwise, _same_shapes, binary=True)
ELEMENTWISE_MUL = _cmsis(
    "arm_elementwise_mul_s8", (Mul,), "cmsis_mul_s8", _lower_elementwise,
    lambda op, graph, target: (_same_shapes(op, graph, target)
                               or _broadcast_over_pixels(op, graph, target)),
    binary=True)

# In the order the wrappers try them.
VARIANTS = (CONVOLVE_1X1_FAST, CONVOLVE, DEPTHWISE_GENERIC, DEPTHWISE_3X3, DEPTHWISE_OPT,
            FULLY_CONNECTED_PER_CHANNEL, FULLY_CONNECTED, AVGPOOL, SOFTMAX, ELEMENTWISE_ADD,
            ELEMENTWISE_MUL)
