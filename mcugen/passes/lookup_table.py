"""Turn every int8 op whose output element depends only on the same input element into a
256-entry lookup table.

HARD_SWISH's fixed-point recipe, a stand-alone RELU/RELU6, and an ADD or MUL with a constant
scalar (the ``+ 3`` and ``/ 6`` of a hard sigmoid) are each a function from int8 to int8. Their
table is made by running the op's own reference kernel on all 256 inputs, so it is the op's
exact TFLite arithmetic by construction, and the C kernel is one load per element.
"""

from __future__ import annotations

import numpy as np

from ..ir import Add, Graph, HardSwish, Mul, Op, Relu, TableLookup
from ..reference import op_kernel

EVERY_INT8 = np.arange(-128, 128, dtype=np.int64)
# Ops that always become tables (ADD and MUL only with a constant scalar operand).
TABULATED = (HardSwish, Relu)


def lookup_tables(graph: Graph) -> Graph:
    ops = tuple(_as_table(graph, index, op) or op for index, op in enumerate(graph.ops))
    return graph.replace(ops=ops).without_unused_tensors()


def _as_table(graph: Graph, index: int, op: Op) -> TableLookup | None:
    if isinstance(op, TABULATED):
        constants = ()
    elif isinstance(op, (Add, Mul)) and _is_constant_scalar(graph, op.input2):
        constants = (graph.tensor(op.input2).data,)
    else:
        return None
    values = op_kernel(op, index)(op, graph, EVERY_INT8, *constants).reshape(-1)
    return TableLookup(input=op.input, output=op.output,
                       table=tuple(int(v) for v in values), source=op.OP)


def _is_constant_scalar(graph: Graph, name: str) -> bool:
    tensor = graph.tensor(name)
    return tensor.is_constant and tensor.size == 1
