"""The compiler pipeline, stage by stage: IR -> passes -> kernels -> memory plan -> sources.

Kernels are chosen before memory is planned because the kernel's access order decides whether
an output may be written over its input (and, for CMSIS-NN, how much scratch it needs).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import ir
from .codegen import ModelView, build_model_view, render_sources
from .errors import McugenError
from .ir import Graph, op_inputs, op_outputs
from .kernels import (ELEMENTWISE_KERNELS, Kernel, cmsis_path, scratch_id, select_kernel,
                      streaming_order)
from .passes.fold_pad import fold_pad
from .passes.lookup_table import lookup_tables
from .passes.quantize import quantize_constants
from .passes.reshape import elide_reshape
from .planner import Buffer, Overlap, Plan, plan_memory, streaming_distance
from .report import Report, build_report
from .targets import Target


@dataclass(frozen=True)
class CompiledModel:
    graph: Graph  # after the passes: what the C computes, and what the reference interprets
    kernels: tuple[Kernel, ...]
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


def arena_buffers(graph: Graph, kernels: list[Kernel]) -> list[Buffer]:
    """One buffer per intermediate activation (graph input and output live in the caller's
    memory), with the overlaps that streaming kernels allow, and one per kernel scratch, alive
    only while its layer runs."""
    external = set(graph.inputs) | set(graph.outputs)
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for index, op in enumerate(graph.ops):
        for name in op_outputs(op):
            first.setdefault(name, index)
            last.setdefault(name, index)
        for name in op_inputs(op):
            last[name] = index
    buffers = []
    for index, (op, kernel) in enumerate(zip(graph.ops, kernels)):
        for name in op_outputs(op):
            if name in external:
                continue
            overlaps = tuple(Overlap(other=source, distance=distance)
                             for source, distance in _streamed_inputs(op, kernel, graph)
                             if source not in external and last[source] == index)
            buffers.append(Buffer(name, graph.tensor(name).nbytes, first[name], last[name],
                                  overlaps))
        if kernel.scratch_bytes:
            buffers.append(Buffer(scratch_id(index), kernel.scratch_bytes, index, index))
    return buffers


def _streamed_inputs(op: ir.Op, kernel: Kernel, graph: Graph) -> list[tuple[str, int]]:
    """The inputs a streaming kernel's output may be written over, with the distance."""
    if not kernel.streams:
        return []
    if kernel.name in ELEMENTWISE_KERNELS:
        shape = graph.tensor(op.output).shape
        return [(name, 0) for name in dict.fromkeys(op_inputs(op))
                if graph.tensor(name).shape == shape and not graph.tensor(name).is_constant]
    return [(op.input, streaming_distance(*streaming_order(op, graph, kernel.block_pixels)))]


def compile_graph(graph: Graph, *, name: str, target: Target, source: str,
                  memory_check: bool = True, kernel_set: str = "mcugen") -> CompiledModel:
    graph = prepare(graph)
    kernels = [select_kernel(op, graph, target, kernel_set) for op in graph.ops]
    buffers = arena_buffers(graph, kernels)
    plan = plan_memory(buffers)
    cmsis_nn = cmsis_path(target) if any(k.library_function for k in kernels) else None
    view = build_model_view(graph, kernels, plan, name, source, cmsis_nn)
    report = build_report(graph, kernels, buffers, plan, view, target)
    if memory_check:
        check_memory(report, target)
    return CompiledModel(graph, tuple(kernels), tuple(buffers), plan, view,
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
