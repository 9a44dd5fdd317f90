"""Kernel selection: which variant runs each op, with which parameters.

Each family module (pointwise, conv, depthwise, fully_connected, pooling, elementwise,
softmax, data_movement, quantize, reduce, cmsis_nn) declares its variants as data
(``variant.Variant``), best first. For each op, selection takes the first variant of the
kernel set whose op type, instruction set (among the target's features) and preconditions
match, and lowers the op to that variant's typed parameter record. Nothing else in mcugen
decides which code runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import McugenError
from ..ir import Graph, Op
from ..targets import Target
from . import (cmsis_nn, conv, conv_mve, conv_rows, data_movement, depthwise,
               depthwise_mve, depthwise_pairs, elementwise, elementwise_mve, fully_connected,
               pointwise, pointwise_mve, pooling, pooling_mve, quantize, reduce, softmax)
from .variant import Access, LayerNames, Order, Params, Variant, checked_params

# Ours, family by family, each family best first; the Helium (MVE) variants, in modules of
# their own (*_mve.py), come before the others of their family.
MCUGEN_VARIANTS: tuple[Variant, ...] = (
    *pointwise_mve.VARIANTS, *pointwise.VARIANTS, *conv_mve.VARIANTS, *conv_rows.VARIANTS,
    *conv.VARIANTS,
    *depthwise_mve.VARIANTS, *depthwise_pairs.VARIANTS, *depthwise.VARIANTS,
    *fully_connected.VARIANTS, *pooling_mve.VARIANTS, *pooling.VARIANTS, *softmax.VARIANTS,
    *elementwise_mve.VARIANTS, *elementwise.VARIANTS, *data_movement.VARIANTS,
    *quantize.VARIANTS, *reduce.VARIANTS)

KERNEL_SETS: dict[str, tuple[Variant, ...]] = {
    "mcugen": MCUGEN_VARIANTS,
    # CMSIS-NN where it has the layer, ours elsewhere.
    "cmsis-nn": (*cmsis_nn.VARIANTS, *MCUGEN_VARIANTS),
}


def select_variant(op: Op, graph: Graph, target: Target, kernel_set: str = "mcugen",
                   lean: bool = False, small_scratch: int = 0) -> Variant:
    """The first variant of the kernel set that takes the op; with lean, none that trades
    arena RAM for speed; with small_scratch (a tier, Variant.small_scratch), only those of
    them of that tier."""
    if kernel_set not in KERNEL_SETS:
        raise McugenError(f"unknown kernel set {kernel_set!r}; choose one of "
                          f"{', '.join(KERNEL_SETS)}")
    for variant in KERNEL_SETS[kernel_set]:
        if lean and variant.trades_ram:
            continue
        if small_scratch and variant.trades_ram and variant.small_scratch != small_scratch:
            continue
        if variant.accepts(op, graph, target):
            return variant
    raise McugenError(f"no kernel for {op.OP} on {target.name}")


@dataclass(frozen=True)
class Layer:
    """One op, lowered: the variant that runs it, its C names, parameters and scratch."""

    index: int
    op: Op
    variant: Variant
    names: LayerNames
    params: Params  # the variant's frozen parameter record
    scratch_bytes: int

    @property
    def access(self) -> Access:
        """The access order the planner relies on, with the blocking the template uses."""
        if self.variant.access is Order.RASTER:
            return Access(Order.RASTER, self.params.block_pixels)
        return Access(self.variant.access)

    @property
    def output_rows(self) -> int:
        """Rows of the output a step may compute a range of (1 if only the whole)."""
        return self.params.output.h if self.variant.row_ranges else 1

    @property
    def output_columns(self) -> int:
        """Columns of the output a step computes (every step today is full-width)."""
        return self.params.output.w if self.variant.row_ranges else 1


def lower_layers(graph: Graph, target: Target, model_name: str,
                 kernel_set: str = "mcugen", lean: bool = False,
                 small_scratch: int = 0) -> tuple[Layer, ...]:
    layers = []
    for index, op in enumerate(graph.ops):
        variant = select_variant(op, graph, target, kernel_set, lean, small_scratch)
        names = LayerNames(model_name, index, variant.name)
        params = checked_params(variant.lower(op, graph, target, names), variant.name,
                                variant.access is Order.RASTER)
        layers.append(Layer(index, op, variant, names, params,
                            variant.scratch_bytes(op, graph, target)))
    return tuple(layers)
