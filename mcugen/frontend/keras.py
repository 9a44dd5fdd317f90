"""Build int8 MobileNet .tflite files from Keras' reference architectures.

Without trained weights a freshly initialised MobileNet is useless as a test model: its batch
norms hold mean 0 / variance 1, activations shrink layer after layer, and the quantizer ends up
with output scales near 1e-8 and constant outputs. So the network is made "alive" first: every
batch norm gets a seeded spread of gamma/beta and moving statistics measured on its real input
over the calibration images, in network order (each layer sees the already re-estimated layers
before it). Activations are then O(1) everywhere and quantization is meaningful.

Everything random is seeded, and Keras' global name counters are reset before building, so the
same arguments give byte-identical .tflite files. TensorFlow is imported lazily: it takes seconds.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np

from ..errors import McugenError

KERAS_APPLICATIONS = {
    "v1": "MobileNet",
    "v2": "MobileNetV2",
    "v3-small": "MobileNetV3Small",
    "v3-large": "MobileNetV3Large",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
MAX_ALPHA = 1.5
MIN_SIDE = 32  # Keras' MobileNets refuse smaller inputs
SYNTHETIC_IMAGE_COUNT = 32
GAMMA_RANGE = (0.5, 1.5)  # spread given to untrained batch norms
BETA_RANGE = (-0.5, 0.5)

Progress = Callable[[str], None]

# The model's input and output type (--io): int8 throughout; uint8 (a camera's bytes) or
# float32 in and out, the converter adding QUANTIZE first and DEQUANTIZE or QUANTIZE last.
IO_TYPES = ("int8", "uint8", "float")


def build_mobilenet_tflite(
    *,
    arch: str = "v1",
    alpha: float,
    height: int,
    width: int,
    channels: int,
    classes: int = 2,
    seed: int = 0,
    calibration: np.ndarray | None = None,
    weights: str | None = None,
    progress: Progress = lambda msg: None,
    verbose: bool = False,
    io_type: str = "int8",
) -> bytes:
    """Build a Keras MobileNet and convert it to an int8 .tflite; return the file's bytes.
    Its input and output are int8, or with ``io_type`` uint8 or float (see IO_TYPES).

    ``calibration`` is a float32 [N, H, W, C] batch in [-1, 1] used for batch-norm
    re-estimation and as the converter's representative dataset; by default seeded synthetic
    images. With ``weights`` (a Keras weights file) the batch norms are left as loaded.
    TensorFlow's own output (log lines, warnings) is hidden unless ``verbose``, and shown if a
    step fails.
    """
    _check_architecture(arch, alpha, height, width, channels, classes)
    if io_type not in IO_TYPES:
        raise McugenError(f"--io {io_type}: use one of {', '.join(IO_TYPES)}")
    if calibration is None:
        calibration = synthetic_calibration(
            height=height, width=width, channels=channels, seed=seed
        )
    _check_image_batch(calibration, height, width, channels, what="calibration images")
    calibration = calibration.astype(np.float32)

    quiet = not verbose
    progress(f"building MobileNet {arch} α={alpha:g} {height}×{width}×{channels}")
    with _tensorflow_output_hidden(quiet):
        tf = _import_tensorflow(quiet)
        import keras

        model = _build_model(keras, arch, alpha, height, width, channels, classes, seed)
    if weights is not None:
        progress(f"loading weights from {weights}")
        with _tensorflow_output_hidden(quiet):
            _load_weights(model, weights, arch, alpha, height, width, channels, classes)
    else:
        progress(f"calibrating batch norm on {len(calibration)} images")
        with _tensorflow_output_hidden(quiet):
            _spread_batch_norm_affine(keras, model, np.random.default_rng(seed))
            _reestimate_batch_norm_statistics(keras, model, calibration)
    progress("converting to int8")
    with _tensorflow_output_hidden(quiet):
        return _convert_to_int8(tf, model, calibration, io_type)


def load_calibration(path: str | Path, height: int, width: int, channels: int,
                     verbose: bool = False) -> np.ndarray:
    """Load calibration images as float32 [N, H, W, C] in [-1, 1].

    ``path`` is either a .npy array [N, h, w, C] (uint8 0..255, or float already in [-1, 1];
    resized to H×W if needed) or a folder of png/jpg/bmp/gif images (converted to ``channels``
    and resized to H×W).
    """
    path = Path(path)
    if not path.exists():
        raise McugenError(f"calibration path {path} does not exist")
    with _tensorflow_output_hidden(not verbose):
        tf = _import_tensorflow(not verbose)
        if path.is_dir():
            images = _load_image_folder(tf, path, channels)
        else:
            images = _load_npy(path, channels)
        return _resize(tf, images, height, width)


def synthetic_calibration(
    *, height: int, width: int, channels: int, seed: int = 0, count: int = SYNTHETIC_IMAGE_COUNT
) -> np.ndarray:
    """Seeded image-like inputs: smooth random fields, a step edge and a little pixel noise."""
    rng = np.random.default_rng(seed)
    return np.stack([_synthetic_image(rng, height, width, channels) for _ in range(count)])


# --- validation ------------------------------------------------------------------------------


def _check_architecture(
    arch: str, alpha: float, height: int, width: int, channels: int, classes: int
) -> None:
    if arch not in KERAS_APPLICATIONS:
        known = ", ".join(KERAS_APPLICATIONS)
        raise McugenError(f"unknown MobileNet arch {arch!r}; expected one of {known}")
    if not 0 < alpha <= MAX_ALPHA:
        raise McugenError(f"alpha must be in (0, {MAX_ALPHA}], got {alpha}")
    if height < MIN_SIDE or width < MIN_SIDE:
        raise McugenError(f"input must be at least {MIN_SIDE}×{MIN_SIDE}, got {height}×{width}")
    if channels not in (1, 3):
        raise McugenError(f"channels must be 1 or 3, got {channels}")
    if classes < 2:
        raise McugenError(
            f"classes must be at least 2 (a softmax over one class is constant), got {classes}"
        )


def _check_image_batch(
    images: np.ndarray, height: int, width: int, channels: int, *, what: str
) -> None:
    is_batch = isinstance(images, np.ndarray) and images.ndim == 4 and len(images) > 0
    if not is_batch or images.shape[1:] != (height, width, channels):
        shape = getattr(images, "shape", type(images).__name__)
        raise McugenError(
            f"{what} must have shape [N, {height}, {width}, {channels}] with N ≥ 1, got {shape}"
        )
    if not np.all(np.abs(images) <= 1.0):
        raise McugenError(f"{what} must be finite and lie in [-1, 1]")


# --- TensorFlow and the model ----------------------------------------------------------------


def _import_tensorflow(quiet: bool = True) -> ModuleType:
    """Import TensorFlow, with its info and warning chatter off when quiet. (Some of its C++
    log lines ignore these settings: callers also hide file descriptor 2, see
    _tensorflow_output_hidden.)"""
    if quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ side: hide INFO and WARNING
    import absl.logging
    import tensorflow as tf

    if quiet:
        absl.logging.set_verbosity(absl.logging.ERROR)
        tf.get_logger().setLevel(logging.ERROR)
    return tf


def _build_model(keras: ModuleType, arch: str, alpha: float, height: int, width: int,
                 channels: int, classes: int, seed: int):
    # Fresh name counters (tensor names end up in the .tflite) and a fresh seeded RNG state.
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    shape = (height, width, channels)
    options = dict(
        input_shape=shape,
        # Batch fixed to 1: a dynamic batch makes the converter add SHAPE/STRIDED_SLICE/PACK.
        input_tensor=keras.Input(shape, batch_size=1),
        alpha=alpha,
        include_top=True,
        weights=None,
        classes=classes,
    )
    if arch == "v1":
        options["dropout"] = 0.0
    elif arch.startswith("v3"):
        options.update(dropout_rate=0.0, include_preprocessing=False)
    constructor = getattr(keras.applications, KERAS_APPLICATIONS[arch])
    try:
        return constructor(**options)
    except ValueError as error:
        message = f"Keras cannot build MobileNet {arch} α={alpha:g}: {_gist(error)}"
        raise McugenError(message) from error


def _gist(error: Exception) -> str:
    """A Keras error on one line: its first two non-empty lines (the second may hold the cause)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines[:2]) or type(error).__name__


