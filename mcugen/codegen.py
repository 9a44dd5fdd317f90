"""Code generation: turn the planned graph into view records, and the views into files.

Python decides every number here (shapes, offsets, folded constants, C names); the Jinja2
templates in templates/ only lay them out. Each op kind has one view function.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

import jinja2
import numpy as np

from . import __version__
from .errors import McugenError
from .ir import (Add, AveragePool2D, Conv2D, DepthwiseConv2D, FullyConnected, Graph, Mean, Mul,
                 Op, Pad, Reshape, Softmax, TableLookup, Transpose)
from .kernels import DEPTHWISE, POINTWISE, CmsisPath, Kernel, scratch_id
from .planner import Plan
from .quant import mean_multiplier
from .resources import templates_dir

C_KEYWORDS = frozenset("""auto break case char const continue default do double else enum extern
float for goto if inline int long register restrict return short signed sizeof static struct
switch typedef union unsigned void volatile while _Bool _Complex _Imaginary main""".split())


def check_model_name(name: str) -> None:
    """The name prefixes every C symbol: it must be a C identifier and not a reserved word."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in C_KEYWORDS \
            or keyword.iskeyword(name) or name.startswith("__"):
        raise McugenError(f"--name {name!r} is not usable as a C identifier prefix")


KERNELS_WITH_HELPERS = frozenset({"softmax_s8", "dw_conv_s8", "conv_s8"})


@dataclass(frozen=True)
class ConstArray:
    """A const table in flash: weights, biases, multipliers, shifts."""

    name: str
    ctype: str  # "int8_t" or "int32_t"
    values: np.ndarray  # flat

    @property
    def nbytes(self) -> int:
        return self.values.size * self.values.itemsize


@dataclass(frozen=True)
class Geometry:
    """Shapes and quantization constants of one layer, as literals for its kernel."""

    in_h: int
    in_w: int
    in_c: int
    out_h: int
    out_w: int
    out_c: int
    k_h: int = 1
    k_w: int = 1
    stride_h: int = 1
    stride_w: int = 1
    dil_h: int = 1
    dil_w: int = 1
    pad_top: int = 0
    pad_left: int = 0
    depth_multiplier: int = 1
    input_offset: int = 0  # -input zero point, as TFLite's kernels add it
    output_offset: int = 0  # +output zero point
    act_min: int = -128
    act_max: int = 127

    @property
    def pixels(self) -> int:
        return self.out_h * self.out_w


@dataclass(frozen=True)
class LibraryCall:
    """A layer that calls a CMSIS-NN function: which one, and its context buffer."""

    function: str
    buffer: str  # C expression for cmsis_nn_context.buf
    buffer_bytes: int
    returns_status: bool  # every arm_*_s8 layer function but the softmax returns a status


@dataclass(frozen=True)
class LayerView:
    index: int
    op: str
    kernel: str
    function: str
    input: str  # C expression of the input pointer
    output: str
    output_bytes: int
    comment: str
    geometry: Geometry
    arrays: dict[str, ConstArray] = field(default_factory=dict)  # role -> table
    extra: dict[str, int] = field(default_factory=dict)  # kernel-specific integer constants
    call: LibraryCall | None = None
    input2: str | None = None  # C expression of the second operand (ADD, MUL)
    scratch: str | None = None  # C expression of the arena scratch of one of our kernels

    @property
    def requantize(self) -> str:
        """The C requantization function for this layer's shift table: requantize_right when
        every shift is a right shift (the usual case), requantize otherwise."""
        shift = self.arrays.get("shift")
        if shift is not None and bool((shift.values <= 0).all()):
            return "requantize_right"
        return "requantize"


@dataclass(frozen=True)
class ModelView:
    name: str
    upper: str
    source: str  # provenance line: what was compiled, with which options
    input_size: int
    output_size: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_scale: str  # C float literals
    output_scale: str
    input_zero_point: int
    output_zero_point: int
    arena_size: int
    layers: tuple[LayerView, ...]
    cmsis_nn: CmsisPath | None = None  # the CMSIS-NN path the scratch sizes were computed for
    version: str = __version__

    @property
    def helper_kernels(self) -> list[str]:
        """Kernels with shared static helpers (templates/kernels/<name>_helpers.c.j2), once."""
        return sorted({layer.kernel for layer in self.layers} & KERNELS_WITH_HELPERS)

    @property
    def arrays(self) -> list[ConstArray]:
        return [a for layer in self.layers for a in layer.arrays.values()]


