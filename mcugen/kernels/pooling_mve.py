"""Helium (MVE) variants of AVERAGE_POOL_2D and MEAN over H and W: the sums run along the
channels, four int32 lanes per load (exact for any window); MEAN's output stage is the
vectorised requantization, the average pool's rounding division by the count of taps inside
the image is scalar (Helium has no vector division), once per output value.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import AveragePool2D, Graph, Mean
from ..targets import Target
from .elementwise_mve import ScalarRequant
from .pooling import MeanParams, _lower_average_pool, _lower_mean
from .reduce import is_image_mean
from .variant import Isa, LayerNames, Order, Variant


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
                         Order.SEPARATE, _lower_average_pool)
MEAN_S8_MVE = Variant("mean_s8_mve", (Mean,), Isa.MVE, "mean_s8_mve", Order.SEPARATE,
                      _lower_mve_mean, applies=_mean_multiplier_in_range)

VARIANTS = (AVGPOOL_S8_MVE, MEAN_S8_MVE)