# Widths tried when a weights file does not fit, to say which one it was saved for.
COMMON_ALPHAS = (0.25, 0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


def _load_weights(model, weights: str, arch: str, alpha: float, height: int, width: int,
                  channels: int, classes: int) -> None:
    if not Path(weights).is_file():
        raise McugenError(f"weights file {weights} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one warning per unmatched layer; the error sums up
            model.load_weights(weights)
    except (ValueError, OSError, KeyError) as error:
        import keras

        try:
            saved = _weight_shapes(weights)
        except OSError:  # not an HDF5 file at all: Keras' own words are the best there are
            raise McugenError(f"weights {weights} do not fit this MobileNet: "
                              f"{_gist(error)}") from None
        what = f"MobileNet {arch} α={alpha:g} with {channels} channels and {classes} classes"
        raise McugenError(f"weights {weights} do not fit {what}: "
                          f"{_weights_mismatch(keras, model, saved, arch, alpha, channels)}"
                          ) from None


def _weight_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Every variable of a Keras .weights.h5 file: its path in the file -> its shape."""
    import h5py

    shapes: dict[str, tuple[int, ...]] = {}
    with h5py.File(path, "r") as file:
        file.visititems(lambda name, item: shapes.__setitem__(name, tuple(item.shape))
                        if isinstance(item, h5py.Dataset) else None)
    return shapes


def _model_weight_shapes(model) -> dict[str, tuple[int, ...]]:
    """The same map for a model, written as Keras writes it (so both use Keras' own paths)."""
    with tempfile.TemporaryDirectory(prefix="mcugen-weights-") as scratch:
        path = Path(scratch) / "model.weights.h5"
        model.save_weights(path)
        return _weight_shapes(path)


def _weights_mismatch(keras: ModuleType, model, saved: dict[str, tuple[int, ...]], arch: str,
                      alpha: float, channels: int) -> str:
    """Which layer differs first (in network order), and which width the weights were saved
    for: MobileNet weights do not depend on the resolution, only on alpha, the input channels
    and the number of classes."""
    expected = _model_weight_shapes(model)
    names = _layer_of_path(model, expected)
    differing = [path for path in expected if saved.get(path) != expected[path]]
    differing.sort(key=lambda path: names.get(path, (len(names), path)))
    if not differing:
        return "the file holds other layers than this architecture has"
    first = differing[0]
    layer = names[first][1] if first in names else first
    got = saved.get(first)
    detail = (f"layer {layer} holds a {_shape_text(got)} array where this model needs "
              f"{_shape_text(expected[first])}" if got is not None
              else f"the file has no {first}")
    kernels = [path for path in sorted(expected, key=lambda p: names.get(p, (0, p)))
               if len(expected[path]) == 4 and path in saved]
    file_channels = saved[kernels[0]][2] if kernels else channels
    last = max(expected, key=lambda p: names.get(p, (0, p)))
    file_classes = saved[last][-1] if last in saved and saved[last] else None
    for candidate in (a for a in COMMON_ALPHAS if a != alpha):
        if file_classes is None:
            break
        keras.backend.clear_session()
        trial = _build_model(keras, arch, candidate, MIN_SIDE, MIN_SIDE, file_channels,
                             file_classes, 0)
        if _model_weight_shapes(trial) == saved:
            return (f"{detail}; the weights are for α={candidate:g} with {file_channels} "
                    f"channels and {file_classes} classes (at any resolution): pass "
                    f"--alpha {candidate:g}" +
                    (f" --channels {file_channels}" if file_channels != channels else "") +
                    (f" --classes {file_classes}" if file_classes != model.output_shape[-1]
                     else ""))
    if file_classes is not None and _same_but_last(saved, expected, last):
        return (f"{detail}; the weights are for {file_classes} classes: pass "
                f"--classes {file_classes}")
    return (f"{detail}; they match none of the widths α={', '.join(map(str, COMMON_ALPHAS))} "
            f"of MobileNet {arch}: check --arch and --alpha")


def _same_but_last(saved: dict, expected: dict, last: str) -> bool:
    return all(saved.get(path) == shape for path, shape in expected.items()
               if path.rsplit("/vars/", 1)[0] != last.rsplit("/vars/", 1)[0])


def _layer_of_path(model, expected: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, str]]:
    """Keras names a layer's variables in the file after the layer's class and a per-class
    counter in network order ("layers/conv2d_3/vars/0"); map them back to (index, layer name).
    Paths that do not follow this scheme are simply left out."""
    from keras.src.utils.naming import to_snake_case

    counters: dict[str, int] = {}
    result: dict[str, tuple[int, str]] = {}
    for index, layer in enumerate(model.layers):
        kind = to_snake_case(type(layer).__name__)
        count = counters.get(kind, 0)
        counters[kind] = count + 1
        prefix = f"layers/{kind}" + (f"_{count}" if count else "") + "/vars/"
        for path in expected:
            if path.startswith(prefix):
                result[path] = (index, f"{layer.name} ({type(layer).__name__})")
    return result


def _shape_text(shape: tuple[int, ...] | None) -> str:
    return "a scalar" if not shape else "x".join(map(str, shape))


def _batch_norm_layers(keras: ModuleType, model) -> list:
    """The model's batch norms in network order (Keras lists a functional model's layers so)."""
    batch_norm = keras.layers.BatchNormalization
    return [layer for layer in model.layers if isinstance(layer, batch_norm)]


def _spread_batch_norm_affine(keras: ModuleType, model, rng: np.random.Generator) -> None:
    """Give every batch norm seeded gamma/beta: channels differ in gain and bias, as if trained."""
    for layer in _batch_norm_layers(keras, model):
        size = layer.gamma.shape[0]
        layer.gamma.assign(rng.uniform(*GAMMA_RANGE, size).astype(np.float32))
        layer.beta.assign(rng.uniform(*BETA_RANGE, size).astype(np.float32))


def _reestimate_batch_norm_statistics(keras: ModuleType, model, images: np.ndarray) -> None:
    """Set each batch norm's moving mean/variance to the statistics of its real input.

    One forward pass in training mode does this for all layers in network order: there each
    batch norm normalises with the batch statistics of its input, which are exactly the values
    the moving statistics get, so every later layer already sees the re-estimated earlier ones.
    Momentum 0 makes the moving statistics equal to the batch statistics.
    """
    layers = _batch_norm_layers(keras, model)
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    try:
        model([images], training=True)  # the model's inputs are a list of one
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum


def _convert_to_int8(tf: ModuleType, model, images: np.ndarray,
                     io_type: str = "int8") -> bytes:
    def representative_dataset() -> Iterator[list[np.ndarray]]:
        for image in images:
            yield [image[np.newaxis]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io_type != "float":  # float32 is the converter's default: QUANTIZE, DEQUANTIZE around
        converter.inference_input_type = getattr(tf, io_type)
        converter.inference_output_type = getattr(tf, io_type)
    return converter.convert()


@contextlib.contextmanager
def _tensorflow_output_hidden(quiet: bool = True) -> Iterator[None]:
    """Hide what TensorFlow prints while it works (unless not quiet): its import banner and
    oneDNN/absl log lines written straight to file descriptor 2, Python warnings, and the
    converter's SavedModel export summary on stdout. If TensorFlow itself fails, the native
    output is replayed on lines of its own, since then it explains the error; a McugenError
    (a user's mistake, explained in one line) replays nothing."""
    if not quiet:
        yield
        return
    with tempfile.TemporaryFile() as native_log, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        sys.stderr.flush()
        saved_stderr = os.dup(2)
        os.dup2(native_log.fileno(), 2)
        replay = True
        try:
            yield
            replay = False
        except McugenError:  # mcugen's own one-line explanation says it all
            replay = False
            raise
        finally:
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
            if replay:
                native_log.seek(0)
                text = native_log.read().decode(errors="replace")
                if text:
                    sys.stderr.write("\n" + text)


# --- calibration images ----------------------------------------------------------------------


def _synthetic_image(
    rng: np.random.Generator, height: int, width: int, channels: int
) -> np.ndarray:
    coarse = rng.normal(size=(rng.integers(2, 9), rng.integers(2, 9), channels))
    along_rows = _interpolation_matrix(height, coarse.shape[0])
    along_cols = _interpolation_matrix(width, coarse.shape[1])
    smooth = np.einsum("ij,jkc,lk->ilc", along_rows, coarse, along_cols)
    rows, cols = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    angle = rng.uniform(0, 2 * np.pi)
    side = np.cos(angle) * cols + np.sin(angle) * rows > rng.uniform(-0.5, 0.5)
    edge = side[..., np.newaxis] * rng.normal(scale=0.5, size=channels)
    noise = rng.normal(scale=0.05, size=(height, width, channels))
    return np.clip(0.5 * smooth + edge + noise, -1.0, 1.0).astype(np.float32)


def _interpolation_matrix(size_out: int, size_in: int) -> np.ndarray:
    """Linear interpolation from ``size_in`` samples to ``size_out`` as a [out, in] matrix."""
    position = np.linspace(0, size_in - 1, size_out)
    lower = np.minimum(np.floor(position).astype(int), size_in - 2)
    fraction = position - lower
    matrix = np.zeros((size_out, size_in))
    matrix[np.arange(size_out), lower] = 1 - fraction
    matrix[np.arange(size_out), lower + 1] = fraction
    return matrix


def _load_image_folder(tf: ModuleType, folder: Path, channels: int) -> list[np.ndarray]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        kinds = "/".join(IMAGE_SUFFIXES)
        raise McugenError(f"calibration folder {folder} holds no {kinds} images")
    return [_decode_image(tf, file, channels) for file in files]


def _decode_image(tf: ModuleType, file: Path, channels: int) -> np.ndarray:
    try:
        image = tf.io.decode_image(file.read_bytes(), expand_animations=False).numpy()
    except tf.errors.InvalidArgumentError as error:
        raise McugenError(f"cannot decode calibration image {file}") from error
    image = image[..., :3] if image.shape[-1] >= 3 else image[..., :1]  # drop any alpha channel
    if image.shape[-1] == 3 and channels == 1:
        image = tf.image.rgb_to_grayscale(image).numpy()
    elif image.shape[-1] == 1 and channels == 3:
        image = np.repeat(image, 3, axis=-1)
    return image.astype(np.float32) / 127.5 - 1.0


def _load_npy(file: Path, channels: int) -> list[np.ndarray]:
    try:
        array = np.load(file, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise McugenError(f"cannot read {file} as a .npy array") from error
    is_batch = isinstance(array, np.ndarray) and array.ndim == 4 and len(array) > 0
    if not is_batch or array.shape[-1] != channels:
        shape = getattr(array, "shape", type(array).__name__)
        raise McugenError(f"{file} must hold an array [N, H, W, {channels}], got {shape}")
    if array.dtype == np.uint8:
        return list(array.astype(np.float32) / 127.5 - 1.0)
    if not np.issubdtype(array.dtype, np.floating) or not np.all(np.abs(array) <= 1.0):
        raise McugenError(f"{file} must hold uint8 pixels or floats in [-1, 1] ({array.dtype})")
    return list(array.astype(np.float32))


def _resize(tf: ModuleType, images: list[np.ndarray], height: int, width: int) -> np.ndarray:
    size = (height, width)
    resized = [
        image if image.shape[:2] == size else tf.image.resize(image, size).numpy()
        for image in images
    ]
    return np.clip(np.stack(resized), -1.0, 1.0).astype(np.float32)
