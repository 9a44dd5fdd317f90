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

import numpy as np

from ..errors import McugenError
from ..ir import Graph, Op, SliceColumns
from ..targets import Target
from . import (cmsis_nn, conv, conv_mve, conv_rows, data_movement, depthwise,
               depthwise_mve, depthwise_pairs, depthwise_planar, elementwise, elementwise_mve,
               fully_connected, pointwise, pointwise_mve, pooling, pooling_mve, quantize,
               reduce, softmax)
from .variant import Access, Isa, LayerNames, Order, Params, Variant, checked_params, target_isas

# Ours, family by family, each family best first; the Helium (MVE) variants, in modules of
# their own (*_mve.py), come before the others of their family.
MCUGEN_VARIANTS: tuple[Variant, ...] = (
    *pointwise_mve.VARIANTS, *pointwise.VARIANTS, *conv_mve.VARIANTS, *conv_rows.VARIANTS,
    *conv.VARIANTS,
    *depthwise_mve.VARIANTS, *depthwise_planar.VARIANTS, *depthwise_pairs.VARIANTS,
    *depthwise.VARIANTS,
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
    variants = [select_variant(op, graph, target, kernel_set, lean, small_scratch)
                for op in graph.ops]
    for index, variant in planar_rows(graph, target, variants).items():
        variants[index] = variant
    layers = []
    for index, (op, variant) in enumerate(zip(graph.ops, variants)):
        names = LayerNames(model_name, index, variant.name)
        params = checked_params(variant.lower(op, graph, target, names), variant.name,
                                variant.access is Order.RASTER)
        layers.append(Layer(index, op, variant, names, params,
                            variant.scratch_bytes(op, graph, target)))
    return tuple(layers)


def as_written(layer: Layer, values: np.ndarray) -> np.ndarray:
    """A layer's output (NHWC values) in the order its C writes the bytes: rows channel-planar
    where planar_rows chose them (kernels/depthwise_planar.py), else as they are."""
    if not getattr(layer.params, "planar_output", False):
        return values
    h, w, c = layer.params.output.h, layer.params.output.w, layer.params.output.c
    return np.ascontiguousarray(values.reshape(h, w, c).transpose(0, 2, 1))


def planar_rows(graph: Graph, target: Target, variants: list[Variant]) -> dict[int, Variant]:
    """The layouts selection chooses besides NHWC, as the variants they give layers:
    channel-planar rows (kernels/depthwise_planar.py) of a tensor the DSP pointwise kernel
    writes and a depthwise layer that DW_CONV_S8_PLANAR_DSP computes reads, where that
    layer's variant is ours and not Helium's (the CMSIS-NN build keeps the library's) and
    its other readers are column slices (a column tile's halo, tiles.py), which then copy
    planar rows. At stride 2 the same in every selection of a graph (lean, small scratch:
    the writer is chosen alike in each); at stride 1 only where selection did not choose the
    ring variant, which is faster still (kernels/depthwise_planar.py): the small-scratch and
    lean selections. A budget's mix of selections takes a layout's layers from the same one
    (layout_group). A depthwise layer with a cached halo reads it and its input planar
    (DW_CONV_S8_PLANAR_HALO_DSP, its only variant): McugenError where they cannot be."""
    chosen: dict[int, Variant] = {}
    if Isa.DSP in target_isas(target):
        _planar_pairs(graph, target, variants, chosen)
    writers = graph.producers()
    for index, op in enumerate(graph.ops):
        halo = getattr(op, "halo", None)
        if halo is None:
            continue
        slicer = writers.get(halo)
        if index not in chosen or chosen.get(slicer) is not data_movement.SLICE_COLUMNS_S8_PLANAR:
            raise McugenError(f"layer {index}: a column tile's cached halo needs channel-planar "
                              "rows, which its writers cannot give here")
    return chosen


def _planar_pairs(graph: Graph, target: Target, variants: list[Variant],
                  chosen: dict[int, Variant]) -> None:
    writers = graph.producers()
    for index, (op, variant) in enumerate(zip(graph.ops, variants)):
        if variant.library or variant.isa is Isa.MVE or \
                not depthwise_planar.takes(op, graph, target) or \
                variant is depthwise_pairs.DW_CONV_S8_PAIRS_DSP and \
                depthwise_planar.faster_in_a_ring(op, graph):
            continue
        writer = writers.get(op.input)
        slices = [i for i in graph.consumers(op.input)
                  if i != index and isinstance(graph.ops[i], SliceColumns)]
        if writer is None or variants[writer] is not pointwise.PW_CONV_S8_DSP or \
                sorted([index, *slices]) != graph.consumers(op.input) or \
                op.input in graph.outputs or \
                not depthwise_planar.writes_planar(graph.ops[writer], graph):
            continue
        chosen[writer] = pointwise.PW_CONV_S8_PLANAR_DSP
        chosen[index] = depthwise_planar.DW_CONV_S8_PLANAR_HALO_DSP \
            if variant.reads_halo else depthwise_planar.DW_CONV_S8_PLANAR_DSP
        for cut in slices:
            chosen[cut] = data_movement.SLICE_COLUMNS_S8_PLANAR


def _layout_partners(graph: Graph, producers: dict[str, int], layers: tuple[Layer, ...],
                     index: int) -> list[int]:
    """The layers that must agree with layer `index` on a tensor's layout: the writer of a
    planar reader's input (and of its halo), the readers of a planar writer's output;
    producers: graph.producers()."""
    layer = layers[index]
    if layer.variant in (depthwise_planar.DW_CONV_S8_PLANAR_DSP,
                         depthwise_planar.DW_CONV_S8_PLANAR_HALO_DSP):
        halo = [producers[layer.op.halo]] if layer.op.halo is not None else []
        return [producers[layer.op.input], *halo]
    if layer.variant is data_movement.SLICE_COLUMNS_S8_PLANAR:
        return [producers[layer.op.input], *graph.consumers(layer.op.output)]
    if getattr(layer.params, "planar_output", False):
        return graph.consumers(layer.op.output)
    return []


def layout_group(graph: Graph, selections: tuple[tuple[Layer, ...], ...],
                 index: int) -> list[int]:
    """Layer `index` and every layer whose tensor layout goes with it in any of the
    selections (planar_rows' pairs), transitively: a mix of selections that takes all of
    them from one selection agrees on every layout."""
    producers = graph.producers()
    group, waiting = {index}, [index]
    while waiting:
        member = waiting.pop()
        for layers in selections:
            for partner in _layout_partners(graph, producers, layers, member):
                if partner not in group:
                    group.add(partner)
                    waiting.append(partner)
    return sorted(group)


def check_layouts(graph: Graph, layers: tuple[Layer, ...]) -> None:
    """Every planar reader's input written planar and every planar writer's output read so,
    whatever mix of selections the layers come from."""
    producers = graph.producers()
    for layer in layers:
        partners = _layout_partners(graph, producers, layers, layer.index)
        for partner in partners:
            assert layer.index in _layout_partners(graph, producers, layers, partner), \
                f"layers {layer.index} and {partner} disagree on their tensor's layout"
