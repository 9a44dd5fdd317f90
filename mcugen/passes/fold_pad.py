"""Fold an explicit PAD into the convolution that reads it.

Keras' ZeroPadding2D before a VALID stride-2 depthwise (and converters from other frameworks)
give PAD -> CONV. TFLite's PAD fills with the zero point and a convolution adds nothing for a
zero-point input, exactly as it adds nothing for its own implicit padding: folding is exact and
saves a copy of the whole activation.
"""

from __future__ import annotations

import dataclasses

from ..ir import Conv2D, DepthwiseConv2D, Graph, Pad, Padding


def fold_pad(graph: Graph) -> Graph:
    ops = list(graph.ops)
    removed: set[int] = set()
    for index, op in enumerate(ops):
        if not isinstance(op, Pad) or op.output in graph.outputs:
            continue
        readers = graph.consumers(op.output)
        if len(readers) != 1 or not isinstance(ops[readers[0]], (Conv2D, DepthwiseConv2D)):
            continue
        conv = ops[readers[0]]
        ops[readers[0]] = dataclasses.replace(
            conv, input=op.input, padding=_add(conv.padding, op.padding))
        removed.add(index)
    kept = tuple(op for i, op in enumerate(ops) if i not in removed)
    return graph.replace(ops=kept).without_unused_tensors()


def _add(a: Padding, b: Padding) -> Padding:
    return Padding(a.top + b.top, a.bottom + b.bottom, a.left + b.left, a.right + b.right)
