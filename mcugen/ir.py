"""The graph IR: tensors carrying TFLite's quantization parameters, and one typed node per op.

Everything here is a frozen dataclass: front ends build a Graph, passes return new Graphs
(``dataclasses.replace``), and nothing downstream mutates what it was given.

Conventions (the same as TFLite, so that nothing is translated twice):
- activations are NHWC, batch 1;
- conv filters are OHWI ``[Cout, KH, KW, Cin]``; depthwise filters ``[1, KH, KW, Cout]``;
  fully connected weights ``[outputs, depth]``; biases int32 ``[Cout]``;
- ``zero_point`` is the model's zero point (the flip to the kernels' ``input_offset = -zp``
  happens in one place, codegen._activation_geometry, for both kernel sets);
- padding is explicit and four-sided, computed from SAME/VALID by the front end.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Union

import numpy as np

from .errors import McugenError


class Activation(str, Enum):
    """A fused activation, as TFLite's ActivationFunctionType (only those we support)."""

    NONE = "none"
    RELU = "relu"
    RELU6 = "relu6"


@dataclass(frozen=True)
class QParams:
    """Affine quantization: real = scale * (q - zero_point); per channel along ``axis``."""

    scale: tuple[float, ...]  # float32 values, held as Python floats
    zero_point: tuple[int, ...]
    axis: int = 0

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1


@dataclass(frozen=True, eq=False)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str  # "int8" or "int32"; "uint8" and "float32" where QUANTIZE/DEQUANTIZE touch them
    q: QParams | None = None
    data: np.ndarray | None = None  # set for constants (weights, biases)

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # exact: NumPy's int64 product wraps on hostile shapes

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    @property
    def scale(self) -> float:
        """The per-tensor scale (activations are always per tensor)."""
        return self.q.scale[0]

    @property
    def zero_point(self) -> int:
        return self.q.zero_point[0]


@dataclass(frozen=True)
class Padding:
    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    @property
    def is_zero(self) -> bool:
        return self.top == self.bottom == self.left == self.right == 0


@dataclass(frozen=True)
class Requant:
    """Fixed-point output multiplier and shift per output channel (or one), as TFLite's
    QuantizeMultiplier gives them: shift > 0 is a left shift."""

    multiplier: tuple[int, ...]
    shift: tuple[int, ...]


# ---------------------------------------------------------------------------------------------
# Op nodes. Each names its tensors; INPUTS/OUTPUTS list the fields that hold tensor names
# (a None input, such as a missing bias, is skipped). Fields after the model's own attributes
# (requant, act_min, act_max, ...) are derived by passes.quantize and are None until then.


@dataclass(frozen=True)
class Conv2D:
    OP: ClassVar[str] = "CONV_2D"
    INPUTS: ClassVar[tuple[str, ...]] = ("input", "filter", "bias")
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    input: str
    filter: str
    bias: str | None
    output: str
    stride: tuple[int, int]  # (h, w)
    dilation: tuple[int, int]
    padding: Padding
    activation: Activation
    requant: Requant | None = None
    act_min: int | None = None
    act_max: int | None = None
    # From a uint8 model (TFLite's legacy kernels): per-tensor asymmetric weights (a nonzero
    # weight zero point) and the per-tensor multiplier from the float32 scale product.
    legacy: bool = False


@dataclass(frozen=True)
class DepthwiseConv2D:
    OP: ClassVar[str] = "DEPTHWISE_CONV_2D"
    INPUTS: ClassVar[tuple[str, ...]] = ("input", "filter", "bias", "halo")
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    input: str
    filter: str
    bias: str | None
    output: str
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: Padding
    depth_multiplier: int
    activation: Activation
    requant: Requant | None = None
    act_min: int | None = None
    act_max: int | None = None
    # From a uint8 model (TFLite's legacy kernels): per-tensor asymmetric weights (a nonzero
    # weight zero point) and the per-tensor multiplier from the float32 scale product.
    legacy: bool = False
    # A column tile's cached halo (tiles.py): the padding's left columns hold this tensor's
    # columns (its width is padding.left, its rows the input's) instead of the zero point.
    # Not read from a model.
    halo: str | None = None


@dataclass(frozen=True)
class Pad:
    """Zero padding over H and W (the pad value is the output's zero point, as in TFLite)."""

    OP: ClassVar[str] = "PAD"
    INPUTS: ClassVar[tuple[str, ...]] = ("input",)
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    input: str
    output: str
    padding: Padding


