"""`mcugen build --selftest N`: NAME_selftest.c, a self-check a firmware runs on the board.

It holds N input vectors and, for each, the CRC-32 of every layer's output as the oracle
computed it (mcugen/oracle.py: TFLM, or TensorFlow Lite's reference kernels where TFLM cannot
run the model). `NAME_selftest()` runs the vectors through NAME_invoke, checksums each layer's
output as the layer writes it (a banded layer's rows in order: the CRC of the whole tensor;
rows a layer writes channel-planar, kernels.as_written, in that order)
and returns 0, or the index + 1 of the first layer whose checksum differs.

The checksum is CRC-32 (the polynomial of zlib, Ethernet and PNG, reflected, initial and final
value 0xFFFFFFFF; Python's zlib.crc32 computes the expected values): it detects every change
of up to 32 consecutive bits and any odd number of flipped bits, and with a 16-entry table
(64 bytes of flash) costs two table look-ups per byte, also on a Cortex-M0 without a
multiplier. Fletcher-32 would be cheaper still but misses some changes (0x00 and 0xFF bytes
are the same modulo 255), which int8 activations produce often.

A layer's expected output is the oracle's tensor of the same name, less the constant channels
mcugen removed (passes/dead_channels.py), and equal to the NumPy reference's
(mcugen/reference.py): a disagreement is refused here rather than flashed. Where the oracle
has no such tensor, the reference's stands, and the report says for how many layers.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

from .compile import CompiledModel
from .errors import McugenError
from .ir import TYPE_RANGES, Graph
from .kernels import as_written
from .oracle import OracleTensors, oracle_tensors
from .reference import run_reference

DEFAULT_VECTORS = 1  # `--selftest` without a number
MAX_VECTORS = 64  # each costs an input's bytes of flash


@dataclass(frozen=True)
class SelftestVector:
    kind: str  # what the input is, for the C comment
    values: np.ndarray  # the input, flattened, of the model's input type
    checksums: tuple[int, ...]  # per layer, CRC-32 of its output


@dataclass(frozen=True)
class Selftest:
    """What NAME_selftest.c holds, and where its figures came from."""

    vectors: tuple[SelftestVector, ...]
    oracle: str  # which oracle computed the checksums, with why TFLM did not if so
    from_oracle: int  # layers whose checksums are of the oracle's own tensor
    layers: int

    @property
    def data_bytes(self) -> int:
        """Flash of the vectors, the checksums and the CRC table (code not included)."""
        inputs = sum(v.values.nbytes for v in self.vectors)
        return inputs + 4 * self.layers * len(self.vectors) + 4 * 16

    @property
    def ram_bytes(self) -> int:
        """The checksums of the last run (4 bytes per layer and vector) and the running
        ones."""
        return 4 * self.layers * (len(self.vectors) + 1)

    def as_dict(self) -> dict:
        return dict(vectors=len(self.vectors), kinds=[v.kind for v in self.vectors],
                    oracle=self.oracle, layers_from_oracle=self.from_oracle,
                    layers=self.layers, checksum="CRC-32 (zlib)",
                    data_bytes=self.data_bytes, ram_bytes=self.ram_bytes, measured=None)


def selftest_summary(selftest: dict) -> str:
    """What --selftest costs: the vectors' and checksums' flash (and, measured, with its code)
    and where the checksums came from."""
    count = selftest["vectors"]
    measured = selftest.get("measured")
    cost = (f"flash {measured['flash_bytes']:,} B measured (vectors and checksums "
            f"{selftest['data_bytes']:,} B + code), RAM {measured['ram_bytes']:,} B"
            if measured else
            f"flash {selftest['data_bytes']:,} B (vectors and checksums, without code), "
            f"RAM {selftest['ram_bytes']:,} B")
    return (f"selftest: {count} vector{'s' * (count > 1)} x {selftest['layers']} layers, "
            f"{cost}; checksums (CRC-32) from {selftest['oracle']}")


def check_vector_count(count: int) -> None:
    if not 1 <= count <= MAX_VECTORS:
        raise McugenError(f"--selftest {count}: give 1 to {MAX_VECTORS} input vectors (each "
                          f"costs an input's bytes of flash)")


def selftest_inputs(graph: Graph, count: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """count inputs of the model's input type, edge cases first: every element at one of the
    type's two extremes, mixed at random (the largest accumulators, saturation everywhere,
    and, unlike a constant input, every weight matters); then all at the minimum, all at the
    maximum, all at the zero point; then random values."""
    tensor = graph.input
    size = tensor.size
    rng = np.random.default_rng(seed)
    if tensor.dtype == "float32":
        low, high = _float_range(graph)
        zero = 0.0
    else:
        low, high = TYPE_RANGES[tensor.dtype]
        zero = tensor.zero_point or 0
    rows = [("each element the minimum or the maximum, at random",
             np.where(rng.integers(0, 2, size) == 1, high, low)),
            ("all the minimum", np.full(size, low)),
            ("all the maximum", np.full(size, high)),
            ("all the zero point", np.full(size, zero))]
    while len(rows) < count:
        values = rng.uniform(low, high, size) if tensor.dtype == "float32" \
            else rng.integers(low, high + 1, size)
        rows.append(("random", values))
    rows = rows[:count]
    return [kind for kind, _ in rows], np.stack([v for _, v in rows]).astype(tensor.dtype)


def _float_range(graph: Graph) -> tuple[float, float]:
    """A float input's range: the reals its QUANTIZE represents, a sixteenth beyond each end
    (saturation)."""
    reader = graph.tensor(graph.ops[graph.consumers(graph.input.name)[0]].output)
    low_q, high_q = TYPE_RANGES[reader.dtype]
    low = reader.scale * (low_q - reader.zero_point)
    high = reader.scale * (high_q - reader.zero_point)
    margin = (high - low) / 16
    return low - margin, high + margin


def build_selftest(compiled: CompiledModel, tflite: bytes, count: int,
                   seed: int = 0) -> Selftest:
    """The vectors and, for each, every layer's CRC-32 from the oracle (see the module)."""
    check_vector_count(count)
    graph = compiled.graph
    kinds, inputs = selftest_inputs(graph, count, seed)
    oracle = oracle_tensors(tflite, inputs)
    vectors = []
    from_oracle = 0
    for index, (kind, x) in enumerate(zip(kinds, inputs)):
        reference = run_reference(graph, x.reshape(graph.input.shape), keep_all=True)
        checksums = []
        from_oracle = 0
        for layer in compiled.layers:
            name = layer.op.output
            tensor = graph.tensor(name)
            ours = np.asarray(reference[name]).astype(tensor.dtype)
            theirs = _oracle_value(oracle, index, name, tensor.dtype)
            if theirs is not None and theirs.size != ours.size:
                theirs = _without_removed_channels(theirs, ours)
            if theirs is not None and theirs.size == ours.size:
                if not np.array_equal(theirs.reshape(-1).view(np.uint8),
                                      ours.reshape(-1).view(np.uint8)):
                    raise McugenError(
                        f"--selftest: {oracle.name} and mcugen's reference disagree on layer "
                        f"{layer.index} ({layer.op.OP}) for input {index} ({kind}); this is a "
                        f"bug in mcugen, please report it")
                from_oracle += 1
                ours = theirs
            checksums.append(zlib.crc32(as_written(layer, np.asarray(ours)).tobytes()))
        vectors.append(SelftestVector(kind, x, tuple(checksums)))
    return Selftest(tuple(vectors), oracle.description, from_oracle, len(compiled.layers))


