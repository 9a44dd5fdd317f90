"""Remove the output channels that cannot change an output, exactly: dead (pruned) filters and
what they feed.

A CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED output channel is *constant* when its value
is the same whatever the input: its filter is all zero (every accumulator is its bias, padding
or not), or its multiplier is zero, or its bias puts every reachable accumulator on one side
of the activation's clamp. The test is exact: TFLite's output stage (MBQM, then the offset and
the clamp) never decreases as the accumulator grows (multipliers are >= 0 and both roundings
are monotone), so a channel whose output at the least and at the greatest accumulator its
weights allow (inputs anywhere in int8) is the same value v is v everywhere.

A constant channel c of a tensor T is removed, from the op that writes it and from T, when
every reader of T can do without it:
- a CONV_2D or FULLY_CONNECTED reader adds the channel's contribution to its bias and loses
  its weights of input channel c: sum over the taps of (v - zp) * w is the same at every
  output pixel when the reader has no padding (every tap reads a real input), or when
  v == zp (padding taps read the zero point, so every tap adds 0). A padded reader and
  v != zp: the border pixels would get another contribution; we do not fold there. The new
  bias must fit int32; otherwise the channel stays. The sum is exact: TFLite accumulates in
  int32, whose wrap-around arithmetic is associative, so moving terms into the bias changes
  no accumulator.
- a DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, MEAN, PAD or lookup table reads channel c only for
  its own output channel(s) of c (c * multiplier + k for a depthwise). Those are a function
  of the position alone; the pass computes them with the reference kernel and goes on only
  where they are uniform (a padded depthwise after a constant that is not its zero point is
  not: the border reads the zero point), and only where those channels can be removed in
  turn, down the chain.
- anything else (ADD, MUL, SOFTMAX, a graph output, a uint8 model's layers) keeps it.
The pass repeats until nothing changes: folding can leave a reader's filter all zero.

The constant channels that stay (an output of the model, a reader that cannot fold them) get
the constants kernels/requantize.py chooses for a constant: zero weights, bias 4 (v - zp),
multiplier 2^30 and shift -1, with which every requantization mcugen emits computes v
exactly; pruned filters' own constants (a bias of 2^30, a zero multiplier with shift 0)
would otherwise push the whole layer onto TFLite's long requantization.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .. import quant
from ..ir import (AveragePool2D, Conv2D, DepthwiseConv2D, FullyConnected, Graph, Mean, Op,
                  Pad, Requant, TableLookup, Tensor, op_inputs)
from ..kernels.requantize import constant_channel_constants
from ..reference import op_kernel

WEIGHTED = (Conv2D, DepthwiseConv2D, FullyConnected)
ABSORBING = (Conv2D, FullyConnected)  # readers that fold a constant input into their bias
# Readers whose output channel(s) of c depend on their input channel c alone.
CHANNELWISE = (DepthwiseConv2D, AveragePool2D, Mean, Pad, TableLookup)
MAX_ROUNDS = 8

Constants = dict[str, dict[int, int]]  # tensor -> {channel: its constant int8 value}


@dataclass(frozen=True)
class DeadChannelSummary:
    """What the pass removed, for the report."""

    channels: int  # output channels removed, over every layer
    macs: int  # multiply-accumulates removed per inference
    macs_before: int
    layers: int  # layers that lost channels
    constant_kept: int  # constant channels that stay (given the constant's constants)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def remove_dead_channels(graph: Graph) -> Graph:
    for _ in range(MAX_ROUNDS):
        removal = _plan(graph)
        if not removal:
            break
        graph = _apply(graph, removal)
    return _normalize_constant_channels(graph).without_unused_tensors()


# ---------------------------------------------------------------------------------------------
# Which channels are constant


def _constant_channels(graph: Graph) -> Constants:
    constant: Constants = {}
    for index, op in enumerate(graph.ops):
        found: dict[int, int] = {}
        if isinstance(op, WEIGHTED) and not op.legacy:
            found.update(_own_constants(graph, op))
        if isinstance(op, CHANNELWISE) and not getattr(op, "legacy", False):
            inputs = constant.get(op.input, {})
            if inputs:
                for c, v in _evaluated(graph, index, op, inputs).items():
                    found.setdefault(c, v)
        if found:
            constant[op.output] = found
    return constant


def _own_constants(graph: Graph, op: Op) -> dict[int, int]:
    """Channels whose output is one value for every int8 input (module docstring)."""
    weights = _weight_columns(graph, op)  # [outputs, taps]
    outputs = weights.shape[0]
    x = graph.tensor(op.input)
    low, high = -128 - x.zero_point, 127 - x.zero_point  # x - zp; padding's 0 is inside
    terms_low = np.minimum(weights * low, weights * high).sum(axis=1)
    terms_high = np.maximum(weights * low, weights * high).sum(axis=1)
    bias = _bias_values(graph, op, outputs)
    multiplier, shift = _per_channel(op.requant, outputs)
    lows, highs = bias + terms_low, bias + terms_high
    # Both ends of every channel at once (the output stage broadcasts per channel: one NumPy
    # pass, not one per channel, which took most of compiling a small model); the channels
    # the checks below skip are computed too and ignored.
    ends = _output(graph, op, np.stack([lows, highs]), multiplier, shift)
    result = {}
    for c in range(outputs):
        lo, hi = lows[c], highs[c]
        if lo < quant.INT32_MIN or hi > quant.INT32_MAX:
            continue  # TFLite's int32 accumulator could wrap: not ours to reason about
        if lo != hi and multiplier[c] != 0 and not _monotone(lo, hi, shift[c]):
            continue
        if multiplier[c] == 0 or ends[0, c] == ends[1, c]:
            result[c] = int(ends[0, c])
    return result


def _monotone(lo: int, hi: int, shift: int) -> bool:
    """MBQM takes x << shift in int32 first: without wrap-around it never decreases."""
    left = max(shift, 0)
    return quant.INT32_MIN <= lo << left and hi << left <= quant.INT32_MAX


def _output(graph: Graph, op: Op, acc: np.ndarray, multiplier, shift) -> np.ndarray:
    """TFLite's output stage on accumulators acc: of one channel, or of each channel on acc's
    last axis with per-channel multiplier and shift arrays."""
    scaled = quant.multiply_by_quantized_multiplier(acc, multiplier, shift).astype(np.int64)
    return np.clip(scaled + graph.tensor(op.output).zero_point, op.act_min, op.act_max)


def _evaluated(graph: Graph, index: int, op: Op, inputs: dict[int, int]) -> dict[int, int]:
    """The output channels of a channel-wise op that are uniform when its constant input
    channels hold their values (the other channels hold the zero point; no output channel of
    a constant input reads them)."""
    x = graph.tensor(op.input)
    value = np.full(x.shape, x.zero_point, np.int64)
    for c, v in inputs.items():
        value[..., c] = v
    out = op_kernel(op, index)(op, graph, value.astype(np.int8))
    out = np.asarray(out).reshape(-1, graph.tensor(op.output).shape[-1])
    found = {}
    for c in inputs:
        for j in _mapped(op, c):
            column = out[:, j]
            if (column == column[0]).all():
                found[j] = int(column[0])
    return found


def _mapped(op: Op, channel: int) -> list[int]:
    """The output channels a channel-wise op computes from input channel ``channel``."""
    if isinstance(op, DepthwiseConv2D):
        m = op.depth_multiplier
        return list(range(channel * m, channel * m + m))
    return [channel]


# ---------------------------------------------------------------------------------------------
# Which constant channels can go


@dataclass
class _Context:
    graph: Graph
    constant: Constants
    readers: dict[str, list[Op]]
    users: dict[str, int]  # constant tensor -> how many ops read it


def _plan(graph: Graph) -> Constants:
    """Tensor -> the constant channels to remove from it (and their values)."""
    readers: dict[str, list[Op]] = {}
    users: dict[str, int] = {}
    for op in graph.ops:
        for name in op_inputs(op):
            readers.setdefault(name, []).append(op)
            users[name] = users.get(name, 0) + 1
    ctx = _Context(graph, _constant_channels(graph), readers, users)
    excluded: set[tuple[str, int]] = set()
    while True:
        groups = _groups(ctx, excluded)
        overflowing = _overflowing_roots(ctx, groups)
        if not overflowing:
            break
        excluded |= overflowing
    removal: Constants = {}
    for members in groups.values():
        for tensor, channel in members:
            removal.setdefault(tensor, {})[channel] = ctx.constant[tensor][channel]
    return removal


def _groups(ctx: _Context, excluded: set[tuple[str, int]]
            ) -> dict[tuple[str, int], list[tuple[str, int]]]:
    """Per root (a constant output channel of a CONV_2D or FULLY_CONNECTED), the (tensor,
    channel) pairs removed with it; a tensor keeps at least one channel."""
    groups = {}
    for op in ctx.graph.ops:
        if not isinstance(op, ABSORBING) or op.legacy or not _private(ctx, op):
            continue
        tensor = op.output
        chosen = {}
        for channel in sorted(ctx.constant.get(tensor, {})):
            if (tensor, channel) in excluded:
                continue
            members = _chain(ctx, tensor, [channel])
            if members is not None:
                chosen[(tensor, channel)] = members
        if len(chosen) == ctx.graph.tensor(tensor).shape[-1]:
            chosen.pop(max(chosen))
        groups.update(chosen)
    return groups


def _chain(ctx: _Context, tensor: str, channels: list[int]) -> list[tuple[str, int]] | None:
    """The (tensor, channel) pairs that go when ``channels`` of ``tensor`` go, or None when
    a reader cannot do without them."""
    graph = ctx.graph
    values = ctx.constant.get(tensor, {})
    readers = ctx.readers.get(tensor, [])
    if tensor in graph.outputs or tensor in graph.inputs or not readers or \
            any(c not in values for c in channels):
        return None
    members = [(tensor, c) for c in channels]
    for op in readers:
        if isinstance(op, ABSORBING):
            if not _absorbs(ctx, op, [values[c] for c in channels]):
                return None
        elif isinstance(op, CHANNELWISE) and not getattr(op, "legacy", False) and \
                _private(ctx, op) and op_inputs(op).count(tensor) == 1:
            rest = _chain(ctx, op.output, [j for c in channels for j in _mapped(op, c)])
            if rest is None:
                return None
            members += rest
        else:
            return None
    return members


def _absorbs(ctx: _Context, op: Op, values: list[int]) -> bool:
    """A convolution or fully connected reader can fold these constant input channels into
    its bias exactly (module docstring)."""
    graph = ctx.graph
    if op.legacy or not _private(ctx, op) or op_inputs(op).count(op.input) != 1:
        return False
    zero_point = graph.tensor(op.input).zero_point
    if isinstance(op, Conv2D):
        return op.padding.is_zero or all(v == zero_point for v in values)
    depth = graph.tensor(op.weights).shape[1]
    return depth % graph.tensor(op.input).shape[-1] == 0


def _private(ctx: _Context, op: Op) -> bool:
    """The op's constant tensors are read by it alone (we rewrite them)."""
    graph = ctx.graph
    return all(ctx.users.get(name, 0) == 1 for name in op_inputs(op)
               if graph.tensor(name).is_constant)


