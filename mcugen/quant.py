"""TFLite's int8 arithmetic, bit for bit, in Python (constants) and NumPy (tensors).

What TFLM computes in its kernels' Prepare (multipliers, shifts, activation ranges, softmax
scaling) and the integer helpers its reference kernels call in Eval, ported from the facts of
``quantization_util.cc``, ``kernel_util.cc``, ``common.{h,cc}``, ``reference/reduce.h``,
``reference/integer_ops/pooling.h``, ``reference/softmax.h`` and gemmlowp's ``fixedpoint.h``.

Rounding rules, named once here because they differ from function to function:
- *half away from zero* (``std::round``/``TfLiteRound``): QuantizeMultiplier, the fused
  activation range, the AVERAGE_POOL_2D division. Python's ``round()`` (half to even) is wrong.
- *round to nearest, ties away from zero, on a power of two* (gemmlowp ``RoundingDivideByPOT``).
- *round half up in magnitude with a 2^30 nudge, then truncate* (gemmlowp
  ``SaturatingRoundingDoublingHighMul``, ARM's VQRDMULH).
- TFLite's default *double rounding* requantization: MultiplyByQuantizedMultiplier rounds once
  in the high multiply and once more in the shift (TFLM and CMSIS-NN's default build both do
  this; ``TFLITE_SINGLE_ROUNDING`` is not what they ship).
- *truncation toward zero*: C integer division (the MEAN multiplier fold), and HARD_SWISH's
  final SaturatingDoublingHighMul, which has no rounding nudge on purpose.

Scales are float32 values held as Python floats; where TFLite forms a float32 product first,
the code does so with ``np.float32`` explicitly, because that changes the last bit.

The NumPy functions take int arrays (or ints), compute in int64 and return int32 arrays, with
int32 wrap-around where the C code relies on int32 arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .ir import Activation

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
INT16_MIN = -(1 << 15)
INT16_MAX = (1 << 15) - 1
INT8_MIN = -128
INT8_MAX = 127

ArrayLike = np.ndarray | int | Sequence[int]


# ---------------------------------------------------------------------------------------------
# Scalar constants (Prepare)


def round_half_away_from_zero(value: float) -> int:
    """``std::round``: ties go away from zero (2.5 -> 3, -2.5 -> -3)."""
    magnitude = abs(value)
    whole = math.floor(magnitude)
    if magnitude - whole >= 0.5:  # exact: subtracting the floor loses no bits
        whole += 1
    return int(math.copysign(whole, value))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: ``real ~= multiplier * 2^(shift - 31)``.

    The multiplier is a Q0.31 value in [2^30, 2^31) (or 0); shift > 0 means a left shift.
    The mantissa is rounded half away from zero; a mantissa that rounds up to 2^31 is halved
    and the shift raised; a shift below -31 would shift every bit out, so TFLite flushes
    such tiny values to (0, 0).
    """
    if real == 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real)
    fixed = round_half_away_from_zero(mantissa * (1 << 31))
    if fixed == 1 << 31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return fixed, shift


