"""mcugen.quant against hand-worked values of TFLite's integer arithmetic.

Every expected value below is worked out from the C definitions (noted next to it), not by
running the code under test; the TFLM comparisons in test_reference.py cover the rest.
"""

from __future__ import annotations

import numpy as np
import pytest

from mcugen import quant
from mcugen.ir import Activation

INT32_MIN, INT32_MAX = quant.INT32_MIN, quant.INT32_MAX


# ---------------------------------------------------------------------------------------------
# quantize_multiplier


@pytest.mark.parametrize("real, expected", [
    (0.0, (0, 0)),
    # exact powers of two: mantissa 0.5 -> 2^30
    (0.5, (1 << 30, 0)),
    (1.0, (1 << 30, 1)),
    (0.25, (1 << 30, -1)),
    (2.0 ** -31, (1 << 30, -30)),
    (2.0 ** -32, (1 << 30, -31)),  # the smallest shift kept
    (2.0 ** 10, (1 << 30, 11)),
    # mantissa * 2^31 ends in exactly .5 with an even integer part: half away from zero
    # rounds up where Python's round() (half to even) would not
    (0.5 + 2.0 ** -32, ((1 << 30) + 1, 0)),
    ((2 ** 30 + 2.5) / 2 ** 31, ((1 << 30) + 3, 0)),
    (-(0.5 + 2.0 ** -32), (-(1 << 30) - 1, 0)),
    # just below 1: the mantissa rounds to 2^31, which is halved with the shift raised
    (1.0 - 2.0 ** -33, (1 << 30, 1)),
    (1.0 - 2.0 ** -31, ((1 << 31) - 1, 0)),
    # tiny values: a shift below -31 is flushed to (0, 0) ...
    (2.0 ** -33, (0, 0)),
    (1e-12, (0, 0)),
    # ... but only after the 2^31 round-up, which can lift the shift back to -31
    (2.0 ** -32 * (1.0 - 2.0 ** -40), (1 << 30, -31)),
    # an ordinary value: 0.3 = 0.6 * 2^-1, round(0.6 * 2^31) = 1288490188.8 -> ...89
    (0.3, (1288490189, -1)),
])
def test_quantize_multiplier(real: float, expected: tuple[int, int]) -> None:
    assert quant.quantize_multiplier(real) == expected


def test_quantize_multiplier_differs_from_bankers_rounding() -> None:
    real = 0.5 + 2.0 ** -32
    mantissa_fixed = real * 2 ** 31
    assert round(mantissa_fixed) == 1 << 30  # what a naive port would produce
    assert quant.quantize_multiplier(real)[0] == (1 << 30) + 1


@pytest.mark.parametrize("value, expected", [
    (2.5, 3), (-2.5, -3), (3.5, 4), (0.5, 1), (-0.5, -1), (0.49999999999999994, 0),
    (2.4999999, 2), (-7.0, -7), (0.0, 0),
])
def test_round_half_away_from_zero(value: float, expected: int) -> None:
    assert quant.round_half_away_from_zero(value) == expected


# ---------------------------------------------------------------------------------------------
# fixed-point primitives


@pytest.mark.parametrize("a, b, expected", [
    (INT32_MIN, INT32_MIN, INT32_MAX),  # the one overflow saturates
    (1 << 30, 1 << 30, 1 << 29),  # 0.5 * 0.5 = 0.25
    (-(1 << 30), 1 << 30, -(1 << 29)),
    (3, 1 << 30, 2),  # 1.5 rounds up
    (-3, 1 << 30, -1),  # -1.5 rounds up too (nudge 1 - 2^30, then truncation)
    (5, 1 << 30, 3),  # 2.5 -> 3
    (-5, 1 << 30, -2),  # -2.5 -> -2
    (INT32_MAX, INT32_MAX, INT32_MAX - 1),  # (2^31-1)^2 / 2^31 = 2^31 - 2 + 2^-31
    (INT32_MIN, INT32_MAX, INT32_MIN + 1),  # -(2^31 - 1) exactly
    (INT32_MIN, 1 << 30, -(1 << 30)),
    (0, INT32_MIN, 0),
])
def test_saturating_rounding_doubling_high_mul(a: int, b: int, expected: int) -> None:
    result = quant.saturating_rounding_doubling_high_mul(a, b)
    assert result.dtype == np.int32
    assert int(result) == expected


@pytest.mark.parametrize("x, exponent, expected", [
    (5, 1, 3), (-5, 1, -3),  # 2.5 -> 3, -2.5 -> -3: ties away from zero
    (-4, 1, -2), (7, 2, 2), (-6, 2, -2), (-5, 2, -1), (6, 2, 2), (5, 2, 1),
    (12345, 0, 12345), (-12345, 0, -12345),
    (INT32_MIN, 31, -1), (INT32_MAX, 31, 1), (INT32_MIN, 1, -(1 << 30)),
    (-(1 << 30), 31, -1),  # -0.5 -> -1
    ((1 << 30), 31, 1),  # 0.5 -> 1
    ((1 << 30) - 1, 31, 0),
])
def test_rounding_divide_by_power_of_two(x: int, exponent: int, expected: int) -> None:
    assert int(quant.rounding_divide_by_power_of_two(x, exponent)) == expected


