"""Import an int8 TFLite model (a ``.tflite`` flatbuffer; its input and output may be uint8 or
float32 through QUANTIZE and DEQUANTIZE) into mcugen's IR.

The file is decoded with our own bounds-checked flatbuffer reader (no TensorFlow import), and
every op is turned into its typed IR node with TFLite's conventions kept as they are (OHWI
filters, int32 biases, the model's zero points); SAME/VALID becomes explicit four-sided padding.
Anything mcugen cannot compile bit-exactly is refused with one line saying what and why.

Field slots below are the field indices of TensorFlow's ``lite/schema/schema.fbs`` (a union
field takes two slots: its type, then its value).
"""

from __future__ import annotations

import dataclasses

from pathlib import Path

import numpy as np

from .. import ir
from ..errors import McugenError
from ..geometry import same_padding, windows
from . import constant_folding, limits
from .flatbuffer import FlatbufferError, Table, root_table

FILE_IDENTIFIER = b"TFL3"


# ---------------------------------------------------------------------------------------------
# Schema facts: field slots, enum values, option-table ids.


class _Model:
    OPERATOR_CODES, SUBGRAPHS, BUFFERS = 1, 2, 4


class _OperatorCode:
    DEPRECATED_BUILTIN_CODE, CUSTOM_CODE, BUILTIN_CODE = 0, 1, 3


class _SubGraph:
    TENSORS, INPUTS, OUTPUTS, OPERATORS = 0, 1, 2, 3


class _Tensor:
    SHAPE, TYPE, BUFFER, NAME, QUANTIZATION, SPARSITY = 0, 1, 2, 3, 4, 6


class _Quantization:
    SCALE, ZERO_POINT, DETAILS_TYPE, QUANTIZED_DIMENSION = 2, 3, 4, 6


class _Buffer:
    DATA, OFFSET = 0, 1


class _Operator:
    OPCODE_INDEX, INPUTS, OUTPUTS, OPTIONS_TYPE, OPTIONS = 0, 1, 2, 3, 4


class _Conv2DOptions:
    TYPE = 1
    PADDING, STRIDE_W, STRIDE_H, ACTIVATION, DILATION_W, DILATION_H = 0, 1, 2, 3, 4, 5


class _DepthwiseConv2DOptions:
    TYPE = 2
    PADDING, STRIDE_W, STRIDE_H, DEPTH_MULTIPLIER, ACTIVATION, DILATION_W, DILATION_H = (
        0, 1, 2, 3, 4, 5, 6)


class _Pool2DOptions:
    TYPE = 5
    PADDING, STRIDE_W, STRIDE_H, FILTER_W, FILTER_H, ACTIVATION = 0, 1, 2, 3, 4, 5


class _FullyConnectedOptions:
    TYPE = 8
    ACTIVATION, WEIGHTS_FORMAT = 0, 1


class _SoftmaxOptions:
    TYPE = 9
    BETA = 0


class _ReducerOptions:
    TYPE = 27
    KEEP_DIMS = 0


class _AddOptions:
    TYPE = 11
    ACTIVATION = 0


class _MulOptions:
    TYPE = 21
    ACTIVATION = 0


_SAME, _VALID = 0, 1

_ACTIVATIONS = {0: ir.Activation.NONE, 1: ir.Activation.RELU, 3: ir.Activation.RELU6}
_ACTIVATION_NAMES = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH",
                     5: "SIGN_BIT"}

_TYPE_NAMES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
    7: "int16", 8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64",
    13: "resource", 14: "variant", 15: "uint32", 16: "uint16", 17: "int4",
}
# Types whose constant data we decode (others are refused by the role checks anyway).
_NUMPY_TYPES = ("float32", "int32", "uint8", "int64", "int16", "int8")

_CUSTOM_OP = 32
_UINT8 = 3  # the schema's TensorType code
# Names of the builtin ops a converted vision model may contain, for error messages; any other
# code is reported by number.
_BUILTIN_OP_NAMES = {
    0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D",
    5: "DEPTH_TO_SPACE", 6: "DEQUANTIZE", 8: "FLOOR", 9: "FULLY_CONNECTED",
    11: "L2_NORMALIZATION", 12: "L2_POOL_2D", 13: "LOCAL_RESPONSE_NORMALIZATION",
    14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL", 19: "RELU", 20: "RELU_N1_TO_1", 21: "RELU6",
    22: "RESHAPE", 23: "RESIZE_BILINEAR", 25: "SOFTMAX", 26: "SPACE_TO_DEPTH", 28: "TANH",
    34: "PAD", 36: "GATHER", 37: "BATCH_TO_SPACE_ND", 38: "SPACE_TO_BATCH_ND", 39: "TRANSPOSE",
    40: "MEAN", 41: "SUB", 42: "DIV", 43: "SQUEEZE", 45: "STRIDED_SLICE", 47: "EXP",
    49: "SPLIT", 50: "LOG_SOFTMAX", 53: "CAST", 54: "PRELU", 55: "MAXIMUM", 56: "ARG_MAX",
    57: "MINIMUM", 60: "PADV2", 65: "SLICE", 67: "TRANSPOSE_CONV", 69: "TILE",
    70: "EXPAND_DIMS", 74: "SUM", 75: "SQRT", 76: "RSQRT", 77: "SHAPE", 79: "ARG_MIN",
    81: "REDUCE_PROD", 82: "REDUCE_MAX", 83: "PACK", 88: "UNPACK", 89: "REDUCE_MIN",
    90: "FLOOR_DIV", 92: "SQUARE", 94: "FILL",
    97: "RESIZE_NEAREST_NEIGHBOR", 98: "LEAKY_RELU", 99: "SQUARED_DIFFERENCE",
    100: "MIRROR_PAD", 101: "ABS", 102: "SPLIT_V", 114: "QUANTIZE", 117: "HARD_SWISH",
    126: "BATCH_MATMUL", 150: "GELU",
}