def _overflowing_roots(ctx: _Context, groups) -> set[tuple[str, int]]:
    """The roots whose folds push some reader's bias out of int32."""
    graph = ctx.graph
    folds: dict[int, list[tuple[tuple[str, int], str, int]]] = {}
    for root, members in groups.items():
        for tensor, channel in members:
            for op in ctx.readers.get(tensor, []):
                if isinstance(op, ABSORBING):
                    folds.setdefault(id(op), []).append((root, tensor, channel))
    bad = set()
    by_id = {id(op): op for op in graph.ops}
    for key, entries in folds.items():
        op = by_id[key]
        gone = {channel: ctx.constant[tensor][channel] for _, tensor, channel in entries}
        bias = _bias_values(graph, op, _outputs(graph, op)) + _contribution(graph, op, gone)
        if np.abs(bias).max(initial=0) > quant.INT32_MAX:
            bad |= {root for root, _, _ in entries}
    return bad


# ---------------------------------------------------------------------------------------------
# Rewriting


def _apply(graph: Graph, removal: Constants) -> Graph:
    tensors = dict(graph.tensors)
    ops = []
    for op in graph.ops:
        gone_in = removal.get(op.input, {}) if hasattr(op, "input") else {}
        gone_out = removal.get(op.output, {})
        if gone_in and isinstance(op, ABSORBING):
            op = _fold_inputs(graph, tensors, op, gone_in)
        if gone_out and isinstance(op, WEIGHTED):
            op = _drop_outputs(tensors, op, sorted(gone_out))
        ops.append(op)
    for name, gone in removal.items():
        t = tensors[name]
        tensors[name] = dataclasses.replace(t, shape=t.shape[:-1] + (t.shape[-1] - len(gone),))
    return graph.replace(tensors=tensors, ops=tuple(ops))


