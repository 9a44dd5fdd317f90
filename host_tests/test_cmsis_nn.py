"""`--kernels cmsis-nn`: the generated C calls Arm's CMSIS-NN and stays bit-exact with TFLM.

CMSIS-NN is not part of mcugen: these tests use the checkout named by the environment variable
CMSIS_NN_DIR, else the pinned copy in ../shared/third_party/CMSIS-NN beside the repository; they
fail, never skip, without one. On the host CMSIS-NN runs its pure-C path; in QEMU the DSP
(Cortex-M7) and Helium (Cortex-M55) paths, whose scratch sizes and tables differ.
"""

from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cffi
import numpy as np
import pytest

from conftest import PERSON_DETECT, mobilenet_tflite, standard_inputs, tflm_outputs
from firmware_batch import BatchRun, run_batch
from hostc import build_shared, compile_checked
from mcugen.build import BuildOptions, BuildResult, build
from mcugen.ir import (Activation, DepthwiseConv2D, Graph, Padding, QParams, Requant, Softmax,
                       Tensor)
from mcugen.kernels import select_variant
from mcugen.kernels.cmsis_nn import (CmsisPath, avgpool_s8_scratch_bytes, cmsis_path,
                                     convolve_s8_scratch_bytes,
                                     depthwise_conv_s8_opt_scratch_bytes, table_padding)
from mcugen.kernels.variant import Order
from mcugen.quant import softmax_int8, softmax_params
from mcugen.run import find_cmsis_nn
from mcugen.targets import load_target

CMSIS_NN = find_cmsis_nn()
CMSIS_NN_DIR = str(CMSIS_NN) if CMSIS_NN else None

PURE_C = CmsisPath(dsp=False, mve=False)
DSP = CmsisPath(dsp=True, mve=False)
MVE = CmsisPath(dsp=True, mve=True)
# A target of each path: the host (pure C), Cortex-M7 (DSP), Cortex-M55 (MVE).
PATH_TARGETS = {PURE_C: load_target("host"), DSP: load_target("cortex-m7"),
                MVE: load_target("cortex-m55")}


def test_cmsis_nn_is_there():
    """Every test below needs CMSIS-NN: without it they fail (here first), never skip."""
    assert CMSIS_NN is not None, ("CMSIS-NN not found: set CMSIS_NN_DIR, or put the pinned "
                                  "copy in ../shared/third_party/CMSIS-NN")
    assert all(cmsis_path(target) == path for path, target in PATH_TARGETS.items())

MOBILENET = dict(arch="v1", seed=1, alpha=0.25, height=96, width=96, channels=3, classes=2)
# V2 and V3 bring ADD and MUL: CMSIS-NN's elementwise kernels (the same models as
# test_mobilenet_generations, so the converted files come from the cache).
GENERATIONS = {
    "mobilenet_v2_a0.35_64x64x3": dict(arch="v2", seed=2, alpha=0.35, height=64, width=64,
                                       channels=3, classes=4),
    "mobilenet_v3-small_a0.35_56x48x3": dict(arch="v3-small", seed=2, alpha=0.35, height=56,
                                             width=48, channels=3, classes=2),
}


# ---------------------------------------------------------------------------------------------
# Scratch sizes: the formulas of CMSIS-NN's *_get_buffer_size, per code path.


def test_scratch_sizes_match_the_documented_formulas():
    # arm_convolve_s8, MobileNet stem 3x3x3: 4 * ceil4(27) on C/DSP, 64 * ceil(27 / 16) on MVE.
    assert [convolve_s8_scratch_bytes(3, 3, 3, p) for p in (PURE_C, DSP, MVE)] == [112, 112, 128]
    # arm_depthwise_conv_s8_opt: 0 / 2*C*KH*KW / 4*124*KH*KW.
    assert [depthwise_conv_s8_opt_scratch_bytes(960, 5, 5, p) for p in (PURE_C, DSP, MVE)] \
        == [0, 48000, 12400]
    assert depthwise_conv_s8_opt_scratch_bytes(32, 3, 3, MVE) == 4464
    # arm_avgpool_s8: one int32 per channel on DSP only.
    assert [avgpool_s8_scratch_bytes(1280, p) for p in (PURE_C, DSP, MVE)] == [0, 5120, 0]