# A model's input and output: int8, or uint8/float32 through QUANTIZE or DEQUANTIZE.
_ENDPOINT_TYPES = ("int8", "uint8", "float32")

_SOFTMAX_OUTPUT_SCALE, _SOFTMAX_OUTPUT_ZERO_POINT = 1.0 / 256.0, -128


# ---------------------------------------------------------------------------------------------
# Public entry points.


def read_model_file(path: str | Path) -> bytes:
    """The bytes of a model file, or McugenError saying why it cannot be read."""
    path = Path(path)
    try:
        return limits.read_bounded(path)
    except FileNotFoundError:
        raise McugenError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise McugenError(f"{path} is a directory, not a .tflite model file") from None
    except OSError as error:
        raise McugenError(f"cannot read {path}: {error.strerror or error}") from None


def load_tflite(data: bytes, name: str) -> ir.Graph:
    """Build the IR Graph (named ``name``) of the int8 TFLite model held in ``data``."""
    if not data:
        raise McugenError("not a TFLite model: the file is empty")
    try:
        graph = _Importer(root_table(data, FILE_IDENTIFIER), name).graph()
    except FlatbufferError as error:
        raise McugenError(f"not a TFLite model (or a truncated or damaged one): {error}") from None
    limits.check_graph(graph)
    ir.verify(graph)
    return graph


def tensor_names(data: bytes) -> list[str]:
    """The names the IR gives the model's tensors, by their index in the file (the index
    TFLite's and TFLM's interpreters use): the oracle's tensors matched to the IR's."""
    try:
        subgraphs = root_table(data, FILE_IDENTIFIER).tables(_Model.SUBGRAPHS)
        tensors = subgraphs[0].tables(_SubGraph.TENSORS) if subgraphs else []
        return _unique_names([t.string(_Tensor.NAME) for t in tensors])
    except FlatbufferError as error:
        raise McugenError(f"not a TFLite model (or a truncated or damaged one): {error}") from None


# ---------------------------------------------------------------------------------------------
# The model as a whole: subgraph, operator codes, tensors.