@dataclass(frozen=True)
class AveragePool2D:
    OP: ClassVar[str] = "AVERAGE_POOL_2D"
    INPUTS: ClassVar[tuple[str, ...]] = ("input",)
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    input: str
    output: str
    filter_size: tuple[int, int]  # (h, w)
    stride: tuple[int, int]
    padding: Padding
    activation: Activation
    act_min: int | None = None
    act_max: int | None = None
    # From a uint8 model: TFLite's uint8 AveragePool rounds the (non-negative) sum's quotient
    # half up, (sum + n/2) / n; int8 rounds half away from zero. Activations are held
    # shifted to int8, so half up becomes floor((sum + n/2) / n) on signed sums.
    legacy: bool = False


@dataclass(frozen=True)
class Mean:
    """MEAN over ``axes``: H and W (1, 2) of an NHWC tensor, or any other run of consecutive
    axes (the last ones of an NCHW tensor after a TRANSPOSE, as MCUNet's models have)."""

    OP: ClassVar[str] = "MEAN"
    INPUTS: ClassVar[tuple[str, ...]] = ("input",)
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    input: str
    output: str
    keep_dims: bool
    requant: Requant | None = None  # the input/output scale ratio, before dividing by H*W
    axes: tuple[int, ...] = (1, 2)  # consecutive, non-negative, in order


@dataclass(frozen=True)
class FullyConnected:
    OP: ClassVar[str] = "FULLY_CONNECTED"
    INPUTS: ClassVar[tuple[str, ...]] = ("input", "weights", "bias")
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    input: str
    weights: str
    bias: str | None
    output: str
    activation: Activation
    requant: Requant | None = None
    act_min: int | None = None
    act_max: int | None = None
    # From a uint8 model (TFLite's legacy kernels): per-tensor asymmetric weights (a nonzero
    # weight zero point) and the per-tensor multiplier from the float32 scale product.
    legacy: bool = False


@dataclass(frozen=True)
class Reshape:
    OP: ClassVar[str] = "RESHAPE"
    INPUTS: ClassVar[tuple[str, ...]] = ("input",)
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    input: str
    output: str


@dataclass(frozen=True)
class Softmax:
    """Softmax over the last axis. Output quantization is fixed by TFLite: 1/256, zp -128."""

    OP: ClassVar[str] = "SOFTMAX"
    INPUTS: ClassVar[tuple[str, ...]] = ("input",)
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    input: str
    output: str
    beta: float
    input_multiplier: int | None = None  # PreprocessSoftmaxScaling(beta, input scale, 5)
    input_left_shift: int | None = None
    diff_min: int | None = None  # -CalculateInputRadius(5, input_left_shift, 31)


@dataclass(frozen=True)
class AddRescale:
    """TFLite's int8 ADD constants: both inputs are shifted left by ``left_shift`` (20), scaled
    to a common scale (twice the larger input scale) by their multipliers, summed, and the sum
    scaled to the output. Shifts are right shifts written as negative numbers (all <= 0)."""

    left_shift: int
    input1: tuple[int, int]  # (multiplier, shift)
    input2: tuple[int, int]
    output: tuple[int, int]


@dataclass(frozen=True)
class Add:
    """Elementwise int8 ADD, with numpy-style broadcasting of either operand (residual
    connections; a constant operand for the ``x + 3`` of a hard sigmoid)."""

    OP: ClassVar[str] = "ADD"
    INPUTS: ClassVar[tuple[str, ...]] = ("input", "input2")
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    input: str
    input2: str
    output: str
    activation: Activation
    rescale: AddRescale | None = None
    act_min: int | None = None
    act_max: int | None = None


@dataclass(frozen=True)
class Mul:
    """Elementwise int8 MUL with broadcasting ([1,H,W,C] x [1,1,1,C] in squeeze-and-excitation,
    a constant scalar for the ``/ 6`` of a hard sigmoid)."""

    OP: ClassVar[str] = "MUL"
    INPUTS: ClassVar[tuple[str, ...]] = ("input", "input2")
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    input: str
    input2: str
    output: str
    activation: Activation
    requant: Requant | None = None  # of scale1 * scale2 / scale_out
    act_min: int | None = None
    act_max: int | None = None