def float_literal(value: float) -> str:
    """A C float literal that reads back as the same float32."""
    text = f"{np.float32(value):.9g}"
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


# ---------------------------------------------------------------------------------------------
# Views


def build_model_view(graph: Graph, kernels: list[Kernel], plan: Plan, name: str,
                     source: str, cmsis_nn: CmsisPath | None = None) -> ModelView:
    check_model_name(name)
    layers = tuple(
        _layer_view(index, op, kernel, graph, plan, name)
        for index, (op, kernel) in enumerate(zip(graph.ops, kernels)))
    inp, out = graph.input, graph.output
    return ModelView(
        name=name, upper=name.upper(), source=source,
        input_size=inp.size, output_size=out.size,
        input_shape=inp.shape, output_shape=out.shape,
        input_scale=float_literal(inp.scale), output_scale=float_literal(out.scale),
        input_zero_point=inp.zero_point, output_zero_point=out.zero_point,
        arena_size=plan.arena_size, layers=layers, cmsis_nn=cmsis_nn)


def pointer(tensor: str, graph: Graph, plan: Plan) -> str:
    if tensor in graph.inputs:
        return "input"
    if tensor in graph.outputs:
        return "output"
    return f"arena + {plan.offsets[tensor]}"


def _layer_view(index: int, op: Op, kernel: Kernel, graph: Graph, plan: Plan,
                name: str) -> LayerView:
    builder = _VIEW_BUILDERS[type(op)]
    geometry, arrays, extra = builder(op, graph, f"{name}_layer{index}", kernel)
    in_shape, out_shape = graph.tensor(op.input).shape, graph.tensor(op.output).shape
    comment = f"{op.OP} {'x'.join(map(str, in_shape))} -> {'x'.join(map(str, out_shape))}"
    if isinstance(op, TableLookup):
        comment += f" ({op.source} as a lookup table)"
    input2 = None
    if getattr(op, "input2", None) is not None:
        input2 = arrays["operand2"].name if "operand2" in arrays else \
            pointer(op.input2, graph, plan)
    scratch = None
    if kernel.scratch_bytes and kernel.library_function is None:
        scratch = f"arena + {plan.offsets[scratch_id(index)]}"
    return LayerView(
        index=index, op=op.OP, kernel=kernel.name, function=f"layer{index}_{kernel.name}",
        input=pointer(op.input, graph, plan), output=pointer(op.output, graph, plan),
        output_bytes=graph.tensor(op.output).nbytes, comment=comment, geometry=geometry,
        arrays=arrays, extra=extra, call=_library_call(index, kernel, arrays, plan),
        input2=input2, scratch=scratch)


def _library_call(index: int, kernel: Kernel, arrays: dict[str, ConstArray],
                  plan: Plan) -> LibraryCall | None:
    if kernel.library_function is None:
        return None
    if kernel.kernel_sums:
        buffer, size = f"(void *){arrays['kernel_sums'].name}", arrays["kernel_sums"].nbytes
    elif kernel.scratch_bytes:
        buffer, size = f"arena + {plan.offsets[scratch_id(index)]}", kernel.scratch_bytes
    else:
        buffer, size = "NULL", 0
    return LibraryCall(kernel.library_function, buffer, size,
                       returns_status=kernel.library_function != "arm_softmax_s8")


def _activation_geometry(op: Op, graph: Graph) -> dict[str, int]:
    act_min, act_max = getattr(op, "act_min", None), getattr(op, "act_max", None)
    return dict(input_offset=-graph.tensor(op.input).zero_point,
                output_offset=graph.tensor(op.output).zero_point,
                act_min=-128 if act_min is None else act_min,
                act_max=127 if act_max is None else act_max)