def _depthwise_graph(channels: int, multiplier: int, kernel: int, pad: int,
                     dilation: int = 1) -> tuple[DepthwiseConv2D, Graph]:
    q = QParams((0.1,), (0,))
    size = 12
    out = (size + 2 * pad - (kernel - 1) * dilation - 1) + 1
    tensors = {
        "x": Tensor("x", (1, size, size, channels), "int8", q),
        "w": Tensor("w", (1, kernel, kernel, channels * multiplier), "int8", q,
                    np.zeros((1, kernel, kernel, channels * multiplier), np.int8)),
        "y": Tensor("y", (1, out, out, channels * multiplier), "int8", q),
    }
    op = DepthwiseConv2D("x", "w", None, "y", (1, 1), (dilation, dilation),
                         Padding(pad, pad, pad, pad), multiplier, Activation.NONE,
                         Requant((1 << 30,), (0,)), -128, 127)
    return op, Graph("g", tensors, (op,), ("x",), ("y",))


@pytest.mark.parametrize("path", [PURE_C, DSP, MVE], ids=lambda p: p.label)
def test_depthwise_dispatch_mirrors_the_wrapper(path):
    cases = {  # (channels, multiplier, kernel, pad, dilation) -> the wrapper's choice
        (16, 1, 3, 1, 1): "arm_depthwise_conv_s8_opt" if path.mve else "arm_depthwise_conv_3x3_s8",
        (16, 1, 3, 2, 1): "arm_depthwise_conv_s8_opt",
        (16, 1, 5, 2, 1): "arm_depthwise_conv_s8_opt",
        (16, 1, 3, 1, 2): "arm_depthwise_conv_s8",
        (1, 8, 3, 1, 1): "arm_depthwise_conv_s8",
        (4, 2, 3, 1, 1): "arm_depthwise_conv_s8",
    }
    target = PATH_TARGETS[path]
    for (channels, multiplier, kernel, pad, dilation), function in cases.items():
        op, graph = _depthwise_graph(channels, multiplier, kernel, pad, dilation)
        chosen = select_variant(op, graph, target, "cmsis-nn")
        assert chosen.library == "CMSIS-NN" and chosen.name == function, \
            (channels, multiplier, kernel, pad)
        expected_scratch = depthwise_conv_s8_opt_scratch_bytes(channels, kernel, kernel, path) \
            if function == "arm_depthwise_conv_s8_opt" else 0
        assert chosen.scratch_bytes(op, graph, target) == expected_scratch
        assert table_padding(target) == (4 if path.mve else 0)
        assert chosen.access is Order.SEPARATE


@pytest.fixture(scope="session")
def cmsis_nn_library(tmp_path_factory) -> Path:
    """CMSIS-NN's integer sources compiled once for the host (-fPIC) into a static library."""
    root = Path(CMSIS_NN_DIR)
    sources = [s for s in sorted(root.glob("Source/*/*.c"))
               if not s.name.endswith(("_f16.c", "_f32.c", "_flt.c"))]
    assert len(sources) > 100, f"{root} does not look like a CMSIS-NN checkout"
    work = tmp_path_factory.mktemp("cmsis_nn")

    def compile_one(source: Path) -> str:
        obj = work / f"{source.parent.name}_{source.stem}.o"
        compile_checked(["gcc", "-std=c99", "-O2", "-fPIC", "-I", str(root / "Include"),
                         "-c", str(source), "-o", str(obj)])
        return str(obj)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        objects = list(pool.map(compile_one, sources))
    library = work / "libcmsisnn.a"
    subprocess.run(["ar", "rcs", str(library), *objects], check=True)
    return library


