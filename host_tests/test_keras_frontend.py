"""The Keras front end: MobileNets built, made alive, converted to int8 and run under TFLM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import mobilenet_tflite
from mcugen.errors import McugenError
from mcugen.frontend.keras import build_mobilenet_tflite, load_calibration, synthetic_calibration

# The V1 most tests convert (conftest.mobilenet_tflite: one conversion per run).
V1_ARGS = dict(arch="v1", seed=1, alpha=0.25, height=96, width=96, channels=3, classes=2)
TINY_ARGS = dict(alpha=0.25, height=32, width=32, channels=1)
RANDOM_INPUTS = 6


@pytest.fixture(scope="session")
def v1_build() -> tuple[bytes]:
    return (mobilenet_tflite(**V1_ARGS),)


@pytest.fixture(scope="session")
def tiny_builds() -> tuple[bytes, bytes, bytes, list[str]]:
    """The same tiny model twice, then with another seed; the progress the first reported."""
    messages: list[str] = []
    first = build_mobilenet_tflite(**TINY_ARGS, seed=7, progress=messages.append)
    second = build_mobilenet_tflite(**TINY_ARGS, seed=7)
    other_seed = build_mobilenet_tflite(**TINY_ARGS, seed=8)
    return first, second, other_seed, messages


def tflm_interpreter(model: bytes):
    from tflite_micro import runtime

    return runtime.Interpreter.from_bytes(model)


@pytest.mark.tensorflow
def test_v1_has_int8_input_and_output(v1_build):
    interpreter = tflm_interpreter(v1_build[0])
    input_details = interpreter.get_input_details(0)
    output_details = interpreter.get_output_details(0)
    assert input_details["dtype"] == np.int8
    assert output_details["dtype"] == np.int8
    assert list(input_details["shape"]) == [1, 96, 96, 3]
    assert list(output_details["shape"]) == [1, 2]


@pytest.mark.tensorflow
def test_v1_outputs_depend_on_the_input_under_tflm(v1_build):
    interpreter = tflm_interpreter(v1_build[0])
    rng = np.random.default_rng(1)
    outputs = []
    for _ in range(RANDOM_INPUTS):
        interpreter.set_input(rng.integers(-128, 128, size=(1, 96, 96, 3), dtype=np.int8), 0)
        interpreter.invoke()
        outputs.append(tuple(interpreter.get_output(0).ravel()))
    assert len(set(outputs)) > RANDOM_INPUTS // 2
    assert interpreter.get_output_details(0)["quantization_parameters"]["scales"][0] > 1e-4


@pytest.mark.tensorflow
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
def test_v1_every_int8_tensor_has_a_reasonable_scale(v1_build):
    """Without batch-norm re-estimation the deep activations quantize to scales near 1e-8."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=v1_build[0])
    int8_scales = [
        scale
        for tensor in interpreter.get_tensor_details()
        if tensor["dtype"] == np.int8
        for scale in tensor["quantization_parameters"]["scales"]
    ]
    assert len(int8_scales) > 50
    assert min(int8_scales) > 1e-4


@pytest.mark.tensorflow
def test_the_build_reports_progress(tiny_builds):
    assert tiny_builds[3] == [
        "building MobileNet v1 α=0.25 32×32×1",
        "calibrating batch norm on 32 images",
        "converting to int8",
    ]


@pytest.mark.tensorflow
def test_same_arguments_give_identical_bytes(tiny_builds):
    first, second, other_seed, _ = tiny_builds
    assert first == second
    assert first != other_seed


@pytest.mark.tensorflow
@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(arch="v4"), "unknown MobileNet arch"),
        (dict(alpha=0.0), "alpha"),
        (dict(alpha=1.6), "alpha"),
        (dict(height=31), "at least 32"),
        (dict(width=16), "at least 32"),
        (dict(channels=2), "channels"),
        (dict(classes=1), "classes"),
        (dict(calibration=np.zeros((4, 32, 32, 3), np.float32)), "calibration images"),
        (dict(calibration=np.full((4, 32, 32, 1), 2.0, np.float32)), r"\[-1, 1\]"),
        (dict(alpha=0.01), "Keras cannot build"),  # V1 would get 0 filters
    ],
)
def test_invalid_arguments_raise(overrides, message):
    with pytest.raises(McugenError, match=message):
        build_mobilenet_tflite(**{**TINY_ARGS, **overrides})


