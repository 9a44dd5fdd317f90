"""Remove RESHAPE: in NHWC row-major order it never moves a byte, so its readers can read its
input directly. A reshape that produces the graph output makes its input the graph output.

A reshape to 4-D read by an op that needs an image (a 1x1 convolution after a global pool
flattened to [1, C], as Keras exports give it) stays: its readers need the 4-D shape, and it
costs one copy of a small tensor."""

from __future__ import annotations

import dataclasses

from ..ir import AveragePool2D, Conv2D, DepthwiseConv2D, Graph, Mean, Pad, Reshape

NEEDS_IMAGE = (Conv2D, DepthwiseConv2D, Pad, AveragePool2D, Mean)


def elide_reshape(graph: Graph) -> Graph:
    renames: dict[str, str] = {}
    kept = []
    for op in graph.ops:
        op = _renamed(op, renames)
        if isinstance(op, Reshape) and op.input not in graph.inputs \
                and not _readers_need_its_shape(graph, op):
            renames[op.output] = op.input
        else:
            kept.append(op)
    outputs = tuple(renames.get(name, name) for name in graph.outputs)
    return graph.replace(ops=tuple(kept), outputs=outputs).without_unused_tensors()


def _readers_need_its_shape(graph: Graph, op: Reshape) -> bool:
    if len(graph.tensor(op.input).shape) == 4:
        return False
    return any(isinstance(graph.ops[i], NEEDS_IMAGE) for i in graph.consumers(op.output))


def _renamed(op, renames: dict[str, str]):
    changes = {field: renames[getattr(op, field)] for field in op.INPUTS
               if getattr(op, field) in renames}
    return dataclasses.replace(op, **changes) if changes else op