@pytest.fixture(scope="session")
def cmsis_nn_getters(cmsis_nn_library, tmp_path_factory):
    """CMSIS-NN's own buffer-size functions, callable from Python (the _dsp/_mve variants are
    plain C too, so every path's answer can be asked on the host)."""
    work = tmp_path_factory.mktemp("getters")
    library = work / "libgetters.so"
    compile_checked(["gcc", "-shared", "-fPIC", "-o", str(library), "-Wl,--whole-archive",
                     str(cmsis_nn_library), "-Wl,--no-whole-archive"])
    ffi = cffi.FFI()
    ffi.cdef("""
        typedef struct { int32_t n, h, w, c; } cmsis_nn_dims;
        int32_t arm_convolve_s8_get_buffer_size(const cmsis_nn_dims *, const cmsis_nn_dims *);
        int32_t arm_convolve_s8_get_buffer_size_mve(const cmsis_nn_dims *, const cmsis_nn_dims *);
        int32_t arm_depthwise_conv_s8_opt_get_buffer_size(const cmsis_nn_dims *,
                                                          const cmsis_nn_dims *);
        int32_t arm_depthwise_conv_s8_opt_get_buffer_size_dsp(const cmsis_nn_dims *,
                                                              const cmsis_nn_dims *);
        int32_t arm_depthwise_conv_s8_opt_get_buffer_size_mve(const cmsis_nn_dims *,
                                                              const cmsis_nn_dims *);
        int32_t arm_avgpool_s8_get_buffer_size(int, int);
        int32_t arm_avgpool_s8_get_buffer_size_dsp(int, int);
        int32_t arm_avgpool_s8_get_buffer_size_mve(int, int);
    """)
    return ffi, ffi.dlopen(str(library))


def test_scratch_sizes_match_cmsis_nn_getters(cmsis_nn_getters):
    ffi, lib = cmsis_nn_getters

    def dims(n: int, h: int, w: int, c: int):
        return ffi.new("cmsis_nn_dims *", {"n": n, "h": h, "w": w, "c": c})

    conv = {PURE_C: lib.arm_convolve_s8_get_buffer_size,  # the host build is pure C
            DSP: lib.arm_convolve_s8_get_buffer_size,  # C and DSP share the formula
            MVE: lib.arm_convolve_s8_get_buffer_size_mve}
    dw = {PURE_C: lib.arm_depthwise_conv_s8_opt_get_buffer_size,
          DSP: lib.arm_depthwise_conv_s8_opt_get_buffer_size_dsp,
          MVE: lib.arm_depthwise_conv_s8_opt_get_buffer_size_mve}
    pool = {PURE_C: lib.arm_avgpool_s8_get_buffer_size,
            DSP: lib.arm_avgpool_s8_get_buffer_size_dsp,
            MVE: lib.arm_avgpool_s8_get_buffer_size_mve}
    for path in (PURE_C, DSP, MVE):
        for channels in (1, 3, 4, 7, 16, 33, 256, 1000):
            for kh, kw in ((1, 1), (3, 3), (5, 5), (3, 1), (7, 2)):
                assert convolve_s8_scratch_bytes(channels, kh, kw, path) == \
                    conv[path](dims(1, 9, 9, channels), dims(8, kh, kw, channels))
                assert depthwise_conv_s8_opt_scratch_bytes(channels, kh, kw, path) == \
                    dw[path](dims(1, 9, 9, channels), dims(1, kh, kw, channels))
            assert avgpool_s8_scratch_bytes(channels, path) == pool[path](1, channels)


# ---------------------------------------------------------------------------------------------
# Softmax: arm_softmax_s8 replaces ours only where it is the same function.