class _Importer:
    """Reads one model; makes IR tensors on first use, so the Graph holds only those its ops
    and endpoints need (the shape operand of RESHAPE, MEAN's axes, ... are folded into ops)."""

    def __init__(self, model: Table, name: str) -> None:
        self.name = name
        subgraphs = model.tables(_Model.SUBGRAPHS)
        if len(subgraphs) != 1:
            raise McugenError(f"the model has {len(subgraphs)} subgraphs; mcugen needs exactly one")
        self.subgraph = subgraphs[0]
        self.buffers = model.tables(_Model.BUFFERS)
        self.op_kinds = [_op_code_name(code) for code in model.tables(_Model.OPERATOR_CODES)]
        self.flat_tensors = self.subgraph.tables(_SubGraph.TENSORS)
        self.names = _unique_names([t.string(_Tensor.NAME) for t in self.flat_tensors])
        self.tensors: dict[str, ir.Tensor] = {}
        self._read: dict[int, ir.Tensor] = {}
        # Names of the uint8 tensors of a legacy (TF1) quantized model, held as int8 shifted
        # by -128 (see _shifted_to_int8).
        self.legacy: set[str] = set()
        self.endpoints = set(self.subgraph.scalars(_SubGraph.INPUTS, "i")) | \
            set(self.subgraph.scalars(_SubGraph.OUTPUTS, "i"))
        self.twins: dict[str, ir.Tensor] = {}  # a uint8 model input or output -> its int8 twin
        self._legacy_constants: bool | None = None
        self._input_name: str | None = None

    def graph(self) -> ir.Graph:
        graph_input = self._endpoint(_SubGraph.INPUTS, "input")
        graph_output = self._endpoint(_SubGraph.OUTPUTS, "output")
        self._input_name = graph_input.name
        operators = self.subgraph.tables(_SubGraph.OPERATORS)
        kinds = [self._op_kind(index, op) for index, op in enumerate(operators)]
        folded = [index for index, (kind, op) in enumerate(zip(kinds, operators))
                  if self._folded(index, kind, op)]
        kept = [(index, kinds[index], operators[index]) for index in range(len(operators))
                if index not in folded]
        self._check_typed_endpoints(graph_input, graph_output, [k for _, k, _ in kept],
                                    [op for _, _, op in kept])
        _check_supported([kind for _, kind, _ in kept])
        ops = tuple(_CONVERTERS[kind](_OpReader(self, index, kind, op))
                    for index, kind, op in kept)
        return ir.Graph(self.name, dict(self.tensors), self._with_boundary(ops, graph_input,
                                                                         graph_output),
                        (graph_input.name,), (graph_output.name,),
                        folded=tuple(kinds[i] for i in folded))

    def _with_boundary(self, ops: tuple, graph_input: ir.Tensor,
                       graph_output: ir.Tensor) -> tuple:
        """A legacy uint8 model's ops read and write int8 twins of its uint8 input and output
        (boundary()): QUANTIZE joins them, first and last."""
        first = (ir.Quantize(input=graph_input.name, output=self.twins[graph_input.name].name),) \
            if graph_input.name in self.twins else ()
        last = (ir.Quantize(input=self.twins[graph_output.name].name, output=graph_output.name),) \
            if graph_output.name in self.twins else ()
        return first + ops + last

    def _folded(self, index: int, kind: str, op: Table) -> bool:
        """Evaluate the op now if it computes on constants only (constant_folding): its output
        becomes a constant tensor, and the op is dropped."""
        if kind not in constant_folding.FOLDERS:
            return False
        outputs = op.scalars(_Operator.OUTPUTS, "i")
        if len(outputs) != 1 or outputs[0] in self.subgraph.scalars(_SubGraph.OUTPUTS, "i") \
                or not 0 <= outputs[0] < len(self.flat_tensors):
            return False
        where = f"op {index} ({kind})"
        operands = op.scalars(_Operator.INPUTS, "i")
        inputs = [self.read(i, f"{where} input") for i in
                  operands[:constant_folding.operands_to_read(kind, len(operands))] if i != -1]
        flat = self.flat_tensors[outputs[0]]
        type_code = flat.scalar(_Tensor.TYPE, "b", 0)
        declared = flat.scalars(_Tensor.SHAPE, "i")
        options = op.table(_Operator.OPTIONS) or Table.empty()
        value = constant_folding.evaluate(kind, where, inputs, options,
                                          _TYPE_NAMES.get(type_code, "?"), declared)
        if value is None:
            return False
        value = np.array(value)  # a NumPy scalar (a 0-d result) as an array
        if declared and all(dim >= 1 for dim in declared) and value.shape != declared:
            raise McugenError(f"{where}: computes shape {list(value.shape)} from its constant "
                              f"inputs, but the model says {list(declared)}")
        value.flags.writeable = False  # IR values are never mutated
        self._read[outputs[0]] = ir.Tensor(self.names[outputs[0]], value.shape,
                                           str(value.dtype), None, value)
        return True

    def _endpoint(self, slot: int, what: str) -> ir.Tensor:
        indices = self.subgraph.scalars(slot, "i")
        if len(indices) != 1:
            raise McugenError(f"the model has {len(indices)} {what}s; mcugen needs exactly one "
                              f"{what}")
        tensor = self.read(indices[0], f"model {what}")
        if tensor.dtype not in _ENDPOINT_TYPES:
            raise McugenError(f"model {what} is {tensor.dtype}; mcugen needs int8, uint8 or "
                              f"float32 (a uint8 or float32 {what} through QUANTIZE or "
                              "DEQUANTIZE, an int8 model inside)")
        if tensor.dtype != "float32" and (tensor.q is None or tensor.q.per_channel):
            raise McugenError(f"model {what} {tensor.name!r} has no per-tensor quantization")
        return self.use(tensor)

    def _check_typed_endpoints(self, graph_input: ir.Tensor, graph_output: ir.Tensor,
                               kinds: list[str], operators: list[Table]) -> None:
        """A float32 input must go into QUANTIZE (a uint8 one into QUANTIZE or DEQUANTIZE), a
        float32 output come out of DEQUANTIZE and a uint8 one out of QUANTIZE: else the model
        is not int8 inside."""
        readers = ("QUANTIZE",) if graph_input.dtype == "float32" else ("QUANTIZE", "DEQUANTIZE")
        for tensor, slot, expected, what in (
                (graph_input, _Operator.INPUTS, readers, "read"),
                (graph_output, _Operator.OUTPUTS,
                 ("DEQUANTIZE",) if graph_output.dtype == "float32" else ("QUANTIZE",),
                 "written")):
            if tensor.dtype == "int8" or (tensor.dtype == "uint8" and self._has_legacy_constants()):
                continue  # a legacy uint8 model's ops read it through an int8 twin (boundary)
            index = self.names.index(tensor.name)
            others = [kind for kind, op in zip(kinds, operators)
                      if index in op.scalars(slot, "i") and kind not in expected]
            if others:
                raise McugenError(
                    f"model {'input' if slot == _Operator.INPUTS else 'output'} is "
                    f"{tensor.dtype} and is {what} by {others[0]}, not {expected[0]}: mcugen "
                    f"compiles int8 models (convert with TFLITE_BUILTINS_INT8; a {tensor.dtype} "
                    f"input or output only through QUANTIZE or DEQUANTIZE)")

    def _op_kind(self, index: int, op: Table) -> str:
        code = op.scalar(_Operator.OPCODE_INDEX, "I", 0)
        if code >= len(self.op_kinds):
            raise McugenError(f"op {index} uses operator code {code}, but the model has only "
                              f"{len(self.op_kinds)}")
        return self.op_kinds[code]

    def reshaped(self, tensor: ir.Tensor, shape: tuple[int, ...]) -> ir.Tensor:
        """The tensor with the static shape a folded shape computation gave it, from now on
        for every op that reads it."""
        new = ir.Tensor(tensor.name, shape, tensor.dtype, tensor.q, tensor.data)
        self._read[self.names.index(tensor.name)] = new
        return self.use(new)

    def use(self, tensor: ir.Tensor) -> ir.Tensor:
        """Put a checked tensor into the Graph."""
        self.tensors[tensor.name] = tensor
        return tensor

    def read(self, index: int, what: str) -> ir.Tensor:
        """Tensor ``index`` of the subgraph, decoded (with its data if it is a constant)."""
        if not 0 <= index < len(self.flat_tensors):
            raise McugenError(f"{what} refers to tensor {index}, but the model has only "
                              f"{len(self.flat_tensors)}")
        if index not in self._read:
            self._read[index] = self._decode(index)
        return self._read[index]

    def _decode(self, index: int) -> ir.Tensor:
        flat = self.flat_tensors[index]
        name = self.names[index]
        type_code = flat.scalar(_Tensor.TYPE, "b", 0)
        dtype = _TYPE_NAMES.get(type_code, f"type {type_code}")
        shape = flat.scalars(_Tensor.SHAPE, "i")
        if any(dim < 1 for dim in shape):
            raise McugenError(f"tensor {name!r} has a dynamic or empty shape {list(shape)}")
        if flat.has(_Tensor.SPARSITY):
            raise McugenError(f"tensor {name!r} is sparse; mcugen needs dense tensors")
        q = _qparams(flat.table(_Tensor.QUANTIZATION), shape, name)
        limits.check_tensor(name, dtype, shape, q)
        data = self._constant_data(flat.scalar(_Tensor.BUFFER, "I", 0), name, dtype, shape)
        tensor = ir.Tensor(name, shape, dtype, q, data)
        if dtype == "uint8" and index not in self.endpoints:
            # A legacy model's tensor (the model's own input and output keep their type:
            # boundary() gives its ops an int8 twin).
            tensor = _shifted_to_int8(tensor)
            self.legacy.add(name)
        return tensor

    def boundary(self, tensor: ir.Tensor, kind: str) -> ir.Tensor:
        """What an op of ``kind`` reads or writes for ``tensor``: the tensor itself, or for a
        uint8 model input or output that a legacy model's op (not QUANTIZE or DEQUANTIZE)
        touches, its int8 twin (the values shifted by -128), which graph() joins to it with a
        QUANTIZE (uint8 <-> int8, exactly a shift)."""
        if tensor.dtype != "uint8" or kind in ("QUANTIZE", "DEQUANTIZE"):
            return tensor
        if not self._has_legacy_constants():
            raise McugenError(f"model {'input' if tensor.name == self._input_name else 'output'}"
                              f" {tensor.name!r} is uint8 and is used by {kind}, in a model "
                              "whose weights are not uint8: mcugen compiles int8 models and "
                              "uint8 (TF1) models, not a mix")
        if tensor.name not in self.twins:
            twin = _shifted_to_int8(dataclasses.replace(tensor, name=self._fresh_name(
                f"{tensor.name}_int8")))
            self.twins[tensor.name] = twin
            self.legacy.add(twin.name)
        return self.use(self.twins[tensor.name])

    def _has_legacy_constants(self) -> bool:
        """Whether the model holds uint8 weights (a TF1 quantized model)."""
        if self._legacy_constants is None:
            self._legacy_constants = any(
                flat.scalar(_Tensor.TYPE, "b", 0) == _UINT8 and flat.scalar(_Tensor.BUFFER, "I", 0)
                and index not in self.endpoints for index, flat in enumerate(self.flat_tensors))
        return self._legacy_constants

    def _fresh_name(self, base: str) -> str:
        taken = set(self.names) | {t.name for t in self.twins.values()}
        name, counter = base, 1
        while name in taken:
            name, counter = f"{base}_{counter}", counter + 1
        return name

    def _constant_data(self, buffer_index: int, name: str, dtype: str,
                       shape: tuple[int, ...]) -> np.ndarray | None:
        if buffer_index == 0:  # buffer 0 is the empty sentinel of activations
            return None
        if buffer_index >= len(self.buffers):
            raise McugenError(f"tensor {name!r} refers to buffer {buffer_index}, but the model "
                              f"has only {len(self.buffers)}")
        buffer = self.buffers[buffer_index]
        if buffer.scalar(_Buffer.OFFSET, "Q", 0) > 1:
            raise McugenError(f"tensor {name!r} keeps its data outside the flatbuffer (a model "
                              "over 2 GB); mcugen does not read such models")
        raw = buffer.bytes(_Buffer.DATA)
        if not raw or dtype not in _NUMPY_TYPES:
            return None
        element = np.dtype(dtype).newbyteorder("<")
        expected = int(np.prod(shape, dtype=np.int64)) * element.itemsize
        if len(raw) != expected:
            raise McugenError(f"tensor {name!r} of shape {shape} ({dtype}) has {len(raw)} bytes "
                              f"of data, expected {expected}")
        data = np.frombuffer(raw, dtype=element).astype(dtype).reshape(shape)
        data.flags.writeable = False  # IR values are never mutated
        return data