@pytest.mark.parametrize("x, multiplier, shift, expected", [
    (100, 1 << 30, 0, 50),
    (100, 1 << 30, 1, 100),
    (100, 1 << 30, -2, 13),  # 12.5: high mul gives 50 exactly, 50 / 4 = 12.5 -> 13
    # double rounding: 5 * 0.5 = 2.5 -> 3, then 3 / 2 = 1.5 -> 2 (single rounding gives 1)
    (5, 1 << 30, -1, 2),
    (-5, 1 << 30, -1, -1),  # -2.5 -> -2 (high mul), then -1 exactly
    (-3, 1 << 30, -1, -1),  # -1.5 -> -1, then -0.5 -> -1
    (INT32_MIN, INT32_MIN, 0, INT32_MAX),
    # 1288490189 is 0.6 in Q0.31: high mul -600.0000001 -> -600, then -600 / 16 = -37.5 -> -38
    (-1000, 1288490189, -4, -38),
])
def test_multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int,
                                          expected: int) -> None:
    assert int(quant.multiply_by_quantized_multiplier(x, multiplier, shift)) == expected


def test_multiply_by_quantized_multiplier_broadcasts_per_channel() -> None:
    acc = np.array([[100, -100, 7], [1, 2, 3]], dtype=np.int64)
    multipliers = np.array([1 << 30, 1 << 30, (1 << 31) - 1])
    shifts = np.array([0, -1, 1])
    result = quant.multiply_by_quantized_multiplier(acc, multipliers, shifts)
    assert result.dtype == np.int32
    # 100*0.5; -100*0.5=-50 then /2 = -25; 7*2*~1 = 14; 1*0.5 = 0.5 -> 1; 2*0.5/2 = 0.5 -> 1
    np.testing.assert_array_equal(result, [[50, -25, 14], [1, 1, 6]])


# ---------------------------------------------------------------------------------------------
# Prepare-time constants


@pytest.mark.parametrize("activation, scale, zero_point, expected", [
    (Activation.NONE, 0.1, 5, (-128, 127)),
    (Activation.RELU, 0.1, 5, (5, 127)),
    (Activation.RELU, 0.1, -128, (-128, 127)),
    (Activation.RELU6, 6.0 / 255, -128, (-128, 127)),
    (Activation.RELU6, 0.05, -10, (-10, 110)),
    (Activation.RELU6, 12.0, -10, (-10, -9)),  # 6 / 12 = 0.5 -> 1, away from zero
    # 6 / 2.4f is 2.5 exactly in float32 (-> 3) but 2.49999990 in double (-> 2)
    (Activation.RELU6, float(np.float32(2.4)), 0, (0, 3)),
    (Activation.RELU, 0.1, 127, (127, 127)),
])
def test_activation_range(activation: Activation, scale: float, zero_point: int,
                          expected: tuple[int, int]) -> None:
    assert quant.activation_range(activation, scale, zero_point) == expected


def test_per_channel_scale_is_double_product_and_fc_is_float32_product() -> None:
    in_scale, w_scale, out_scale = (float(np.float32(v)) for v in (0.0235, 0.0031, 0.047))
    conv = quant.per_channel_effective_scales(in_scale, [w_scale], out_scale, 3)
    assert conv == [in_scale * w_scale / out_scale] * 3
    fc = quant.fully_connected_effective_scale(in_scale, w_scale, out_scale)
    assert fc == float(np.float32(in_scale) * np.float32(w_scale)) / out_scale
    assert fc != conv[0]  # the float32 rounding of the product shows in the last bits


