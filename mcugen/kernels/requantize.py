"""The cheapest exact requantization a layer's constants allow, decided per layer.

TFLite's output stage is ``clamp(MBQM(acc, m, shift) + offset)``: a rounding doubling high
multiply, then a rounding right shift, each with its own nudge. Where every channel has a
right shift e = -shift >= 1, a multiplier in [0, 2^31), and the layer's accumulators are
bounded by |acc| < 2^30 (known at generation time from the weights), the same integers come
from a short sequence:

    h   = floor((2 acc * m + 2^31) / 2^32)        SMMULR of the doubled accumulator
    out = (h + (h >> 31) + K) >> e,  K = (2 offset + 1) * 2^(e - 1)

Proof: MBQM's high multiply is floor((acc * m + 2^30) / 2^31) (gemmlowp's nudge of 1 - 2^30
for a negative product with a truncating division comes to the same), which is h, exact since
2 acc fits in 32 bits. Its rounding shift rounds h / 2^e half away from zero:
floor((h + 2^(e-1)) / 2^e) for h >= 0, floor((h - 1 + 2^(e-1)) / 2^e) for h < 0, that is
floor((h' + 2^(e-1)) / 2^e) with h' = h + (h >> 31). Adding the offset inside,
floor((h' + 2^(e-1) + offset * 2^e) / 2^e) = (h' + K) >> e. Nothing overflows when
|h| + |K| < 2^31, which the bounds check. ``short_requantize`` is this in NumPy, tested
against ``quant.multiply_by_quantized_multiplier``.

Where the activation clamps at or above the output's zero point (ReLU, ReLU6), the correction
h >> 31 changes nothing that survives the clamp: for h < 0 both roundings give a value <= 0,
which the clamp raises to the same act_min. Such layers drop it (``skip_sign_correction``).

Constant channels. A pruned filter (all zero) gives a channel whose output is one value v;
TFLite's converter gives such a channel a tiny weight scale, hence a bias of +-2^30 and a
multiplier of 0 with shift 0 (or a shift of -26), which break both conditions above and would
put the whole layer on the general sequence. What such a channel computes does not depend on
its constants, only its value v does, so passes.dead_channels gives every constant channel that
stays the constants of ``constant_channel_constants``: zero weights, bias 4d (d = v - zp, so
|d| <= 255 and |4d| <= 1020), multiplier 2^30 and shift -1 (e = 1). Every requantization mcugen
emits then computes v exactly, because no rounding step ever sees a fraction:
- TFLite's MBQM: the accumulator is 4d (zero weights, padding or not);
  SRDHM(4d, 2^30) = round(4d * 2^30 / 2^31) = 2d exactly, and RoundingDivideByPOT(2d, 1) = d
  exactly; plus zp, v, which the clamp keeps (v is already the clamped value). Any rounding
  rule gives the same, so Helium's VQRDMULH and rounding shifts do too.
- the short sequence: h = floor((2 * 4d * 2^30 + 2^31) / 2^32) = floor(2d + 1/2) = 2d (the
  DSP kernels' doubled accumulator 8d gives the same through SMMULR); K = 2 zp + 1, so
  (h + K) >> 1 = floor(d + zp + 1/2) = v without the sign correction, and for d < 0 with it
  (2d - 1 + 2 zp + 1) >> 1 = d + zp = v: both forms agree, whatever the clamp.
- the portable depthwise's dw_requantize (a rounding high multiply, then a shift by e - 1 = 0
  and a halving with the offset): h = 2d as above, (h + (h >> 31) + 1 + 2 zp) >> 1 = v.
- the bounds: |acc| = |4d| <= 1020 and |K| <= 255 add nothing to a layer's bound.
``constant_channel_constants`` is tested on every d and zero point against all of these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lowering import Requantization
from .variant import tabulated

ACC_LIMIT = 1 << 30  # |acc| below this: its double fits in int32
# A constant channel's multiplier and shift (0.5, then a halving): see the module docstring.
CONSTANT_MULTIPLIER = 1 << 30
CONSTANT_SHIFT = -1


@dataclass(frozen=True, eq=False)
class ShortRequantization:
    """Per channel: the multiplier, K and e of the short sequence (values; each kernel lays
    them out in its tables); and which ends of the activation's range need a clamp besides
    int8 saturation."""

    multiplier: np.ndarray
    rounding: np.ndarray  # K = (2 offset + 1) * 2^(e - 1)
    exponent: np.ndarray  # e = -shift >= 1
    output_offset: int = tabulated()  # in K, and in skip_sign_correction (the C function)
    act_min: int
    act_max: int

    @property
    def skip_sign_correction(self) -> bool:
        """The clamp at act_min >= the output's zero point makes h >> 31 irrelevant."""
        return self.act_min >= self.output_offset

    @property
    def clamp_low(self) -> bool:
        return self.act_min > -128

    @property
    def clamp_high(self) -> bool:
        return self.act_max < 127