def _without_removed_channels(theirs: np.ndarray, ours: np.ndarray) -> np.ndarray | None:
    """The oracle's tensor without the constant channels mcugen removed (the same shape but
    fewer channels, last axis): the first of its channels equal to each of ours, in order
    (equal channels are interchangeable); None when ours are not such a selection."""
    if theirs.ndim != ours.ndim or theirs.shape[:-1] != ours.shape[:-1] \
            or theirs.shape[-1] < ours.shape[-1]:
        return None
    columns = theirs.reshape(-1, theirs.shape[-1]).T
    kept, at = [], 0
    for channel in ours.reshape(-1, ours.shape[-1]).T:
        while at < len(columns) and not np.array_equal(columns[at], channel):
            at += 1
        if at == len(columns):
            return None
        kept.append(at)
        at += 1
    return np.ascontiguousarray(theirs[..., kept])


def _oracle_value(oracle: OracleTensors, index: int, name: str, dtype: str
                  ) -> np.ndarray | None:
    """The oracle's tensor `name` for input `index` as mcugen holds it: a uint8 activation of
    a legacy model is held as int8 shifted by 128, and a uint8 input or output X has an int8
    twin named X_int8 (frontend/tflite.py)."""
    if oracle.tensors is None:
        return None
    tensors = oracle.tensors[index]
    twin_of = re.fullmatch(r"(.+)_int8(_\d+)?", name)
    if name not in tensors and twin_of is not None:
        name = twin_of.group(1)
    if name not in tensors:
        return None
    value = np.ascontiguousarray(tensors[name])
    if value.dtype == np.uint8 and dtype == "int8":
        return (value ^ 0x80).view(np.int8)
    return value if value.dtype == np.dtype(dtype) else None
