"""`mcugen run --image`: a picture in, the model's input out; the model's output back to the
classes a person reads (labels, real scores, the top five).

Preprocessing, one convention for every model (README, `mcugen run --help`):
- decode with Pillow (BMP, PNG, JPEG, ...), convert to RGB, or to grayscale ("L", ITU-R 601
  luma) for a one-channel model, and resize to the model's H x W with Pillow's bilinear filter
  (which antialiases when it shrinks: a resize in another library can give other pixels, so
  mcugen and the oracle are always compared on the same input bytes);
- pixels p in 0..255 become the model's input type as camera pipelines feed them: a uint8 input
  gets p, an int8 input p - 128 (as TFLM's person-detection example does), a float32 input
  p / 127.5 - 1 (Keras' MobileNet preprocess_input);
- `--input-range LO,HI` instead maps 0..255 linearly onto the real values LO..HI, quantized
  with the input's scale and zero point (TFLite's rounding: half away from zero, saturating).

The conversion is driven by the input tensor's type ("int8", "uint8", "float32") and
quantization alone, so it follows any model mcugen accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import McugenError

INTEGER_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}
# The pixel bytes an integer input gets without --input-range: p + offset.
PIXEL_OFFSETS = {"int8": -128, "uint8": 0}
RESIZE_FILTER = "bilinear"  # Pillow's Image.Resampling.BILINEAR


@dataclass(frozen=True)
class InputTensor:
    """What the conversion needs to know of the model's input."""

    shape: tuple[int, ...]  # NHWC
    dtype: str  # "int8", "uint8" or "float32"
    scale: float | None = None  # None for a float input
    zero_point: int | None = None

    @property
    def height(self) -> int:
        return self.shape[1]

    @property
    def width(self) -> int:
        return self.shape[2]

    @property
    def channels(self) -> int:
        return self.shape[3]


@dataclass(frozen=True)
class Picture:
    path: Path
    original_size: tuple[int, int]  # width, height as decoded
    pixels: np.ndarray  # [H, W, C] uint8, resized to the model's input


@dataclass(frozen=True)
class ModelInput:
    values: np.ndarray  # [size], the input tensor's type
    description: str  # how the pixels became these values, for one line of output


def parse_input_range(text: str | None) -> tuple[float, float] | None:
    """--input-range LO,HI: two finite reals, LO < HI."""
    if text is None:
        return None
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise McugenError(f"--input-range {text!r}: give LO,HI, e.g. --input-range=-1,1 or "
                          f"0,255") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise McugenError(f"--input-range {text!r}: give finite LO < HI, e.g. --input-range=-1,1")
    return low, high


def check_input_tensor(tensor: InputTensor) -> None:
    if len(tensor.shape) != 4 or tensor.channels not in (1, 3):
        raise McugenError(f"--image needs a model whose input is an image (NHWC with 1 or 3 "
                          f"channels); this one's input is {'x'.join(map(str, tensor.shape))}")
    if tensor.dtype not in (*INTEGER_RANGES, "float32"):
        raise McugenError(f"--image: the model's input type {tensor.dtype} is not one of "
                          f"int8, uint8, float32")


def load_picture(path: Path, tensor: InputTensor) -> Picture:
    """Decode path, convert to the model's channels and resize to its H x W (bilinear)."""
    check_input_tensor(tensor)
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise McugenError("--image needs Pillow: pip install pillow") from None
    try:
        with Image.open(path) as image:
            original = image.size
            converted = image.convert("L" if tensor.channels == 1 else "RGB")
            resized = converted.resize((tensor.width, tensor.height), Image.Resampling.BILINEAR)
    except FileNotFoundError:
        raise McugenError(f"--image {path}: no such file") from None
    except UnidentifiedImageError:
        raise McugenError(f"--image {path}: not an image Pillow can read (BMP, PNG, JPEG, ...)"
                          ) from None
    except (OSError, ValueError) as error:
        raise McugenError(f"--image {path}: cannot decode it: {error}") from None
    pixels = np.asarray(resized, dtype=np.uint8).reshape(tensor.height, tensor.width,
                                                         tensor.channels)
    return Picture(Path(path), original, pixels)