@dataclass(frozen=True)
class HardSwish:
    """x * relu6(x + 3) / 6, TFLite's int8 fixed-point form."""

    OP: ClassVar[str] = "HARD_SWISH"
    INPUTS: ClassVar[tuple[str, ...]] = ("input",)
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    input: str
    output: str


@dataclass(frozen=True)
class Relu:
    """A stand-alone RELU or RELU6 (one the converter could not fuse into the op before it)."""

    OP: ClassVar[str] = "RELU"
    INPUTS: ClassVar[tuple[str, ...]] = ("input",)
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    input: str
    output: str
    activation: Activation  # RELU or RELU6
    requant: Requant | None = None  # RELU only: input scale / output scale
    act_min: int | None = None  # RELU: on the output; RELU6: zero and six on the input
    act_max: int | None = None


@dataclass(frozen=True)
class Transpose:
    """Permute the axes of a 4-D tensor (NCHW -> NHWC at the start of converted models)."""

    OP: ClassVar[str] = "TRANSPOSE"
    INPUTS: ClassVar[tuple[str, ...]] = ("input",)
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    input: str
    output: str
    perm: tuple[int, ...]


@dataclass(frozen=True)
class ConcatColumns:
    """Two images side by side: the columns of ``input``, then those of ``input2`` (TFLite's
    CONCATENATION on axis 2 of operands with one quantization, which copies bytes). Not read
    from a model: tiles.py joins a column tiling's tiles with it."""

    OP: ClassVar[str] = "CONCATENATION"
    INPUTS: ClassVar[tuple[str, ...]] = ("input", "input2")
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    input: str
    input2: str
    output: str


@dataclass(frozen=True)
class SliceColumns:
    """Columns [begin, begin + the output's width) of an image (a strided slice of axis 2,
    which copies bytes). Not read from a model: tiles.py keeps a column tile's halo with it
    (DepthwiseConv2D.halo)."""

    OP: ClassVar[str] = "SLICE_COLUMNS"
    INPUTS: ClassVar[tuple[str, ...]] = ("input",)
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    input: str
    output: str
    begin: int


@dataclass(frozen=True)
class TableLookup:
    """An int8 -> int8 function given by its 256 values (output = table[x + 128]).

    Not a TFLite op: passes.lookup_table makes it from every op whose output element depends
    only on the same input element (HARD_SWISH, RELU, ADD or MUL with a constant scalar), by
    running that op's reference kernel on all 256 inputs. ``source`` names the op it replaces.
    """

    OP: ClassVar[str] = "LOOKUP"
    INPUTS: ClassVar[tuple[str, ...]] = ("input",)
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    input: str
    output: str
    table: tuple[int, ...]
    source: str


@dataclass(frozen=True)
class Quantize:
    """TFLite's QUANTIZE: float32 -> int8 or uint8 (AffineQuantize: round(x / scale) + zp,
    saturating), or an 8-bit tensor to another 8-bit type or quantization (Requantize: the
    centred value times in_scale / out_scale in fixed point, plus zp_out, saturating)."""

    OP: ClassVar[str] = "QUANTIZE"
    INPUTS: ClassVar[tuple[str, ...]] = ("input",)
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    input: str
    output: str
    requant: Requant | None = None  # 8-bit input only: QuantizeMultiplier(in_scale / out_scale)


@dataclass(frozen=True)
class Dequantize:
    """TFLite's DEQUANTIZE: int8 or uint8 -> float32, scale * (q - zero_point) in float."""

    OP: ClassVar[str] = "DEQUANTIZE"
    INPUTS: ClassVar[tuple[str, ...]] = ("input",)
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    input: str
    output: str


Op = Union[Conv2D, DepthwiseConv2D, Pad, AveragePool2D, Mean, FullyConnected, Reshape, Softmax,
           Add, Mul, HardSwish, Relu, Transpose, TableLookup, Quantize, Dequantize, ConcatColumns,
           SliceColumns]
OP_TYPES: tuple[type, ...] = (
    Conv2D, DepthwiseConv2D, Pad, AveragePool2D, Mean, FullyConnected, Reshape, Softmax,
    Add, Mul, HardSwish, Relu, Transpose, TableLookup, Quantize, Dequantize, ConcatColumns,
    SliceColumns,
)
ELEMENTWISE_BINARY = (Add, Mul)
# The element types of activations: int8 everywhere, uint8 and float32 only on the side of a
# QUANTIZE or DEQUANTIZE (and so at the graph's input and output).
QUANTIZED_TYPES = ("int8", "uint8")
TYPE_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


