"""The NumPy reference interpreter against TFLM, bit for bit, on every tensor.

Models come from TensorFlow's real converter (fully int8, converted once per session) and from
TFLM's own person-detection model. TFLM runs with kPreserveAllTensors so that every
intermediate tensor, not just the output, is compared with np.array_equal.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from mcugen import ir
from mcugen.errors import McugenError
from mcugen.frontend.flatbuffer import root_table
from mcugen.frontend.tflite import FILE_IDENTIFIER, _Importer, load_tflite, read_model_file
from mcugen.passes.quantize import quantize_constants
from mcugen.reference import run_reference

from conftest import PERSON_DETECT  # noqa: E402  (../shared beside the repository)
INPUT_KINDS = ("random", "all_min", "all_max", "zeros")


# ---------------------------------------------------------------------------------------------
# Test models: a few Keras stacks whose layers cover every op and the cases that matter.


@dataclass(frozen=True)
class Case:
    name: str
    input_shape: tuple[int, ...]
    build: Callable  # (keras.layers) -> list of layers applied in sequence
    expected_ops: tuple[str, ...]  # the TFLite ops the converter must emit, in order
    per_tensor_dense: bool = False  # FULLY_CONNECTED with one weight scale (older converters)


CASES = (
    Case("conv", (16, 13, 3), lambda L: [
        L.Conv2D(8, 3, strides=2, padding="same", activation="relu6"),  # pads (0,1) and (1,1)
        L.Conv2D(6, 3, padding="valid", activation="relu"),
        L.Conv2D(5, 1),  # 1x1, no activation
        L.Conv2D(4, 3, dilation_rate=2, padding="same"),
    ], ("CONV_2D", "CONV_2D", "CONV_2D", "CONV_2D")),
    Case("depthwise", (18, 17, 3), lambda L: [
        L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=8, activation="relu6"),
        L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu"),
        L.ZeroPadding2D(((1, 0), (0, 1))),  # an explicit PAD, as MobileNet has
        L.DepthwiseConv2D(3, strides=2, padding="valid"),
    ], ("DEPTHWISE_CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "DEPTHWISE_CONV_2D")),
    Case("pool_head", (9, 11, 4), lambda L: [
        L.AveragePooling2D(3, strides=2, padding="same"),  # windows cut by the border
        L.Conv2D(12, 1, activation="relu"),
        L.AveragePooling2D(2),
        L.GlobalAveragePooling2D(keepdims=True),
        L.Dense(12),  # per-channel weights (the converter's default)
        L.Reshape((3, 4)),
        L.Softmax(),  # three rows of four
    ], ("AVERAGE_POOL_2D", "CONV_2D", "AVERAGE_POOL_2D", "MEAN", "FULLY_CONNECTED",
        "RESHAPE", "SOFTMAX")),
    Case("mean_dense", (7, 5, 6), lambda L: [
        L.GlobalAveragePooling2D(),  # keepdims False
        L.Dense(16, activation="relu"),
        L.Dense(3),
    ], ("MEAN", "FULLY_CONNECTED", "FULLY_CONNECTED"), per_tensor_dense=True),
    Case("softmax_wide", (16,), lambda L: [
        # large logits: the input scale is big enough for diff_min to cut values off
        L.Dense(64, kernel_initializer={"class_name": "RandomNormal",
                                        "config": {"stddev": 8.0, "seed": 1}}),
        L.Softmax(),
    ], ("FULLY_CONNECTED", "SOFTMAX")),
)


def _tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    return tf


def _convert_int8(case: Case) -> bytes:
    tf = _tensorflow()
    keras = tf.keras
    keras.utils.set_random_seed(7)
    inputs = keras.Input(case.input_shape, batch_size=1)
    x = inputs
    for layer in case.build(keras.layers):
        x = layer(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(0)

    def representative_dataset():
        for _ in range(16):
            yield [rng.uniform(-1, 1, (1, *case.input_shape)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    if case.per_tensor_dense:
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    return converter.convert()


@pytest.fixture(scope="session")
def converted() -> dict[str, bytes]:
    return {case.name: _convert_int8(case) for case in CASES}


# ---------------------------------------------------------------------------------------------
# The oracle and the comparison


def _tflite_tensor_names(data: bytes) -> list[str]:
    """IR tensor name of each TFLite tensor index (the importer's unique naming)."""
    return _Importer(root_table(data, FILE_IDENTIFIER), "names").names


def _tflm_all_tensors(data: bytes, x: np.ndarray) -> list[np.ndarray]:
    """Every tensor of the model after one TFLM inference, by TFLite tensor index."""
    from tflite_micro import runtime
    interpreter = runtime.Interpreter.from_bytes(
        data, intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    interpreter.set_input(x, 0)
    interpreter.invoke()
    count = len(_tflite_tensor_names(data))
    return [interpreter.GetTensor(index, 0)["tensor_data"] for index in range(count)]


def _make_input(kind: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    if kind == "random":
        return np.random.default_rng(seed).integers(-128, 128, shape, dtype=np.int8)
    value = {"all_min": -128, "all_max": 127, "zeros": 0}[kind]
    return np.full(shape, value, dtype=np.int8)


def _assert_every_tensor_equal(data: bytes, graph: ir.Graph, x: np.ndarray) -> None:
    """Compare the output and each op's output tensor with TFLM's; name the first that
    differs."""
    expected = _tflm_all_tensors(data, x)
    index_of = {name: index for index, name in enumerate(_tflite_tensor_names(data))}
    ours = run_reference(graph, x, keep_all=True)
    for op_index, op in enumerate(graph.ops):
        want = np.asarray(expected[index_of[op.output]])
        got = ours[op.output]
        assert got.shape == want.shape and got.dtype == want.dtype, (op.OP, op.output)
        if not np.array_equal(got, want):
            diff = np.abs(got.astype(int) - want.astype(int))
            pytest.fail(f"op {op_index} {op.OP} output {op.output!r}: {np.count_nonzero(diff)} "
                        f"of {diff.size} values differ, by up to {diff.max()}")
    np.testing.assert_array_equal(run_reference(graph, x), expected[index_of[graph.output.name]])


# ---------------------------------------------------------------------------------------------
# Tests


@pytest.mark.tensorflow
@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_single_ops_match_tflm(converted: dict[str, bytes], case: Case, kind: str) -> None:
    data = converted[case.name]
    graph = quantize_constants(load_tflite(data, case.name))
    assert tuple(op.OP for op in graph.ops) == case.expected_ops
    _assert_every_tensor_equal(data, graph, _make_input(kind, graph.input.shape, seed=3))


@pytest.mark.tensorflow
def test_cases_cover_both_mean_and_both_fully_connected_forms(converted) -> None:
    """MEAN with and without keep_dims; FULLY_CONNECTED per-channel and per-tensor."""
    graphs = [load_tflite(converted[name], name) for name in ("pool_head", "mean_dense")]
    ops = [(graph, op) for graph in graphs for op in graph.ops]
    assert [op.keep_dims for _, op in ops if isinstance(op, ir.Mean)] == [True, False]
    assert [graph.tensor(op.weights).q.per_channel for graph, op in ops
            if isinstance(op, ir.FullyConnected)] == [True, False, False]


@pytest.fixture(scope="session")
def person_detect() -> tuple[bytes, ir.Graph]:
    data = read_model_file(PERSON_DETECT)
    return data, quantize_constants(load_tflite(data, "person_detect"))


@pytest.mark.parametrize("kind, seed", [("random", 1), ("random", 2), ("random", 3),
                                        ("all_min", 0), ("all_max", 0), ("zeros", 0)])
def test_person_detect_every_tensor_matches_tflm(person_detect, kind: str, seed: int) -> None:
    data, graph = person_detect
    assert len(graph.ops) == 31
    _assert_every_tensor_equal(data, graph, _make_input(kind, graph.input.shape, seed))


# ---------------------------------------------------------------------------------------------
# What quantize_constants refuses, on hand-built graphs


def _q(scale: float, zero_point: int) -> ir.QParams:
    return ir.QParams((scale,), (zero_point,))


def _single_op_graph(op: ir.Op, x_q: ir.QParams, y_q: ir.QParams, in_shape, out_shape):
    tensors = {"x": ir.Tensor("x", in_shape, "int8", x_q),
               "y": ir.Tensor("y", out_shape, "int8", y_q)}
    return ir.Graph("g", tensors, (op,), ("x",), ("y",))


def test_average_pool_with_different_qparams_is_refused() -> None:
    op = ir.AveragePool2D("x", "y", (2, 2), (2, 2), ir.Padding(), ir.Activation.NONE)
    graph = _single_op_graph(op, _q(0.1, 0), _q(0.2, 0), (1, 4, 4, 2), (1, 2, 2, 2))
    with pytest.raises(McugenError, match="AVERAGE_POOL_2D needs equal"):
        quantize_constants(graph)


@pytest.mark.parametrize("y_q", [_q(1 / 256, 0), _q(1 / 128, -128)])
def test_softmax_output_must_be_one_over_256_zp_minus_128(y_q: ir.QParams) -> None:
    op = ir.Softmax("x", "y", 1.0)
    graph = _single_op_graph(op, _q(0.1, 0), y_q, (1, 10), (1, 10))
    with pytest.raises(McugenError, match="1/256"):
        quantize_constants(graph)


def test_reference_needs_quantized_graph() -> None:
    op = ir.Softmax("x", "y", 1.0)
    graph = _single_op_graph(op, _q(0.1, 0), _q(1 / 256, -128), (1, 10), (1, 10))
    x = np.zeros((1, 10), np.int8)
    with pytest.raises(McugenError, match="quantize_constants"):
        run_reference(graph, x)
    out = run_reference(quantize_constants(graph), x)
    np.testing.assert_array_equal(out, np.full((1, 10), -128 + 26, np.int8))  # 1/10 ~ 26/256
