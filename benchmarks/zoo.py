"""The benchmark's model zoo: real int8 .tflite files, built once and cached.

MobileNets come from mcugen's Keras front end; the other shapes (a DS-CNN keyword-spotting
net, a model of fully connected layers only) are small Keras models quantized by TensorFlow's
converter here, with seeded weights and calibration data. person_detect is TFLM's model from
../shared. Each file is cached under ~/.cache/mcugen/zoo, keyed by its recipe, this file's
source and TensorFlow's version.

vww_96_int8 is MLPerf Tiny's visual-wake-words model (a pruned MobileNet V1 alpha 0.25, 96x96x3:
971 of its 2,736 filters are all zero), which is not in this repository and is never
downloaded here: the zoo takes it from $MCUGEN_VWW_MODEL or ~/.cache/mcugen/zoo (checked by its
MD5, the one MLPerf Tiny publishes), and leaves it out of the listing, with one line on how to
get it, when it is absent.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PERSON_DETECT = REPO.parent / "shared" / "models" / "person_detect.tflite"

VWW_NAME = "vww_96_int8"
VWW_ENV = "MCUGEN_VWW_MODEL"
VWW_MD5 = "f0b011416abee0343a5d130cb1f4c18f"  # trained_models/vww_96_int8.md5 in mlcommons/tiny
VWW_SOURCE = ("https://github.com/mlcommons/tiny/raw/master/benchmark/training/"
              "visual_wake_words/trained_models/vww_96_int8.tflite")


def _mobilenet(**params) -> Callable[[], bytes]:
    def build() -> bytes:
        from mcugen.frontend.keras import build_mobilenet_tflite

        return build_mobilenet_tflite(seed=1, **params)
    return build


def _quantized(model, inputs: np.ndarray) -> bytes:
    """TensorFlow's full-integer quantization of a Keras model, calibrated on inputs."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[np.newaxis]] for x in inputs)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def ds_cnn() -> bytes:
    """A DS-CNN keyword spotter (MLPerf Tiny's shape): 49x10 MFCC input, a 10x4 stride-2
    convolution to 64 channels, four depthwise-separable blocks at 25x5, average pool, 12
    classes."""
    import tensorflow as tf

    keras = tf.keras
    keras.utils.set_random_seed(7)
    x = inputs = keras.Input((49, 10, 1), batch_size=1)
    x = keras.layers.Conv2D(64, (10, 4), strides=2, padding="same", activation="relu")(x)
    for _ in range(4):
        x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(64, 1, activation="relu")(x)
    x = keras.layers.AveragePooling2D((25, 5))(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Softmax()(keras.layers.Dense(12)(x))
    data = np.random.default_rng(7).normal(size=(32, 49, 10, 1)).astype(np.float32)
    return _quantized(keras.Model(inputs, outputs), data)


def fully_connected_only() -> bytes:
    """Fully connected layers only (an MLP on 250 features, odd widths included)."""
    import tensorflow as tf

    keras = tf.keras
    keras.utils.set_random_seed(8)
    x = inputs = keras.Input((250,), batch_size=1)
    for width in (256, 144, 99, 64):
        x = keras.layers.Dense(width, activation="relu")(x)
    outputs = keras.layers.Softmax()(keras.layers.Dense(10)(x))
    data = np.random.default_rng(8).normal(size=(64, 250)).astype(np.float32)
    return _quantized(keras.Model(inputs, outputs), data)


def cache_dir() -> Path:
    home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(home) / "mcugen" / "zoo"


def vww_path() -> Path:
    """Where the zoo looks for MLPerf Tiny's VWW model."""
    named = os.environ.get(VWW_ENV)
    return Path(named) if named else cache_dir() / f"{VWW_NAME}.tflite"


def vww_howto() -> str:
    return (f"{VWW_NAME}: not in the zoo until you put MLPerf Tiny's model at {vww_path()} "
            f"(or point ${VWW_ENV} at it): curl -L -o {vww_path()} {VWW_SOURCE}")


def vww_file() -> Path | None:
    """The VWW model if it is there; a file that is not MLPerf Tiny's stops the benchmark."""
    path = vww_path()
    if not path.is_file():
        return None
    if hashlib.md5(path.read_bytes()).hexdigest() != VWW_MD5:
        raise SystemExit(f"{path} is not MLPerf Tiny's {VWW_NAME}.tflite (its MD5 is not "
                         f"{VWW_MD5}, the one mlcommons/tiny publishes)")
    return path


MODELS: dict[str, Callable[[], bytes]] = {
    "v1_a0.25_96x96x3": _mobilenet(arch="v1", alpha=0.25, height=96, width=96, channels=3,
                                   classes=2),
    "v1_a0.35_80x80x1": _mobilenet(arch="v1", alpha=0.35, height=80, width=80, channels=1,
                                   classes=4),
    "v2_a0.35_96x96x3": _mobilenet(arch="v2", alpha=0.35, height=96, width=96, channels=3,
                                   classes=2),
    "v3-small_a0.35_96x96x3": _mobilenet(arch="v3-small", alpha=0.35, height=96, width=96,
                                         channels=3, classes=2),
    "v3-large_a0.35_96x96x3": _mobilenet(arch="v3-large", alpha=0.35, height=96, width=96,
                                         channels=3, classes=2),
    "person_detect": lambda: PERSON_DETECT.read_bytes(),
    "ds_cnn_49x10x1": ds_cnn,
    "fc_only_250": fully_connected_only,
}
# Models the zoo cannot make, by name: the file, or None when absent.
EXTERNAL: dict[str, Callable[[], Path | None]] = {VWW_NAME: vww_file}
# An external model is listed only when its file is there; otherwise MISSING says how to get it.
MISSING: dict[str, str] = {}
if vww_path().is_file():
    MODELS[VWW_NAME] = lambda: vww_file().read_bytes()
else:
    MISSING[VWW_NAME] = vww_howto()


def model_file(name: str) -> Path:
    """The model's .tflite, built on first use."""
    if name in MISSING:
        raise SystemExit(MISSING[name])
    if name not in MODELS:
        raise SystemExit(f"unknown model {name!r}; the zoo has {', '.join(MODELS)}")
    if name == "person_detect":
        return PERSON_DETECT
    if name in EXTERNAL:
        return EXTERNAL[name]()
    import tensorflow as tf

    key = hashlib.sha256(name.encode() + Path(__file__).read_bytes()
                         + (REPO / "mcugen" / "frontend" / "keras.py").read_bytes()
                         + tf.__version__.encode()).hexdigest()[:16]
    path = cache_dir() / f"{name}-{key}.tflite"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(MODELS[name]())
        partial.replace(path)
    return path