def activation_range(activation: Activation, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for an int8 output: quantize 0 and 6 in float32
    (``zp + (int)roundf(f / scale)``, half away from zero) and clip to [-128, 127]."""
    def quantize(real: float) -> int:
        quotient = float(np.float32(real) / np.float32(scale))
        return zero_point + round_half_away_from_zero(quotient)

    if activation is Activation.NONE:
        return INT8_MIN, INT8_MAX
    low = max(INT8_MIN, quantize(0.0))
    if activation is Activation.RELU:
        return low, INT8_MAX
    if activation is Activation.RELU6:
        return low, min(INT8_MAX, quantize(6.0))
    raise ValueError(f"unknown activation {activation!r}")


def per_channel_effective_scales(input_scale: float, filter_scales: Sequence[float],
                                 output_scale: float, channels: int) -> list[float]:
    """PopulateConvolutionQuantizationParams' scale per output channel: every factor widened
    to double first, ``(in * w[c]) / out``. A single (per-tensor) filter scale is broadcast
    to all channels, as TFLM does. Also TFLM's per-channel FULLY_CONNECTED formula."""
    if len(filter_scales) not in (1, channels):
        raise ValueError(f"{len(filter_scales)} filter scales for {channels} channels")
    scales = filter_scales if len(filter_scales) == channels else list(filter_scales) * channels
    return [input_scale * w / output_scale for w in scales]


def fully_connected_effective_scale(input_scale: float, weight_scale: float,
                                    output_scale: float) -> float:
    """GetQuantizedConvolutionMultipler (per-tensor FULLY_CONNECTED): the input*weight product
    is formed in float32, then widened and divided in double."""
    product = np.float32(input_scale) * np.float32(weight_scale)
    return float(product) / output_scale


def mean_multiplier(multiplier: int, shift: int, count: int) -> tuple[int, int]:
    """Fold MEAN's 1/count into the in/out multiplier, as reference_ops::QuantizedMeanOrSum:
    ``s = min(floor(log2(count)), 32, 31 + shift)``; ``m' = (m << s) / count`` (truncating),
    ``shift' = shift - s``."""
    fold = min(count.bit_length() - 1, 32, 31 + shift)
    return (multiplier << fold) // count, shift - fold


ADD_LEFT_SHIFT = 20  # int8 ADD shifts both inputs left by this much before rescaling


def quantize_multiplier_smaller_than_one(real: float) -> tuple[int, int]:
    """QuantizeMultiplierSmallerThanOneExp: QuantizeMultiplier for ``real < 1`` (shift <= 0)."""
    multiplier, shift = quantize_multiplier(real)
    if shift > 0:
        raise ValueError(f"multiplier {real} is not below 1")
    return multiplier, shift


def add_multipliers(input1_scale: float, input2_scale: float, output_scale: float
                    ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """CalculateOpDataAdd (int8): both inputs rescaled to twice the larger input scale (the
    max taken in float32, the rest in double), the sum from there to the output scale with
    the 2^20 of the left shift divided out. Returns (input1, input2, output) (mult, shift)."""
    twice_max = 2.0 * float(max(np.float32(input1_scale), np.float32(input2_scale)))
    output = twice_max / ((1 << ADD_LEFT_SHIFT) * output_scale)
    return (quantize_multiplier_smaller_than_one(input1_scale / twice_max),
            quantize_multiplier_smaller_than_one(input2_scale / twice_max),
            quantize_multiplier_smaller_than_one(output))


def float_to_quantized_int8(real: float, scale: float, zero_point: int) -> int:
    """FloatToQuantizedType<int8_t>: ``round(real / scale) + zp`` (the quotient in float32),
    clamped to int8."""
    quotient = float(np.float32(real) / np.float32(scale))
    return int(np.clip(round_half_away_from_zero(quotient) + zero_point, INT8_MIN, INT8_MAX))


def down_scale_int32_to_int16_multiplier(multiplier: int) -> int:
    """DownScaleInt32ToInt16Multiplier: the Q0.31 multiplier rounded to Q0.15 (saturating)."""
    rounding = 1 << 15
    if multiplier >= INT32_MAX - rounding:
        return INT16_MAX
    return (multiplier + rounding) >> 16


@dataclass(frozen=True)
class HardSwishParams:
    """HardSwishPrepare's int8 constants: 16-bit fixed-point multipliers and their exponents."""

    output_multiplier: int
    output_exponent: int
    reluish_multiplier: int
    reluish_exponent: int


def hard_swish_params(input_scale: float, output_scale: float) -> HardSwishParams:
    """The input on a "hires" scale (scale / 128) against the output scale and against the
    reluish scale, on which 3.0 is 32768; the quotients are float32, as in TFLM."""
    hires = np.float32(1.0 / 128.0) * np.float32(input_scale)
    reluish_scale = np.float32(3.0) / np.float32(32768.0)
    out_m, out_e = quantize_multiplier(float(np.float32(hires / np.float32(output_scale))))
    relu_m, relu_e = quantize_multiplier(float(np.float32(hires / reluish_scale)))
    if out_e > 0:
        raise ValueError("the output scale is too small for the input scale (TFLite requires "
                         "hires_input_scale / output_scale < 1)")
    return HardSwishParams(down_scale_int32_to_int16_multiplier(out_m), out_e,
                           down_scale_int32_to_int16_multiplier(relu_m), relu_e)


# ---------------------------------------------------------------------------------------------
# Fixed-point primitives (gemmlowp / TFLite common.h), vectorised


def _wrap_int32(x: np.ndarray) -> np.ndarray:
    """int64 -> int32 value modulo 2^32, as int32 arithmetic in C does on every target."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _divide_truncating(x: np.ndarray, divisor: int) -> np.ndarray:
    """C's ``/``: rounds toward zero (NumPy's ``//`` floors)."""
    return np.where(x >= 0, x // divisor, -((-x) // divisor))


def saturating_rounding_doubling_high_mul(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """``(a * b + nudge) / 2^31`` with nudge 2^30 (or 1 - 2^30 for a negative product) and
    truncating division; INT32_MIN * INT32_MIN, the one overflow, saturates to INT32_MAX."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    product = a * b
    nudge = np.where(product >= 0, 1 << 30, 1 - (1 << 30))
    high = _divide_truncating(product + nudge, 1 << 31)
    overflow = (a == b) & (a == INT32_MIN)
    return np.where(overflow, INT32_MAX, high).astype(np.int32)


def rounding_divide_by_power_of_two(x: ArrayLike, exponent: ArrayLike) -> np.ndarray:
    """``x / 2^exponent`` rounded to nearest, ties away from zero (exponent in [0, 31])."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return ((x >> exponent) + (remainder > threshold)).astype(np.int32)


def multiply_by_quantized_multiplier(x: ArrayLike, multiplier: ArrayLike,
                                     shift: ArrayLike) -> np.ndarray:
    """TFLite's default (double rounding) MultiplyByQuantizedMultiplier for an int32 ``x``:
    a left shift (taken in int32) for shift > 0, the rounding high multiply, then a rounding
    right shift for shift < 0. Arguments broadcast (per-channel multipliers on the last axis)."""
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    scaled = saturating_rounding_doubling_high_mul(_wrap_int32(x << left), multiplier)
    return rounding_divide_by_power_of_two(scaled, right)


def multiply_by_quantized_multiplier_single(x: ArrayLike, multiplier: ArrayLike,
                                            shift: ArrayLike) -> np.ndarray:
    """One rounding, half up: ``(x * m + 2^(30 - shift)) >> (31 - shift)``, the form of ruy's
    kernels, which TensorFlow Lite's uint8 FULLY_CONNECTED runs on (measured against it:
    its outputs differ from the double rounding's where the two roundings disagree)."""
    x = np.asarray(x, dtype=np.int64)
    total = 31 - np.asarray(shift, dtype=np.int64)
    product = x.astype(object) * np.asarray(multiplier, dtype=np.int64).astype(object)
    rounded = (product + (np.int64(1) << (total - 1)).astype(object)) >> total.astype(object)
    return np.asarray(rounded, dtype=np.int64).astype(np.int32)


def _saturating_shift_left(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT with a positive exponent."""
    return np.clip(np.asarray(x, dtype=np.int64) << exponent, INT32_MIN, INT32_MAX)


def saturating_rounding_doubling_high_mul_int16(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul on int16: ``(a * b + nudge) / 2^15``,
    nudge 2^14 (1 - 2^14 for a negative product), truncating; -32768^2 saturates."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    product = a * b
    nudge = np.where(product >= 0, 1 << 14, 1 - (1 << 14))
    high = _divide_truncating(product + nudge, 1 << 15)
    return np.where((a == b) & (a == INT16_MIN), INT16_MAX, high)


def saturating_doubling_high_mul_int16(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """reference_ops::SaturatingDoublingHighMul (like SQDMULH): ``a * b / 2^15`` truncated,
    no rounding nudge; -32768^2 saturates."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    high = _divide_truncating(a * b, 1 << 15)
    return np.where((a == b) & (a == INT16_MIN), INT16_MAX, high)


def saturating_left_shift_int16(x: ArrayLike, amount: int) -> np.ndarray:
    """reference_ops::SaturatingLeftShift: ``x * 2^amount`` clamped to int16."""
    return np.clip(np.asarray(x, dtype=np.int64) << amount, INT16_MIN, INT16_MAX)


# ---------------------------------------------------------------------------------------------
# Op-level arithmetic that is more than "accumulate and requantize"


def rounded_average(total: ArrayLike, count: ArrayLike) -> np.ndarray:
    """AVERAGE_POOL_2D's division of an int32 sum by the element count, half away from zero:
    ``total > 0 ? (total + count/2) / count : (total - count/2) / count`` in C."""
    total = np.asarray(total, dtype=np.int64)
    count = np.asarray(count, dtype=np.int64)
    half = count // 2
    return np.where(total > 0, (total + half) // count,
                    -((half - total) // count)).astype(np.int32)


def rounded_average_half_up(total: ArrayLike, count: ArrayLike) -> np.ndarray:
    """uint8 AVERAGE_POOL_2D's division, ``(total + count/2) / count`` on a non-negative sum,
    for the sum of values held shifted by -128 (a uint8 model's activations as int8): the
    shift moves the sum by a multiple of the count, so the quotient is the floor of
    ``(total + count/2) / count`` whatever the sign."""
    total = np.asarray(total, dtype=np.int64)
    count = np.asarray(count, dtype=np.int64)
    return ((total + count // 2) // count).astype(np.int32)


SOFTMAX_SCALED_DIFF_INTEGER_BITS = 5  # the exp() input is Q5.26
SOFTMAX_ACCUMULATION_INTEGER_BITS = 12  # the sum of exps is Q12.19


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """TFLM's int8 softmax Prepare: PreprocessSoftmaxScaling(beta, input_scale, 5) and
    ``diff_min = -CalculateInputRadius(5, left_shift, 31)``.

    Returns (input_multiplier, input_left_shift, diff_min). Raises ValueError where TFLite's
    QuantizeMultiplierGreaterThanOne check would fail (beta * scale * 2^26 <= 1).
    """
    bits = SOFTMAX_SCALED_DIFF_INTEGER_BITS
    real = min(beta * input_scale * (1 << (31 - bits)), (1 << 31) - 1.0)
    if not real > 1.0:
        raise ValueError(f"softmax input multiplier {real} is not above 1")
    multiplier, left_shift = quantize_multiplier(real)
    radius = math.floor(((1 << bits) - 1) * (1 << (31 - bits)) / (1 << left_shift))
    return multiplier, left_shift, -radius


def _add(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """gemmlowp's FixedPoint ``+`` on int32 raw values: a plain (wrapping) int32 add."""
    return _wrap_int32(np.asarray(a, dtype=np.int64) + np.asarray(b, dtype=np.int64))


def _sub(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    return _wrap_int32(np.asarray(a, dtype=np.int64) - np.asarray(b, dtype=np.int64))


_mul = saturating_rounding_doubling_high_mul  # gemmlowp's FixedPoint ``*`` on raw values


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    """gemmlowp: exp(a) for Q0.31 ``a`` in [-1/4, 0), a Taylor expansion around -1/8."""
    constant_term = 1895147668  # exp(-1/8) in Q0.31
    one_third = 715827883
    x = _add(a, 1 << 28)  # a + 1/8
    x2 = _mul(x, x)
    x3 = _mul(x2, x)
    x4 = _mul(x2, x2)
    x4_over_4 = rounding_divide_by_power_of_two(x4, 2)
    x4_over_24_plus_x3_over_6_plus_x2_over_2 = rounding_divide_by_power_of_two(
        _add(_mul(_add(x4_over_4, x3), one_third), x2), 1)
    return _add(constant_term,
                _mul(constant_term, _add(x, x4_over_24_plus_x3_over_6_plus_x2_over_2)))


# exp(-2^k) in Q0.31 for k = -2 .. 4: gemmlowp's barrel shifter multiplies them in.
_EXP_OF_MINUS_POWERS_OF_TWO = (
    (-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
    (2, 39332535), (3, 720401), (4, 242),
)


def exp_on_negative_values(a: ArrayLike, integer_bits: int = SOFTMAX_SCALED_DIFF_INTEGER_BITS
                           ) -> np.ndarray:
    """gemmlowp exp_on_negative_values: exp(a) in Q0.31 for a raw Q(integer_bits) ``a <= 0``.

    The fractional part modulo 1/4 goes through the Taylor polynomial; each set bit of the
    rest multiplies in exp(-2^k); exp(0) is exactly the Q0.31 maximum.
    """
    a = np.asarray(a, dtype=np.int64)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a_mod_quarter_minus_quarter = _sub(a & (one_quarter - 1), one_quarter)
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        _saturating_shift_left(a_mod_quarter_minus_quarter, integer_bits))  # Rescale<0>
    remainder = _sub(a_mod_quarter_minus_quarter, a)
    for exponent, multiplier in _EXP_OF_MINUS_POWERS_OF_TWO:
        if integer_bits > exponent:
            bit = 1 << (fractional_bits + exponent)
            result = np.where((remainder & bit) != 0, _mul(result, multiplier), result)
    if integer_bits > 5:
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, INT32_MAX, result).astype(np.int32)


def one_over_one_plus_x_for_x_in_0_1(a: ArrayLike) -> np.ndarray:
    """gemmlowp: 1 / (1 + a) for Q0.31 ``a`` in [0, 1), by three Newton-Raphson steps in
    Q2.29 from the 48/17 - 32/17 * d initial guess; the result is Q0.31."""
    total = np.asarray(a, dtype=np.int64) + INT32_MAX
    # RoundingHalfSum(a, 1.0): (sum + sign(sum)) / 2, truncating
    half_denominator = _divide_truncating(total + np.where(total >= 0, 1, -1), 2)
    one_q2 = 1 << 29
    x = _add(1515870810, _mul(half_denominator, -1010580540))  # 48/17 - 32/17 * d in Q2.29
    for _ in range(3):
        one_minus_half_denominator_times_x = _sub(one_q2, _mul(half_denominator, x))
        # Q2.29 * Q2.29 is Q4.27; Rescale<2> is a saturating left shift by 2
        x = _add(x, _saturating_shift_left(_mul(x, one_minus_half_denominator_times_x), 2))
    return _saturating_shift_left(x, 1).astype(np.int32)  # x / 2 as Q1.30, Rescale<0>


def _count_leading_zeros_uint32(x: np.ndarray) -> np.ndarray:
    bit_length = np.frexp(x.astype(np.float64))[1]  # exact for integers below 2^53
    return np.where(x == 0, 32, 32 - bit_length).astype(np.int64)


def reciprocal(x: ArrayLike, integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite's GetReciprocal for a positive Q(integer_digits) ``x``: returns the Q0.31
    reciprocal of x normalised into [1, 2), and num_bits_over_unit (its power of two)."""
    x = np.asarray(x, dtype=np.int64)
    headroom_plus_one = _count_leading_zeros_uint32(x)
    num_bits_over_unit = integer_digits - headroom_plus_one
    shifted_minus_one = ((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31)
    return one_over_one_plus_x_for_x_in_0_1(shifted_minus_one), num_bits_over_unit


def softmax_int8(x: np.ndarray, input_multiplier: int, input_left_shift: int,
                 diff_min: int) -> np.ndarray:
    """reference_ops::Softmax for int8 in and out (output 1/256, zero point -128) over the
    last axis: the gemmlowp fixed-point exp of the scaled differences to the row maximum,
    their Q12.19 sum, its reciprocal, and a rounding shift to 8 bits. Elements more than
    diff_min below the maximum output -128 and add nothing to the sum."""
    x = np.asarray(x, dtype=np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    counted = diff >= diff_min
    # MultiplyByQuantizedMultiplierGreaterThanOne: the left shift, then the high multiply.
    scaled_diff = saturating_rounding_doubling_high_mul(
        _wrap_int32(diff << input_left_shift), input_multiplier)
    exp_q0 = exp_on_negative_values(scaled_diff)
    exp_q12 = rounding_divide_by_power_of_two(exp_q0, SOFTMAX_ACCUMULATION_INTEGER_BITS)
    sum_of_exps = np.where(counted, exp_q12, 0).sum(axis=-1, keepdims=True)
    shifted_scale, num_bits_over_unit = reciprocal(sum_of_exps,
                                                   SOFTMAX_ACCUMULATION_INTEGER_BITS)
    exponent = num_bits_over_unit + 31 - 8
    unsaturated = rounding_divide_by_power_of_two(
        saturating_rounding_doubling_high_mul(shifted_scale, exp_q0), exponent)
    output = np.clip(unsaturated + INT8_MIN, INT8_MIN, INT8_MAX)
    return np.where(counted, output, INT8_MIN).astype(np.int8)