def _shifted_to_int8(tensor: ir.Tensor) -> ir.Tensor:
    """A uint8 tensor (values q, zero point z) as int8 (q - 128, z - 128): the same real
    values, scale * (q - z), so every kernel that works on differences from the zero point
    computes the same integers (TFLite's uint8 and int8 reference kernels share their
    arithmetic, except where ir marks an op ``legacy``)."""
    q = tensor.q
    if q is not None:
        if any(not 0 <= zp <= 255 for zp in q.zero_point):
            raise McugenError(f"uint8 tensor {tensor.name!r} has zero point "
                              f"{list(q.zero_point)} outside 0..255")
        q = ir.QParams(q.scale, tuple(zp - 128 for zp in q.zero_point), q.axis)
    data = None
    if tensor.data is not None:
        data = (tensor.data.astype(np.int16) - 128).astype(np.int8)
        data.flags.writeable = False
    return ir.Tensor(tensor.name, tensor.shape, "int8", q, data)


def _op_code_name(code: Table) -> str:
    # Codes from 127 on exist only in the newer int32 field; older files fill only the int8 one.
    builtin = max(code.scalar(_OperatorCode.DEPRECATED_BUILTIN_CODE, "b", 0),
                  code.scalar(_OperatorCode.BUILTIN_CODE, "i", 0))
    if builtin == _CUSTOM_OP:
        return f"CUSTOM:{limits.printable(code.string(_OperatorCode.CUSTOM_CODE) or '?')}"
    return _BUILTIN_OP_NAMES.get(builtin, f"BUILTIN_{builtin}")


def _unique_names(raw: list[str | None]) -> list[str]:
    """TFLite names may repeat or be missing; IR names must be unique. A name used once is
    kept; repeats (after the first) and missing names get a suffix no other tensor uses."""
    taken = {name for name in raw if name}
    seen: set[str] = set()
    # The suffix each base tries next: the names taken only grow, so a repeat never finds a
    # free suffix below the last one its base got (without this, n repeats take n^2 steps).
    next_suffix: dict[str, int] = {}
    result = []
    for index, name in enumerate(raw):
        base = name or f"tensor_{index}"
        unique, counter = base, next_suffix.get(base, 1)
        while unique in seen or (unique != name and unique in taken):
            unique, counter = f"{base}_{counter}", counter + 1
        next_suffix[base] = counter
        seen.add(unique)
        taken.add(unique)
        result.append(unique)
    return result


