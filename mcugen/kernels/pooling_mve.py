"""Helium (MVE) variants of AVERAGE_POOL_2D and MEAN over H and W: the sums run along the
channels, eight int16 lanes per load where a lane cannot overflow (windows of at most
INT16_SUM_TAPS taps), else four int32 lanes (exact for any window); MEAN's output stage is the
vectorised requantization, the average pool's rounding division by the count of taps inside
the image is scalar (Helium has no vector division), once per output value.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import AveragePool2D, Graph, Mean
from ..targets import Target
from .elementwise_mve import ScalarRequant
from .pooling import AveragePoolParams, MeanParams, _lower_average_pool, _lower_mean
from .reduce import is_image_mean
from .variant import Isa, LayerNames, Order, Variant


# An int16 lane holds the sum of this many int8 taps (255 x -128 = -32,640).
INT16_SUM_TAPS = 255


@dataclass(frozen=True)
class MveAveragePoolParams:
    base: AveragePoolParams  # kernels/pooling.py

    @property
    def int16_sums(self) -> bool:
        """Eight channels per load into int16 lanes (half the loads and adds of int32 lanes:
        DS-CNN's 25x5 pool on M55, 13,729 -> 7,457 instructions, est. cycles 10,367 -> 5,710)."""
        return self.base.window.k_h * self.base.window.k_w <= INT16_SUM_TAPS


def _lower_mve_average_pool(op: AveragePool2D, graph: Graph, target: Target,
                            names: LayerNames) -> MveAveragePoolParams:
    return MveAveragePoolParams(_lower_average_pool(op, graph, target, names))


@dataclass(frozen=True)
class MveMeanParams:
    base: MeanParams  # kernels/pooling.py
    requant: ScalarRequant


def _lower_mve_mean(op: Mean, graph: Graph, target: Target, names: LayerNames) -> MveMeanParams:
    base = _lower_mean(op, graph, target, names)
    return MveMeanParams(base=base, requant=ScalarRequant(base.multiplier, base.shift))


def _mean_multiplier_in_range(op: Mean, graph: Graph, target: Target) -> bool:
    return is_image_mean(op, graph, target) and all(m >= 0 for m in op.requant.multiplier)


AVGPOOL_S8_MVE = Variant("avgpool_s8_mve", (AveragePool2D,), Isa.MVE, "avgpool_s8_mve",
                         Order.SEPARATE, _lower_mve_average_pool)
MEAN_S8_MVE = Variant("mean_s8_mve", (Mean,), Isa.MVE, "mean_s8_mve", Order.SEPARATE,
                      _lower_mve_mean, applies=_mean_multiplier_in_range)

VARIANTS = (AVGPOOL_S8_MVE, MEAN_S8_MVE)
