"""QUANTIZE and DEQUANTIZE (issue 16, item 1): every conversion TFLM has, and float32 -> uint8
and uint8 -> float32 (TFLite's), imported from real .tflite files, compiled and run:

- one-op models on edge values (ties, saturation, infinities, NaN, every 8-bit value): the
  generated C (strict flags, ASan + UBSan), the NumPy reference and the oracles (TFLM where it
  has the pair, TensorFlow Lite's reference kernels always) agree bit for bit;
- MobileNets converted with float and uint8 input and output (`--io`), bit-exact with TFLM on
  the host and in QEMU on Cortex-M7 and M55, their API typed by the model (NAME_input_t, ...);
- the importer's refusals stay one clear line.

Soft-float cores compute the same bits: the kernel cases of test_kernels.py (quantize_*,
dequantize_*) run on Cortex-M0+ and M3 in QEMU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, float_edge_values, mobilenet_tflite, tflm_outputs
from firmware_batch import BatchRun, compile_for, run_batch
from hostc import build_shared, run_sanitized, run_three_ways
from mcugen.build import BuildOptions, build
from mcugen.compile import compile_graph
from mcugen.errors import McugenError
from mcugen.frontend.tflite import load_tflite
from mcugen.oracle import tflite_reference_outputs
from mcugen.reference import run_reference
from mcugen.targets import load_target

HOST = load_target("host")
SIZE = 600  # every 8-bit value twice and more; not a multiple of 4 (the word loop's tail)


def one_op_model(op: str, source: str, source_q, target: str, target_q,
                 size: int = SIZE) -> bytes:
    """A .tflite with one QUANTIZE or DEQUANTIZE over a vector: source -> target types,
    each quantized by (scale, zero point) or None (float32)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = getattr(schema.BuiltinOperator, op)
    code.version = 1
    types = {"float32": schema.TensorType.FLOAT32, "int8": schema.TensorType.INT8,
             "uint8": schema.TensorType.UINT8}

    def tensor(name: bytes, dtype: str, buffer: int, q):
        t = schema.TensorT()
        t.shape, t.type, t.buffer, t.name = [1, size], types[dtype], buffer, name
        if q is not None:
            t.quantization = schema.QuantizationParametersT()
            t.quantization.scale, t.quantization.zeroPoint = [q[0]], [q[1]]
        return t

    subgraph = schema.SubGraphT()
    subgraph.tensors = [tensor(b"in", source, 1, source_q), tensor(b"out", target, 2, target_q)]
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


def tflite_reference(model: bytes, inputs: np.ndarray) -> np.ndarray:
    """TensorFlow Lite's reference kernels (BUILTIN_REF), one input at a time."""
    return tflite_reference_outputs(model, inputs)


def edge_inputs(source: str, source_q, target_q) -> np.ndarray:
    rng = np.random.default_rng(7)
    if source == "float32":
        return np.stack([float_edge_values(target_q[0], SIZE, seed) for seed in range(3)])
    low, high = (-128, 127) if source == "int8" else (0, 255)
    every = np.resize(np.arange(low, high + 1), SIZE)
    return np.stack([every, rng.permutation(every)]).astype(source)


# (op, source type, its (scale, zp), target type, its (scale, zp), TFLM runs it)
CONVERSIONS = {
    "float_to_int8": ("QUANTIZE", "float32", None, "int8", (0.0237, -7), True),
    "float_to_uint8": ("QUANTIZE", "float32", None, "uint8", (0.0078125, 128), False),
    "uint8_to_int8_shift": ("QUANTIZE", "uint8", (0.0078125, 128), "int8", (0.0078125, 0), True),
    "int8_to_uint8_shift": ("QUANTIZE", "int8", (0.1, -3), "uint8", (0.1, 125), True),
    "uint8_to_int8": ("QUANTIZE", "uint8", (0.05, 100), "int8", (0.031, -5), True),
    "int8_to_uint8": ("QUANTIZE", "int8", (0.05, 3), "uint8", (0.07, 131), True),
    "int8_to_int8": ("QUANTIZE", "int8", (0.05, 3), "int8", (0.013, -20), True),
    "int8_to_int8_wider": ("QUANTIZE", "int8", (0.05, 3), "int8", (0.5, 7), True),
    "int8_to_float": ("DEQUANTIZE", "int8", (0.0237, -7), "float32", None, True),
    "uint8_to_float": ("DEQUANTIZE", "uint8", (0.0411, 131), "float32", None, False),
}


