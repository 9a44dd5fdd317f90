"""The compiler pipeline, stage by stage: IR -> passes -> kernels -> schedule -> memory plan ->
sources.

Kernels are chosen before memory is planned because a kernel's access order decides whether
an output may be written over its input (and how much scratch it needs); the schedule comes
between the two because buffer lifetimes are counted in steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import ir
from .codegen import ModelView, build_model_view, render_sources
from .errors import McugenError
from .ir import Graph
from .kernels import Layer, lower_layers
from .kernels.cmsis_nn import cmsis_path
from .passes.fold_pad import fold_pad
from .passes.lookup_table import lookup_tables
from .passes.quantize import quantize_constants
from .passes.reshape import elide_reshape
from .planner import Buffer, Plan, plan_memory
from .report import Report, build_report
from .schedule import Step, arena_buffers, layer_by_layer
from .targets import Target


@dataclass(frozen=True)
class CompiledModel:
    graph: Graph  # after the passes: what the C computes, and what the reference interprets
    layers: tuple[Layer, ...]  # one per op: the variant that runs it and its parameters
    steps: tuple[Step, ...]
    buffers: tuple[Buffer, ...]
    plan: Plan
    view: ModelView
    sources: dict[str, str]  # file name -> text
    report: Report


def prepare(graph: Graph) -> Graph:
    """The IR passes, in order; the result is verified."""
    for rewrite in (fold_pad, elide_reshape, quantize_constants, lookup_tables):
        graph = rewrite(graph)
        ir.verify(graph)
    return graph


def compile_graph(graph: Graph, *, name: str, target: Target, source: str,
                  memory_check: bool = True, kernel_set: str = "mcugen") -> CompiledModel:
    graph = prepare(graph)
    layers = lower_layers(graph, target, name, kernel_set)
    steps = layer_by_layer(layers)
    buffers = arena_buffers(graph, layers, steps)
    plan = plan_memory(buffers)
    library = any(layer.variant.library for layer in layers)
    view = build_model_view(graph, layers, steps, plan, name, source,
                            cmsis_path(target) if library else None)
    report = build_report(graph, layers, steps, buffers, plan, target, model=name,
                          source=source)
    if memory_check:
        check_memory(report, target)
    return CompiledModel(graph, layers, steps, tuple(buffers), plan, view,
                         render_sources(view), report)


def check_memory(report: Report, target: Target) -> None:
    if report.const_bytes > target.flash_bytes:
        raise McugenError(
            f"the model needs {report.const_bytes} bytes of flash for its weights but "
            f"{target.name} has {target.flash_bytes}; use a smaller alpha, another target, "
            f"or --no-memory-check")
    if report.arena_bytes > target.ram_bytes:
        raise McugenError(
            f"the model needs a {report.arena_bytes}-byte arena but {target.name} has "
            f"{target.ram_bytes} bytes of RAM; use a smaller resolution, another target, "
            f"or --no-memory-check")