@pytest.mark.parametrize("multiplier, shift, count, expected", [
    (1 << 30, 0, 1, (1 << 30, 0)),
    (1 << 30, 0, 4, (1 << 30, -2)),  # (2^30 << 2) / 4
    (1 << 30, -1, 9, ((1 << 33) // 9, -4)),  # s = 3: 2^33 / 9 = 954437176.9 truncated
    (1 << 30, -1, 49, ((1 << 35) // 49, -6)),  # s = 5
    (1 << 30, -30, 4, (1 << 29, -31)),  # s limited to 31 + shift = 1: 2^31 / 4
    (1 << 30, 2, 1 << 40, (1 << 22, -30)),  # s limited to 32: 2^62 / 2^40
])
def test_mean_multiplier(multiplier: int, shift: int, count: int,
                         expected: tuple[int, int]) -> None:
    assert quant.mean_multiplier(multiplier, shift, count) == expected


def test_rounded_average_rounds_half_away_from_zero() -> None:
    totals = np.array([5, -5, 4, -4, 7, -7, 0, 6, -6])
    counts = np.array([2, 2, 3, 3, 4, 4, 9, 4, 4])
    # 2.5, -2.5, 1.33, -1.33, 1.75, -1.75, 0, 1.5, -1.5
    np.testing.assert_array_equal(quant.rounded_average(totals, counts),
                                  [3, -3, 1, -1, 2, -2, 0, 2, -2])


def test_softmax_params() -> None:
    # beta 1, scale 1/16: 2^26 / 16 = 2^22 -> multiplier 2^30, left shift 23;
    # radius = floor(31 * 2^26 / 2^23) = 248
    assert quant.softmax_params(1.0, 1.0 / 16) == (1 << 30, 23, -248)
    # a huge product is capped at 2^31 - 1 = (2^31 - 1) * 2^(31 - 31); radius floor(31/32) = 0
    assert quant.softmax_params(1.0, 1e6) == ((1 << 31) - 1, 31, 0)
    with pytest.raises(ValueError):
        quant.softmax_params(1.0, 2.0 ** -27)


# ---------------------------------------------------------------------------------------------
# gemmlowp fixed-point functions used by softmax


def test_exp_on_negative_values() -> None:
    q5 = 1 << 26  # 1.0 in Q5.26
    raw = np.array([0, -q5 // 4, -q5, -2 * q5, -8 * q5, -31 * q5, -32 * q5 + 1])
    result = quant.exp_on_negative_values(raw)
    assert result.dtype == np.int32
    assert result[0] == INT32_MAX  # exp(0) is exactly the Q0.31 maximum
    real = result / 2.0 ** 31
    # gemmlowp's 4th-order Taylor polynomial around -1/8 is off by up to (1/8)^5/120 ~ 2.2e-7
    np.testing.assert_allclose(real, np.exp(raw / q5), atol=2.5e-7)
    assert 0 < result[4] and result[5] == 0  # exp(-8) survives; exp(-31) is below 2^-31


def test_one_over_one_plus_x() -> None:
    x = np.array([0, 1 << 29, 1 << 30, 3 << 29, INT32_MAX])  # 0, .25, .5, .75, ~1
    result = quant.one_over_one_plus_x_for_x_in_0_1(x)
    np.testing.assert_allclose(result / 2.0 ** 31, 1 / (1 + x / 2.0 ** 31), atol=4e-9)


def test_softmax_int8_uniform_row_and_cut_off() -> None:
    multiplier, left_shift, diff_min = quant.softmax_params(1.0, 1.0 / 16)
    uniform = quant.softmax_int8(np.full((1, 4), 7), multiplier, left_shift, diff_min)
    np.testing.assert_array_equal(uniform, [[-64, -64, -64, -64]])  # 0.25 = 64 / 256
    # a difference below diff_min (-248) gives exactly -128; one element -> 1.0 saturates
    peaked = quant.softmax_int8(np.array([[127, -128]]), multiplier, left_shift, diff_min)
    np.testing.assert_array_equal(peaked, [[127, -128]])


def test_the_short_requantization_equals_tflites_wherever_it_is_chosen():
    """kernels.requantize: (h + (h >> 31) + K) >> e, h = SMMULR(2 acc, m), against TFLite's
    MultiplyByQuantizedMultiplier plus the offset, on random and tie-making accumulators."""
    from mcugen.kernels.requantize import short_requantize

    rng = np.random.default_rng(4)
    for _ in range(200):
        multiplier = int(rng.integers(1 << 30, 1 << 31))
        exponent = int(rng.integers(1, 22))
        offset = int(rng.integers(-128, 128))
        acc = rng.integers(-(1 << 30) + 1, 1 << 30, 2000)
        # Accumulators whose scaled value lands exactly on a rounding tie.
        ties = (np.arange(-50, 50) * 2 + 1) << (exponent - 1)
        acc = np.concatenate([acc, ((ties.astype(np.int64) << 31) // multiplier)[
            np.abs((ties.astype(np.int64) << 31) // multiplier) < (1 << 30)]])
        expected = quant.multiply_by_quantized_multiplier(acc, multiplier, -exponent) + offset
        np.testing.assert_array_equal(short_requantize(acc, multiplier, exponent, offset),
                                      expected)



def test_the_short_requantization_needs_no_sign_correction_under_a_relu_clamp():
    from mcugen.kernels.requantize import short_requantize

    rng = np.random.default_rng(5)
    for _ in range(200):
        multiplier = int(rng.integers(1 << 30, 1 << 31))
        exponent = int(rng.integers(1, 22))
        offset = int(rng.integers(-128, 100))
        act_min = int(rng.integers(offset, 101))
        acc = rng.integers(-(1 << 29), 1 << 29, 3000)
        expected = np.clip(quant.multiply_by_quantized_multiplier(acc, multiplier, -exponent)
                           + offset, act_min, 127)
        got = np.clip(short_requantize(acc, multiplier, exponent, offset,
                                       sign_correction=False), act_min, 127)
        np.testing.assert_array_equal(got, expected)
