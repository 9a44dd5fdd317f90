"""What a compiled model costs: per layer and in total (MACs, weights, arena), as JSON and text."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .codegen import ModelView, template_environment
from .ir import Conv2D, DepthwiseConv2D, FullyConnected, Graph, Op, TableLookup, op_inputs
from .kernels import Kernel, scratch_id
from .planner import Buffer, Plan, format_plan
from .targets import Target


@dataclass(frozen=True)
class LayerStats:
    index: int
    op: str
    kernel: str
    input_shape: list[int]
    output_shape: list[int]
    macs: int
    weight_bytes: int  # the model's weights and biases read by this layer
    const_bytes: int  # the tables emitted for it (weights, biases, multipliers, shifts)
    arena_offset: int | None  # None when the output is the caller's buffer
    arena_bytes: int  # size of its output in the arena (0 when it is the caller's)
    instructions: int | None = None  # measured by `mcugen run` (QEMU, exact), per inference


@dataclass(frozen=True)
class BufferStats:
    """One buffer of the memory plan: where it lives in the arena and while which layers."""

    id: str
    offset: int
    size: int
    first: int  # index of the layer that writes it
    last: int  # index of the last layer that reads it
    kind: str = "activation"  # or "scratch": a kernel's working memory during one layer


@dataclass(frozen=True)
class Report:
    model: str
    source: str
    target: str
    layers: list[LayerStats]
    macs: int
    weight_bytes: int
    const_bytes: int
    arena_bytes: int
    input_bytes: int
    output_bytes: int
    memory_plan: str
    measured: dict | None = None  # MeasuredSizes from the target's compiler, when it ran
    buffers: list[BufferStats] = field(default_factory=list)  # the memory plan, as data
    run: dict | None = None  # from `mcugen run`: qemu_board, inferences, instructions, bit_exact

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def to_markdown(self) -> str:
        return template_environment().get_template("report.md.j2").render(report=self)

    def to_html(self) -> str:
        from .report_html import render_html

        return render_html(self)

    def files(self) -> dict[str, str]:
        """The report files of an output folder."""
        return {"report.json": self.to_json(), "report.md": self.to_markdown(),
                "report.html": self.to_html()}


def op_label(op: Op) -> str:
    """The op's TFLite name; an op compiled to a lookup table says which op it was."""
    return f"{op.source} (table)" if isinstance(op, TableLookup) else op.OP


def count_macs(op: Op, graph: Graph) -> int:
    """Multiply-accumulates of the convolutions and fully connected layers."""
    if isinstance(op, (Conv2D, DepthwiseConv2D)):
        _, kh, kw, filter_c = graph.tensor(op.filter).shape
        per_output = kh * kw * (filter_c if isinstance(op, Conv2D) else 1)
        return graph.tensor(op.output).size * per_output
    if isinstance(op, FullyConnected):
        return graph.tensor(op.weights).size * (graph.tensor(op.output).size
                                                // graph.tensor(op.weights).shape[0])
    return 0


def build_report(graph: Graph, kernels: list[Kernel], buffers: list[Buffer], plan: Plan,
                 view: ModelView, target: Target) -> Report:
    layers = []
    for index, (op, kernel, layer) in enumerate(zip(graph.ops, kernels, view.layers)):
        constants = [graph.tensor(n) for n in op_inputs(op) if graph.tensor(n).is_constant]
        in_arena = op.output in plan.offsets
        layers.append(LayerStats(
            index=index, op=op_label(op), kernel=kernel.name,
            input_shape=list(graph.tensor(op.input).shape),
            output_shape=list(graph.tensor(op.output).shape),
            macs=count_macs(op, graph),
            weight_bytes=sum(t.nbytes for t in constants),
            const_bytes=sum(a.nbytes for a in layer.arrays.values()),
            arena_offset=plan.offsets[op.output] if in_arena else None,
            arena_bytes=graph.tensor(op.output).nbytes if in_arena else 0))
    return Report(
        model=view.name, source=view.source, target=target.name, layers=layers,
        macs=sum(s.macs for s in layers), weight_bytes=sum(s.weight_bytes for s in layers),
        const_bytes=sum(s.const_bytes for s in layers), arena_bytes=plan.arena_size,
        input_bytes=graph.input.nbytes, output_bytes=graph.output.nbytes,
        memory_plan=format_plan(buffers, plan),
        buffers=[BufferStats(b.id, plan.offsets[b.id], b.size, b.first, b.last,
                             "scratch" if b.id == scratch_id(b.first) else "activation")
                 for b in buffers if b.id in plan.offsets])
