"""A small FlatBuffers writer for the TFLite schema fields mcugen reads: enough to build any
model the importer can see, including hostile-but-well-formed ones (fields at their edges,
wrong option types, missing operands, repeated names, self-loops) for the fuzzer.

No dependency: the slots are the field indices of TensorFlow's lite/schema/schema.fbs (the
same numbers mcugen/frontend/tflite.py reads), written here on purpose rather than imported
so that a change on either side shows up as a failing test.

Layout: the buffer is written front to back. A table's vtable comes just before the table
(its soffset is then positive), and everything a table refers to comes after it, so every
uoffset points forward as the format requires. Scalars sit at their natural alignment, vector
elements too (TFLite's verifier checks both), string bytes end with a NUL, and buffer data is
16-byte aligned as the converter writes it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

# ---------------------------------------------------------------------------------------------
# Generic flatbuffer values.


@dataclass
class Scalar:
    fmt: str  # struct format: b B h H i I q Q f d ?
    value: Any


@dataclass
class Vector:
    fmt: str  # element struct format, or "table"
    values: Sequence[Any]
    align: int = 0  # alignment of the first element (0: the element size)


@dataclass
class String:
    text: str | bytes


@dataclass
class Table:
    fields: dict[int, Any] = field(default_factory=dict)  # slot -> Scalar | Vector | String | Table


def _pad(buf: bytearray, alignment: int, before: int = 0) -> None:
    """Pad so that ``len(buf) + before`` is a multiple of alignment."""
    while (len(buf) + before) % alignment:
        buf.append(0)


class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.pending: list[tuple[int, Any]] = []  # (position of a uoffset, value it points to)

    def finish(self, root: Table, identifier: bytes) -> bytes:
        self.buf += b"\0\0\0\0" + identifier
        self.pending.append((0, root))
        while self.pending:
            at, value = self.pending.pop(0)
            target = self._write(value)
            struct.pack_into("<I", self.buf, at, target - at)
        return bytes(self.buf)

    def _write(self, value: Any) -> int:
        if isinstance(value, Table):
            return self._table(value)
        if isinstance(value, String):
            raw = value.text.encode() if isinstance(value.text, str) else value.text
            _pad(self.buf, 4)
            start = len(self.buf)
            self.buf += struct.pack("<I", len(raw)) + raw + b"\0"
            return start
        if isinstance(value, Vector):
            return self._vector(value)
        raise TypeError(f"cannot refer to {value!r}")

    def _vector(self, vector: Vector) -> int:
        if vector.fmt == "table":
            _pad(self.buf, 4)
            start = len(self.buf)
            self.buf += struct.pack("<I", len(vector.values))
            for element in vector.values:
                self.pending.append((len(self.buf), element))
                self.buf += b"\0\0\0\0"
            return start
        size = struct.calcsize("<" + vector.fmt)
        _pad(self.buf, max(vector.align, size, 4), before=4)
        start = len(self.buf)
        self.buf += struct.pack("<I", len(vector.values))
        self.buf += struct.pack(f"<{len(vector.values)}{vector.fmt}", *vector.values)
        return start

    def _table(self, table: Table) -> int:
        # Inline layout after the 4-byte soffset: the largest fields first, each aligned.
        inline = []
        for slot, value in table.fields.items():
            size = struct.calcsize("<" + value.fmt) if isinstance(value, Scalar) else 4
            inline.append((size, slot, value))
        inline.sort(key=lambda entry: (-entry[0], entry[1]))
        offsets, cursor = {}, 4
        for size, slot, _ in inline:
            cursor = -(-cursor // size) * size
            offsets[slot] = cursor
            cursor += size
        table_size = -(-cursor // 4) * 4
        slots = max(table.fields, default=-1) + 1
        vtable = struct.pack(f"<{2 + slots}H", 4 + 2 * slots, table_size,
                             *[offsets.get(slot, 0) for slot in range(slots)])
        _pad(self.buf, 2)
        vtable_at = len(self.buf)
        self.buf += vtable
        _pad(self.buf, 8)
        start = len(self.buf)
        self.buf += bytes(table_size)
        struct.pack_into("<i", self.buf, start, start - vtable_at)
        for size, slot, value in inline:
            at = start + offsets[slot]
            if isinstance(value, Scalar):
                struct.pack_into("<" + value.fmt, self.buf, at, value.value)
            else:
                self.pending.append((at, value))
        return start


def serialize(root: Table, identifier: bytes = b"TFL3") -> bytes:
    return _Writer().finish(root, identifier)


# ---------------------------------------------------------------------------------------------
# The TFLite schema: slots, enums, option tables.

TYPES = {"float32": 0, "int32": 2, "uint8": 3, "int64": 4, "int16": 7, "int8": 9}
BUILTIN = {"ADD": 0, "AVERAGE_POOL_2D": 1, "CONV_2D": 3, "DEPTHWISE_CONV_2D": 4,
           "FULLY_CONNECTED": 9, "MUL": 18, "RELU": 19, "RELU6": 21, "RESHAPE": 22,
           "SOFTMAX": 25, "PAD": 34, "TRANSPOSE": 39, "MEAN": 40, "QUANTIZE": 114,
           "HARD_SWISH": 117, "CUSTOM": 32, "MAX_POOL_2D": 17}
ACTIVATIONS = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3, "TANH": 4}
SAME, VALID = 0, 1

# Option tables: the BuiltinOptions union id, and the slot and format of each field.
OPTIONS = {
    "Conv2DOptions": (1, {"padding": (0, "b"), "stride_w": (1, "i"), "stride_h": (2, "i"),
                          "activation": (3, "b"), "dilation_w": (4, "i"),
                          "dilation_h": (5, "i")}),
    "DepthwiseConv2DOptions": (2, {"padding": (0, "b"), "stride_w": (1, "i"),
                                   "stride_h": (2, "i"), "depth_multiplier": (3, "i"),
                                   "activation": (4, "b"), "dilation_w": (5, "i"),
                                   "dilation_h": (6, "i")}),
    "Pool2DOptions": (5, {"padding": (0, "b"), "stride_w": (1, "i"), "stride_h": (2, "i"),
                          "filter_w": (3, "i"), "filter_h": (4, "i"),
                          "activation": (5, "b")}),
    "FullyConnectedOptions": (8, {"activation": (0, "b"), "weights_format": (1, "b"),
                                  "keep_num_dims": (2, "?")}),
    "SoftmaxOptions": (9, {"beta": (0, "f")}),
    "AddOptions": (11, {"activation": (0, "b")}),
    "ReshapeOptions": (17, {}),
    "MulOptions": (21, {"activation": (0, "b")}),
    "PadOptions": (22, {}),
    "TransposeOptions": (26, {}),
    "ReducerOptions": (27, {"keep_dims": (0, "?")}),
}
# The options table each op normally carries.
OP_OPTIONS = {"CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
              "AVERAGE_POOL_2D": "Pool2DOptions", "FULLY_CONNECTED": "FullyConnectedOptions",
              "SOFTMAX": "SoftmaxOptions", "ADD": "AddOptions", "MUL": "MulOptions",
              "RESHAPE": "ReshapeOptions", "PAD": "PadOptions", "MEAN": "ReducerOptions",
              "TRANSPOSE": "TransposeOptions"}


def options_table(kind: str, values: dict[str, Any]) -> Table:
    """An options table of ``kind``; values by field name (absent fields take the default)."""
    _, fields = OPTIONS[kind]
    table = Table()
    for name, value in values.items():
        slot, fmt = fields[name]
        if fmt == "?":
            value = bool(value)
        table.fields[slot] = Scalar(fmt, value)
    return table


@dataclass
class Tensor:
    shape: tuple[int, ...]
    dtype: str
    name: str | None
    scales: tuple[float, ...] | None
    zero_points: tuple[int, ...] | None
    axis: int
    data: bytes | None


@dataclass
class Op:
    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any] | None
    options_kind: str | None
    custom_name: str | None


class ModelBuilder:
    """Build a one-subgraph TFLite model: add tensors (indices returned) and ops, then bytes().
    Nothing is checked: a hostile model is as easy to write as a sound one."""

    def __init__(self) -> None:
        self.tensors: list[Tensor] = []
        self.ops: list[Op] = []
        self.inputs: list[int] = []  # the model's, when bytes() is not given them
        self.outputs: list[int] = []

    def tensor(self, shape: Sequence[int], dtype: str = "int8", *, name: str | None = None,
               scale: float | Sequence[float] | None = 0.05,
               zero_point: int | Sequence[int] | None = 0, axis: int = 0,
               data: np.ndarray | bytes | None = None) -> int:
        """A tensor; a scalar scale and zero point are per tensor, sequences per channel;
        scale None: not quantized. data: a constant (an array is written little endian in
        ``dtype``; bytes are written as they are, for wrong sizes)."""
        scales = None if scale is None else tuple(np.atleast_1d(scale).tolist())
        zero_points = None if zero_point is None else tuple(
            int(z) for z in np.atleast_1d(np.asarray(zero_point, dtype=object)))
        if zero_points is not None and scales is not None and len(zero_points) == 1 \
                and len(scales) > 1:
            zero_points = zero_points * len(scales)
        raw = None
        if isinstance(data, np.ndarray):
            raw = np.ascontiguousarray(data).astype(np.dtype(dtype).newbyteorder("<")).tobytes()
        elif data is not None:
            raw = bytes(data)
        self.tensors.append(Tensor(tuple(int(d) for d in shape), dtype, name, scales,
                                    zero_points, axis, raw))
        return len(self.tensors) - 1

    def op(self, kind: str, inputs: Sequence[int], outputs: Sequence[int],
           options: dict[str, Any] | None = None, *, options_kind: str | None = None,
           custom_name: str | None = None) -> None:
        """An op; options by field name of its usual table (or of options_kind, to write a
        table of the wrong type). options None: no options table at all."""
        self.ops.append(Op(kind, tuple(inputs), tuple(outputs), options,
                            options_kind or OP_OPTIONS.get(kind), custom_name))

    def bytes(self, inputs: Sequence[int] | None = None,
              outputs: Sequence[int] | None = None) -> bytes:
        inputs = self.inputs if inputs is None else inputs
        outputs = self.outputs if outputs is None else outputs
        codes: list[tuple[str, str | None]] = []
        buffers = [Table()]  # buffer 0: the empty sentinel of activations
        tensor_tables = []
        for index, t in enumerate(self.tensors):
            fields: dict[int, Any] = {0: Vector("i", t.shape), 1: Scalar("b", TYPES[t.dtype])}
            if t.data is not None:
                buffers.append(Table({0: Vector("B", t.data, align=16)}))
                fields[2] = Scalar("I", len(buffers) - 1)
            if t.name is not None:
                fields[3] = String(t.name)
            if t.scales is not None:
                quantization = Table({2: Vector("f", t.scales),
                                      3: Vector("q", t.zero_points or ())})
                if t.axis:
                    quantization.fields[6] = Scalar("i", t.axis)
                fields[4] = quantization
            tensor_tables.append(Table(fields))
        operator_tables = []
        for op in self.ops:
            key = (op.kind, op.custom_name)
            if key not in codes:
                codes.append(key)
            fields = {0: Scalar("I", codes.index(key)), 1: Vector("i", op.inputs),
                      2: Vector("i", op.outputs)}
            if op.options is not None and op.options_kind is not None:
                fields[3] = Scalar("B", OPTIONS[op.options_kind][0])
                fields[4] = options_table(op.options_kind, op.options)
            operator_tables.append(Table(fields))
        code_tables = []
        for kind, custom in codes:
            code = BUILTIN[kind]
            fields = {0: Scalar("b", min(code, 127)), 2: Scalar("i", 1), 3: Scalar("i", code)}
            if custom is not None:
                fields[1] = String(custom)
            code_tables.append(Table(fields))
        subgraph = Table({0: Vector("table", tensor_tables), 1: Vector("i", tuple(inputs)),
                          2: Vector("i", tuple(outputs)), 3: Vector("table", operator_tables),
                          4: String("main")})
        model = Table({0: Scalar("I", 3), 1: Vector("table", code_tables),
                       2: Vector("table", [subgraph]), 3: String("mcugen tflite_writer"),
                       4: Vector("table", buffers)})
        return serialize(model)


# ---------------------------------------------------------------------------------------------
# Helpers for the usual shapes of a small vision model.


def conv_model(*, height: int = 8, width: int = 8, channels: int = 3, filters: int = 4,
               kernel: int = 3, stride: int = 1, dilation: int = 1, padding: int = SAME,
               input_scale: float = 0.05, input_zero_point: int = -1,
               output_scale: float = 0.1, output_zero_point: int = 2,
               weight_scale: float | Sequence[float] = 0.02, activation: str = "RELU",
               seed: int = 0) -> bytes:
    """One CONV_2D, all its fields given: the base the fuzzer bends."""
    rng = np.random.default_rng(seed)
    m = ModelBuilder()
    x = m.tensor((1, height, width, channels), name="input", scale=input_scale,
                 zero_point=input_zero_point)
    scales = np.atleast_1d(weight_scale)
    w = m.tensor((filters, kernel, kernel, channels), name="weights",
                 scale=scales if scales.size > 1 else float(scales[0]), zero_point=0,
                 data=rng.integers(-127, 128, (filters, kernel, kernel, channels)))
    b = m.tensor((filters,), "int32", name="bias", scale=None, zero_point=None,
                 data=rng.integers(-500, 500, filters))
    effective = (kernel - 1) * dilation + 1
    if padding == SAME:
        out_h, out_w = -(-height // stride), -(-width // stride)
    else:
        out_h, out_w = (height - effective) // stride + 1, (width - effective) // stride + 1
    y = m.tensor((1, out_h, out_w, filters), name="output", scale=output_scale,
                 zero_point=output_zero_point)
    m.op("CONV_2D", [x, w, b], [y], {"padding": padding, "stride_w": stride,
                                      "stride_h": stride, "dilation_w": dilation,
                                      "dilation_h": dilation,
                                      "activation": ACTIVATIONS[activation]})
    return m.bytes([x], [y])


# ---------------------------------------------------------------------------------------------
# Small sound models, one per op mcugen compiles (and one network): what the fuzzer starts from.
# Each returns a ModelBuilder with its inputs and outputs set; scales spread the outputs over
# the int8 range.


def _weights(m: ModelBuilder, rng: np.random.Generator, shape: tuple[int, ...], name: str,
             channels: int = 1, axis: int = 0) -> int:
    scales = rng.uniform(0.005, 0.02, channels)
    return m.tensor(shape, name=name, scale=scales if channels > 1 else float(scales[0]),
                    zero_point=0, axis=axis, data=rng.integers(-127, 128, shape))


def _bias(m: ModelBuilder, rng: np.random.Generator, channels: int, name: str) -> int:
    return m.tensor((channels,), "int32", name=name, scale=None, zero_point=None,
                    data=rng.integers(-2000, 2000, channels))


def base_conv(rng: np.random.Generator) -> ModelBuilder:
    m = ModelBuilder()
    x = m.tensor((1, 7, 6, 3), name="input", scale=0.05, zero_point=-3)
    w = _weights(m, rng, (4, 3, 3, 3), "conv/weights", channels=4)
    b = _bias(m, rng, 4, "conv/bias")
    y = m.tensor((1, 4, 3, 4), name="conv/out", scale=0.08, zero_point=5)
    m.op("CONV_2D", [x, w, b], [y], {"padding": SAME, "stride_w": 2, "stride_h": 2,
                                      "dilation_w": 1, "dilation_h": 1,
                                      "activation": ACTIVATIONS["RELU6"]})
    m.inputs, m.outputs = [x], [y]
    return m


def base_depthwise(rng: np.random.Generator) -> ModelBuilder:
    m = ModelBuilder()
    x = m.tensor((1, 6, 6, 2), name="input", scale=0.05, zero_point=4)
    w = _weights(m, rng, (1, 3, 3, 4), "dw/weights", channels=4, axis=3)
    b = _bias(m, rng, 4, "dw/bias")
    y = m.tensor((1, 4, 4, 4), name="dw/out", scale=0.04, zero_point=-7)
    m.op("DEPTHWISE_CONV_2D", [x, w, b], [y],
         {"padding": VALID, "stride_w": 1, "stride_h": 1, "depth_multiplier": 2,
          "dilation_w": 1, "dilation_h": 1, "activation": ACTIVATIONS["RELU"]})
    m.inputs, m.outputs = [x], [y]
    return m


def base_pool(rng: np.random.Generator) -> ModelBuilder:
    m = ModelBuilder()
    x = m.tensor((1, 5, 5, 3), name="input", scale=0.05, zero_point=1)
    y = m.tensor((1, 3, 3, 3), name="pool/out", scale=0.05, zero_point=1)
    m.op("AVERAGE_POOL_2D", [x], [y], {"padding": SAME, "stride_w": 2, "stride_h": 2,
                                       "filter_w": 3, "filter_h": 2, "activation": 0})
    m.inputs, m.outputs = [x], [y]
    return m


def base_fully_connected(rng: np.random.Generator) -> ModelBuilder:
    m = ModelBuilder()
    x = m.tensor((1, 12), name="input", scale=0.05, zero_point=2)
    w = _weights(m, rng, (5, 12), "fc/weights")
    b = _bias(m, rng, 5, "fc/bias")
    y = m.tensor((1, 5), name="fc/out", scale=0.06, zero_point=-1)
    m.op("FULLY_CONNECTED", [x, w, b], [y], {"activation": 0})
    m.inputs, m.outputs = [x], [y]
    return m


def base_add(rng: np.random.Generator) -> ModelBuilder:
    m = ModelBuilder()
    x = m.tensor((1, 3, 4, 5), name="input", scale=0.05, zero_point=-2)
    c = m.tensor((1, 1, 1, 5), name="add/constant", scale=0.03, zero_point=3,
                 data=rng.integers(-128, 128, (1, 1, 1, 5)))
    y = m.tensor((1, 3, 4, 5), name="add/out", scale=0.07, zero_point=0)
    m.op("ADD", [x, c], [y], {"activation": 0})
    m.inputs, m.outputs = [x], [y]
    return m


def base_mul(rng: np.random.Generator) -> ModelBuilder:
    m = ModelBuilder()
    x = m.tensor((1, 3, 4, 5), name="input", scale=0.05, zero_point=-2)
    c = m.tensor((1, 1, 1, 5), name="mul/constant", scale=0.02, zero_point=-1,
                 data=rng.integers(-128, 128, (1, 1, 1, 5)))
    y = m.tensor((1, 3, 4, 5), name="mul/out", scale=0.01, zero_point=4)
    m.op("MUL", [x, c], [y], {"activation": 0})
    m.inputs, m.outputs = [x], [y]
    return m


def base_pad_mean(rng: np.random.Generator) -> ModelBuilder:
    m = ModelBuilder()
    x = m.tensor((1, 4, 3, 2), name="input", scale=0.05, zero_point=6)
    p = m.tensor((4, 2), "int32", name="pad/paddings", scale=None, zero_point=None,
                 data=np.array([[0, 0], [1, 2], [0, 1], [0, 0]]))
    y = m.tensor((1, 7, 4, 2), name="pad/out", scale=0.05, zero_point=6)
    m.op("PAD", [x, p], [y], {})
    axes = m.tensor((2,), "int32", name="mean/axes", scale=None, zero_point=None,
                    data=np.array([1, 2]))
    z = m.tensor((1, 1, 1, 2), name="mean/out", scale=0.02, zero_point=-4)
    m.op("MEAN", [y, axes], [z], {"keep_dims": True})
    m.inputs, m.outputs = [x], [z]
    return m


def base_softmax(rng: np.random.Generator) -> ModelBuilder:
    m = ModelBuilder()
    x = m.tensor((1, 10), name="input", scale=0.1, zero_point=3)
    y = m.tensor((1, 10), name="softmax/out", scale=1.0 / 256, zero_point=-128)
    m.op("SOFTMAX", [x], [y], {"beta": 1.0})
    m.inputs, m.outputs = [x], [y]
    return m


def base_elementwise(rng: np.random.Generator) -> ModelBuilder:
    """RELU, RELU6, HARD_SWISH and TRANSPOSE in a row."""
    m = ModelBuilder()
    x = m.tensor((1, 2, 3, 4), name="input", scale=0.05, zero_point=-10)
    a = m.tensor((1, 2, 3, 4), name="relu/out", scale=0.04, zero_point=-128)
    m.op("RELU", [x], [a])
    b = m.tensor((1, 2, 3, 4), name="relu6/out", scale=0.04, zero_point=-128)
    m.op("RELU6", [a], [b])
    c = m.tensor((1, 2, 3, 4), name="hard_swish/out", scale=0.03, zero_point=-20)
    m.op("HARD_SWISH", [b], [c])
    perm = m.tensor((4,), "int32", name="transpose/perm", scale=None, zero_point=None,
                    data=np.array([0, 2, 1, 3]))
    d = m.tensor((1, 3, 2, 4), name="transpose/out", scale=0.03, zero_point=-20)
    m.op("TRANSPOSE", [c, perm], [d], {})
    m.inputs, m.outputs = [x], [d]
    return m


def base_network(rng: np.random.Generator) -> ModelBuilder:
    """conv -> depthwise -> average pool -> reshape -> fully connected -> softmax."""
    m = ModelBuilder()
    x = m.tensor((1, 8, 8, 1), name="input", scale=0.05, zero_point=-1)
    w = _weights(m, rng, (4, 3, 3, 1), "conv/weights", channels=4)
    b = _bias(m, rng, 4, "conv/bias")
    a = m.tensor((1, 4, 4, 4), name="conv/out", scale=0.05, zero_point=-128)
    m.op("CONV_2D", [x, w, b], [a], {"padding": SAME, "stride_w": 2, "stride_h": 2,
                                      "dilation_w": 1, "dilation_h": 1,
                                      "activation": ACTIVATIONS["RELU"]})
    w2 = _weights(m, rng, (1, 3, 3, 4), "dw/weights", channels=4, axis=3)
    b2 = _bias(m, rng, 4, "dw/bias")
    c = m.tensor((1, 4, 4, 4), name="dw/out", scale=0.05, zero_point=-128)
    m.op("DEPTHWISE_CONV_2D", [a, w2, b2], [c],
         {"padding": SAME, "stride_w": 1, "stride_h": 1, "depth_multiplier": 1,
          "dilation_w": 2, "dilation_h": 2, "activation": ACTIVATIONS["RELU6"]})
    d = m.tensor((1, 2, 2, 4), name="pool/out", scale=0.05, zero_point=-128)
    m.op("AVERAGE_POOL_2D", [c], [d], {"padding": VALID, "stride_w": 2, "stride_h": 2,
                                       "filter_w": 2, "filter_h": 2, "activation": 0})
    shape = m.tensor((2,), "int32", name="reshape/shape", scale=None, zero_point=None,
                     data=np.array([1, 16]))
    e = m.tensor((1, 16), name="reshape/out", scale=0.05, zero_point=-128)
    m.op("RESHAPE", [d, shape], [e], {})
    w3 = _weights(m, rng, (3, 16), "fc/weights")
    b3 = _bias(m, rng, 3, "fc/bias")
    f = m.tensor((1, 3), name="fc/out", scale=0.1, zero_point=7)
    m.op("FULLY_CONNECTED", [e, w3, b3], [f], {"activation": 0})
    g = m.tensor((1, 3), name="softmax/out", scale=1.0 / 256, zero_point=-128)
    m.op("SOFTMAX", [f], [g], {"beta": 1.0})
    m.inputs, m.outputs = [x], [g]
    return m


BASE_MODELS = {
    "conv": base_conv, "depthwise": base_depthwise, "pool": base_pool,
    "fully_connected": base_fully_connected, "add": base_add, "mul": base_mul,
    "pad_mean": base_pad_mean, "softmax": base_softmax, "elementwise": base_elementwise,
    "network": base_network,
}