def _qparams(quantization: Table | None, shape: tuple[int, ...],
             name: str) -> ir.QParams | None:
    if quantization is None:
        return None
    scales = quantization.scalars(_Quantization.SCALE, "f")
    if not scales:
        return None
    zero_points = quantization.scalars(_Quantization.ZERO_POINT, "q")
    if len(zero_points) != len(scales):
        raise McugenError(f"tensor {name!r} has {len(scales)} scales but {len(zero_points)} "
                          "zero points")
    if quantization.scalar(_Quantization.DETAILS_TYPE, "B", 0) != 0:
        raise McugenError(f"tensor {name!r} uses custom quantization; mcugen needs affine")
    return ir.QParams(scales, zero_points, _quantized_axis(quantization, shape, len(scales), name))


def _quantized_axis(quantization: Table, shape: tuple[int, ...], channels: int,
                    name: str) -> int:
    axis = quantization.scalar(_Quantization.QUANTIZED_DIMENSION, "i", 0)
    if channels == 1:
        return 0  # a single scale applies everywhere: the axis means nothing
    if not 0 <= axis < len(shape) and len(shape) == 1:
        # The old TOCO converter gave depthwise biases the filter's axis (3) although they are
        # 1-D (TF 2.21's interpreter refuses the file for it); a 1-D tensor has only axis 0.
        axis = 0
    if not 0 <= axis < len(shape) or shape[axis] != channels:
        raise McugenError(f"tensor {name!r} of shape {shape} has {channels} scales along "
                          f"axis {axis}")
    return axis


def _check_supported(kinds: list[str]) -> None:
    unsupported = list(dict.fromkeys(kind for kind in kinds if kind not in SUPPORTED_OPS))
    if not unsupported:
        return
    raise McugenError(f"unsupported ops: {', '.join(unsupported)}; mcugen supports "
                      f"{', '.join(SUPPORTED_OPS)}")


# ---------------------------------------------------------------------------------------------
# One operator: its operands, checked for the role they play, and its options.