def _fold_inputs(graph: Graph, tensors: dict[str, Tensor], op: Op, gone: dict[int, int]) -> Op:
    """Add the constant inputs' contribution to the bias and drop their weights."""
    outputs = _outputs(graph, op)
    bias = _bias_values(graph, op, outputs) + _contribution(graph, op, gone)
    op = _set_bias(tensors, op, bias)
    name = op.filter if isinstance(op, Conv2D) else op.weights
    w = tensors[name]
    if isinstance(op, Conv2D):
        keep = _kept(w.shape[3], gone)
        data = w.data[..., keep]
    else:
        channels = graph.tensor(op.input).shape[-1]
        keep = np.array([k for k in range(w.shape[1]) if k % channels not in gone])
        data = w.data[:, keep]
    tensors[name] = dataclasses.replace(w, shape=data.shape, data=np.ascontiguousarray(data))
    return op


def _contribution(graph: Graph, op: Op, gone: dict[int, int]) -> np.ndarray:
    """Per output channel, sum over the taps of (v - zp) * w for the constant inputs (int64;
    the same at every pixel where _absorbs allowed the fold)."""
    zero_point = graph.tensor(op.input).zero_point
    if isinstance(op, Conv2D):
        w = graph.tensor(op.filter).data.astype(np.int64)  # [Cout, KH, KW, Cin]
        per_input = w.sum(axis=(1, 2))  # [Cout, Cin]
    else:
        w = graph.tensor(op.weights).data.astype(np.int64)  # [outputs, depth]
        channels = graph.tensor(op.input).shape[-1]
        per_input = w.reshape(w.shape[0], -1, channels).sum(axis=1)
    total = np.zeros(per_input.shape[0], np.int64)
    for c, v in gone.items():
        total += (v - zero_point) * per_input[:, c]
    return total


