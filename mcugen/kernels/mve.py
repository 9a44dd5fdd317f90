"""What the Helium (MVE) variants share: dot products in VMLADAVA.S8 chunks of 16 bytes, the
filter layout the dot-product blocks read, and TFLite's output stage on four int32 lanes
(templates/isa/mve.c.j2).

VMLADAVA.S8 multiplies 16 int8 pairs and adds them to a 32-bit register: one instruction for 16
MACs. Its accumulator must be an even register, so a block of dot products holds at most eight
accumulators (r0, r2, ... r12 and LR, which a DLS/LE loop then cannot count with); the blocks
are inline assembly (templates/kernels/mve.j2) so that the loads post-increment and nothing
spills. A dot product of any depth is its full
chunks and one tail chunk, whose input loads are predicated (VCTP, inactive lanes read as 0,
nothing past the input is read) and whose weights are zero-padded, so any channel count works.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Graph, Op
from .lowering import Clamp, ceil_to, clamp
from .variant import ConstArray, LayerNames

VECTOR_BYTES = 16
INT32_LANES = 4
# Dot products of at most this many chunks are unrolled, every load at an immediate offset
# (VLDRB reaches 127 bytes: chunk 7 of a row; VLDRW 508: four weight rows of 8 chunks); longer
# ones loop under DLS/LE with post-incremented loads.
UNROLLED_CHUNKS = 8


@dataclass(frozen=True)
class Chunks:
    """A dot product of ``depth`` int8s in VMLADAVA.S8 chunks: full ones, then a tail."""

    depth: int

    @property
    def full(self) -> int:
        return self.depth // VECTOR_BYTES

    @property
    def tail(self) -> int:
        return self.depth % VECTOR_BYTES

    @property
    def count(self) -> int:
        return -(-self.depth // VECTOR_BYTES)

    @property
    def padded(self) -> int:
        """A weight row's bytes, zero-padded to whole chunks."""
        return self.count * VECTOR_BYTES

    @property
    def unrolled(self) -> bool:
        return self.count <= UNROLLED_CHUNKS


def quad_rows(rows: np.ndarray, chunks: Chunks) -> np.ndarray:
    """Weight rows [n, depth] as the matrix products' dot-product blocks read them: the rows
    zero-padded to whole chunks (and their count to a multiple of four), each group of four
    rows with their chunks interleaved ([group][chunk][4][16]), so that one pointer walks a
    group's four rows chunk by chunk (the four weight vectors of a chunk 16 bytes apart)."""
    n = rows.shape[0]
    padded = np.zeros((ceil_to(n, INT32_LANES), chunks.padded), np.int8)
    padded[:n, :rows.shape[1]] = rows
    groups = padded.reshape(-1, INT32_LANES, chunks.count, VECTOR_BYTES).transpose(0, 2, 1, 3)
    return groups.reshape(-1)


@dataclass(frozen=True)
class OutputStage:
    """TFLite's output stage as templates/isa/mve.c.j2 applies it: which requantization (all
    right shifts, or the general one with left shifts), and the clamp."""

    right_only: bool  # every shift <= -1: no left shift, and every lane rounds
    left: bool  # some shift > 0
    clamp: Clamp

    @property
    def function(self) -> str:
        """The function on lanes that are channels (vectors of multipliers and shifts)."""
        return "mve_requantize_right" if self.right_only else "mve_requantize"

    @property
    def function_n(self) -> str:
        """The function on lanes that share one channel (a multiplier and shift)."""
        return "mve_requantize_right_n" if self.right_only else "mve_requantize_n"


@dataclass(frozen=True)
class ChannelShifts:
    """Per channel: the multiplier, VRSHL's shift (min(shift, 0), negative to the right) and
    the left shift (max(shift, 0)), padded with multiplier 0 and shift -1 (requantizing
    anything to 0)."""

    multiplier: np.ndarray
    right: np.ndarray
    left: np.ndarray
    stage: OutputStage


def multipliers_in_range(op: Op) -> bool:
    """VQRDMULH never saturates and h + (h >> 31) never overflows for multipliers in
    [0, 2^31), QuantizeMultiplier's range (the requantization's precondition)."""
    return bool((np.asarray(op.requant.multiplier, np.int64) >= 0).all())


def channel_shifts(op: Op, graph: Graph, channels: int,
                   padded_channels: int | None = None) -> ChannelShifts:
    """The op's multipliers and shifts per channel (a per-tensor pair repeated)."""
    padded_channels = channels if padded_channels is None else padded_channels
    multiplier = np.zeros(padded_channels, np.int32)
    shift = np.full(padded_channels, -1, np.int32)
    multiplier[:channels] = np.broadcast_to(np.array(op.requant.multiplier, np.int32),
                                            (channels,))
    shift[:channels] = np.broadcast_to(np.array(op.requant.shift, np.int32), (channels,))
    left = np.maximum(shift, 0)
    stage = OutputStage(right_only=bool((shift <= -1).all()), left=bool(left.any()),
                        clamp=clamp(op, graph))
    return ChannelShifts(multiplier, np.minimum(shift, 0), left, stage)


@dataclass(frozen=True)
class LaneTables:
    """Per-channel int32 tables interleaved by groups of four channels ([group][table][4]),
    so that one pointer reaches a group's vectors, each one load at an immediate offset."""

    array: ConstArray
    names: tuple[str, ...]  # the tables, in their order within a group

    def offset(self, name: str) -> int:
        """Where the table's vector starts in a group, in int32s."""
        return INT32_LANES * self.names.index(name)

    @property
    def stride(self) -> int:
        """A group's int32s."""
        return INT32_LANES * len(self.names)

    def has(self, name: str) -> bool:
        return name in self.names


def lane_tables(name: str, tables: dict[str, np.ndarray]) -> LaneTables:
    """Tables of a multiple of four channels each, interleaved by groups of four."""
    stacked = np.stack([t.astype(np.int32).reshape(-1, INT32_LANES) for t in tables.values()],
                       axis=1)
    return LaneTables(ConstArray(name, "int32_t", stacked.reshape(-1)), tuple(tables))


def output_lane_tables(names: LayerNames, bias: np.ndarray, shifts: ChannelShifts) -> LaneTables:
    """The bias and the output stage's tables of a kernel whose lanes are channels."""
    tables = {"bias": bias, "multiplier": shifts.multiplier, "right": shifts.right}
    if shifts.stage.left:
        tables["left"] = shifts.left
    return lane_tables(names.table("channels"), tables)
