"""The TFLite importer: TFLM's person-detection model, models freshly converted by TensorFlow's
own converter (checked against tf.lite.Interpreter's view of the same file), and bad input."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mcugen import ir
from mcugen.errors import McugenError
from mcugen.frontend.tflite import (SUPPORTED_OPS, _unique_names, load_tflite,
                                    read_model_file)

from conftest import PERSON_DETECT  # noqa: E402  (../shared beside the repository)


# ---------------------------------------------------------------------------------------------
# Models converted once per session by the real converter.


def _tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    return tf


def _convert(model, mode: str) -> bytes:
    """Convert a Keras model: "float32", "int8" (fully int8) or "int16x8"."""
    tf = _tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "float32":
        shapes = [tuple(tensor.shape) for tensor in model.inputs]
        rng = np.random.default_rng(0)

        def representative_dataset():
            for _ in range(8):
                yield [rng.uniform(-1, 1, shape).astype(np.float32) for shape in shapes]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        if mode == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int8
        else:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int16
    return converter.convert()


def _all_ops_model():
    """Every supported op, with the padding cases that matter: SAME stride 2 on an odd and an
    even side, VALID, explicit PAD, dilation, depth multiplier 2, RELU6 / RELU / none."""
    keras = _tensorflow().keras
    layers = keras.layers
    keras.utils.set_random_seed(1)
    x = inputs = keras.Input((15, 16, 3), batch_size=1)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(x)  # 8x8
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, activation="relu6")(x)  # valid: 6x6x16
    x = layers.ZeroPadding2D(((1, 0), (2, 1)))(x)  # 7x9
    x = layers.DepthwiseConv2D(3, strides=2, activation="relu")(x)  # valid: 3x4
    x = layers.Conv2D(12, 3, dilation_rate=2, padding="same")(x)  # 3x4
    x = layers.AveragePooling2D(2, strides=1, padding="same")(x)  # 3x4
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(5)(x)
    x = layers.Softmax()(x)
    return keras.Model(inputs, x)


def _unsupported_ops_model():
    keras = _tensorflow().keras
    layers = keras.layers
    keras.utils.set_random_seed(2)
    inputs = keras.Input((8, 8, 3), batch_size=1)
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    y = layers.MaxPooling2D(2)(x)
    z = layers.Concatenate()([y, layers.Conv2D(4, 1)(y)])
    return keras.Model(inputs, z)


def _two_input_model():
    keras = _tensorflow().keras
    layers = keras.layers
    keras.utils.set_random_seed(3)
    a = keras.Input((4, 4, 2), batch_size=1)
    b = keras.Input((4, 4, 2), batch_size=1)
    x = layers.Conv2D(2, 1)(a)
    return keras.Model([a, b], [x, layers.Conv2D(2, 1)(b)])


@pytest.fixture(scope="session")
def all_ops_tflite() -> bytes:
    return _convert(_all_ops_model(), "int8")


@pytest.fixture(scope="session")
def unsupported_models() -> dict[str, bytes]:
    model = _unsupported_ops_model()
    return {mode: _convert(model, mode) for mode in ("float32", "int16x8", "int8")}


@pytest.fixture(scope="session")
def person_detect() -> ir.Graph:
    return load_tflite(read_model_file(PERSON_DETECT), "person_detect")


# ---------------------------------------------------------------------------------------------
# person_detect: TFLM's model, written by the old TOCO converter.


def test_person_detect_ops(person_detect: ir.Graph) -> None:
    kinds = [op.OP for op in person_detect.ops]
    assert len(kinds) == 31
    assert Counter(kinds) == {"CONV_2D": 14, "DEPTHWISE_CONV_2D": 14, "AVERAGE_POOL_2D": 1,
                              "RESHAPE": 1, "SOFTMAX": 1}
    assert kinds[-3:] == ["CONV_2D", "RESHAPE", "SOFTMAX"]
    assert person_detect.name == "person_detect"


def test_person_detect_first_layer_is_depthwise_with_multiplier_8(
        person_detect: ir.Graph) -> None:
    first = person_detect.ops[0]
    assert isinstance(first, ir.DepthwiseConv2D)
    assert first.depth_multiplier == 8
    assert first.stride == (2, 2)
    assert first.activation is ir.Activation.RELU6
    # SAME, 96 -> 48 with a 3x3 kernel at stride 2: one pixel of padding, at the bottom/right.
    assert first.padding == ir.Padding(top=0, bottom=1, left=0, right=1)
    assert person_detect.tensor(first.filter).shape == (1, 3, 3, 8)
    assert person_detect.tensor(first.output).shape == (1, 48, 48, 8)


def test_person_detect_endpoints(person_detect: ir.Graph) -> None:
    source, result = person_detect.input, person_detect.output
    assert (source.shape, source.dtype) == ((1, 96, 96, 1), "int8")
    assert source.q.zero_point == (-1,)
    assert source.q.scale == (float(np.float32(1 / 127.5)),)
    assert (result.shape, result.dtype) == ((1, 2), "int8")
    assert result.q == ir.QParams(scale=(1 / 256,), zero_point=(-128,))


def test_person_detect_weights_and_quantization_axes(person_detect: ir.Graph) -> None:
    depthwise = [op for op in person_detect.ops if isinstance(op, ir.DepthwiseConv2D)]
    convs = [op for op in person_detect.ops if isinstance(op, ir.Conv2D)]
    for op, axis in [(op, 3) for op in depthwise] + [(op, 0) for op in convs]:
        weights = person_detect.tensor(op.filter)
        bias = person_detect.tensor(op.bias)
        channels = weights.shape[axis]
        assert weights.data.dtype == np.int8 and weights.data.shape == weights.shape
        assert weights.q.axis == axis and len(weights.q.scale) == channels
        assert not any(weights.q.zero_point)
        assert bias.data.dtype == np.int32 and bias.shape == (channels,)
        # TOCO stored axis 3 on these 1-D depthwise biases (why TF 2.21 refuses the file).
        assert bias.q.axis == 0
    classifier = person_detect.tensor(convs[-1].filter)
    assert classifier.shape == (2, 1, 1, 256)
    assert int(np.abs(classifier.data).max()) == 127  # symmetric per-channel int8 weights


# ---------------------------------------------------------------------------------------------
# A model fresh from TensorFlow's converter, against tf.lite.Interpreter's reading of it.


@pytest.mark.tensorflow
def test_all_ops_model_padding_and_attributes(all_ops_tflite: bytes) -> None:
    graph = load_tflite(all_ops_tflite, "all_ops")
    ops = graph.ops
    assert [op.OP for op in ops] == [
        "CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "DEPTHWISE_CONV_2D", "CONV_2D",
        "AVERAGE_POOL_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"]
    conv, depthwise, pad, depthwise_s2, dilated, pool, mean, dense, softmax = ops
    # SAME, stride 2, 3x3: height 15 -> 8 pads 2 (1 + 1); width 16 -> 8 pads 1, at the right.
    assert conv.padding == ir.Padding(1, 1, 0, 1)
    assert (conv.stride, conv.activation) == ((2, 2), ir.Activation.RELU6)
    assert depthwise.padding.is_zero and depthwise.depth_multiplier == 2
    assert depthwise.activation is ir.Activation.RELU6
    assert pad.padding == ir.Padding(1, 0, 2, 1)
    assert depthwise_s2.padding.is_zero and depthwise_s2.stride == (2, 2)
    assert depthwise_s2.activation is ir.Activation.RELU
    # SAME with dilation 2 on 3x4: the effective kernel is 5, so 4 pixels, 2 on each side.
    assert dilated.padding == ir.Padding(2, 2, 2, 2) and dilated.dilation == (2, 2)
    assert dilated.activation is ir.Activation.NONE
    # SAME 2x2 pool at stride 1: the one extra pixel goes after.
    assert pool.padding == ir.Padding(0, 1, 0, 1) and pool.filter_size == (2, 2)
    assert mean.keep_dims is False and graph.tensor(mean.output).shape == (1, 12)
    assert graph.tensor(dense.weights).shape == (5, 12)
    assert softmax.beta == 1.0


@pytest.mark.tensorflow
def test_all_ops_model_matches_tflite_interpreter(all_ops_tflite: bytes) -> None:
    tf = _tensorflow()
    interpreter = tf.lite.Interpreter(
        model_content=all_ops_tflite,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    reference = {d["name"]: d for d in interpreter.get_tensor_details()}
    graph = load_tflite(all_ops_tflite, "all_ops")
    assert graph.input.name == interpreter.get_input_details()[0]["name"]
    assert graph.output.name == interpreter.get_output_details()[0]["name"]
    for tensor in graph.tensors.values():
        expected = reference[tensor.name]
        quantization = expected["quantization_parameters"]
        assert tensor.shape == tuple(expected["shape"])
        assert np.dtype(tensor.dtype) == expected["dtype"]
        assert tensor.q.scale == tuple(quantization["scales"].tolist())
        assert tensor.q.zero_point == tuple(quantization["zero_points"].tolist())
        if tensor.q.per_channel:
            assert tensor.q.axis == quantization["quantized_dimension"]
        if tensor.is_constant:
            np.testing.assert_array_equal(tensor.data, interpreter.get_tensor(expected["index"]))
            assert tensor.data.dtype == np.dtype(tensor.dtype)
    weighted = [op for op in graph.ops if hasattr(op, "bias")]
    operands = {name for op in weighted for name in ir.op_inputs(op)[1:]}
    assert operands == {name for name, t in graph.tensors.items() if t.is_constant}
    # The converter drops the Dense layer's all-zero bias: an absent optional input (-1).
    assert [op.bias is None for op in weighted] == [False] * 4 + [True]
    conv_filter = graph.tensor(weighted[0].filter)
    depthwise_filter = graph.tensor(weighted[1].filter)
    assert conv_filter.q.per_channel and conv_filter.q.axis == 0
    assert depthwise_filter.q.per_channel and depthwise_filter.q.axis == 3


# ---------------------------------------------------------------------------------------------
# Models mcugen must refuse, each with a message that says why.


@pytest.mark.tensorflow
def test_float_model_is_refused(unsupported_models: dict[str, bytes]) -> None:
    with pytest.raises(McugenError, match=r"^model input is float32 and is read by \w+, not "
                                          r"QUANTIZE: mcugen compiles int8 models"):
        load_tflite(unsupported_models["float32"], "float")


@pytest.mark.tensorflow
def test_int16_model_is_refused(unsupported_models: dict[str, bytes]) -> None:
    with pytest.raises(McugenError, match=r"model input is int16; mcugen needs int8, uint8 or "
                                          r"float32"):
        load_tflite(unsupported_models["int16x8"], "int16")


@pytest.mark.tensorflow
def test_unsupported_ops_are_all_named(unsupported_models: dict[str, bytes]) -> None:
    with pytest.raises(McugenError) as caught:
        load_tflite(unsupported_models["int8"], "unsupported")
    message = str(caught.value)
    assert message.startswith("unsupported ops: MAX_POOL_2D, CONCATENATION;")
    assert all(op in message for op in SUPPORTED_OPS)
    assert "\n" not in message


@pytest.mark.tensorflow
def test_two_inputs_are_refused() -> None:
    with pytest.raises(McugenError, match="the model has 2 inputs; mcugen needs exactly one"):
        load_tflite(_convert(_two_input_model(), "int8"), "two_inputs")


def test_empty_model() -> None:
    with pytest.raises(McugenError, match="not a TFLite model: the file is empty"):
        load_tflite(b"", "empty")


def test_truncated_model() -> None:
    data = read_model_file(PERSON_DETECT)
    with pytest.raises(McugenError, match=r"not a TFLite model \(or a truncated"):
        load_tflite(data[:1000], "truncated")


def test_every_truncation_fails_cleanly() -> None:
    data = read_model_file(PERSON_DETECT)
    for length in range(0, len(data) - 4, 4999):
        with pytest.raises(McugenError):
            load_tflite(data[:length], "truncated")


def test_random_bytes() -> None:
    data = np.random.default_rng(0).bytes(4096)
    with pytest.raises(McugenError, match=r"not a TFLite model .*file identifier"):
        load_tflite(data, "random")


def test_random_bytes_behind_a_valid_identifier_never_crash() -> None:
    """Every offset is checked: garbage gives McugenError, never an IndexError or a hang."""
    rng = np.random.default_rng(1)
    for _ in range(300):
        data = bytearray(rng.bytes(int(rng.integers(8, 2048))))
        data[0:4] = int(rng.integers(8, 64)).to_bytes(4, "little")  # a plausible root offset
        data[4:8] = b"TFL3"
        with pytest.raises(McugenError):
            load_tflite(bytes(data), "garbage")


def test_corrupted_person_detect_never_crashes() -> None:
    """Flip bytes in the real model's tables (its front, before the weight buffers)."""
    original = read_model_file(PERSON_DETECT)
    rng = np.random.default_rng(2)
    for _ in range(100):
        data = bytearray(original)
        for position in rng.integers(0, 4096, size=4):
            data[position] = int(rng.integers(0, 256))
        try:
            load_tflite(bytes(data), "corrupted")
        except McugenError:
            pass


@pytest.mark.parametrize("make_path, message", [
    (lambda tmp: tmp, "is a directory"),
    (lambda tmp: tmp / "missing.tflite", "no such file"),
])
def test_unreadable_paths(tmp_path: Path, make_path: Callable[[Path], Path],
                          message: str) -> None:
    with pytest.raises(McugenError, match=message):
        read_model_file(make_path(tmp_path))


def test_tensor_names_are_made_unique() -> None:
    assert _unique_names(["a", "a", "a_1", None, "", "b", "a"]) == [
        "a", "a_2", "a_1", "tensor_3", "tensor_4", "b", "a_3"]
