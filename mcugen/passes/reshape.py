"""Remove RESHAPE: in NHWC row-major order it never moves a byte, so its readers can read its
input directly. A reshape that produces the graph output makes its input the graph output."""

from __future__ import annotations

import dataclasses

from ..ir import Graph, Reshape


def elide_reshape(graph: Graph) -> Graph:
    renames: dict[str, str] = {}
    kept = []
    for op in graph.ops:
        op = _renamed(op, renames)
        if isinstance(op, Reshape) and op.input not in graph.inputs:
            renames[op.output] = op.input
        else:
            kept.append(op)
    outputs = tuple(renames.get(name, name) for name in graph.outputs)
    return graph.replace(ops=tuple(kept), outputs=outputs).without_unused_tensors()


def _renamed(op, renames: dict[str, str]):
    changes = {field: renames[getattr(op, field)] for field in op.INPUTS
               if getattr(op, field) in renames}
    return dataclasses.replace(op, **changes) if changes else op