def broadcast_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """NumPy's (and TFLite's) broadcast of two shapes, or None if they do not broadcast."""
    rank = max(len(a), len(b))
    a4, b4 = (1,) * (rank - len(a)) + a, (1,) * (rank - len(b)) + b
    if any(x != y and 1 not in (x, y) for x, y in zip(a4, b4)):
        return None
    return tuple(max(x, y) for x, y in zip(a4, b4))


def op_inputs(op: Op) -> list[str]:
    """Names of the tensors an op reads, in field order, without absent ones."""
    return [getattr(op, f) for f in op.INPUTS if getattr(op, f) is not None]


def op_outputs(op: Op) -> list[str]:
    return [getattr(op, f) for f in op.OUTPUTS]


@dataclass(frozen=True)
class Graph:
    """A model: tensors by name, ops in execution order, graph inputs and outputs."""

    name: str
    tensors: dict[str, Tensor]
    ops: tuple[Op, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    folded: tuple[str, ...] = ()  # the model's ops evaluated at import (constant folding)

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    @functools.cached_property
    def derived(self) -> dict:
        """Facts derived from this graph, memoized by the functions that derive them (keyed by
        their name and the op): a graph is never changed once built, and the schedule search
        asks the same questions of each op hundreds of thousands of times."""
        return {}

    @property
    def input(self) -> Tensor:
        return self.tensors[self.inputs[0]]

    @property
    def output(self) -> Tensor:
        return self.tensors[self.outputs[0]]

    def replace(self, **changes) -> "Graph":
        return dataclasses.replace(self, **changes)

    def producers(self) -> dict[str, int]:
        """Index of the op that writes each non-constant tensor."""
        return {t: i for i, op in enumerate(self.ops) for t in op_outputs(op)}

    def consumers(self, name: str) -> list[int]:
        return [i for i, op in enumerate(self.ops) if name in op_inputs(op)]

    def without_unused_tensors(self) -> "Graph":
        used = set(self.inputs) | set(self.outputs)
        for op in self.ops:
            used.update(op_inputs(op))
            used.update(op_outputs(op))
        return self.replace(tensors={n: t for n, t in self.tensors.items() if n in used})


# ---------------------------------------------------------------------------------------------
# Shape rules (a spatial op's output size is geometry.py's).


# TFLite's MultiplyByQuantizedMultiplier shifts the accumulator left by a positive shift in
# int32 (x * (1 << shift)): beyond 30 that is undefined behaviour, in TFLM as in C.
MAX_LEFT_SHIFT = 30


def verify(graph: Graph) -> None:
    """Check the IR's invariants; raise McugenError naming the first op that breaks one."""
    defined = set(graph.inputs) | {n for n, t in graph.tensors.items() if t.is_constant}
    for index, op in enumerate(graph.ops):
        where = f"op {index} ({op.OP})"
        for name in op_inputs(op):
            if name not in graph.tensors:
                raise McugenError(f"{where}: unknown tensor {name!r}")
            if name not in defined:
                raise McugenError(f"{where}: reads {name!r} before it is written")
        for name in op_outputs(op):
            _verify_output_type(graph, op, where, graph.tensors[name])
            defined.add(name)
        act_min = getattr(op, "act_min", None)
        act_max = getattr(op, "act_max", None)
        if act_min is not None and not -128 <= act_min <= act_max <= 127:
            raise McugenError(f"{where}: bad activation range [{act_min}, {act_max}]")
        requant = getattr(op, "requant", None)
        if requant is not None and max(requant.shift) > MAX_LEFT_SHIFT:
            raise McugenError(f"{where}: its scales give a multiplier of about "
                              f"2^{max(requant.shift)}, beyond TFLite's fixed point (at most "
                              f"2^{MAX_LEFT_SHIFT}); check the model's scales")
        _verify_shapes(graph, op, where)
    for name in graph.outputs:
        if name not in defined:
            raise McugenError(f"graph output {name!r} is never written")


def _per_tensor(t: Tensor, dtypes: tuple[str, ...]) -> bool:
    return t.dtype in dtypes and t.q is not None and not t.q.per_channel


def _verify_output_type(graph: Graph, op: Op, where: str, output: Tensor) -> None:
    """Every op writes per-tensor int8, but QUANTIZE (8-bit, from float32 or 8-bit) and
    DEQUANTIZE (float32, from 8-bit)."""
    source = graph.tensors[op.input]
    if isinstance(op, Quantize):
        ok = _per_tensor(output, QUANTIZED_TYPES) and (
            source.dtype == "float32" or _per_tensor(source, QUANTIZED_TYPES))
        wanted = "per-tensor int8 or uint8, from float32 or per-tensor int8 or uint8"
    elif isinstance(op, Dequantize):
        ok = output.dtype == "float32" and _per_tensor(source, QUANTIZED_TYPES)
        wanted = "float32, from per-tensor int8 or uint8"
    else:
        ok = _per_tensor(output, ("int8",))
        wanted = "per-tensor int8"
    if not ok:
        raise McugenError(f"{where}: output {output.name!r} ({output.dtype}) must be {wanted}")


def _verify_shapes(graph: Graph, op: Op, where: str) -> None:
    from .geometry import output_size  # geometry reads the ops defined here

    t = graph.tensors
    if isinstance(op, (Conv2D, DepthwiseConv2D)):
        n, h, w, c = t[op.input].shape
        f = t[op.filter].shape
        on, oh, ow, oc = t[op.output].shape
        if isinstance(op, Conv2D):
            channels_ok = f[3] == c and f[0] == oc
        else:
            channels_ok = f[3] == oc == c * op.depth_multiplier
        if (n, on) != (1, 1) or (oh, ow) != output_size(op, graph) or not channels_ok:
            raise McugenError(f"{where}: shapes {t[op.input].shape} * {f} -> "
                              f"{t[op.output].shape} do not agree")
        halo = getattr(op, "halo", None)
        if halo is not None and (t[halo].shape != (1, h, op.padding.left, c) or
                                 t[halo].q != t[op.input].q):
            raise McugenError(f"{where}: halo {t[halo].shape} is not the input's left padding "
                              f"({op.padding.left} columns of {t[op.input].shape})")
    elif isinstance(op, Pad):
        n, h, w, c = t[op.input].shape
        if t[op.output].shape != (n, *output_size(op, graph), c):
            raise McugenError(f"{where}: bad output shape {t[op.output].shape}")
    elif isinstance(op, (Reshape, Softmax)):
        if t[op.input].size != t[op.output].size:
            raise McugenError(f"{where}: element counts differ")
    elif isinstance(op, ELEMENTWISE_BINARY):
        shape = broadcast_shape(t[op.input].shape, t[op.input2].shape)
        if shape is None or shape != t[op.output].shape or shape[0] != 1:
            raise McugenError(f"{where}: shapes {t[op.input].shape} and {t[op.input2].shape} "
                              f"do not broadcast to {t[op.output].shape} (batch 1)")
    elif isinstance(op, (HardSwish, Relu, TableLookup, Quantize, Dequantize)):
        if t[op.input].shape != t[op.output].shape:
            raise McugenError(f"{where}: input and output shapes differ")
    elif isinstance(op, ConcatColumns):
        (n, h, w, c), (n2, h2, w2, c2) = t[op.input].shape, t[op.input2].shape
        if (n, h, c) != (n2, h2, c2) or t[op.output].shape != (n, h, w + w2, c) or \
                t[op.input].q != t[op.output].q or t[op.input2].q != t[op.output].q:
            raise McugenError(f"{where}: {t[op.input].shape} and {t[op.input2].shape} do not "
                              f"join to {t[op.output].shape} with one quantization")
    elif isinstance(op, SliceColumns):
        (n, h, w, c), (n2, h2, w2, c2) = t[op.input].shape, t[op.output].shape
        if (n, h, c) != (n2, h2, c2) or not 0 <= op.begin <= op.begin + w2 <= w or \
                t[op.input].q != t[op.output].q:
            raise McugenError(f"{where}: columns {op.begin}-{op.begin + w2 - 1} of "
                              f"{t[op.input].shape} are not {t[op.output].shape}")
    elif isinstance(op, Transpose):
        shape = t[op.input].shape
        if sorted(op.perm) != list(range(len(shape))) or \
                tuple(shape[i] for i in op.perm) != t[op.output].shape:
            raise McugenError(f"{where}: permutation {list(op.perm)} does not take "
                              f"{list(shape)} to {list(t[op.output].shape)}")