def _drop_outputs(tensors: dict[str, Tensor], op: Op, gone: list[int]) -> Op:
    """Remove output channels: filter rows (a depthwise filter's last axis), bias entries,
    multipliers and shifts, per-channel scales."""
    name = op.weights if isinstance(op, FullyConnected) else op.filter
    w = tensors[name]
    axis = 3 if isinstance(op, DepthwiseConv2D) else 0
    keep = _kept(w.shape[axis], gone)
    tensors[name] = _sliced(w, keep, axis)
    if op.bias is not None:
        tensors[op.bias] = _sliced(tensors[op.bias], keep, 0)
    requant = op.requant
    if len(requant.multiplier) > 1:
        requant = Requant(tuple(requant.multiplier[i] for i in keep),
                          tuple(requant.shift[i] for i in keep))
    return dataclasses.replace(op, requant=requant)


def _kept(count: int, gone) -> np.ndarray:
    return np.array([i for i in range(count) if i not in gone], np.int64)


def _sliced(t: Tensor, keep: np.ndarray, axis: int) -> Tensor:
    data = np.ascontiguousarray(np.take(t.data, keep, axis=axis))
    q = t.q
    if q is not None and q.per_channel:
        q = dataclasses.replace(q, scale=tuple(q.scale[i] for i in keep),
                                zero_point=tuple(q.zero_point[i] for i in keep))
    return dataclasses.replace(t, shape=data.shape, data=data, q=q)


def _set_bias(tensors: dict[str, Tensor], op: Op, bias: np.ndarray) -> Op:
    """The op's int32 bias, a new tensor when it had none."""
    data = bias.astype(np.int32)
    if op.bias is not None:
        tensors[op.bias] = dataclasses.replace(tensors[op.bias], data=data)
        return op
    name = f"{op.output}_folded_bias"
    while name in tensors:
        name += "_"
    tensors[name] = Tensor(name, data.shape, "int32", None, data)
    return dataclasses.replace(op, bias=name)