@pytest.mark.tensorflow
def test_missing_weights_file_raises(tmp_path):
    with pytest.raises(McugenError, match="does not exist"):
        build_mobilenet_tflite(**TINY_ARGS, weights=str(tmp_path / "none.weights.h5"))


@pytest.mark.tensorflow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras' h5 writer vs NumPy 2
def test_weights_of_another_architecture_raise(tmp_path):
    import keras

    wider = keras.applications.MobileNet(
        input_shape=(32, 32, 1), alpha=0.5, weights=None, classes=2
    )
    weights = tmp_path / "wider.weights.h5"
    wider.save_weights(weights)
    with pytest.raises(McugenError, match="do not fit"):
        build_mobilenet_tflite(**TINY_ARGS, weights=str(weights))


def test_synthetic_calibration_is_seeded_and_image_like():
    size = dict(height=40, width=48, channels=3)
    images = synthetic_calibration(**size, seed=3)
    assert images.shape == (32, 40, 48, 3) and images.dtype == np.float32
    assert np.array_equal(images, synthetic_calibration(**size, seed=3))
    assert not np.array_equal(images, synthetic_calibration(**size, seed=4))
    assert images.min() >= -1 and images.max() <= 1
    neighbour_step = np.abs(np.diff(images, axis=2)).mean()
    assert neighbour_step < 0.5 * images.std()  # smooth, not white noise


@pytest.mark.tensorflow
def test_load_calibration_from_npy(tmp_path):
    floats = np.random.default_rng(0).uniform(-1, 1, size=(3, 32, 40, 1)).astype(np.float32)
    np.save(tmp_path / "floats.npy", floats)
    assert np.array_equal(load_calibration(tmp_path / "floats.npy", 32, 40, 1), floats)

    pixels = np.array([0, 255], np.uint8).reshape(2, 1, 1, 1) * np.ones((2, 8, 8, 3), np.uint8)
    np.save(tmp_path / "pixels.npy", pixels)
    loaded = load_calibration(tmp_path / "pixels.npy", 32, 32, 3)
    assert loaded.shape == (2, 32, 32, 3)
    assert np.allclose(loaded[0], -1) and np.allclose(loaded[1], 1)


@pytest.mark.tensorflow
@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((32, 32, 3), np.float32), "must hold an array"),
        (np.zeros((2, 32, 32, 1), np.float32), "must hold an array"),
        (np.full((2, 32, 32, 3), 3.0, np.float32), r"\[-1, 1\]"),
    ],
)
def test_load_calibration_rejects_bad_arrays(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(McugenError, match=message):
        load_calibration(tmp_path / "bad.npy", 32, 32, 3)


def write_png(path: Path, pixels: np.ndarray) -> None:
    import tensorflow as tf

    path.write_bytes(tf.io.encode_png(pixels).numpy())


@pytest.mark.tensorflow
def test_load_calibration_from_a_folder_of_pngs(tmp_path):
    red = np.zeros((50, 70, 3), np.uint8)
    red[..., 0] = 255
    write_png(tmp_path / "a_red.png", red)
    write_png(tmp_path / "b_grey.png", np.full((20, 20, 1), 255, np.uint8))
    write_png(tmp_path / "c_rgba.png", np.full((40, 40, 4), 0, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")

    colour = load_calibration(tmp_path, 32, 36, 3)
    assert colour.shape == (3, 32, 36, 3) and colour.dtype == np.float32
    assert np.allclose(colour[0], [1, -1, -1])
    assert np.allclose(colour[1], 1) and np.allclose(colour[2], -1)

    grey = load_calibration(tmp_path, 32, 32, 1)
    assert grey.shape == (3, 32, 32, 1)
    assert np.allclose(grey[0], 0.299 * 255 / 127.5 - 1, atol=0.01)  # red's luma
    assert np.allclose(grey[1], 1)


@pytest.mark.tensorflow
def test_load_calibration_rejects_bad_paths(tmp_path):
    with pytest.raises(McugenError, match="does not exist"):
        load_calibration(tmp_path / "missing", 32, 32, 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(McugenError, match="no .*images"):
        load_calibration(empty, 32, 32, 3)
    (empty / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(McugenError, match="cannot decode"):
        load_calibration(empty, 32, 32, 3)