@pytest.mark.tensorflow
@pytest.mark.parametrize("conversion", sorted(CONVERSIONS))
def test_one_op_is_bit_exact_with_tflite_and_tflm_on_edge_values(conversion, tmp_path):
    op, source, source_q, target, target_q, tflm_runs = CONVERSIONS[conversion]
    model = one_op_model(op, source, source_q, target, target_q)
    graph = load_tflite(model, "model")
    compiled = compile_graph(graph, name="model", target=HOST, source=conversion)
    folder = tmp_path / "model"
    folder.mkdir()
    for name, text in compiled.sources.items():
        (folder / name).write_text(text)
    inputs = edge_inputs(source, source_q, target_q)
    c_model = build_shared(folder, "model", SIZE, SIZE, tmp_path, input_dtype=source,
                           output_dtype=target)
    c = np.stack([c_model(x) for x in inputs])
    reference = np.stack([run_reference(compiled.graph, x.reshape(1, SIZE)).reshape(-1)
                          for x in inputs])
    sanitized = run_sanitized(folder, "model", SIZE, SIZE, inputs, tmp_path, output_dtype=target)
    oracle = tflite_reference(model, inputs)
    assert c.dtype == oracle.dtype == np.dtype(target)
    for result in (c, reference, sanitized):  # as bytes: floats to the bit
        np.testing.assert_array_equal(result.view(np.uint8), oracle.view(np.uint8))
    if tflm_runs:
        np.testing.assert_array_equal(tflm_outputs(model, inputs).view(np.uint8),
                                      oracle.view(np.uint8))
    if target != "float32":
        low, high = (-128, 127) if target == "int8" else (0, 255)
        assert len(set(oracle.reshape(-1).tolist())) > 20  # the range is exercised
        if source == "float32":
            assert {low, high} <= set(oracle.reshape(-1).tolist())  # saturation, both ends


@pytest.mark.tensorflow
def test_float_to_8_bits_beyond_int32_and_nan_follow_tflite_on_x86():
    """TFLite's float-to-int32 cast is undefined in C++ for NaN, infinities and values beyond
    int32, and so is the int32 overflow of adding the zero point: TFLite and TFLM on x86 give
    INT32_MIN + zero_point, wrapped (the type's maximum for a negative zero point, its minimum
    otherwise), and mcugen gives the same on every core; quotients within int32 saturate."""
    values = np.resize(np.array([np.inf, -np.inf, np.nan, 3e38, -3e38, 1e6, -1e6], np.float32),
                       SIZE)
    for target, q, expected in (("int8", (0.0237, -7), [127] * 5 + [127, -128]),
                                ("int8", (0.0237, 5), [-128] * 5 + [127, -128]),
                                ("uint8", (0.0078125, 128), [0] * 5 + [255, 0])):
        model = one_op_model("QUANTIZE", "float32", None, target, q)
        graph = compile_graph(load_tflite(model, "m"), name="m", target=HOST, source="t").graph
        assert run_reference(graph, values.reshape(1, SIZE)).reshape(-1)[:7].tolist() == expected
        assert tflite_reference(model, values[None])[0, :7].tolist() == expected


@pytest.mark.tensorflow
def test_the_shift_by_128_uses_the_shift_kernel_and_others_a_table():
    chosen = {}
    for conversion in ("uint8_to_int8_shift", "int8_to_uint8_shift", "uint8_to_int8",
                       "int8_to_int8"):
        op, source, source_q, target, target_q, _ = CONVERSIONS[conversion]
        graph = load_tflite(one_op_model(op, source, source_q, target, target_q), "m")
        layers = compile_graph(graph, name="m", target=load_target("cortex-m7"),
                               source="t").layers
        chosen[conversion] = layers[0].variant.name
    assert chosen == {"uint8_to_int8_shift": "requantize_shift",
                      "int8_to_uint8_shift": "requantize_shift",
                      "uint8_to_int8": "requantize_table", "int8_to_int8": "requantize_table"}