def _normalize_constant_channels(graph: Graph) -> Graph:
    """Give the constant channels that stay the constants that compute their value in every
    requantization form (kernels/requantize.py), where the op's constants are its own."""
    users: dict[str, int] = {}
    for op in graph.ops:
        for name in op_inputs(op):
            users[name] = users.get(name, 0) + 1
    tensors = dict(graph.tensors)
    ops = []
    for op in graph.ops:
        if isinstance(op, WEIGHTED) and not op.legacy and \
                len(op.requant.multiplier) > 1 and \
                all(users[n] == 1 for n in op_inputs(op) if graph.tensor(n).is_constant):
            constant = _own_constants(graph, op)
            if constant:
                op = _normalized(graph, tensors, op, constant)
        ops.append(op)
    return graph.replace(tensors=tensors, ops=tuple(ops))


def _normalized(graph: Graph, tensors: dict[str, Tensor], op: Op,
                constant: dict[int, int]) -> Op:
    outputs = _outputs(graph, op)
    zero_point = graph.tensor(op.output).zero_point
    bias = _bias_values(graph, op, outputs)
    multiplier, shift = (list(v) for v in _per_channel(op.requant, outputs))
    name = op.weights if isinstance(op, FullyConnected) else op.filter
    w = tensors[name]
    data = w.data.copy()
    for c, v in constant.items():
        bias[c], multiplier[c], shift[c] = constant_channel_constants(v - zero_point)
        if isinstance(op, DepthwiseConv2D):
            data[..., c] = 0
        else:
            data[c] = 0
    tensors[name] = dataclasses.replace(w, data=data)
    op = _set_bias(tensors, op, bias)
    return dataclasses.replace(op, requant=Requant(tuple(int(m) for m in multiplier),
                                                   tuple(int(s) for s in shift)))


# ---------------------------------------------------------------------------------------------
# Shared views of a weighted op


def _weight_columns(graph: Graph, op: Op) -> np.ndarray:
    """The weights as [output channel, taps] (int64, symmetric int8: no zero point)."""
    if isinstance(op, DepthwiseConv2D):
        w = graph.tensor(op.filter).data.astype(np.int64)
        return w.reshape(-1, w.shape[3]).T
    name = op.weights if isinstance(op, FullyConnected) else op.filter
    w = graph.tensor(name).data.astype(np.int64)
    return w.reshape(w.shape[0], -1)


def _outputs(graph: Graph, op: Op) -> int:
    if isinstance(op, FullyConnected):
        return graph.tensor(op.weights).shape[0]
    if isinstance(op, DepthwiseConv2D):
        return graph.tensor(op.filter).shape[3]
    return graph.tensor(op.filter).shape[0]


def _bias_values(graph: Graph, op: Op, outputs: int) -> np.ndarray:
    if op.bias is None:
        return np.zeros(outputs, np.int64)
    return graph.tensor(op.bias).data.astype(np.int64).reshape(outputs).copy()


def _per_channel(requant: Requant, outputs: int) -> tuple[np.ndarray, np.ndarray]:
    return (np.broadcast_to(np.array(requant.multiplier, np.int64), (outputs,)),
            np.broadcast_to(np.array(requant.shift, np.int64), (outputs,)))


# ---------------------------------------------------------------------------------------------
# The report's numbers


def summarize(before: Graph, after: Graph) -> DeadChannelSummary:
    """Channels and MACs of ``before`` (the model as read) that ``after`` no longer has."""
    from ..report import count_macs

    def channels(graph: Graph) -> dict[str, int]:
        return {op.output: graph.tensor(op.output).shape[-1] for op in graph.ops
                if isinstance(op, WEIGHTED)}

    was, now = channels(before), channels(after)
    lost = {name: was[name] - now[name] for name in now if name in was and was[name] > now[name]}
    macs_before = sum(count_macs(op, before) for op in before.ops)
    macs_after = sum(count_macs(op, after) for op in after.ops)
    kept = sum(len(_own_constants(after, op)) for op in after.ops
               if isinstance(op, WEIGHTED) and not op.legacy and op.requant is not None)
    return DeadChannelSummary(channels=sum(lost.values()), macs=macs_before - macs_after,
                              macs_before=macs_before, layers=len(lost), constant_kept=kept)
