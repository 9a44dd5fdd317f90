"""What a model needs before the slow work: its weight bytes (flash) and a lower bound on the
arena of every schedule mcugen can choose (RAM), from its layers' shapes alone.

For a MobileNet that mcugen builds with Keras, the shapes come from the architecture as Keras
builds it (`keras_shapes`: channel rounding, strides, padding), without TensorFlow, so that a
request no target can hold is refused in a fraction of a second rather than after a minute of
TensorFlow work. For a .tflite file they come from the imported graph (`graph_shapes`).

Weights: every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED layer's int8 filter and int32
bias, as the report's "weights" counts them. For the MobileNets mcugen builds (without
--weights) this is exact (host_tests/test_early_checks.py compares it with the converted
models); the constant tables in flash (multipliers, shifts, kernel layouts) only add to it.

Arena: at each layer, the tensors that must be in the arena at once, in the cheapest way any
schedule could hold them (see `arena_lower_bound`); where the layers that may run in row bands
form a chain (MobileNet V1), the least over every way of cutting them into row-band segments.
It is a lower bound, not the arena mcugen reaches: mcugen refuses early only when even this
bound does not fit. It rests on how schedule.py and row_bands.py hold tensors (which ops run
in bands, a banded layer's operands never overlapping, rows computed lazily, the band heights
tried); host_tests/test_early_checks.py compares it with the arenas the search reaches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache, cached_property

from .geometry import Window, same_padding

MODEL_INPUT = -1  # the producer index of the model's input (the caller's buffer)
# The segment-following bound costs the cube of the chain's length: longer chains (not a
# MobileNet's 27 layers, or a hostile file's thousands) get the per-layer bound.
MAX_CHAIN_SEGMENTED = 64



@cache
def bandable_ops() -> frozenset[str]:
    """The ops whose kernels may run on a band of rows, by IR name: row_bands' own list, so
    that the bound follows it (a layer of another kind always works on whole tensors)."""
    from .row_bands import BANDED_OPS

    return frozenset(op.OP for op in BANDED_OPS)


@dataclass(frozen=True)
class Layer:
    op: str  # the IR's name: CONV_2D, DEPTHWISE_CONV_2D, MEAN, LOOKUP, ...
    inputs: tuple[int, ...]  # the activations it reads: the index of the layer making each
    shape: tuple[int, ...]  # its output's shape (int8: one byte per element)
    weight_bytes: int = 0
    # A windowed op (geometry.windows: convolutions, pools, PAD): how output rows read input
    # rows.
    window: Window | None = None
    whole_input: bool = False  # a layout op: its first output row reads its whole input

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Shapes:
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    outputs: frozenset[int]  # the layers whose output is the model's (the caller's buffer)

    @property
    def weight_bytes(self) -> int:
        return sum(layer.weight_bytes for layer in self.layers)

    def shape(self, tensor: int) -> tuple[int, ...]:
        return self.input_shape if tensor == MODEL_INPUT else self.layers[tensor].shape

    @cached_property
    def readers(self) -> dict[int, tuple[int, ...]]:
        """Tensor -> the layers that read it."""
        found: dict[int, list[int]] = {}
        for index, layer in enumerate(self.layers):
            for tensor in dict.fromkeys(layer.inputs):
                found.setdefault(tensor, []).append(index)
        return {tensor: tuple(layers) for tensor, layers in found.items()}

    def in_arena(self, tensor: int) -> int:
        """The tensor's bytes in the arena: 0 for the model's input and outputs."""
        if tensor == MODEL_INPUT or tensor in self.outputs:
            return 0
        return self.layers[tensor].nbytes


# ---------------------------------------------------------------------------------------------
# The arena's lower bound


def arena_lower_bound(shapes: Shapes, band_rows: tuple[int, ...] | None = None) -> int:
    """No schedule's arena is smaller: the largest, over the layers, of the bytes that must be
    in the arena while the layer runs, in the cheapest way a schedule could hold them.

    A layer that runs whole (layer by layer, or outside every row-band segment) has whole
    inputs and output, and so has every tensor made before it and read after it; those are
    separate buffers, except that the output may be written over the inputs read for the last
    time. Only the layers before the first that cannot run in bands may be in a segment
    (row_bands.longest_prefix). A layer in a segment needs, apart from each other (a banded
    layer's operands never overlap), at least the rows one output row of it reads of each
    input, and of its output at least one row, or the rows one output row of a reader reads;
    its whole output when it ends the segment. Where those layers form a chain, the bound
    follows the segments (`_chain_bound`). Scratch buffers and alignment only add to this.

    band_rows: the band heights schedules may use (row_bands.BAND_ROWS by default)."""
    if band_rows is None:
        from .row_bands import BAND_ROWS as band_rows
    last_read = _last_reads(shapes)
    limit = _bandable_prefix(shapes)
    whole = _whole_layers_bytes(shapes, last_read)
    after = max(whole[limit:], default=0)
    banded = [min(whole[index], _banded_layer_bytes(shapes, index)) for index in range(limit)]
    chain = _is_chain(shapes, limit)
    if chain:
        before = min(_chain_bound(shapes, limit, whole, rows) for rows in band_rows)
    else:
        before = max(banded, default=0)
    rest = (lambda end: min(_chain_bound(shapes, limit, whole, rows, end)
                            for rows in band_rows)) if chain else None
    return max(min([before] + _tiled_bounds(shapes, limit, banded, rest)), after)


TILED_SHARE = 3
# Column tiles are tried (compile._tiled_choice) only where their halos cost at most this
# share of the model's MACs (issue 20 allows bands 10 % more instructions than layer by
# layer), by tiled_ends' measure; the bound follows the same ends.
MAX_HALO_SHARE = 0.1
MAX_TILED_CHAIN = 64  # longer chains are not tiled (the halo sums stay linear)


def tiled_ends(shapes: Shapes) -> list[int]:
    """The ends (exclusive) of the convolution chain at the model's start where two column
    tiles (tiles.py) are tried: their halos' MACs (the columns both tiles compute, with each
    layer's row window taken for its column window) at most MAX_HALO_SHARE of the model's."""
    total = sum(_macs(shapes, index) for index in range(len(shapes.layers)))
    ends = []
    for index in range(min(len(shapes.layers), MAX_TILED_CHAIN)):
        layer = shapes.layers[index]
        source = index - 1 if index else MODEL_INPUT
        if layer.op not in ("CONV_2D", "DEPTHWISE_CONV_2D") or layer.inputs != (source,) or \
                layer.window is None or (index and shapes.readers.get(source) != (index,)):
            break
        if index and _halo_macs(shapes, index + 1) <= MAX_HALO_SHARE * total:
            ends.append(index + 1)
    return ends


def _macs(shapes: Shapes, index: int) -> int:
    """A convolution's MACs, its output pixels times its weights (exact for CONV_2D,
    DEPTHWISE_CONV_2D and FULLY_CONNECTED); 0 for the ops without weights."""
    layer = shapes.layers[index]
    return math.prod(layer.shape[1:3]) * layer.weight_bytes if len(layer.shape) == 4 \
        else layer.weight_bytes


def _halo_macs(shapes: Shapes, end: int) -> int:
    width = shapes.layers[end - 1].shape[2]
    extra = 0
    for begin, stop in ((0, width // 2), (width // 2, width)):
        for index in range(end - 1, -1, -1):
            layer = shapes.layers[index]
            extra += (stop - begin) * layer.shape[1] * layer.weight_bytes
            in_width = shapes.shape(index - 1 if index else MODEL_INPUT)[2]
            begin, stop = layer.window.reads(begin, stop, in_width)
    return extra - sum(_macs(shapes, index) for index in range(end))


def _tiled_bounds(shapes: Shapes, limit: int, banded: list[int], rest=None) -> list[int]:
    """For each end of a convolution chain at the model's start where column tiles are tried
    (tiled_ends), a bound with the chain in tiles: their join holds the chain's last output
    twice (the tiles' halves, then the whole), the layers after it up to `limit` as above;
    the tiles' layers at least a part (1 / TILED_SHARE) of what they hold in full-width
    bands: the wider tile has half the output's columns or more, and reads about half of
    each input's or more. rest(end): the bound of the layers [end, limit), when they form a
    chain."""
    after = banded[:limit] + [0]
    for index in range(limit - 1, -1, -1):  # after[i]: the most of banded[i:limit]
        after[index] = max(after[index], after[index + 1])
    bounds = []
    for end in tiled_ends(shapes):
        if end > limit:
            break
        inside = max((b // TILED_SHARE for b in banded[:end - 1]), default=0)
        # The layers after the tiles: as a chain's, when they are one (rest).
        later = rest(end) if rest is not None and end < limit else after[end]
        bounds.append(max(2 * shapes.in_arena(end - 1), inside, later))
    return bounds


def _bandable_prefix(shapes: Shapes) -> int:
    """How many layers from the first may run in row bands (at least as many as
    row_bands.longest_prefix finds: the op kinds alone decide here)."""
    for index in range(len(shapes.layers)):
        if not _may_run_in_bands(shapes, index) or index in shapes.outputs:
            return index
    return len(shapes.layers)


def _is_chain(shapes: Shapes, limit: int) -> bool:
    """Layers [0, limit) each read the one before (the first the model's input), each read by
    the next alone, and each reads every row of its input when it makes all of its own (so
    that a layer not finished has reads to come)."""
    if limit > MAX_CHAIN_SEGMENTED:
        return False
    for index in range(limit):
        layer = shapes.layers[index]
        if layer.inputs != (index - 1,) or \
                (index + 1 < limit and shapes.readers.get(index) != (index + 1,)):
            return False
        if _last_row_read(shapes, index, layer.shape[1]) != shapes.shape(index - 1)[1]:
            return False
    return True


def _chain_bound(shapes: Shapes, limit: int, whole: list[int], rows: int,
                 start: int = 0) -> int:
    """The least, over every way of running layers [start, limit) (a chain) layer by layer or
    in segments of bands of `rows` rows, of the most bytes live at once (min-max over the
    segmentations, by dynamic programming on where segments end)."""
    best = [0] * (limit + 1)
    inside = [[0] * limit for _ in range(limit)]  # [begin][layer]: layer inside the segment
    ending = [[0] * limit for _ in range(limit)]  # [begin][layer]: layer ends the segment
    for begin in range(start, limit):
        for layer in range(begin, limit):
            inside[begin][layer], ending[begin][layer] = _segment_step_bytes(
                shapes, begin, layer, rows)
    for end in range(start + 1, limit + 1):
        choices = [max(best[end - 1], whole[end - 1])]  # layer end-1 outside every segment
        for begin in range(start, end):
            before_last = max(inside[begin][begin:end - 1], default=0)
            choices.append(max(best[begin], before_last, ending[begin][end - 1]))
        best[end] = min(choices)
    return best[limit]


def _segment_step_bytes(shapes: Shapes, begin: int, layer: int, rows: int) -> tuple[int, int]:
    """The bytes live when `layer` computes its first band, in a segment of a chain that
    begins at layer `begin`, when the layer is inside the segment and when it ends it: its
    output (a band inside, whole at the end), and going up the chain each tensor whose reader
    is not finished yet (it reads again later), a band inside the segment, the segment's input
    whole. Row bands compute rows lazily (row_bands._Order.ensure): before a layer's first
    band, the layer before it has computed the rows that band reads, rounded up to whole
    bands, and so on up the chain."""
    total = 0
    computed = min(rows, shapes.layers[layer].shape[1])  # rows of `layer`'s output at the step
    for tensor in range(layer - 1, begin - 2, -1):
        reader = tensor + 1
        if reader != layer and computed >= shapes.layers[reader].shape[1]:
            break  # its reader is finished: this tensor and those above it are dead
        total += shapes.in_arena(tensor) if tensor == begin - 1 else \
            min(shapes.in_arena(tensor),
                _rows_read(shapes, reader, tensor) * _row_bytes(shapes.shape(tensor)))
        needed = _last_row_read(shapes, reader, computed)
        computed = min(shapes.shape(tensor)[1], -(-needed // rows) * rows)
    return total + _least_output_bytes(shapes, layer), total + shapes.in_arena(layer)


def _last_row_read(shapes: Shapes, reader: int, output_rows: int) -> int:
    """How many rows of its input the layer has read once it has made output_rows rows."""
    layer = shapes.layers[reader]
    height = shapes.shape(layer.inputs[0])[1]
    if layer.whole_input:
        return height
    if layer.window is None:
        return min(output_rows, height)
    return layer.window.reads(0, output_rows, height)[1]


def _last_reads(shapes: Shapes) -> dict[int, int]:
    last: dict[int, int] = {}
    for index, layer in enumerate(shapes.layers):
        for tensor in layer.inputs:
            last[tensor] = index
    return last


def _whole_layers_bytes(shapes: Shapes, last_read: dict[int, int]) -> list[int]:
    """Per layer, the bytes it needs when it runs whole: the tensors passing it (made before,
    read after: summed in one sweep), and the larger of its output and the inputs it reads
    for the last time."""
    count = len(shapes.layers)
    starts = [0] * (count + 2)  # a tensor passes the layers strictly between maker and reader
    for tensor, last in last_read.items():
        if last > tensor + 1:
            starts[tensor + 2] += shapes.in_arena(tensor)
            starts[last + 1] -= shapes.in_arena(tensor)
    needed, passing = [], 0
    for index, layer in enumerate(shapes.layers):
        passing += starts[index + 1]
        read_last_here = sum(shapes.in_arena(t) for t in set(layer.inputs)
                             if last_read[t] == index)
        needed.append(passing + max(shapes.in_arena(index), read_last_here))
    return needed


def _may_run_in_bands(shapes: Shapes, index: int) -> bool:
    """As row_bands.can_band says, from the op kind and shapes (any kernel variant)."""
    layer = shapes.layers[index]
    if layer.op not in bandable_ops() or len(layer.shape) != 4:
        return False
    if layer.whole_input:  # of any shape
        return True
    operands = [shapes.shape(t) for t in layer.inputs] + [layer.shape]
    if any(len(shape) != 4 for shape in operands):
        return False
    return layer.window is not None or all(shape == layer.shape for shape in operands)


def _banded_layer_bytes(shapes: Shapes, index: int) -> int:
    layer = shapes.layers[index]
    total = 0
    for tensor in set(layer.inputs):
        total += min(shapes.in_arena(tensor),
                     _rows_read(shapes, index, tensor) * _row_bytes(shapes.shape(tensor)))
    return total + _least_output_bytes(shapes, index)


def _least_output_bytes(shapes: Shapes, index: int) -> int:
    if shapes.in_arena(index) == 0:
        return 0
    readers = shapes.readers.get(index, ())
    if any(not _may_run_in_bands(shapes, reader) for reader in readers):
        return shapes.in_arena(index)
    rows = max([1] + [_rows_read(shapes, reader, index) for reader in readers])
    return min(shapes.in_arena(index), rows * _row_bytes(shapes.layers[index].shape))


def _rows_read(shapes: Shapes, reader: int, tensor: int) -> int:
    layer = shapes.layers[reader]
    if layer.whole_input:  # every row (and, below 4-D, rows of one element: still all)
        return math.prod(shapes.shape(tensor))
    if layer.window is None:  # elementwise: row for row
        return 1
    return layer.window.most_read(shapes.shape(tensor)[1], layer.shape[1])


def _row_bytes(shape: tuple[int, ...]) -> int:
    return math.prod(shape[2:])


# ---------------------------------------------------------------------------------------------
# Shapes of an imported graph


def graph_shapes(graph) -> Shapes:
    """The layers of an IR graph (after the passes), as `keras_shapes` describes a MobileNet."""
    from .geometry import reads_whole_input, windows
    from .ir import op_inputs

    producer = {name: MODEL_INPUT for name in graph.inputs}
    layers = []
    for index, op in enumerate(graph.ops):
        tensors = list(dict.fromkeys(op_inputs(op)))
        constants = [graph.tensor(n) for n in tensors if graph.tensor(n).is_constant]
        found = windows(op, graph)
        window = found[0] if found is not None else None
        if window is not None and min(window.kernel, window.stride, window.dilation) < 1:
            window = None  # a file no kernel runs (refused later): read as row for row
        layers.append(Layer(
            op=op.OP, shape=tuple(graph.tensor(op.output).shape), window=window,
            whole_input=reads_whole_input(op),
            inputs=tuple(producer[n] for n in op_inputs(op)
                         if not graph.tensor(n).is_constant and n in producer),
            weight_bytes=sum(t.nbytes for t in constants)))
        producer[op.output] = index
    outputs = frozenset(producer[n] for n in graph.outputs if producer.get(n, MODEL_INPUT) >= 0)
    input_shape = tuple(graph.tensor(graph.inputs[0]).shape) if graph.inputs else ()
    return Shapes(input_shape, tuple(layers), outputs)


# ---------------------------------------------------------------------------------------------
# Shapes of Keras' MobileNets, as mcugen's front end builds and TensorFlow converts them:
# batch norms folded into the convolutions (each gets a bias), ReLU and ReLU6 fused, the
# explicit zero padding before a stride-2 depthwise folded into it, hard-swish and V3's hard
# sigmoid one lookup table each, dropout and reshapes gone.


class _Net:
    """Appends layers as Keras' application code calls its layers, tracking shapes."""

    def __init__(self, height: int, width: int, channels: int) -> None:
        self.input_shape = (1, height, width, channels)
        self.layers: list[Layer] = []

    def shape(self, tensor: int) -> tuple[int, ...]:
        return self.input_shape if tensor == MODEL_INPUT else self.layers[tensor].shape

    def add_layer(self, layer: Layer) -> int:
        self.layers.append(layer)
        return len(self.layers) - 1

    def conv(self, x: int, filters: int, kernel: int = 1, stride: int = 1,
             padding: tuple[int, int, int, int] | str = "same") -> int:
        _, height, width, channels = self.shape(x)
        rows, columns = (_window(height, kernel, stride, padding, 0),
                         _window(width, kernel, stride, padding, 2))
        return self.add_layer(Layer("CONV_2D", (x,), (1, rows.output_size(height),
                                                      columns.output_size(width), filters),
                                    filters * kernel * kernel * channels + 4 * filters, rows))

    def depthwise(self, x: int, kernel: int, stride: int,
                  padding: tuple[int, int, int, int] | str = "same") -> int:
        _, height, width, channels = self.shape(x)
        rows, columns = (_window(height, kernel, stride, padding, 0),
                         _window(width, kernel, stride, padding, 2))
        return self.add_layer(Layer("DEPTHWISE_CONV_2D", (x,),
                                    (1, rows.output_size(height), columns.output_size(width),
                                     channels),
                                    kernel * kernel * channels + 4 * channels, rows))

    def correct_pad_depthwise(self, x: int, kernel: int) -> int:
        """Keras' ZeroPadding2D(correct_pad(x, kernel)) and a stride-2 'valid' depthwise."""
        _, height, width, _ = self.shape(x)
        top, left = kernel // 2 - (1 - height % 2), kernel // 2 - (1 - width % 2)
        return self.depthwise(x, kernel, 2, (top, kernel // 2, left, kernel // 2))

    def table(self, x: int) -> int:
        return self.add_layer(Layer("LOOKUP", (x,), self.shape(x)))

    def add(self, a: int, b: int) -> int:
        return self.add_layer(Layer("ADD", (a, b), self.shape(b)))

    def mul(self, a: int, b: int) -> int:
        return self.add_layer(Layer("MUL", (a, b), self.shape(a)))

    def mean(self, x: int, keepdims: bool) -> int:
        channels = self.shape(x)[-1]
        return self.add_layer(Layer("MEAN", (x,), (1, 1, 1, channels) if keepdims
                                    else (1, channels)))

    def fully_connected(self, x: int, units: int) -> int:
        # Keras' zero-initialised Dense bias is left out by the converter.
        return self.add_layer(Layer("FULLY_CONNECTED", (x,), (1, units),
                                    units * self.shape(x)[-1]))

    def softmax(self, x: int) -> int:
        return self.add_layer(Layer("SOFTMAX", (x,), (1, self.shape(x)[-1])))

    def shapes(self) -> Shapes:
        return Shapes(self.input_shape, tuple(self.layers), frozenset({len(self.layers) - 1}))


def _window(size: int, kernel: int, stride: int, padding: tuple[int, int, int, int] | str,
            axis: int) -> Window:
    """The window along one axis (0: rows, 2: columns): TensorFlow's SAME padding, or an
    explicit (top, bottom, left, right) padding and VALID."""
    before, after = same_padding(size, kernel, stride) if padding == "same" else \
        (padding[axis], padding[axis + 1])
    return Window(kernel, stride, before, 1, after)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Keras' _make_divisible (V2) and _depth (V3): the nearest multiple of divisor, at least
    divisor, never more than 10 % below value."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


# MobileNet V1: (pointwise filters, stride) of each depthwise-separable block.
V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
             (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
# MobileNet V2: (filters, stride, expansion) of each inverted residual block.
V2_BLOCKS = ((16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6),
             (64, 2, 6), (64, 1, 6), (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6),
             (96, 1, 6), (160, 2, 6), (160, 1, 6), (160, 1, 6), (320, 1, 6))
# MobileNet V3: (expansion, filters, kernel, stride, squeeze-and-excite, hard-swish) per block,
# as Keras' stack_fn lists them (kernel 5 where it passes `kernel`, non-minimalistic).
V3_SMALL_BLOCKS = (
    (1, 16, 3, 2, True, False), (72.0 / 16, 24, 3, 2, False, False),
    (88.0 / 24, 24, 3, 1, False, False), (4, 40, 5, 2, True, True), (6, 40, 5, 1, True, True),
    (6, 40, 5, 1, True, True), (3, 48, 5, 1, True, True), (3, 48, 5, 1, True, True),
    (6, 96, 5, 2, True, True), (6, 96, 5, 1, True, True), (6, 96, 5, 1, True, True))
V3_LARGE_BLOCKS = (
    (1, 16, 3, 1, False, False), (4, 24, 3, 2, False, False), (3, 24, 3, 1, False, False),
    (3, 40, 5, 2, True, False), (3, 40, 5, 1, True, False), (3, 40, 5, 1, True, False),
    (6, 80, 3, 2, False, True), (2.5, 80, 3, 1, False, True), (2.3, 80, 3, 1, False, True),
    (2.3, 80, 3, 1, False, True), (6, 112, 3, 1, True, True), (6, 112, 3, 1, True, True),
    (6, 160, 5, 2, True, True), (6, 160, 5, 1, True, True), (6, 160, 5, 1, True, True))
V3_LAST_POINT = {"v3-small": 1024, "v3-large": 1280}
SE_RATIO = 0.25


def keras_shapes(arch: str, alpha: float, height: int, width: int, channels: int,
                 classes: int) -> Shapes:
    """The layers of Keras' MobileNet `arch` after conversion and mcugen's passes."""
    net = _Net(height, width, channels)
    builders: dict[str, Callable[[_Net, float, int], None]] = {
        "v1": _mobilenet_v1, "v2": _mobilenet_v2,
        "v3-small": lambda n, a, c: _mobilenet_v3(n, a, c, V3_SMALL_BLOCKS, "v3-small"),
        "v3-large": lambda n, a, c: _mobilenet_v3(n, a, c, V3_LARGE_BLOCKS, "v3-large")}
    builders[arch](net, alpha, classes)
    return net.shapes()


def _mobilenet_v1(net: _Net, alpha: float, classes: int) -> None:
    x = net.conv(MODEL_INPUT, int(32 * alpha), 3, 2)
    for filters, stride in V1_BLOCKS:
        x = net.depthwise(x, 3, 1) if stride == 1 else net.depthwise(x, 3, 2, (0, 1, 0, 1))
        x = net.conv(x, int(filters * alpha))
    x = net.mean(x, keepdims=True)
    net.softmax(net.conv(x, classes))


def _mobilenet_v2(net: _Net, alpha: float, classes: int) -> None:
    x = net.conv(MODEL_INPUT, make_divisible(32 * alpha), 3, 2)
    for block, (filters, stride, expansion) in enumerate(V2_BLOCKS):
        in_channels = net.shape(x)[-1]
        out_channels = make_divisible(int(filters * alpha))
        y = net.conv(x, expansion * in_channels) if block else x
        y = net.depthwise(y, 3, 1) if stride == 1 else net.correct_pad_depthwise(y, 3)
        y = net.conv(y, out_channels)
        x = net.add(x, y) if in_channels == out_channels and stride == 1 else y
    x = net.conv(x, make_divisible(1280 * alpha) if alpha > 1.0 else 1280)
    net.softmax(net.fully_connected(net.mean(x, keepdims=False), classes))


def _mobilenet_v3(net: _Net, alpha: float, classes: int, blocks: tuple, arch: str) -> None:
    x = net.table(net.conv(MODEL_INPUT, 16, 3, 2))  # hard-swish
    for block, (expansion, filters, kernel, stride, squeeze, hard_swish) in enumerate(blocks):
        in_channels = net.shape(x)[-1]
        filters = make_divisible(filters * alpha)
        y = x
        if block:
            y = net.conv(y, make_divisible(in_channels * expansion))
            y = net.table(y) if hard_swish else y
        y = net.depthwise(y, kernel, 1) if stride == 1 else net.correct_pad_depthwise(y, kernel)
        y = net.table(y) if hard_swish else y
        if squeeze:
            expanded = make_divisible(in_channels * expansion)
            excite = net.conv(net.mean(y, keepdims=True), make_divisible(expanded * SE_RATIO))
            y = net.mul(y, net.table(net.conv(excite, expanded)))  # hard sigmoid
        y = net.conv(y, filters)
        x = net.add(x, y) if stride == 1 and in_channels == filters else y
    x = net.table(net.conv(x, make_divisible(net.shape(x)[-1] * 6)))
    last_point = V3_LAST_POINT[arch]
    if alpha > 1.0:
        last_point = make_divisible(last_point * alpha)
    x = net.table(net.conv(net.mean(x, keepdims=True), last_point))
    net.softmax(net.conv(x, classes))


def describe(shapes: Shapes) -> Iterator[str]:
    """One line per layer (for messages and debugging)."""
    for index, layer in enumerate(shapes.layers):
        yield (f"{index:3} {layer.op:<18} {layer.inputs} -> {'x'.join(map(str, layer.shape))}"
               f" weights {layer.weight_bytes:,}")