@pytest.mark.tensorflow
@pytest.mark.parametrize("source,target,message", [
    ("int16", "int8", "model input is int16; mcugen needs int8, uint8 or float32"),
    ("float32", "int16", "model output is int16; mcugen needs int8, uint8 or float32"),
])
def test_unsupported_quantize_types_are_one_line(source, target, message):
    import flatbuffers  # noqa: F401  (one_op_model needs it)
    from tensorflow.lite.python import schema_py_generated as schema

    model = _retyped(one_op_model("QUANTIZE", "float32", None, "int8", (0.1, 0)), schema,
                     source, target)
    with pytest.raises(McugenError, match="^" + message):
        load_tflite(model, "m")


def _retyped(model: bytes, schema, source: str, target: str) -> bytes:
    import flatbuffers

    types = {"float32": schema.TensorType.FLOAT32, "int8": schema.TensorType.INT8,
             "int16": schema.TensorType.INT16}
    tree = schema.ModelT.InitFromPackedBuf(model, 0)
    tensors = tree.subgraphs[0].tensors
    tensors[0].type, tensors[1].type = types[source], types[target]
    if source == "int16":
        tensors[0].quantization = tensors[1].quantization
    builder = flatbuffers.Builder(1024)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# ---------------------------------------------------------------------------------------------
# Whole models with float and uint8 input and output.

MODELS = {
    "v1_float": dict(arch="v1", seed=3, alpha=0.25, height=32, width=32, channels=3, classes=5,
                     io_type="float"),
    "v1_uint8": dict(arch="v1", seed=4, alpha=0.25, height=32, width=32, channels=3, classes=5,
                     io_type="uint8"),
    "v2_float": dict(arch="v2", seed=5, alpha=0.35, height=48, width=48, channels=3, classes=4,
                     io_type="float"),
    "v3s_uint8": dict(arch="v3-small", seed=6, alpha=0.35, height=48, width=40, channels=3,
                      classes=4, io_type="uint8"),
    "v3l_float": dict(arch="v3-large", seed=7, alpha=0.35, height=40, width=40, channels=1,
                      classes=3, io_type="float"),
}


def model_inputs(graph, count: int = 4, seed: int = 0) -> np.ndarray:
    """Float inputs over the range the first QUANTIZE covers (and beyond, saturating), or
    uint8 ones with both extremes."""
    rng = np.random.default_rng(seed)
    x = graph.input
    if x.dtype == "uint8":
        rows = [np.zeros(x.size), np.full(x.size, 255)] + \
            [rng.integers(0, 256, x.size) for _ in range(count - 2)]
        return np.stack(rows).astype(np.uint8)
    rows = [np.zeros(x.size), np.full(x.size, -1.2), np.full(x.size, 1.2)] + \
        [rng.uniform(-1.1, 1.1, x.size) for _ in range(count - 3)]
    return np.stack(rows).astype(np.float32)


@pytest.fixture(scope="module", params=sorted(MODELS))
def built(request, tmp_path_factory):
    work = tmp_path_factory.mktemp(request.param)
    path = work / "m.tflite"
    path.write_bytes(mobilenet_tflite(**MODELS[request.param]))
    result = build(BuildOptions(model=path, name="model", out=work / "model"))
    return request.param, result, work


