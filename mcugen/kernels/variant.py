"""What a kernel variant is, as data.

A variant is one C implementation of one op family on one instruction set: the instruction set
it needs, the shapes it handles (its preconditions), the order in which it writes its output
relative to reading its input (its access order: what the memory planner may overlap), the
arena scratch it uses, how it lowers an op to a frozen record of typed parameters, and the
template that renders that record as C. Selection (``kernels.select``) is a Python decision
over these records; the report names the variant of every layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any, ClassVar, Protocol

import numpy as np

from ..ir import Graph, Op
from ..targets import Target


class Isa(str, Enum):
    """An instruction set a variant needs, named as the targets' ``features`` name them."""

    PORTABLE = "portable"  # C99: any core, and the build machine
    ARMV7M = "armv7m"  # ARMv7-M and later: Thumb-2, 32x32->64 multiplies, unaligned words
    DSP = "dsp"  # the DSP extension: SIMD32 (SXTB16, SMLAD...), saturation
    MVE = "mve"  # Helium


def target_isas(target: Target) -> frozenset[Isa]:
    """The instruction sets a target's code may use: portable C always."""
    return frozenset({Isa.PORTABLE} | {isa for isa in Isa if isa.value in target.features})


class Order(str, Enum):
    SEPARATE = "separate"  # any order: the output never shares bytes with the input
    RASTER = "raster"  # output pixels in raster order, see Access
    ELEMENTWISE = "elementwise"  # element i of every input is read before element i is written


@dataclass(frozen=True)
class Access:
    """How a kernel's writes follow its reads. With RASTER, output pixel p (all its channels)
    is written only after the windows of pixels < p are read, blocks of ``block_pixels`` pixels
    being computed together (each of their writes may come before the block's last read); the
    planner then may start the output below its input by the distance this order allows. The
    template reads ``block_pixels`` from here, so the two cannot disagree."""

    order: Order
    block_pixels: int = 1


SEPARATE = Access(Order.SEPARATE)
ELEMENTWISE = Access(Order.ELEMENTWISE)


def raster(block_pixels: int = 1) -> Access:
    return Access(Order.RASTER, block_pixels)


@dataclass(frozen=True)
class ConstArray:
    """A const table in flash: weights, biases, multipliers, shifts."""

    name: str
    ctype: str  # "int8_t" or "int32_t"
    values: np.ndarray  # flat

    @property
    def nbytes(self) -> int:
        return self.values.size * self.values.itemsize

    def as_int32(self) -> ConstArray:
        """The values checked to fit, as int32."""
        values = np.asarray(self.values, np.int64)
        if values.size and (values.min() < -2**31 or values.max() >= 2**31):
            raise ValueError(f"{self.name} does not fit in int32")
        return ConstArray(self.name, self.ctype, values.astype(np.int32))

    def padded(self, count: int) -> ConstArray:
        """The table with count zeros after it, for kernels that read past the end (MVE)."""
        if count == 0:
            return self
        values = np.concatenate([self.values, np.zeros(count, self.values.dtype)])
        return ConstArray(self.name, self.ctype, values)


TABULATED = "tabulated"


def tabulated() -> Any:
    """A parameter record's field whose value the lowering has laid out in the record's tables
    (an output zero point folded into per-channel constants): no template prints it, so layers
    that differ in it may share a function (mcugen/sharing.py), as NumPy arrays of values."""
    return field(metadata={"sharing": TABULATED})


def is_tabulated(record_field) -> bool:
    return record_field.metadata.get("sharing") == TABULATED


@dataclass(frozen=True)
class LayerNames:
    """Every C name a layer defines, decided here, never in a template: its function
    (``layer3_pw_conv_s8_dsp``), the static helpers it defines (``local``), its tables in
    NAME_weights.c (``table``) and any other static symbol (``symbol``)."""

    model: str
    index: int
    variant: str

    @property
    def function(self) -> str:
        return f"layer{self.index}_{self.variant}"

    def local(self, role: str) -> str:
        return f"{self.function}_{role}"

    def table(self, role: str) -> str:
        return f"{self.model}_layer{self.index}_{role}"

    def symbol(self, role: str) -> str:
        return f"layer{self.index}_{role}"


class Params(Protocol):
    """A variant's parameter record: a frozen dataclass of typed fields (FeatureMaps, Windows,
    ConstArrays, numbers, nested records) that its template renders and that const_arrays and
    mcugen/sharing.py walk field by field; a RASTER variant's also holds its ``block_pixels``
    (kernels.Layer.access). checked_params holds a lowering to it."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]


def checked_params(record: object, variant: str, raster: bool) -> Params:
    """The lowering's record, once checked to be what the compiler relies on (Params)."""
    if not is_dataclass(record) or isinstance(record, type) or \
            not type(record).__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"{variant}: its lowering gave {type(record).__name__}, not a frozen "
                        f"dataclass")
    if raster:
        block = getattr(record, "block_pixels", None)
        if not isinstance(block, int) or block < 1:
            raise TypeError(f"{variant}: a raster variant's record needs block_pixels >= 1, "
                            f"not {block!r}")
    return record  # type: ignore[return-value]