def pixels_to_input(pixels: np.ndarray, tensor: InputTensor,
                    input_range: tuple[float, float] | None = None) -> ModelInput:
    """The model's input from [H, W, C] uint8 pixels, by the convention above."""
    p = pixels.reshape(-1).astype(np.int32)
    if input_range is not None:
        low, high = input_range
        real = low + p.astype(np.float64) * ((high - low) / 255.0)
        how = f"pixels 0..255 mapped onto {low:g}..{high:g}"
        if tensor.dtype == "float32":
            return ModelInput(real.astype(np.float32), how)
        return ModelInput(quantize(real, tensor), how + f", quantized (scale {tensor.scale:.6g}, "
                                                  f"zero point {tensor.zero_point})")
    if tensor.dtype == "float32":
        return ModelInput((p.astype(np.float32) / np.float32(127.5) - np.float32(1.0)),
                          "float input p / 127.5 - 1 (MobileNet's preprocess_input)")
    offset = PIXEL_OFFSETS[tensor.dtype]
    values = (p + offset).astype(tensor.dtype)
    how = f"{tensor.dtype} input p{' - 128' if offset else ''}"
    if tensor.scale is not None:
        low, high = (tensor.scale * (q - tensor.zero_point)
                     for q in (offset, 255 + offset))
        how += f" (real {low:.4g}..{high:.4g} by the input's scale and zero point)"
    return ModelInput(values, how)


def quantize(real: np.ndarray, tensor: InputTensor) -> np.ndarray:
    """TFLite's QUANTIZE: round(x / scale) half away from zero, + zero point, saturated."""
    low, high = INTEGER_RANGES[tensor.dtype]
    scaled = np.asarray(real, np.float64) / tensor.scale
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    return np.clip(rounded + tensor.zero_point, low, high).astype(tensor.dtype)


def dequantize(values: np.ndarray, dtype: str, scale: float | None,
               zero_point: int | None) -> np.ndarray:
    """Real scores: scale * (q - zero point) for an integer output, a float output as it is."""
    if dtype == "float32" or scale is None:
        return np.asarray(values, np.float64)
    return scale * (np.asarray(values, np.float64) - zero_point)


# ---------------------------------------------------------------------------------------------
# Labels and the top five


@dataclass(frozen=True)
class Labels:
    names: tuple[str, ...]  # one per class of the model
    note: str | None = None  # how the file's lines were matched to the classes, if not 1:1


def load_labels(path: Path | None, classes: int) -> Labels:
    """One label a line. A file with one line more than the model has classes starts with a
    "background" class the model does not have (Keras' 1000-class ImageNet models with the
    1001-line file): its first line is dropped. One line fewer: the model has the background
    class at index 0 (Google's 1001-class hosted models with a 1000-line file)."""
    if path is None:
        return Labels(tuple(f"class {i}" for i in range(classes)))
    try:
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines()]
    except OSError as error:
        raise McugenError(f"cannot read --labels {path}: {error.strerror}") from None
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) == classes:
        return Labels(tuple(lines))
    if len(lines) == classes + 1:
        return Labels(tuple(lines[1:]), f"{path.name} has {len(lines)} lines for {classes} "
                      f"classes: its first line ({lines[0]!r}) is taken as a background class "
                      f"the model does not have, and dropped")
    if len(lines) == classes - 1:
        return Labels(("background", *lines), f"{path.name} has {len(lines)} lines for "
                      f"{classes} classes: class 0 is taken as background, the file's first "
                      f"line as class 1")
    raise McugenError(f"--labels {path} has {len(lines)} lines but the model has {classes} "
                      f"classes; give one label a line")


@dataclass(frozen=True)
class Ranked:
    index: int
    label: str
    raw: float | int  # the output value as the model's type holds it
    score: float  # dequantized


def top_classes(output: np.ndarray, labels: Labels, dtype: str, scale: float | None,
                zero_point: int | None, count: int = 5) -> list[Ranked]:
    """The count highest outputs, highest first; equal outputs in class order (stable), so that
    two bit-identical outputs always give the same list."""
    flat = np.asarray(output).reshape(-1)
    scores = dequantize(flat, dtype, scale, zero_point)
    order = np.argsort(-scores, kind="stable")[:count]
    return [Ranked(int(i), labels.names[i], flat[i].item(), float(scores[i])) for i in order]