@pytest.mark.tensorflow
def test_models_import_with_their_io_types(built):
    name, result, _ = built
    graph = result.compiled.graph
    io_type = MODELS[name]["io_type"]
    dtype = "float32" if io_type == "float" else io_type
    assert (graph.input.dtype, graph.output.dtype) == (dtype, dtype)
    assert graph.ops[0].OP == "QUANTIZE"
    assert graph.ops[-1].OP == ("DEQUANTIZE" if io_type == "float" else "QUANTIZE")
    header = (result.out_dir / "model.h").read_text()
    ctype = {"float32": "float", "uint8": "uint8_t"}[dtype]
    assert f"typedef {ctype} model_input_t;" in header
    assert f"typedef {ctype} model_output_t;" in header
    assert f"#define MODEL_INPUT_SIZE {graph.input.size}\n" in header
    assert "int model_invoke(const model_input_t *input, model_output_t *output);" in header
    # Helpers only where they mean something: a float model quantizes its own input.
    assert ("model_quantize_input" in header) == (dtype != "float32")
    assert ("model_dequantize_output" in header) == (dtype != "float32")
    assert "int model_argmax(const model_output_t *q);" in header
    # The float input is read by the first QUANTIZE directly from the caller's buffer.
    source = (result.out_dir / "model.c").read_text()
    assert f"layer0_{result.compiled.layers[0].variant.name}(input, " in source
    # Report: the caller's buffers at their element size.
    itemsize = np.dtype(dtype).itemsize
    assert result.compiled.report.input_bytes == graph.input.size * itemsize


@pytest.mark.tensorflow
def test_models_are_bit_exact_with_tflm_on_the_host_and_under_sanitizers(built):
    name, result, work = built
    graph = result.compiled.graph
    inputs = model_inputs(graph)
    outputs = run_three_ways(result.out_dir, graph, result.tflite, inputs, work)
    outputs.assert_bit_exact()
    sanitized = run_sanitized(result.out_dir, "model", graph.input.size, graph.output.size,
                              inputs, work, output_dtype=graph.output.dtype)
    np.testing.assert_array_equal(sanitized.view(np.uint8), outputs.tflm.view(np.uint8))


_qemu_runs: dict[str, dict[str, tuple[BatchRun, np.ndarray]]] = {}


@pytest.fixture(scope="module")
def qemu_work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("qemu")


def qemu_runs(core: str, work: Path) -> dict[str, tuple[BatchRun, np.ndarray]]:
    """The MODELS compiled for the core (firmware_batch.compile_for, each under its own C
    name) and run in one firmware (firmware_batch.py: the firmware's own files compiled and
    QEMU started once per core, not once per model): per model, its run and TFLM's outputs on
    the same inputs. Once per core and file."""
    if core not in _qemu_runs:
        target = load_target(core)
        models, inputs = {}, {}
        for name in sorted(MODELS):
            models[name] = compile_for(mobilenet_tflite(**MODELS[name]), name, target)
            inputs[name] = model_inputs(models[name].graph, count=3, seed=1)
        runs = run_batch(models, inputs, target, work / f"fw_{core}")
        _qemu_runs[core] = {
            name: (runs[name], tflm_outputs(mobilenet_tflite(**MODELS[name]), inputs[name]))
            for name in models}
    return _qemu_runs[core]


