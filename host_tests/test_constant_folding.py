"""Constant folding at import (issue 16, item 3): the ops that compute on constants only once
shapes are static vanish, evaluated as TFLite evaluates them, and the report says so.

- TinyMaix's MobileNet (SHAPE -> STRIDED_SLICE -> PACK before its RESHAPEs) builds and is
  bit-exact with TFLM (host, ASan + UBSan);
- a model converted from a dynamic-batch TensorFlow function whose RESHAPE takes a shape
  computed by SHAPE, GATHER, REDUCE_PROD, STRIDED_SLICE, CAST, MUL, ADD, SUB, FLOOR_DIV, DIV,
  RESHAPE and CONCATENATION (the converter leaves its output shape unknown: the folded shape
  gives it) builds and is bit-exact with TFLM;
- each folding rule against TensorFlow Lite's own kernel on one-op models with constant inputs
  (STRIDED_SLICE's masks, negative strides and offsets, PACK's axis, C++'s truncating DIV...).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import CACHE, REPO, SHARED, standard_inputs
from hostc import build_shared, run_sanitized, run_three_ways
from mcugen.build import BuildOptions, build
from mcugen.frontend import constant_folding
from mcugen.frontend.flatbuffer import root_table
from mcugen.frontend.tflite import load_tflite
from mcugen.reference import run_reference

TINYMAIX = SHARED / "models" / "tinymaix_mbnet96_0.25_q.tflite"


@pytest.fixture(scope="module")
def tinymaix(tmp_path_factory):
    assert TINYMAIX.is_file(), f"missing {TINYMAIX}"
    work = tmp_path_factory.mktemp("tinymaix")
    return build(BuildOptions(model=TINYMAIX, name="model", out=work / "model")), work


def test_tinymaix_folds_its_shape_computations(tinymaix):
    result, _ = tinymaix
    graph = result.compiled.graph
    assert graph.folded == ("SHAPE", "STRIDED_SLICE", "PACK") * 2
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & {op.OP for op in graph.ops}
    line = "folded at compile time: SHAPE, STRIDED_SLICE, PACK (6 ops)"
    report = result.compiled.report
    assert report.folded_line == line
    assert line[1:] in (result.out_dir / "report.md").read_text()
    assert line in (result.out_dir / "report.html").read_text()
    assert '"folded": [' in (result.out_dir / "report.json").read_text()


@pytest.mark.slow
def test_tinymaix_is_bit_exact_with_tflm_and_clean_under_sanitizers(tinymaix):
    result, work = tinymaix
    graph = result.compiled.graph
    inputs = standard_inputs(graph.input.size, seed=2)
    outputs = run_three_ways(result.out_dir, graph, result.tflite, inputs, work)
    outputs.assert_bit_exact()
    sanitized = run_sanitized(result.out_dir, "model", graph.input.size, graph.output.size,
                              inputs[:3], work)
    np.testing.assert_array_equal(sanitized, outputs.tflm[:3])


def test_inspect_says_what_was_folded():
    result = subprocess.run([sys.executable, "-m", "mcugen", "inspect", str(TINYMAIX)],
                            capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert "38 ops in the file, 31 layers after folding" in result.stdout
    assert "folded at compile time: SHAPE, STRIDED_SLICE, PACK (6 ops)" in result.stdout


# ---------------------------------------------------------------------------------------------
# A model with the other foldable ops, from TensorFlow's converter.

SHAPE_ARITHMETIC = '''
import sys
import numpy as np
import tensorflow as tf

rng = np.random.default_rng(0)
w = tf.constant(rng.normal(0, 0.3, (3, 3, 4, 8)).astype(np.float32))
b = tf.constant(rng.normal(0, 0.1, (8,)).astype(np.float32))


@tf.function(input_signature=[tf.TensorSpec([None, 6, 6, 4], tf.float32)])
def f(x):
    y = tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME") + b)
    s = tf.shape(y)
    n = tf.cast(tf.cast(s[0], tf.int64) * 3, tf.int32)
    n = tf.truncatediv((n + 5 - 5) // 3 * 4, 4)
    rest = tf.reduce_prod(tf.gather(s, [1, 2])) * s[3]
    shape = tf.concat([tf.stack([n]), tf.reshape(rest, [1])], 0)
    return tf.reshape(y, tf.squeeze(tf.expand_dims(shape, 0), 0))


def calibration():
    for _ in range(20):
        yield [rng.uniform(-1, 1, (1, 6, 6, 4)).astype(np.float32)]


converter = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.representative_dataset = calibration
converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
converter.inference_input_type = tf.int8
converter.inference_output_type = tf.int8
open(sys.argv[1], "wb").write(converter.convert())
'''


@pytest.fixture(scope="module")
def shape_arithmetic(tmp_path_factory) -> Path:
    """Converted once (in a subprocess: a tf.function's tracing stays out of the session),
    cached with the other test models."""
    import hashlib

    import tensorflow as tf

    key = hashlib.sha256((SHAPE_ARITHMETIC + tf.__version__).encode()).hexdigest()[:20]
    path = CACHE / f"shape_arithmetic_{key}.tflite"
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        script = tmp_path_factory.mktemp("convert") / "convert.py"
        script.write_text(SHAPE_ARITHMETIC)
        subprocess.run([sys.executable, str(script), str(partial)], check=True,
                       capture_output=True)
        partial.replace(path)
    return path


@pytest.mark.tensorflow
def test_shape_arithmetic_folds_and_is_bit_exact_with_tflite(shape_arithmetic, tmp_path):
    """TFLM cannot allocate this model's dynamic shapes: TensorFlow Lite's reference kernels
    are the oracle (as the issue says where TFLM cannot load a model)."""
    result = build(BuildOptions(model=shape_arithmetic, name="model", out=tmp_path / "model"))
    graph = result.compiled.graph
    assert {"SHAPE", "GATHER", "REDUCE_PROD", "STRIDED_SLICE", "CAST", "MUL", "ADD", "SUB",
            "FLOOR_DIV", "DIV", "RESHAPE", "CONCATENATION"} <= set(graph.folded)
    assert [op.OP for op in graph.ops] == ["CONV_2D"]
    assert graph.output.size == 6 * 6 * 8  # the folded shape, not the converter's [1, 1]
    inputs = standard_inputs(graph.input.size, seed=4)
    c_model = build_shared(result.out_dir, "model", graph.input.size, graph.output.size,
                           tmp_path)
    c = np.stack([c_model(x) for x in inputs])
    reference = np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                          for x in inputs])
    oracle = tflite_outputs(result.tflite, inputs)
    np.testing.assert_array_equal(reference, oracle)
    np.testing.assert_array_equal(c, oracle)
    assert len({row.tobytes() for row in oracle}) >= 2


def tflite_outputs(model: bytes, inputs: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(
        model_content=model,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    outputs = []
    for x in inputs:
        interpreter.set_tensor(detail["index"], x.reshape(detail["shape"]))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
                       .reshape(-1).copy())
    return np.stack(outputs)


# ---------------------------------------------------------------------------------------------
# Each rule against TensorFlow Lite's kernel.


def constant_op_model(op: str, inputs: list[np.ndarray], output_dtype: str,
                      options: tuple[str, dict] | None = None) -> bytes:
    """A .tflite whose one op reads constant tensors and writes the graph output (TFLite
    computes it; mcugen's folding rule must give the same)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    types = {"int32": schema.TensorType.INT32, "int64": schema.TensorType.INT64}
    code = schema.OperatorCodeT()
    code.builtinCode = getattr(schema.BuiltinOperator, op)
    code.deprecatedBuiltinCode = min(code.builtinCode, 127)
    code.version = 1
    subgraph = schema.SubGraphT()
    buffers = [schema.BufferT()]
    subgraph.tensors = []
    for index, value in enumerate(inputs):
        t = schema.TensorT()
        t.shape, t.type, t.name = list(value.shape), types[str(value.dtype)], f"in{index}".encode()
        buffer = schema.BufferT()
        buffer.data = np.ascontiguousarray(value).view(np.uint8).reshape(-1).tolist()
        buffers.append(buffer)
        t.buffer = len(buffers) - 1
        subgraph.tensors.append(t)
    out = schema.TensorT()
    out.shape, out.type, out.name, out.buffer = [], types[output_dtype], b"out", 0
    subgraph.tensors.append(out)
    subgraph.inputs, subgraph.outputs = [], [len(inputs)]
    operator = schema.OperatorT()
    operator.opcodeIndex, operator.inputs, operator.outputs = 0, list(range(len(inputs))), \
        [len(inputs)]
    if options is not None:
        name, fields = options
        table = getattr(schema, f"{name}T")()
        for field, value in fields.items():
            setattr(table, field, value)
        operator.builtinOptionsType = getattr(schema.BuiltinOptions, name)
        operator.builtinOptions = table
    subgraph.operators = [operator]
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], \
        [subgraph], buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def tflite_value(model: bytes) -> np.ndarray:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(
        model_content=model,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def folded_value(model: bytes, kind: str, inputs: list[np.ndarray], output_dtype: str):
    """constant_folding's value for the model's op, with the op's own options table."""
    from mcugen import ir

    root = root_table(model, b"TFL3")
    op = root.tables(2)[0].tables(3)[0]  # subgraphs[0].operators[0]
    options = op.table(4)
    tensors = [ir.Tensor(f"in{i}", v.shape, str(v.dtype), None, v) for i, v in enumerate(inputs)]
    from mcugen.frontend.flatbuffer import Table

    return constant_folding.evaluate(kind, "test", tensors, options or Table.empty(),
                                     output_dtype, ())


I32 = np.int32
SHAPE_VECTOR = np.array([1, 7, 5, 16], I32)
MATRIX = np.arange(24, dtype=I32).reshape(4, 6) - 7
RULES = {
    "strided_slice_shrink": ("STRIDED_SLICE", [SHAPE_VECTOR, np.array([1], I32),
                                               np.array([2], I32), np.array([1], I32)],
                             ("StridedSliceOptions", dict(shrinkAxisMask=1))),
    "strided_slice_masks_negative": ("STRIDED_SLICE", [MATRIX, np.array([3, -1], I32),
                                                       np.array([0, 0], I32),
                                                       np.array([-1, -2], I32)],
                                     ("StridedSliceOptions", dict(beginMask=1, endMask=2))),
    "strided_slice_clamped": ("STRIDED_SLICE", [MATRIX, np.array([-9, 1], I32),
                                                np.array([20, 3], I32), np.array([2, 1], I32)],
                              None),
    "strided_slice_offset": ("STRIDED_SLICE", [MATRIX, np.array([1, 2], I32),
                                               np.array([2, 3], I32), np.array([1, 1], I32)],
                             ("StridedSliceOptions", dict(offset=True))),
    "pack_axis_1": ("PACK", [np.array([1, 2, 3], I32), np.array([4, 5, 6], I32)],
                    ("PackOptions", dict(valuesCount=2, axis=1))),
    "concatenation": ("CONCATENATION", [np.array([1], I32), np.array([2, 3], I32)],
                      ("ConcatenationOptions", dict(axis=0))),
    "gather_axis_1": ("GATHER", [MATRIX, np.array([5, 0, 2], I32)],
                      ("GatherOptions", dict(axis=1))),
    "reduce_prod": ("REDUCE_PROD", [MATRIX[:, 1:4], np.array([-1], I32)],
                    ("ReducerOptions", dict(keepDims=False))),
    "div_truncates": ("DIV", [np.array([7, -7, 7, -7], I32), np.array([2, 2, -2, -2], I32)],
                      None),
    "floor_div": ("FLOOR_DIV", [np.array([7, -7, 7, -7], I32), np.array([2, 2, -2, -2], I32)],
                  None),
    "sub_broadcast": ("SUB", [MATRIX, np.array([3], I32)], None),
    "mul_wraps": ("MUL", [np.array([2**30, 3], I32), np.array([4, -5], I32)], None),
    "slice": ("SLICE", [MATRIX, np.array([1, 2], I32), np.array([-1, 3], I32)], None),
    "cast_int64": ("CAST", [np.array([5, -3], np.int64)], None),
}


@pytest.mark.tensorflow
@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_folding_rule_is_tflites(rule):
    kind, inputs, options = RULES[rule]
    output_dtype = "int32"
    model = constant_op_model(kind, inputs, output_dtype, options)
    expected = tflite_value(model)
    value = folded_value(model, kind, inputs, output_dtype)
    assert value is not None, f"{rule} was not folded"
    assert value.dtype == expected.dtype and value.shape == expected.shape
    np.testing.assert_array_equal(value, expected)


def test_ops_on_quantized_or_activation_tensors_are_not_folded():
    from mcugen import ir
    from mcugen.frontend.flatbuffer import Table

    quantized = ir.Tensor("q", (2,), "int8", ir.QParams((0.5,), (0,)),
                          np.array([1, 2], np.int8))
    assert constant_folding.evaluate("ADD", "t", [quantized, quantized], Table.empty(),
                                     "int8", (2,)) is None
    activation = ir.Tensor("a", (2,), "int32", None, None)
    assert constant_folding.evaluate("ADD", "t", [activation, activation], Table.empty(),
                                     "int32", (2,)) is None


@pytest.mark.tensorflow
def test_load_tflite_keeps_a_graph_output_computed_on_constants():
    """An op whose output is the model's output is not folded (nothing would be left to run):
    it is refused as an unsupported op instead, naming it."""
    from mcugen.errors import McugenError

    model = constant_op_model("FLOOR_DIV", [np.array([7], I32), np.array([2], I32)], "int32")
    with pytest.raises(McugenError):
        load_tflite(model, "m")