class _OpReader:
    def __init__(self, importer: _Importer, index: int, kind: str, op: Table) -> None:
        self.importer = importer
        self.kind = kind
        self.where = f"op {index} ({kind})"
        self.op = op
        self.inputs = op.scalars(_Operator.INPUTS, "i")
        limits.check_operands(self.where, kind, self.inputs, op.scalars(_Operator.OUTPUTS, "i"),
                              len(importer.flat_tensors))

    def error(self, message: str) -> McugenError:
        return McugenError(f"{self.where}: {message}")

    def options(self, schema: type) -> Table:
        """The op's options table (all defaults if absent), checked to be of the right kind."""
        found = self.op.scalar(_Operator.OPTIONS_TYPE, "B", 0)
        table = self.op.table(_Operator.OPTIONS)
        if table is None or found == 0:
            return Table.empty()
        if found != schema.TYPE:
            raise self.error(f"options are of type {found}, expected {schema.__name__[1:]}")
        return table

    def activation(self, options: Table, slot: int) -> ir.Activation:
        code = options.scalar(slot, "b", 0)
        if code not in _ACTIVATIONS:
            raise self.error(f"fused activation {_ACTIVATION_NAMES.get(code, code)} is not "
                             "supported (only NONE, RELU, RELU6)")
        return _ACTIVATIONS[code]

    def _operand(self, position: int, what: str) -> ir.Tensor | None:
        if position >= len(self.inputs) or self.inputs[position] == -1:
            return None
        return self.importer.boundary(
            self.importer.read(self.inputs[position], f"{self.where} {what}"), self.kind)

    def _required(self, position: int, what: str) -> ir.Tensor:
        tensor = self._operand(position, what)
        if tensor is None:
            raise self.error(f"has no {what}")
        return tensor

    def _activation_tensor(self, tensor: ir.Tensor, what: str) -> ir.Tensor:
        if tensor.dtype == "float32":
            raise self.error(f"{what} {tensor.name!r} is float32, expected int8 (mcugen "
                             "compiles int8 models; float32 only into QUANTIZE and out of "
                             "DEQUANTIZE)")
        if tensor.dtype != "int8":
            raise self.error(f"{what} {tensor.name!r} is {tensor.dtype}, expected int8")
        if tensor.q is None or tensor.q.per_channel:
            raise self.error(f"{what} {tensor.name!r} needs per-tensor quantization")
        return self.importer.use(tensor)

    def typed(self, tensor: ir.Tensor, what: str, dtypes: tuple[str, ...]) -> ir.Tensor:
        """A tensor of QUANTIZE or DEQUANTIZE: one of ``dtypes``, per tensor if 8-bit."""
        if tensor.dtype not in dtypes:
            raise self.error(f"{what} {tensor.name!r} is {tensor.dtype}, expected "
                             f"{' or '.join(dtypes)}")
        if tensor.is_constant:
            raise self.error(f"{what} {tensor.name!r} is a constant")
        if tensor.dtype != "float32" and (tensor.q is None or tensor.q.per_channel):
            raise self.error(f"{what} {tensor.name!r} needs per-tensor quantization")
        return self.importer.use(tensor)

    def single_output(self) -> ir.Tensor:
        outputs = self.op.scalars(_Operator.OUTPUTS, "i")
        if len(outputs) != 1:
            raise self.error(f"has {len(outputs)} outputs, expected 1")
        return self.importer.boundary(self.importer.read(outputs[0], f"{self.where} output"),
                                      self.kind)

    def input(self, rank: int | None = None) -> ir.Tensor:
        tensor = self._activation_tensor(self._required(0, "input"), "input")
        self._check_rank(tensor, rank, "input")
        return tensor

    def operand(self, position: int) -> ir.Tensor:
        """An int8 operand of an elementwise op: an activation or a constant."""
        what = f"input {position + 1}"
        return self._activation_tensor(self._required(position, what), what)

    def output(self, rank: int | None = None) -> ir.Tensor:
        tensor = self.single_output()
        self._activation_tensor(tensor, "output")
        self._check_rank(tensor, rank, "output")
        return tensor

    def weights(self, position: int, rank: int, channel_axis: int) -> ir.Tensor:
        """Constant symmetric int8 weights, per tensor or per channel along ``channel_axis``."""
        tensor = self._required(position, "weights")
        if tensor.dtype != "int8":
            raise self.error(f"weights {tensor.name!r} are {tensor.dtype}, expected int8")
        if tensor.data is None:
            raise self.error(f"weights {tensor.name!r} are not constant")
        self._check_rank(tensor, rank, "weights")
        if tensor.q is None:
            raise self.error(f"weights {tensor.name!r} are not quantized")
        if any(tensor.q.zero_point) and not self.legacy(tensor):
            raise self.error(f"weights {tensor.name!r} have nonzero zero points; TFLite int8 "
                             "weights are symmetric")
        if self.legacy(tensor) and tensor.q.per_channel:
            raise self.error(f"uint8 weights {tensor.name!r} are quantized per channel; "
                             "TFLite's uint8 kernels take one scale and zero point")
        if tensor.q.per_channel and tensor.q.axis != channel_axis:
            raise self.error(f"weights {tensor.name!r} are quantized along axis "
                             f"{tensor.q.axis}, expected {channel_axis}")
        return self.importer.use(tensor)

    def legacy(self, tensor: ir.Tensor) -> bool:
        """Whether ``tensor`` was uint8 in the model (a legacy quantized model)."""
        return tensor.name in self.importer.legacy

    def bias(self, position: int, channels: int) -> ir.Tensor | None:
        tensor = self._operand(position, "bias")
        if tensor is None:
            return None
        if tensor.dtype != "int32" or tensor.data is None or tensor.shape != (channels,):
            raise self.error(f"bias {tensor.name!r} must be a constant int32 [{channels}], not "
                             f"{tensor.dtype} {list(tensor.shape)}")
        return self.importer.use(tensor)

    def constant_shape(self, position: int) -> list[int] | None:
        """An optional constant integer operand giving a shape (RESHAPE's), else None."""
        tensor = self._operand(position, "shape")
        if tensor is None or tensor.data is None or tensor.dtype not in ("int32", "int64"):
            return None
        return [int(d) for d in tensor.data.reshape(-1)]

    def constant_ints(self, position: int, what: str) -> np.ndarray:
        """An integer operand that configures the op (PAD's paddings, MEAN's axes)."""
        tensor = self._required(position, what)
        if tensor.dtype not in ("int32", "int64") or tensor.data is None:
            raise self.error(f"{what} must be a constant int32 or int64 tensor")
        return tensor.data.astype(np.int64)

    def _check_rank(self, tensor: ir.Tensor, rank: int | None, what: str) -> None:
        if rank is not None and len(tensor.shape) != rank:
            raise self.error(f"{what} {tensor.name!r} has shape {list(tensor.shape)}, expected "
                             f"{rank} dimensions")

    def positive(self, options: Table, slot: int, default: int, what: str) -> int:
        value = options.scalar(slot, "i", default)
        if value < 1:
            raise self.error(f"{what} is {value}, must be at least 1")
        return value

    def padding(self, options: Table, slot: int, input_hw: tuple[int, int],
                kernel_hw: tuple[int, int], stride: tuple[int, int],
                dilation: tuple[int, int]) -> ir.Padding:
        mode = options.scalar(slot, "b", _SAME)
        if mode == _VALID:
            return ir.Padding()
        if mode != _SAME:
            raise self.error(f"unknown padding mode {mode}")
        top, bottom = same_padding(input_hw[0], kernel_hw[0], stride[0], dilation[0])
        left, right = same_padding(input_hw[1], kernel_hw[1], stride[1], dilation[1])
        return ir.Padding(top, bottom, left, right)


# ---------------------------------------------------------------------------------------------
# Per-op conversion.


def _window(op: _OpReader, options: Table, schema: type,
            dilated: bool) -> tuple[tuple[int, int], tuple[int, int]]:
    """(stride, dilation) as (h, w) pairs from a conv or pool options table."""
    stride = (op.positive(options, schema.STRIDE_H, 0, "stride_h"),
              op.positive(options, schema.STRIDE_W, 0, "stride_w"))
    if not dilated:
        return stride, (1, 1)
    dilation = (op.positive(options, schema.DILATION_H, 1, "dilation_h_factor"),
                op.positive(options, schema.DILATION_W, 1, "dilation_w_factor"))
    return stride, dilation


def _conv_2d(op: _OpReader) -> ir.Conv2D:
    options = op.options(_Conv2DOptions)
    source = op.input(rank=4)
    filter_ = op.weights(1, rank=4, channel_axis=0)
    bias = op.bias(2, channels=filter_.shape[0])
    stride, dilation = _window(op, options, _Conv2DOptions, dilated=True)
    padding = op.padding(options, _Conv2DOptions.PADDING, source.shape[1:3], filter_.shape[1:3],
                         stride, dilation)
    return ir.Conv2D(input=source.name, filter=filter_.name, bias=bias.name if bias else None,
                     output=op.output(rank=4).name, stride=stride, dilation=dilation,
                     padding=padding,
                     activation=op.activation(options, _Conv2DOptions.ACTIVATION),
                     legacy=op.legacy(filter_))


