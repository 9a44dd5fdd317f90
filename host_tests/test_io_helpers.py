"""The generated helpers NAME_quantize_input, NAME_dequantize_output and NAME_argmax (NAME_io.c):
bit-exact with TFLite's own QUANTIZE and DEQUANTIZE kernels (the reference ones, and TFLM's) on
the same values, ties and saturation included, and warning-free under strict flags on the host
and for every Cortex-M core, soft-float ones included."""

from __future__ import annotations

import subprocess

import cffi
import numpy as np
import pytest

from conftest import mobilenet_tflite
from hostc import compile_checked
from mcugen.build import BuildOptions, build
from mcugen.targets import qemu_targets

STRICTEST = ["-std=c99", "-Wall", "-Wextra", "-Wconversion", "-Wdouble-promotion",
             "-Wfloat-conversion", "-Wshadow", "-pedantic", "-Werror", "-O2"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A V1 MobileNet: input scale about 1/128 with a non-zero zero point, softmax output."""
    work = tmp_path_factory.mktemp("io")
    path = work / "m.tflite"
    path.write_bytes(mobilenet_tflite(arch="v1", seed=1, alpha=0.25, height=32, width=32,
                                      channels=3, classes=7))
    result = build(BuildOptions(model=path, name="net", out=work / "net"))
    return result, work


@pytest.fixture(scope="module")
def helpers(model):
    result, work = model
    library = work / "libnet_io.so"
    compile_checked(["gcc", *STRICTEST, "-shared", "-fPIC", "-I", str(result.out_dir),
                     str(result.out_dir / "net_io.c"), "-o", str(library)])
    ffi = cffi.FFI()
    ffi.cdef("void net_quantize_input(const float *x, int8_t *q);"
             "void net_dequantize_output(const int8_t *q, float *y);"
             "int net_argmax(const int8_t *q);")
    return ffi, ffi.dlopen(str(library))


def one_op_model(op: str, size: int, scale: float, zero_point: int) -> bytes:
    """A .tflite with one QUANTIZE (float32 -> int8) or DEQUANTIZE (int8 -> float32) op over a
    vector, with the int8 side quantized by (scale, zero_point)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = getattr(schema.BuiltinOperator, op)
    code.version = 1
    quantization = schema.QuantizationParametersT()
    quantization.scale, quantization.zeroPoint = [scale], [zero_point]

    def tensor(name: bytes, kind: int, buffer: int, quantized: bool):
        t = schema.TensorT()
        t.shape, t.type, t.buffer, t.name = [size], kind, buffer, name
        t.quantization = quantization if quantized else None
        return t

    floats = op == "QUANTIZE"
    subgraph = schema.SubGraphT()
    float32, int8 = schema.TensorType.FLOAT32, schema.TensorType.INT8
    subgraph.tensors = [tensor(b"in", float32 if floats else int8, 1, not floats),
                        tensor(b"out", int8 if floats else float32, 2, floats)]
    subgraph.inputs, subgraph.outputs = [0], [1]
    operator = schema.OperatorT()
    operator.opcodeIndex, operator.inputs, operator.outputs = 0, [0], [1]
    subgraph.operators = [operator]
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [subgraph]
    model.buffers = [schema.BufferT() for _ in range(3)]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def tflite_run(model: bytes, values: np.ndarray) -> np.ndarray:
    """TFLite's reference kernels (not XNNPACK) on one input."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(
        model_content=model,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], values)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def tflm_run(model: bytes, values: np.ndarray) -> np.ndarray:
    from tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model, arena_size=64 * 1024 + 8 * values.size)
    interpreter.set_input(values, 0)
    interpreter.invoke()
    return interpreter.get_output(0).copy()


def tie_and_edge_values(scale: np.float32, zero_point: int, size: int) -> np.ndarray:
    """size floats: exact halfway cases x / scale == k + 0.5 (in float arithmetic, as the
    kernels divide) on both sides of zero, values saturating at both ends, zeros and random."""
    ties = []
    for k in range(-140, 140):
        guess = np.float32((k + 0.5) * float(scale))
        for candidate in (guess, np.nextafter(guess, np.float32(np.inf)),
                          np.nextafter(guess, np.float32(-np.inf))):
            if np.float32(candidate) / scale == np.float32(k + 0.5):
                ties.append(candidate)
                break
    rng = np.random.default_rng(0)
    steps = np.concatenate([rng.uniform(-300, 300, 200), [-1e6, 1e6, -2e9, 2e9, 0, -0.0, 0.49,
                                                          -0.49, 0.5, -0.5, 127.6, -128.6]])
    values = np.concatenate([np.array(ties, np.float32), (steps * scale).astype(np.float32)])
    values = np.resize(values, size).astype(np.float32)
    assert len(ties) > 200  # enough exact ties to make rounding matter
    return values


@pytest.mark.tensorflow
def test_quantize_input_is_bit_exact_with_tflite_and_tflm(model, helpers):
    ffi, library = helpers
    graph = model[0].compiled.graph
    scale, zero_point = np.float32(graph.input.scale), int(graph.input.zero_point)
    assert zero_point != 0  # a zero point the arithmetic must add
    x = tie_and_edge_values(scale, zero_point, graph.input.size)
    q = np.zeros(graph.input.size, np.int8)
    library.net_quantize_input(ffi.from_buffer("float[]", x), ffi.from_buffer("int8_t[]", q))
    reference = one_op_model("QUANTIZE", x.size, float(scale), zero_point)
    np.testing.assert_array_equal(q, tflite_run(reference, x))
    np.testing.assert_array_equal(q, tflm_run(reference, x))
    assert {-128, 127} <= set(q.tolist())  # saturation was exercised at both ends
    # Rounding half away from zero, not to even: 0.5 and 1.5 steps go up, -0.5 and -1.5 down.
    probe = np.array([0.5, 1.5, -0.5, -1.5], np.float32) * scale
    assert all(np.float32(p) / scale in (0.5, 1.5, -0.5, -1.5) for p in probe)
    out = np.zeros(graph.input.size, np.int8)
    library.net_quantize_input(ffi.from_buffer("float[]", np.resize(probe, x.size)),
                               ffi.from_buffer("int8_t[]", out))
    assert (out[:4] - zero_point).tolist() == [1, 2, -1, -2]


@pytest.mark.tensorflow
def test_quantize_input_beyond_int32_and_nan_follow_tflite(model, helpers):
    """Where TFLite's C++ is undefined (NaN, infinities, quotients beyond int32), the helper
    gives what TFLite and TFLM compute on x86 (INT32_MIN + zero point, wrapped)."""
    ffi, library = helpers
    graph = model[0].compiled.graph
    size = graph.input.size
    x = np.resize(np.array([np.inf, -np.inf, np.nan, 3e38, -3e38], np.float32), size)
    q = np.zeros(size, np.int8)
    library.net_quantize_input(ffi.from_buffer("float[]", x), ffi.from_buffer("int8_t[]", q))
    reference = one_op_model("QUANTIZE", size, float(graph.input.scale),
                             int(graph.input.zero_point))
    np.testing.assert_array_equal(q, tflite_run(reference, x))
    np.testing.assert_array_equal(q, tflm_run(reference, x))


@pytest.mark.tensorflow
def test_dequantize_output_is_bit_exact_with_tflite_and_tflm(model, helpers):
    ffi, library = helpers
    graph = model[0].compiled.graph
    size = graph.output.size
    every = np.resize(np.arange(-128, 128, dtype=np.int8), 256)
    reference = one_op_model("DEQUANTIZE", 256, float(graph.output.scale),
                             int(graph.output.zero_point))
    expected = tflite_run(reference, every)
    np.testing.assert_array_equal(expected.view(np.uint32),
                                  tflm_run(reference, every).view(np.uint32))
    for start in range(0, 256, size):
        chunk = np.resize(every[start:start + size], size)
        y = np.zeros(size, np.float32)
        library.net_dequantize_output(ffi.from_buffer("int8_t[]", chunk),
                                      ffi.from_buffer("float[]", y))
        wanted = np.resize(expected[start:start + size], size)
        np.testing.assert_array_equal(y.view(np.uint32), wanted.view(np.uint32))


@pytest.mark.tensorflow
def test_argmax_is_the_first_largest_output(model, helpers):
    ffi, library = helpers
    size = model[0].compiled.graph.output.size
    rng = np.random.default_rng(1)
    for _ in range(200):
        q = rng.integers(-128, -120, size).astype(np.int8)  # few values: many ties
        assert library.net_argmax(ffi.from_buffer("int8_t[]", q)) == int(np.argmax(q))


@pytest.mark.tensorflow
@pytest.mark.parametrize("core", sorted(qemu_targets()))
def test_helpers_compile_warning_free_for_every_core(core, model):
    """Soft-float cores (M0+, M3) too: the helpers use float, never double or libm."""
    result, work = model
    target = qemu_targets()[core]
    obj = work / f"net_io_{core}.o"
    compile_checked([target.compiler, *target.cpu_flags, *STRICTEST, "-I", str(result.out_dir),
                     "-c", str(result.out_dir / "net_io.c"), "-o", str(obj)])
    symbols = subprocess.run([target.compiler.replace("gcc", "nm"), str(obj)],
                             capture_output=True, text=True, check=True).stdout
    assert "net_quantize_input" in symbols and "net_argmax" in symbols
    assert "roundf" not in symbols and "__aeabi_d" not in symbols  # no libm, no double