def _requant_arrays(op: Op, prefix: str, channels: int) -> dict[str, ConstArray]:
    """Per-channel multiplier and shift tables (a per-tensor pair is repeated per channel)."""
    mult = np.broadcast_to(np.array(op.requant.multiplier, np.int32), (channels,))
    shift = np.broadcast_to(np.array(op.requant.shift, np.int32), (channels,))
    return {"multiplier": ConstArray(f"{prefix}_multiplier", "int32_t", mult.copy()),
            "shift": ConstArray(f"{prefix}_shift", "int32_t", shift.copy())}


def _bias(op: Op, graph: Graph, channels: int) -> np.ndarray:
    if op.bias is None:
        return np.zeros(channels, np.int64)
    return graph.tensor(op.bias).data.astype(np.int64).reshape(channels)


def _folded_bias(bias: np.ndarray, weights: np.ndarray, input_zero_point: int) -> np.ndarray:
    """bias - zp_in * sum(w): with no padding to skip, sum((x - zp) * w) + b = sum(x * w) + this,
    which saves an add per MAC (TinyEngine's trick; exact in integers)."""
    sums = weights.reshape(weights.shape[0], -1).astype(np.int64).sum(axis=1)
    folded = bias - input_zero_point * sums
    if np.any(np.abs(folded) >= 2**31):
        raise McugenError("folded bias overflows int32")
    return folded.astype(np.int32)


def _conv_view(op: Conv2D | DepthwiseConv2D, graph: Graph, prefix: str, kernel: Kernel):
    _, in_h, in_w, in_c = graph.tensor(op.input).shape
    _, out_h, out_w, out_c = graph.tensor(op.output).shape
    weights = graph.tensor(op.filter).data
    geometry = Geometry(
        in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c,
        k_h=weights.shape[1], k_w=weights.shape[2], stride_h=op.stride[0], stride_w=op.stride[1],
        dil_h=op.dilation[0], dil_w=op.dilation[1], pad_top=op.padding.top,
        pad_left=op.padding.left,
        depth_multiplier=getattr(op, "depth_multiplier", 1), **_activation_geometry(op, graph))
    bias = _bias(op, graph, out_c)
    requant = _requant_arrays(op, prefix, out_c)
    extra = _depthwise_plan(geometry, bias, requant) if kernel == DEPTHWISE else {}
    input_zero_point = graph.tensor(op.input).zero_point
    if kernel == POINTWISE:  # no padding: the input offset folds into the bias
        bias = _folded_bias(bias, weights, input_zero_point)
    elif kernel == DEPTHWISE:  # padding taps read the zero point, which then adds nothing
        bias = _folded_bias(bias, weights[0].reshape(-1, out_c).T, input_zero_point)
    filter = ConstArray(f"{prefix}_filter", "int8_t", _filter_rows(weights, kernel))
    if isinstance(op, DepthwiseConv2D):
        filter = _padded(filter, kernel.table_padding)
    per_channel = {"bias": ConstArray(f"{prefix}_bias", "int32_t", bias.astype(np.int32)),
                   **requant}
    arrays = {"filter": filter, **{role: _padded(array, kernel.table_padding)
                                   for role, array in per_channel.items()}}
    return geometry, arrays, extra


# Our depthwise kernel pre-extends a layer's weights to int16 on the stack once per call when
# they take at most this much (2 KiB: a cost in RAM that every Cortex-M part can pay).
DEPTHWISE_EXTENDED_WEIGHTS_MAX_BYTES = 2048