def _depthwise_conv_2d(op: _OpReader) -> ir.DepthwiseConv2D:
    options = op.options(_DepthwiseConv2DOptions)
    source = op.input(rank=4)
    filter_ = op.weights(1, rank=4, channel_axis=3)
    in_channels, out_channels = source.shape[3], filter_.shape[3]
    if filter_.shape[0] != 1 or out_channels % in_channels:
        raise op.error(f"filter shape {list(filter_.shape)} does not fit {in_channels} input "
                       "channels")
    bias = op.bias(2, channels=out_channels)
    stride, dilation = _window(op, options, _DepthwiseConv2DOptions, dilated=True)
    padding = op.padding(options, _DepthwiseConv2DOptions.PADDING, source.shape[1:3],
                         filter_.shape[1:3], stride, dilation)
    # TFLM loops over the options' depth_multiplier as it is, without checking it against the
    # shapes (0 writes nothing, more reads past the filter): refuse a model where they differ.
    multiplier = options.scalar(_DepthwiseConv2DOptions.DEPTH_MULTIPLIER, "i", 0)
    if multiplier != out_channels // in_channels:
        raise op.error(f"depth_multiplier {multiplier} in its options disagrees with its shapes "
                       f"({in_channels} -> {out_channels} channels); TFLM would compute "
                       "garbage")
    return ir.DepthwiseConv2D(
        input=source.name, filter=filter_.name, bias=bias.name if bias else None,
        output=op.output(rank=4).name, stride=stride, dilation=dilation, padding=padding,
        depth_multiplier=out_channels // in_channels,
        activation=op.activation(options, _DepthwiseConv2DOptions.ACTIVATION),
        legacy=op.legacy(filter_))


def _pad(op: _OpReader) -> ir.Pad:
    source = op.input(rank=4)
    paddings = op.constant_ints(1, "paddings")
    if paddings.shape != (4, 2):
        raise op.error(f"paddings have shape {list(paddings.shape)}, expected [4, 2]")
    if paddings[0].any() or paddings[3].any():
        raise op.error("pads the batch or channel dimension; only H and W padding is supported")
    if (paddings < 0).any():
        raise op.error("has negative paddings")
    (top, bottom), (left, right) = paddings[1], paddings[2]
    return ir.Pad(input=source.name, output=op.output(rank=4).name,
                  padding=ir.Padding(int(top), int(bottom), int(left), int(right)))


def _average_pool_2d(op: _OpReader) -> ir.AveragePool2D:
    options = op.options(_Pool2DOptions)
    source = op.input(rank=4)
    filter_size = (op.positive(options, _Pool2DOptions.FILTER_H, 0, "filter_height"),
                   op.positive(options, _Pool2DOptions.FILTER_W, 0, "filter_width"))
    stride, dilation = _window(op, options, _Pool2DOptions, dilated=False)
    padding = op.padding(options, _Pool2DOptions.PADDING, source.shape[1:3], filter_size,
                         stride, dilation)
    output = op.output(rank=4)
    pool = ir.AveragePool2D(input=source.name, output=output.name,
                            filter_size=filter_size, stride=stride, padding=padding,
                            activation=op.activation(options, _Pool2DOptions.ACTIVATION),
                            legacy=op.legacy(source))
    rows, columns = windows(pool, None)
    expected = (1, rows.output_size(source.shape[1]), columns.output_size(source.shape[2]),
                source.shape[3])
    if output.shape != expected:
        raise op.error(f"output shape {list(output.shape)} should be {list(expected)}")
    return pool


def _mean(op: _OpReader) -> ir.Mean:
    source = op.input()
    rank = len(source.shape)
    raw = op.constant_ints(1, "axes").ravel().tolist()
    if not raw or any(not -rank <= axis < rank for axis in raw):
        raise op.error(f"reduces axes {raw} of a {rank}-D tensor")
    axes = tuple(sorted({axis % rank for axis in raw}))
    if axes != tuple(range(axes[0], axes[-1] + 1)) or 0 in axes:
        raise op.error(f"reduces axes {raw}; mcugen reduces consecutive axes after the batch "
                       "(H and W, or the last axes)")
    keep_dims = bool(op.options(_ReducerOptions).scalar(_ReducerOptions.KEEP_DIMS, "?", False))
    output = op.output()
    expected = tuple(1 if axis in axes else dim for axis, dim in enumerate(source.shape)
                     if keep_dims or axis not in axes)
    if output.shape != expected:
        raise op.error(f"output shape {list(output.shape)} should be {list(expected)}")
    return ir.Mean(input=source.name, output=output.name, keep_dims=keep_dims, axes=axes)


def _fully_connected(op: _OpReader) -> ir.FullyConnected:
    options = op.options(_FullyConnectedOptions)
    if options.scalar(_FullyConnectedOptions.WEIGHTS_FORMAT, "b", 0) != 0:
        raise op.error("shuffled weights are not supported (weights_format must be DEFAULT)")
    source = op.input()
    weights = op.weights(1, rank=2, channel_axis=0)
    units, depth = weights.shape
    output = op.output()
    # keep_num_dims only shapes the output tensor, which we take as the model gives it.
    # TFLM takes the output's last dimension as the units and the rest as the batch.
    if source.size != depth or output.size != units or output.shape[-1:] != (units,):
        raise op.error(f"shapes {list(source.shape)} x {list(weights.shape)} -> "
                       f"{list(output.shape)} do not agree (batch 1)")
    bias = op.bias(2, channels=units)
    return ir.FullyConnected(
        input=source.name, weights=weights.name, bias=bias.name if bias else None,
        output=output.name,
        activation=op.activation(options, _FullyConnectedOptions.ACTIVATION),
        legacy=op.legacy(weights))