@pytest.mark.tensorflow
@pytest.mark.qemu
@pytest.mark.parametrize("core", ["cortex-m7", "cortex-m55"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_are_bit_exact_with_tflm_in_qemu(name, core, qemu_work):
    run, expected = qemu_runs(core, qemu_work)[name]
    assert run.outputs.dtype == expected.dtype
    np.testing.assert_array_equal(run.outputs.view(np.uint8), expected.view(np.uint8))


@pytest.mark.tensorflow
def test_a_float_input_model_runs_in_row_bands_from_its_quantize(tmp_path):
    """The first QUANTIZE computes any range of rows, so the row-band schedule (--max-ram)
    can start at the float input: bit-exact with TFLM, clean under sanitizers."""
    path = tmp_path / "m.tflite"
    path.write_bytes(mobilenet_tflite(**MODELS["v1_float"]))
    whole = build(BuildOptions(model=path, name="model", out=tmp_path / "whole"))
    budget = whole.compiled.report.arena_bytes * 3 // 4
    result = build(BuildOptions(model=path, name="model", out=tmp_path / "model",
                                max_ram=budget))
    compiled = result.compiled
    assert compiled.report.arena_bytes <= budget
    assert compiled.schedule.is_banded(0) and compiled.layers[0].op.OP == "QUANTIZE"
    graph = compiled.graph
    inputs = model_inputs(graph)
    outputs = run_three_ways(result.out_dir, graph, result.tflite, inputs, tmp_path)
    outputs.assert_bit_exact()
    sanitized = run_sanitized(result.out_dir, "model", graph.input.size, graph.output.size,
                              inputs, tmp_path, output_dtype=graph.output.dtype)
    np.testing.assert_array_equal(sanitized.view(np.uint8), outputs.tflm.view(np.uint8))


# ---------------------------------------------------------------------------------------------
# MCUNet's visual-wake-words model (TinyEngine's asset): float input and output, PAD,
# TRANSPOSE to NCHW, then MEAN over W and MEAN over H.

MCUNET = SHARED / "models" / "mcunet_vww_float_io.tflite"


@pytest.fixture(scope="module")
def mcunet(tmp_path_factory):
    assert MCUNET.is_file(), f"missing {MCUNET}"
    work = tmp_path_factory.mktemp("mcunet")
    return build(BuildOptions(model=MCUNET, name="model", out=work / "model")), work


@pytest.mark.slow
def test_mcunet_is_bit_exact_with_tflm_on_the_host_and_under_sanitizers(mcunet):
    result, work = mcunet
    graph = result.compiled.graph
    assert (graph.input.dtype, graph.output.dtype) == ("float32", "float32")
    assert [layer.variant.name for layer in result.compiled.layers
            if layer.op.OP == "MEAN"] == ["mean_axes_s8", "mean_axes_s8"]
    inputs = model_inputs(graph, count=4)
    outputs = run_three_ways(result.out_dir, graph, result.tflite, inputs, work)
    outputs.assert_bit_exact()
    sanitized = run_sanitized(result.out_dir, "model", graph.input.size, graph.output.size,
                              inputs[:2], work, output_dtype="float32")
    np.testing.assert_array_equal(sanitized.view(np.uint8), outputs.tflm[:2].view(np.uint8))


@pytest.mark.qemu
@pytest.mark.parametrize("core", ["cortex-m7", "cortex-m55"])
def test_mcunet_is_bit_exact_with_tflm_in_qemu(core, tmp_path):
    # firmware_batch for a batch of one: compile_for spares build's measurement (a
    # cross-compile of MCUNet's C), run_batch its firmware as build_firmware's.
    compiled = compile_for(MCUNET.read_bytes(), "model", load_target(core))
    graph = compiled.graph
    assert (graph.input.dtype, graph.output.dtype) == ("float32", "float32")
    inputs = model_inputs(graph, count=2, seed=5)
    run = run_batch({"model": compiled}, {"model": inputs}, load_target(core), tmp_path,
                    timeout=600)["model"]
    np.testing.assert_array_equal(run.outputs.view(np.uint8),
                                  tflm_outputs(MCUNET.read_bytes(), inputs).view(np.uint8))


def test_io_is_for_built_models_only(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"not read")
    with pytest.raises(McugenError, match="^--io applies to the MobileNets mcugen builds"):
        build(BuildOptions(model=path, io="float"))
    with pytest.raises(McugenError, match="^--io int4: use one of int8, uint8, float"):
        build(BuildOptions(io="int4"))


@pytest.mark.tensorflow
@pytest.mark.qemu
def test_mcugen_run_feeds_float_inputs_and_checks_float_outputs(tmp_path):
    """`mcugen run` on a float-I/O model: typed default inputs over the first QUANTIZE's range
    (and beyond), float outputs compared bit for bit with the reference and TFLM."""
    from mcugen.run import run

    path = tmp_path / "m.tflite"
    path.write_bytes(mobilenet_tflite(**MODELS["v1_float"]))
    summary = run(BuildOptions(model=path, target="cortex-m7"), None, tmp_path / "work")
    assert summary.inputs.dtype == np.float32 and summary.qemu.outputs.dtype == np.float32
    assert summary.tflm_outputs is not None and summary.matches
    low, high = float(summary.inputs.min()), float(summary.inputs.max())
    assert low < -1.0 and high > 1.0  # beyond the input QUANTIZE's range: saturation
