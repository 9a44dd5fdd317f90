"""Which layers share one C function: decided from their lowered parameter records, not from
rendered C.

A layer function's body is compiled from its parameter record. Each field of the record is
either *shape* or *data*:
- shape: what the body is compiled for, constants in its C: sizes, strides, windows, block
  counts, zero points and clamps, the choice of helper functions, whether a table exists.
  Every int, float, bool, str, enum and None in the record, and the type of each nested
  record, compared by value.
- data, of three kinds:
  - tables (``ConstArray``: weights, biases, multipliers, shifts, per-channel constants),
    compared by C type and length only; a function shared by several layers takes each as an
    argument (codegen's ``TableArgument``);
  - values already laid out in the record's tables, never printed by a template: raw NumPy
    arrays (the short requantization's multipliers) and fields declared
    ``variant.tabulated()`` (its output zero point, folded into K);
  - the scalar fields a variant names in its ``data_scalars`` (paths such as
    ``"constants.output_multiplier"``): per-layer ints its template reads as C int32_t
    values. A layer alone with its function keeps them as constants; a function shared by
    several layers takes them as arguments ``d_<path with _>`` (codegen's
    ``ScalarArgument``), and its template prints the parameter's name (codegen's
    ``CParameter``), so it may use them only as C expressions, never in Jinja arithmetic or
    tests (which raise). The variant, not the record type, declares them: two variants may
    lower to one record type and bake in different fields (an instruction's immediate
    operand must stay shape).

Two layers share a function when their variants are equal and so is everything their function
is compiled from besides data: the record's shape, their operands' C types, the scratch and
row-band arguments of its signature, the comment above it. A value whose difference should not
keep layers apart is a data scalar or goes into a table; a value that shapes the code (a loop
the compiler unrolls by it, a branch taken at generation time, a hot loop's bound) stays
shape, a constant the compiler folds. docs/extending.md states the contract for templates.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any, Hashable

import numpy as np

from .kernels import Layer
from .kernels.variant import ConstArray, is_tabulated


DATA = "data"  # where a data field stands in a record's shape


@dataclasses.dataclass(frozen=True)
class TableShape:
    """A table as a shared function's body sees it: a pointer argument of this type, to this
    many elements."""

    ctype: str
    length: int


class _Unshareable:
    """A value of a type this module does not classify: its layer keeps its own function
    (equal to nothing but itself)."""


def record_shape(record: Any, data_scalars: frozenset[str] = frozenset(),
                 path: str = "") -> Hashable:
    """The record with its data left out: equal for records that compile to one body.
    data_scalars: the paths of its fields that are data scalars (Variant.data_scalars)."""
    if isinstance(record, ConstArray):
        return TableShape(record.ctype, int(record.values.size))
    if isinstance(record, np.ndarray):
        return np.ndarray  # values laid out in a table of the record
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return (type(record),) + tuple(
            (f.name, DATA if path + f.name in data_scalars or is_tabulated(f)
             else record_shape(getattr(record, f.name), data_scalars, f"{path}{f.name}."))
            for f in dataclasses.fields(record))
    if isinstance(record, (tuple, list)):
        return (type(record),) + tuple(record_shape(item) for item in record)
    if isinstance(record, np.generic):
        record = record.item()
    if record is None or isinstance(record, (bool, int, float, str, Enum)):
        return (type(record), record)  # 1 and True and 1.0 are not the same C
    return _Unshareable()


def function_key(layer: Layer, input_ctype: str, output_ctype: str, banded: bool,
                 comment: str) -> Hashable:
    """What layer's function is compiled from, besides data: layers with equal keys share one
    function. The comment (the op and its shapes) is compared too, so that the shared
    function's comment is true of every layer that calls it. A library's layers never share
    (their static structs point at their tables)."""
    if layer.variant.library is not None:
        return _Unshareable()
    data_scalars = frozenset(layer.variant.data_scalars)
    return (layer.variant, record_shape(layer.params, data_scalars), input_ctype, output_ctype,
            layer.scratch_bytes > 0, banded, comment)


def sharing_groups(keys: list[Hashable]) -> list[int]:
    """For each layer (by position), the position of the first layer with its key: the layer
    that defines the function the others call."""
    owners: dict[Hashable, int] = {}
    return [owners.setdefault(key, position) for position, key in enumerate(keys)]