def _reshape(op: _OpReader) -> ir.Reshape:
    # The output tensor's static shape is all we need. Where a dynamic batch left it unknown
    # (the converter then writes [1, 1]), the shape operand, computed by ops folded at import,
    # gives it, as it does to TFLite's RESHAPE (one -1 taking what is left).
    source = op.input()
    output = op.output()
    shape = op.constant_shape(1)
    if shape is not None and output.size != source.size:
        resolved = _resolved_shape(shape, source.size)
        if resolved is None:
            raise op.error(f"shape {shape} does not fit the input's {source.size} elements")
        output = op.importer.reshaped(output, resolved)
    return ir.Reshape(input=source.name, output=output.name)


def _resolved_shape(shape: list[int], size: int) -> tuple[int, ...] | None:
    known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
    if shape.count(-1) > 1 or any(d < -1 or d == 0 for d in shape) or known == 0:
        return None
    resolved = [size // known if d == -1 else d for d in shape]
    return tuple(resolved) if int(np.prod(resolved, dtype=np.int64)) == size else None


def _softmax(op: _OpReader) -> ir.Softmax:
    beta = op.options(_SoftmaxOptions).scalar(_SoftmaxOptions.BETA, "f", 0.0)
    source = op.input()
    output = op.output()
    if (output.scale, output.zero_point) != (_SOFTMAX_OUTPUT_SCALE, _SOFTMAX_OUTPUT_ZERO_POINT):
        raise op.error(f"output quantization (scale {output.scale}, zero point "
                       f"{output.zero_point}) must be 1/256 and -128 as TFLite requires")
    return ir.Softmax(input=source.name, output=output.name, beta=beta)


def _binary(op: _OpReader, kind: type, schema: type):
    first, second = op.operand(0), op.operand(1)
    output = op.output()
    if first.is_constant and second.is_constant:
        raise op.error("both operands are constants (the converter folds such ops)")
    if ir.broadcast_shape(first.shape, second.shape) != output.shape:
        raise op.error(f"shapes {list(first.shape)} and {list(second.shape)} do not broadcast "
                       f"to the output's {list(output.shape)}")
    if first.is_constant or first.shape != output.shape:
        # Both ops commute: the kernels take the activation, and the operand that is not
        # broadcast, first.
        first, second = second, first
    return kind(input=first.name, input2=second.name, output=output.name,
                activation=op.activation(op.options(schema), schema.ACTIVATION))


def _add(op: _OpReader) -> ir.Add:
    return _binary(op, ir.Add, _AddOptions)


def _mul(op: _OpReader) -> ir.Mul:
    return _binary(op, ir.Mul, _MulOptions)


def _hard_swish(op: _OpReader) -> ir.HardSwish:
    return ir.HardSwish(input=op.input().name, output=op.output().name)


def _relu(op: _OpReader) -> ir.Relu:
    return ir.Relu(input=op.input().name, output=op.output().name,
                   activation=ir.Activation.RELU)


def _relu6(op: _OpReader) -> ir.Relu:
    return ir.Relu(input=op.input().name, output=op.output().name,
                   activation=ir.Activation.RELU6)


def _transpose(op: _OpReader) -> ir.Transpose:
    source = op.input()
    perm = op.constant_ints(1, "permutation")
    if perm.ndim != 1:  # TFLite's TRANSPOSE refuses any other
        raise op.error(f"permutation has shape {list(perm.shape)}, expected one dimension")
    rank = len(source.shape)
    perm = [int(axis) % rank if -rank <= axis < rank else int(axis) for axis in perm]
    if sorted(perm) != list(range(rank)):
        raise op.error(f"permutation {perm} is not a permutation of {rank} axes")
    output = op.output(rank=rank)
    return ir.Transpose(input=source.name, output=output.name, perm=tuple(perm))


def _quantize(op: _OpReader) -> ir.Quantize:
    """float32 -> int8/uint8, or between 8-bit types and quantizations (TFLM's pairs)."""
    source = op.typed(op._required(0, "input"), "input", ("float32", "int8", "uint8"))
    output = op.typed(op.single_output(), "output", ir.QUANTIZED_TYPES)
    if source.shape != output.shape:
        raise op.error(f"input shape {list(source.shape)} and output shape "
                       f"{list(output.shape)} differ")
    return ir.Quantize(input=source.name, output=output.name)


def _dequantize(op: _OpReader) -> ir.Dequantize:
    source = op.typed(op._required(0, "input"), "input", ir.QUANTIZED_TYPES)
    output = op.typed(op.single_output(), "output", ("float32",))
    if source.shape != output.shape:
        raise op.error(f"input shape {list(source.shape)} and output shape "
                       f"{list(output.shape)} differ")
    return ir.Dequantize(input=source.name, output=output.name)


_CONVERTERS = {
    "CONV_2D": _conv_2d,
    "DEPTHWISE_CONV_2D": _depthwise_conv_2d,
    "PAD": _pad,
    "AVERAGE_POOL_2D": _average_pool_2d,
    "MEAN": _mean,
    "FULLY_CONNECTED": _fully_connected,
    "RESHAPE": _reshape,
    "SOFTMAX": _softmax,
    "ADD": _add,
    "MUL": _mul,
    "HARD_SWISH": _hard_swish,
    "RELU": _relu,
    "RELU6": _relu6,
    "TRANSPOSE": _transpose,
    "QUANTIZE": _quantize,
    "DEQUANTIZE": _dequantize,
}
# The TFLite op names mcugen compiles.
SUPPORTED_OPS: tuple[str, ...] = tuple(_CONVERTERS)