def _depthwise_plan(g: Geometry, bias: np.ndarray, requant: dict[str, ConstArray]
                    ) -> dict[str, int]:
    """What code templates/kernels/dw_conv_s8.c.j2 emits for this layer (bias: the model's,
    before the input offset is folded in)."""
    taps = g.k_h * g.k_w
    # Channels four at a time: four input channels with multiplier 1, or one input channel
    # feeding four outputs with a multiplier of 4k; the rest one at a time.
    if g.depth_multiplier == 1:
        blocked = g.out_c - g.out_c % 4
    else:
        blocked = g.out_c if g.depth_multiplier % 4 == 0 else 0
    # Output rows [row_lo, row_hi) and columns [col_lo, col_hi): the whole window inside.
    row_lo = min(-(-g.pad_top // g.stride_h), g.out_h)
    row_hi = max(min((g.in_h - 1 - (g.k_h - 1) * g.dil_h + g.pad_top) // g.stride_h + 1,
                     g.out_h), row_lo)
    col_lo = min(-(-g.pad_left // g.stride_w), g.out_w)
    col_hi = max(min((g.in_w - 1 - (g.k_w - 1) * g.dil_w + g.pad_left) // g.stride_w + 1,
                     g.out_w), col_lo)
    # The interior gets its own unrolled code only where it is at least a quarter of the
    # pixels: in tiny maps (3x3 outputs of a 3x3 kernel) the border code does them all.
    inside = (row_hi - row_lo) * (col_hi - col_lo)
    has_inside = row_lo < row_hi and col_lo < col_hi and inside * 4 >= g.out_h * g.out_w
    has_border = not (row_lo == 0 and row_hi == g.out_h and col_lo == 0 and col_hi == g.out_w)
    # The short requantization (dw_requantize) needs every accumulator below 2^30 (bias plus
    # taps of |x + offset| <= 256 times |w| <= 128, or the folded bias plus |x * w| taps),
    # right shifts only, and multipliers that are not negative.
    bias_max = int(np.abs(bias.astype(np.int64)).max()) if bias.size else 0
    fast_rq = (bias_max + taps * 256 * 128 < 2**30
               and int(requant["shift"].values.max()) <= -1
               and int(requant["multiplier"].values.min()) >= 0)
    packed = (fast_rq and blocked > 0
              and taps * blocked * 2 <= DEPTHWISE_EXTENDED_WEIGHTS_MAX_BYTES)
    return dict(blocked=blocked, row_lo=row_lo, row_hi=row_hi, col_lo=col_lo, col_hi=col_hi,
                has_inside=int(has_inside), has_border=int(has_border), fast_rq=int(fast_rq),
                packed=int(packed))


def _filter_rows(weights: np.ndarray, kernel: Kernel) -> np.ndarray:
    """The filter flattened, each output channel's row zero-padded to the kernel's multiple
    and, for kernels that split four bytes with SXTB16, each 4 bytes as w0, w2, w1, w3."""
    rows = weights.reshape(weights.shape[0], -1)
    padding = -rows.shape[1] % kernel.filter_row_multiple
    rows = np.pad(rows, ((0, 0), (0, padding)))
    if kernel.filter_in_sxtb16_order:
        rows = rows.reshape(rows.shape[0], -1, 4)[:, :, [0, 2, 1, 3]]
    return rows.reshape(-1)


def _padded(array: ConstArray, count: int) -> ConstArray:
    """The table with count zeros after it, for kernels that read past the end (MVE)."""
    if count == 0:
        return array
    values = np.concatenate([array.values, np.zeros(count, array.values.dtype)])
    return ConstArray(array.name, array.ctype, values)


def _fully_connected_view(op: FullyConnected, graph: Graph, prefix: str, kernel: Kernel):
    weights = graph.tensor(op.weights).data
    outputs, depth = weights.shape
    rows = graph.tensor(op.input).size // depth
    geometry = Geometry(in_h=rows, in_w=1, in_c=depth, out_h=rows, out_w=1, out_c=outputs,
                        **_activation_geometry(op, graph))
    bias = _bias(op, graph, outputs)
    folded = _folded_bias(bias, weights, graph.tensor(op.input).zero_point)
    filter = ConstArray(f"{prefix}_filter", "int8_t", weights.reshape(-1))
    if kernel.library_function is None:
        arrays = {"filter": filter, "bias": ConstArray(f"{prefix}_bias", "int32_t", folded),
                  **_requant_arrays(op, prefix, outputs)}
        return geometry, arrays, {}
    return geometry, *_cmsis_fully_connected_tables(op, prefix, kernel, filter, bias, folded)


def _cmsis_fully_connected_tables(op: FullyConnected, prefix: str, kernel: Kernel,
                                  filter: ConstArray, bias: np.ndarray, folded: np.ndarray):
    """CMSIS-NN adds the input offset itself, to the plain bias; on MVE it starts instead from
    the kernel sums, bias + input_offset * sum(w) (arm_vector_sum_s8), which are exactly our
    folded bias, and ignores the bias. A per-tensor multiplier goes into the params struct."""
    arrays = {"filter": filter}
    if kernel.kernel_sums:
        arrays["kernel_sums"] = ConstArray(f"{prefix}_kernel_sums", "int32_t", folded)
    else:
        arrays["bias"] = ConstArray(f"{prefix}_bias", "int32_t", bias.astype(np.int32))
    extra = {}
    if len(op.requant.multiplier) > 1:
        arrays.update(_requant_arrays(op, prefix, folded.size))
    else:
        extra = {"multiplier": op.requant.multiplier[0], "shift": op.requant.shift[0]}
    padded = {role: array if role == "filter" else _padded(array, kernel.table_padding)
              for role, array in arrays.items()}
    return padded, extra


def _nhwc_geometry(op: Op, graph: Graph, **more) -> Geometry:
    _, in_h, in_w, in_c = graph.tensor(op.input).shape
    out_shape = graph.tensor(op.output).shape
    out_h, out_w, out_c = (out_shape[1], out_shape[2], out_shape[3]) if len(out_shape) == 4 \
        else (1, 1, out_shape[-1])
    return Geometry(in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c,
                    **more)


def _pad_view(op: Pad, graph: Graph, prefix: str, kernel: Kernel):
    geometry = _nhwc_geometry(op, graph, pad_top=op.padding.top, pad_left=op.padding.left,
                              output_offset=graph.tensor(op.output).zero_point)
    return geometry, {}, {}


def _average_pool_view(op: AveragePool2D, graph: Graph, prefix: str, kernel: Kernel):
    geometry = _nhwc_geometry(
        op, graph, k_h=op.filter_size[0], k_w=op.filter_size[1], stride_h=op.stride[0],
        stride_w=op.stride[1], pad_top=op.padding.top, pad_left=op.padding.left,
        **_activation_geometry(op, graph))
    return geometry, {}, {}


def _mean_view(op: Mean, graph: Graph, prefix: str, kernel: Kernel):
    geometry = _nhwc_geometry(op, graph, **_activation_geometry(op, graph))
    multiplier, shift = mean_multiplier(op.requant.multiplier[0], op.requant.shift[0],
                                        geometry.in_h * geometry.in_w)
    extra = {"multiplier": multiplier, "shift": shift}
    return geometry, {}, extra


def _softmax_view(op: Softmax, graph: Graph, prefix: str, kernel: Kernel):
    size = graph.tensor(op.input).size
    row = graph.tensor(op.output).shape[-1]
    geometry = Geometry(in_h=size // row, in_w=1, in_c=row, out_h=size // row, out_w=1,
                        out_c=row, **_activation_geometry(op, graph))
    extra = {"input_multiplier": op.input_multiplier, "input_left_shift": op.input_left_shift,
             "diff_min": op.diff_min}
    return geometry, {}, extra


def _copy_view(op: Reshape, graph: Graph, prefix: str, kernel: Kernel):
    size = graph.tensor(op.input).size
    return Geometry(in_h=1, in_w=1, in_c=size, out_h=1, out_w=1, out_c=size), {}, {}


def _as_4d(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1,) * (4 - len(shape)) + tuple(shape)


def _broadcast_strides(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> dict[str, int]:
    """Element strides of an operand along the output's H, W and C (0 where it broadcasts)."""
    _, h, w, c = _as_4d(shape)
    _, out_h, out_w, out_c = _as_4d(out_shape)
    return {"h": w * c if h == out_h else 0, "w": c if w == out_w else 0,
            "c": 1 if c == out_c else 0}


def _elementwise_view(op: Add | Mul, graph: Graph, prefix: str, kernel: Kernel):
    """Shapes as NHWC (a lower rank is padded with ones in front, as TFLite broadcasts), the
    operands' strides, and the op's constants. A constant second operand becomes a table."""
    x1, x2, y = (graph.tensor(n) for n in (op.input, op.input2, op.output))
    _, out_h, out_w, out_c = _as_4d(y.shape)
    geometry = Geometry(in_h=out_h, in_w=out_w, in_c=out_c, out_h=out_h, out_w=out_w,
                        out_c=out_c, **_activation_geometry(op, graph))
    arrays = {}
    if x2.is_constant:
        arrays["operand2"] = ConstArray(f"{prefix}_operand2", "int8_t", x2.data.reshape(-1))
    a, b = _broadcast_strides(x1.shape, y.shape), _broadcast_strides(x2.shape, y.shape)
    extra = {"input2_offset": -x2.zero_point, "flat": int(x1.shape == x2.shape == y.shape),
             **{f"a_{axis}": stride for axis, stride in a.items()},
             **{f"b_{axis}": stride for axis, stride in b.items()}}
    if isinstance(op, Add):
        r = op.rescale
        extra.update(left_shift=r.left_shift, input1_multiplier=r.input1[0],
                     input1_shift=r.input1[1], input2_multiplier=r.input2[0],
                     input2_shift=r.input2[1], output_multiplier=r.output[0],
                     output_shift=r.output[1])
    else:
        extra.update(output_multiplier=op.requant.multiplier[0],
                     output_shift=op.requant.shift[0])
    return geometry, arrays, extra


def _lookup_view(op: TableLookup, graph: Graph, prefix: str, kernel: Kernel):
    size = graph.tensor(op.input).size
    geometry = Geometry(in_h=1, in_w=1, in_c=size, out_h=1, out_w=1, out_c=size)
    table = ConstArray(f"{prefix}_table", "int8_t", np.array(op.table, np.int8))
    return geometry, {"table": table}, {}


def _transpose_view(op: Transpose, graph: Graph, prefix: str, kernel: Kernel):
    """Loops over the output's axes in order; each reads the input with that axis' stride."""
    in_shape = _as_4d(graph.tensor(op.input).shape)
    out_shape = _as_4d(graph.tensor(op.output).shape)
    perm = [axis + 4 - len(op.perm) for axis in op.perm]
    perm = list(range(4 - len(op.perm))) + perm
    in_strides = [int(np.prod(in_shape[axis + 1:])) for axis in range(4)]
    extra = {}
    for k in range(4):
        extra[f"dim{k}"] = out_shape[k]
        extra[f"stride{k}"] = in_strides[perm[k]]
    size = graph.tensor(op.input).size
    geometry = Geometry(in_h=1, in_w=1, in_c=size, out_h=1, out_w=1, out_c=size)
    return geometry, {}, extra


_VIEW_BUILDERS = {
    Conv2D: _conv_view, DepthwiseConv2D: _conv_view, FullyConnected: _fully_connected_view,
    Pad: _pad_view, AveragePool2D: _average_pool_view, Mean: _mean_view,
    Softmax: _softmax_view, Reshape: _copy_view, Add: _elementwise_view,
    Mul: _elementwise_view, TableLookup: _lookup_view, Transpose: _transpose_view,
}


# ---------------------------------------------------------------------------------------------
# Rendering


def c_rows(values: np.ndarray, per_line: int = 24) -> list[str]:
    """Array initializer rows: 'v, v, v,' with per_line numbers each (Jinja filter)."""
    flat = np.asarray(values).reshape(-1).tolist()
    return [", ".join(map(str, flat[i:i + per_line])) + ","
            for i in range(0, len(flat), per_line)]


def template_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, autoescape=False)
    env.filters["c_rows"] = c_rows
    return env


SOURCE_TEMPLATES = {  # output file name (NAME substituted) -> template
    "{name}.h": "model.h.j2",
    "{name}.c": "model.c.j2",
    "{name}_weights.h": "weights.h.j2",
    "{name}_weights.c": "weights.c.j2",
    "{name}_io.c": "io.c.j2",
    "CMakeLists.txt": "CMakeLists.txt.j2",
    "{name}.mk": "model.mk.j2",
}


def render_sources(model: ModelView) -> dict[str, str]:
    env = template_environment()
    return {file.format(name=model.name): env.get_template(template).render(model=model)
            for file, template in SOURCE_TEMPLATES.items()}