Lowering = Callable[[Op, Graph, Target, LayerNames], Params]
Precondition = Callable[[Op, Graph, Target], bool]
ScratchSize = Callable[[Op, Graph, Target], int]
SpeedCost = Callable[[Op, Graph], float]


def always(op: Op, graph: Graph, target: Target) -> bool:
    return True


def no_scratch(op: Op, graph: Graph, target: Target) -> int:
    return 0


def no_cost(op: Op, graph: Graph) -> float:
    return 0.0


def per_mac(cost: float) -> SpeedCost:
    """The same instructions per MAC for every op."""
    return lambda op, graph: cost


@dataclass(frozen=True)
class Variant:
    name: str  # the kernel's name in reports and C function names
    ops: tuple[type, ...]  # the IR op types it implements
    isa: Isa
    template: str  # templates/kernels/<template>.c.j2: one layer's C from its parameters
    access: Order  # with RASTER, the parameter record holds the block (see kernels.Layer)
    lower: Lowering
    applies: Precondition = always  # shapes (and, for a library, code paths) it handles
    scratch_bytes: ScratchSize = no_scratch  # arena scratch while the layer runs
    helpers: tuple[str, ...] = ()  # shared C (templates/kernels/<name>.c.j2), once per model
    row_ranges: bool = False  # the layer function computes any range [begin, end) of rows
    # With row_ranges: it computes any region of rows by columns [column_begin, column_end),
    # and addresses each operand from the column its view starts at (schedule.View): a step
    # may give it a region narrower than a row (schedule.column_layers; row_bands.verify
    # refuses one to a variant without it).
    columns: bool = False
    library: str | None = None  # the library it calls (CMSIS-NN), which the user brings
    returns_status: bool = False  # the layer function returns the library's status
    binary: bool = False  # takes a second activation operand (ADD, MUL)
    # Implements a uint8 model's form of its ops (ir's ``legacy`` ops: weights with a zero
    # point, uint8 AVERAGE_POOL_2D's rounding).
    legacy: bool = False
    # Fields of the parameter record ("constants.output_multiplier") that are data: per-layer
    # ints that layers sharing the function pass as arguments (mcugen/sharing.py).
    data_scalars: tuple[str, ...] = ()
    # Spends arena scratch on speed (a copy of its input rows in a wider form): selection
    # leaves it out when the arena must fit a RAM budget that it would exceed
    # (kernels.lower_layers' lean).
    trades_ram: bool = False
    # Of those, one whose scratch stays a few hundred bytes: the tier (1, then 2: smaller)
    # selection tries where the fast variant's scratch does not fit (kernels.lower_layers'
    # small_scratch); 0: none.
    small_scratch: int = 0
    # Banded, it keeps in its scratch the input rows its previous step read (its steps take
    # consecutive row ranges from row 0 and the scratch is the layer's while they run): a
    # step reads from its input's buffer only the rows after those, so the band buffer need
    # not hold them (row_bands.buffer_rows).
    keeps_input_rows: bool = False
    # What choosing it to save RAM costs in speed: the instructions per MAC it spends beyond
    # its op's fastest variant on the same core, for the variants a RAM budget chooses
    # between (a trades_ram variant's lean alternative, the small_scratch tiers); 0 for the
    # others. Measured on Cortex-M7 (QEMU, VWW's layers against the trades_ram variant's);
    # compile.variant_cost weighs schedules with it.
    slower_per_mac: SpeedCost = no_cost
    # Reads a column tile's cached halo as the left padding's columns (ir.DepthwiseConv2D.halo,
    # its second operand): the others never take such an op.
    reads_halo: bool = False

    def accepts(self, op: Op, graph: Graph, target: Target) -> bool:
        return (isinstance(op, self.ops) and self.isa in target_isas(target)
                and (self.legacy or not getattr(op, "legacy", False))
                and (getattr(op, "halo", None) is not None) == self.reads_halo
                and self.applies(op, graph, target))


def const_arrays(record: object) -> list[ConstArray]:
    """Every ConstArray in a parameter record, in field order, nested records included."""
    if isinstance(record, ConstArray):
        return [record]
    if is_dataclass(record):
        return [a for f in fields(record) for a in const_arrays(getattr(record, f.name))]
    if isinstance(record, (tuple, list)):
        return [a for item in record for a in const_arrays(item)]
    return []