def short_requantization(out: Requantization, acc_bound: int) -> ShortRequantization | None:
    """The short sequence for a layer whose accumulators satisfy |acc| <= acc_bound, or None
    where its conditions fail (the layer then takes TFLite's general sequence)."""
    multiplier = out.multiplier.values.astype(np.int64)
    shift = out.shift.values.astype(np.int64)
    if acc_bound >= ACC_LIMIT or shift.max() > -1 or multiplier.min() < 0:
        return None
    exponent = -shift
    rounding = (2 * out.clamp.output_offset + 1) * (np.int64(1) << (exponent - 1))
    h_bound = (acc_bound * multiplier >> 31) + 1
    if int((h_bound + np.abs(rounding)).max()) >= 1 << 31:
        return None
    return ShortRequantization(multiplier=multiplier, rounding=rounding, exponent=exponent,
                               output_offset=out.clamp.output_offset,
                               act_min=out.clamp.act_min, act_max=out.clamp.act_max)


def constant_channel_constants(difference: int) -> tuple[int, int, int]:
    """(bias, multiplier, shift) with which a channel of zero weights outputs
    zero point + ``difference`` (= v - zp, |difference| <= 255) in every requantization form
    (module docstring)."""
    if not -255 <= difference <= 255:
        raise ValueError(f"a constant channel's value differs from the zero point by "
                         f"{difference}, more than int8 allows")
    return 4 * difference, CONSTANT_MULTIPLIER, CONSTANT_SHIFT


def dw_requantize(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray,
                  output_offset: int) -> np.ndarray:
    """The portable depthwise's short form (templates/kernels/dw_conv_s8_helpers.c.j2's
    dw_requantize) in NumPy: a rounding high multiply, a shift by e - 1, and a halving that
    adds the offset."""
    product = np.asarray(acc, np.int64) * np.asarray(multiplier, np.int64)
    h = (product + (1 << 30)) >> 31
    h = h + (h >> 63)
    return ((h >> (-1 - np.asarray(shift, np.int64))) + 1 + 2 * output_offset) >> 1


def short_requantize(acc: np.ndarray, multiplier: np.ndarray, exponent: np.ndarray,
                     output_offset: int, sign_correction: bool = True) -> np.ndarray:
    """The short sequence in NumPy (int64 arithmetic, values as the C computes them)."""
    acc2 = 2 * np.asarray(acc, np.int64)
    h = (acc2 * np.asarray(multiplier, np.int64) + (1 << 31)) >> 32
    exponent = np.asarray(exponent, np.int64)
    rounding = (2 * output_offset + 1) * (np.int64(1) << (exponent - 1))
    return (h + ((h >> 63) if sign_correction else 0) + rounding) >> exponent


# The DSP helpers of the short sequence (templates/kernels/pw_conv_s8_dsp_helpers.c.j2).
DSP_SHORT = "pw_requantize_doubled"
DSP_SHORT_CLAMPED = "pw_requantize_doubled_clamped"


def dsp_short_function(short: ShortRequantization | None) -> str | None:
    if short is None:
        return None
    return DSP_SHORT_CLAMPED if short.skip_sign_correction else DSP_SHORT


# The portable C of the short sequence (templates/kernels/matrix_helpers.c.j2).
PORTABLE_SHORT = "requantize_short"
PORTABLE_SHORT_CLAMPED = "requantize_short_clamped"


def portable_short_function(short: ShortRequantization | None) -> str | None:
    if short is None:
        return None
    return PORTABLE_SHORT_CLAMPED if short.skip_sign_correction else PORTABLE_SHORT