def test_arm_softmax_s8_equals_tflite_softmax_for_rows_it_is_used_on(cmsis_nn_library,
                                                                     tmp_path_factory):
    work = tmp_path_factory.mktemp("softmax")
    library = work / "libsoftmax.so"
    compile_checked(["gcc", "-shared", "-fPIC", "-o", str(library), "-Wl,--whole-archive",
                     str(cmsis_nn_library), "-Wl,--no-whole-archive"])
    ffi = cffi.FFI()
    ffi.cdef("void arm_softmax_s8(const int8_t *, int32_t, int32_t, int32_t, int32_t, int32_t,"
             " int8_t *);")
    lib = ffi.dlopen(str(library))
    rng = np.random.default_rng(5)
    for row in (1, 2, 10, 100, 511):
        for scale in (1 / 256, 0.02, 0.1, 0.5):
            multiplier, shift, diff_min = softmax_params(1.0, scale)
            x = rng.integers(-128, 128, (8, row)).astype(np.int8)
            x[0] = 127  # the largest sum of exps a row can have
            x[1, :] = rng.integers(-128, 128)  # flat rows
            out = np.zeros_like(x)
            lib.arm_softmax_s8(ffi.from_buffer("int8_t[]", x), x.shape[0], row, multiplier,
                               shift, diff_min, ffi.from_buffer("int8_t[]", out))
            np.testing.assert_array_equal(out, softmax_int8(x, multiplier, shift, diff_min),
                                          err_msg=f"row {row}, scale {scale}")


def test_long_softmax_rows_keep_our_kernel():
    q = QParams((0.1,), (0,))
    for row, expected in ((511, "arm_softmax_s8"), (512, None), (1000, None)):
        tensors = {"x": Tensor("x", (1, row), "int8", q),
                   "y": Tensor("y", (1, row), "int8", QParams((1 / 256,), (-128,)))}
        op = Softmax("x", "y", 1.0, *softmax_params(1.0, 0.1))
        graph = Graph("g", tensors, (op,), ("x",), ("y",))
        variant = select_variant(op, graph, PATH_TARGETS[PURE_C], "cmsis-nn")
        assert (variant.name if variant.library else None) == expected


# ---------------------------------------------------------------------------------------------
# Whole models on the host: CMSIS-NN build == our kernels == TFLM, bit for bit.


def small_keras_tflite(per_channel_dense: bool) -> bytes:
    """A small int8 model with every layer kind CMSIS-NN takes: a strided 3x3 conv, 5x5 and
    depth-multiplier-2 depthwise convs, pointwise, a VALID strided conv, AVERAGE_POOL_2D,
    FULLY_CONNECTED (per channel, or per tensor as older converters made it) and SOFTMAX."""
    import tensorflow as tf

    keras = tf.keras
    keras.utils.set_random_seed(3)
    inputs = keras.Input((20, 20, 3), batch_size=1)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(inputs)
    x = keras.layers.DepthwiseConv2D(5, padding="same", activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x)
    x = keras.layers.Conv2D(12, 1, activation="relu")(x)
    x = keras.layers.Conv2D(12, 3, strides=2, padding="valid")(x)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(10)(x)
    outputs = keras.layers.Softmax()(x)
    images = np.random.default_rng(3).uniform(-1, 1, (16, 1, 20, 20, 3)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image] for image in images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    converter._experimental_disable_per_channel_quantization_for_dense_layers = \
        not per_channel_dense
    return converter.convert()


_models: dict[str, bytes] = {}


def case_model(case: str) -> bytes:
    if case not in _models:
        if case == "person_detect":
            _models[case] = PERSON_DETECT.read_bytes()
        elif case == "mobilenet_v1_a0.25_96x96x3":
            _models[case] = mobilenet_tflite(**MOBILENET)
        elif case in GENERATIONS:
            _models[case] = mobilenet_tflite(**GENERATIONS[case])
        else:
            _models[case] = small_keras_tflite(per_channel_dense=case == "small_keras")
    return _models[case]


SMALL = ["small_keras", "small_keras_per_tensor_fc"]
CASES = ["person_detect", "mobilenet_v1_a0.25_96x96x3", *SMALL, *GENERATIONS]


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cmsis_nn_models")


def build_case(case: str, work: Path, kernels: str, target: str = "host") -> BuildResult:
    model = work / f"{case}.tflite"
    model.write_bytes(case_model(case))
    return build(BuildOptions(model=model, target=target, name="model", kernels=kernels,
                              out=work / f"{case}_{kernels}_{target}"))


def library_functions(result: BuildResult) -> set[str]:
    return {layer.variant.name for layer in result.compiled.layers if layer.variant.library}


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", CASES)
def test_cmsis_nn_build_is_bit_exact_with_ours_and_tflm(case, work, cmsis_nn_library):
    cmsis = build_case(case, work, "cmsis-nn")
    ours = build_case(case, work, "mcugen")
    graph = cmsis.compiled.graph
    # Every convolution, depthwise, pool, FC, (short) softmax, ADD and MUL went to CMSIS-NN.
    assert {layer.op.OP for layer in cmsis.compiled.layers if not layer.variant.library} \
        <= {"MEAN", "PAD", "RESHAPE", "LOOKUP", "TRANSPOSE"}
    if case in GENERATIONS:
        expected = {"arm_elementwise_add_s8"}
        if "v3" in case:  # squeeze-and-excitation: one call per pixel
            expected.add("arm_elementwise_mul_s8")
        assert expected <= library_functions(cmsis)
    c_source = (cmsis.out_dir / "model.c").read_text()
    assert '#include "arm_nnfunctions.h"' in c_source
    for function in library_functions(cmsis):
        assert f"{function}(" in c_source
    cmsis_model = build_shared(cmsis.out_dir, "model", graph.input.size, graph.output.size, work,
                               cflags=("-I", f"{CMSIS_NN_DIR}/Include"),
                               link=(str(cmsis_nn_library),))
    our_model = build_shared(ours.out_dir, "model", graph.input.size, graph.output.size, work)
    inputs = standard_inputs(graph.input.size, seed=len(case))
    from_cmsis = np.stack([cmsis_model(x) for x in inputs])
    from_ours = np.stack([our_model(x) for x in inputs])
    from_tflm = tflm_outputs(cmsis.tflite, inputs)
    np.testing.assert_array_equal(from_cmsis, from_tflm)
    np.testing.assert_array_equal(from_ours, from_tflm)
    assert len({row.tobytes() for row in from_tflm}) > 1


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", SMALL)
@pytest.mark.parametrize("target", ["host", "cortex-m7", "cortex-m55"])
def test_small_models_reach_every_cmsis_kernel_on_each_path(case, target, work):
    """The small models cover what the MobileNets do not (FC, avgpool, generic depthwise)."""
    fc_function = "arm_fully_connected_per_channel_s8" if case == "small_keras" \
        else "arm_fully_connected_s8"
    expected = {"arm_convolve_s8", "arm_convolve_1x1_s8_fast", "arm_depthwise_conv_s8",
                "arm_depthwise_conv_s8_opt", "arm_avgpool_s8", "arm_softmax_s8", fc_function}
    result = build_case(case, work, "cmsis-nn", target)
    assert library_functions(result) == expected
    fc = next(layer for layer in result.compiled.layers if layer.op.OP == "FULLY_CONNECTED")
    source = (result.out_dir / "model.c").read_text()
    if target == "cortex-m55":  # Helium: the kernel sums replace the bias, from flash
        assert fc.params.bias is None
        assert fc.params.kernel_sums.values.size == 10 + 4  # outputs + MVE padding
        assert f".buf = (void *){fc.params.kernel_sums.name}" in source
    else:
        assert fc.params.kernel_sums is None and fc.params.bias is not None


@pytest.mark.tensorflow
def test_scratch_lives_in_the_arena_only_during_its_layer(work):
    result = build_case("mobilenet_v1_a0.25_96x96x3", work, "cmsis-nn", "cortex-m7")
    assert library_functions(result) == {"arm_convolve_s8", "arm_convolve_1x1_s8_fast",
                                         "arm_depthwise_conv_3x3_s8", "arm_softmax_s8"}
    scratch = [b for b in result.compiled.buffers if b.id.startswith("<scratch")]
    layers, steps = result.compiled.layers, result.compiled.steps
    assert {steps[b.first].layer for b in scratch} == {l.index for l in layers if l.scratch_bytes}
    source = (result.out_dir / "model.c").read_text()
    for buffer in scratch:
        assert buffer.first == buffer.last
        layer = layers[steps[buffer.first].layer]
        assert buffer.size == layer.scratch_bytes
        offset = result.compiled.plan.offsets[buffer.id]
        assert offset % 16 == 0
        # The layer is called with the arena scratch, which becomes its context buffer.
        assert f"{layer.names.function}(" in source
        call = next(line for line in source.splitlines()
                    if line.strip().startswith(f"status = {layer.names.function}("))
        assert f"arena + {offset}" in call
    from mcugen.planner import find_overlap_violations

    assert find_overlap_violations(list(result.compiled.buffers), result.compiled.plan) == []


# ---------------------------------------------------------------------------------------------
# QEMU: the DSP (Cortex-M7) and Helium (Cortex-M55) paths of CMSIS-NN.

QEMU_BOARDS = {"cortex-m7": "mps2-an500", "cortex-m55": "mps3-an547"}


QEMU_CASES = ["mobilenet_v1_a0.25_96x96x3", *SMALL, *GENERATIONS]
_qemu_runs: dict[str, dict] = {}


def qemu_runs(target: str, work: Path) -> dict[str, tuple[BatchRun, np.ndarray]]:
    """Every QEMU case built for the target with CMSIS-NN and run in one firmware
    (firmware_batch.py: CMSIS-NN's sources compiled once per target, not once per model):
    per case, its run and TFLM's outputs on the same inputs. Once per target and file."""
    if target not in _qemu_runs:
        builds, inputs = {}, {}
        for case in QEMU_CASES:
            name = re.sub(r"\W", "_", case)  # the model's C name
            model = work / f"{case}.tflite"
            model.write_bytes(case_model(case))
            builds[name] = build(BuildOptions(model=model, target=target, name=name,
                                              kernels="cmsis-nn",
                                              out=work / f"batch_{case}_{target}"))
            size = builds[name].compiled.graph.input.size
            inputs[name] = standard_inputs(size, seed=11, random_count=2)
        runs = run_batch({name: b.compiled for name, b in builds.items()}, inputs,
                         QEMU_BOARDS[target], work / f"fw_{target}",
                         cmsis_nn_dir=Path(CMSIS_NN_DIR))
        _qemu_runs[target] = {
            case: (runs[name], tflm_outputs(builds[name].tflite, inputs[name]))
            for case, name in ((c, re.sub(r"\W", "_", c)) for c in QEMU_CASES)}
    return _qemu_runs[target]


@pytest.mark.tensorflow
@pytest.mark.qemu
@pytest.mark.parametrize("target", sorted(QEMU_BOARDS))
@pytest.mark.parametrize("case", QEMU_CASES)
def test_cmsis_nn_build_is_bit_exact_in_qemu(case, target, work):
    run, expected = qemu_runs(target, work)[case]
    np.testing.assert_array_equal(run.outputs, expected)


def test_cli_kernels_flag(tmp_path, capsys):
    from mcugen.cli import main

    assert main(["build", "--model", str(PERSON_DETECT), "--name", "pd", "--out",
                 str(tmp_path / "pd"), "--kernels", "cmsis-nn"]) == 0
    assert "arm_convolve_1x1_s8_fast(" in (tmp_path / "pd" / "pd.c").read_text()
    assert "CMSIS_NN_DIR" in (tmp_path / "pd" / "CMakeLists.txt").read_text()
    assert "CMSIS_NN_DIR" in (tmp_path / "pd" / "pd.mk").read_text()
    assert main(["build", "--model", str(PERSON_DETECT), "--out", str(tmp_path / "x"),
                 "--kernels", "arm"]) == 1
    assert "invalid choice: 'arm'" in capsys.readouterr().err
