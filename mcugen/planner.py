"""Static memory planning: every activation gets a fixed offset in one arena.

The planner works on plain records, not on the graph: a Buffer is a size and a lifetime (the
first and last op index that touch it). Buffers whose lifetimes overlap may not share bytes,
with one exception that matters a lot on a microcontroller: an op that streams through its
input in the same order as it writes its output can write its output *over* its input, as long
as the output starts far enough below the input that no write reaches input bytes still to be
read. That distance is computed from the kernel's access order (see ``streaming_distance``)
and given to the planner as an ``Overlap``.

Placement is greedy: each buffer at the lowest offset that fits (the algorithm TFLM's
GreedyMemoryPlanner describes), with candidate offsets taken from the ends of buffers already
placed and from the allowed overlaps, tried in two orders.
"""

from __future__ import annotations

from dataclasses import dataclass

import random

import numpy as np

ALIGNMENT = 16  # bytes; CMSIS-NN casts scratch to int32_t*, and 16 suits every core's loads


@dataclass(frozen=True)
class Overlap:
    """This buffer may share bytes with ``other`` if offset(other) - offset(this) >= distance."""

    other: str
    distance: int


@dataclass(frozen=True)
class Buffer:
    id: str
    size: int
    first: int  # the first step that writes it
    last: int  # the last step that reads it
    overlaps: tuple[Overlap, ...] = ()
    fill_in: bool = False  # placed after all other buffers, into the gaps they leave (scratch)
    # Also tried in the gaps of the best plan of all the others (plan_memory): a column tile's
    # cached halo, alive through a whole tile, which the greedy orders put where the tile's
    # band buffers had nested (VWW at 12K: 13,728 B, not 11,856 B).
    placed_last: bool = False


@dataclass(frozen=True)
class Plan:
    offsets: dict[str, int]  # within the buffer's region
    arena_size: int  # all regions together
    # Split over RAM regions (--ram-regions): each region's name and arena size, in the
    # target's order, and the region index of every buffer. None: one arena.
    regions: tuple[tuple[str, int], ...] | None = None
    region_of: dict[str, int] | None = None

    def region(self, buffer: str) -> int | None:
        return None if self.region_of is None else self.region_of[buffer]


def _align(value: int) -> int:
    return -(-value // ALIGNMENT) * ALIGNMENT


def _lifetimes_meet(a: Buffer, b: Buffer) -> bool:
    return a.first <= b.last and b.first <= a.last


def _overlap_rule(a: Buffer, b: Buffer) -> tuple[str, int] | None:
    """(id of the writer, distance) if one of a, b may be written over the other."""
    for writer, reader in ((a, b), (b, a)):
        for overlap in writer.overlaps:
            if overlap.other == reader.id:
                return writer.id, overlap.distance
    return None


def _conflicts(a: Buffer, a_offset: int, b: Buffer, b_offset: int) -> bool:
    if not _lifetimes_meet(a, b):
        return False
    if a_offset + a.size <= b_offset or b_offset + b.size <= a_offset:
        return False
    rule = _overlap_rule(a, b)
    if rule is None:
        return True
    writer, distance = rule
    writer_offset, reader_offset = (a_offset, b_offset) if writer == a.id else (b_offset, a_offset)
    return reader_offset - writer_offset < distance


def plan_memory(buffers: list[Buffer], search: bool = True) -> Plan:
    """Greedy first-fit placement in three orders: largest first (TFLM's), by first use, and
    from the last layer back (which stacks each input just above the output written over it,
    so chains of streaming layers nest); and each again with the fill-in buffers (scratch)
    after the others, into their gaps. The smallest arena wins; all are deterministic. With
    search, a local search then tries to improve it (slower: schedule choices plan without)."""
    by_size = sorted(range(len(buffers)), key=lambda i: (-buffers[i].size, buffers[i].first, i))
    by_first_use = sorted(range(len(buffers)), key=lambda i: (buffers[i].first, i))
    orders = [by_size, by_first_use, by_first_use[::-1]]
    if any(b.fill_in for b in buffers):
        orders += [[i for i in order if not buffers[i].fill_in]
                   + [i for i in by_size if buffers[i].fill_in] for order in orders]
    neighbours = _neighbours(buffers)
    plans = [(_place(buffers, order, neighbours), order) for order in orders]
    plan, order = min(plans, key=lambda entry: entry[0].arena_size)
    plan = _improved(buffers, plan, order, neighbours) if search else plan
    others = [b for b in buffers if not b.placed_last]
    if len(others) < len(buffers):
        plan = min(plan, plan_around(buffers, others, plan_memory(others, search)),
                   key=lambda p: p.arena_size)
    return plan


# A seeded local search after the greedy orders: swap two buffers in the best order, keep the
# swap when the arena shrinks (or stays equal). A scratch buffer that lands between a
# streaming layer's input and output can cost a quarter of the arena (MobileNet V1 on
# Cortex-M55, 48,448 B greedy, 39,632 B after 30 swaps); the search is deterministic.
SEARCH_SWAPS = 200
SEARCH_SEED = 0


def _improved(buffers: list[Buffer], plan: Plan, order: list[int],
              neighbours: list[list[tuple[int, int, int, int]]]) -> Plan:
    if len(buffers) < 2:
        return plan
    rng = random.Random(SEARCH_SEED)
    best, best_order = plan, list(order)
    for _ in range(_search_swaps(len(buffers))):
        candidate = list(best_order)
        i, j = rng.randrange(len(candidate)), rng.randrange(len(candidate))
        candidate[i], candidate[j] = candidate[j], candidate[i]
        trial = _place(buffers, candidate, neighbours)
        if trial.arena_size <= best.arena_size:
            best, best_order = trial, candidate
    return best


# Each swap re-places every buffer: past this many buffer placements in all, a huge graph
# (thousands of layers) gets fewer swaps, so that planning stays near-linear. Models up to
# SEARCH_BUDGET / SEARCH_SWAPS = 2,000 buffers get all of them.
SEARCH_BUDGET = 400_000


def _search_swaps(count: int) -> int:
    return min(SEARCH_SWAPS, SEARCH_BUDGET // count)


def _place(buffers: list[Buffer], order: list[int],
           neighbours: list[list[tuple[int, int, int, int]]] | None = None) -> Plan:
    """First fit in ``order``. Only buffers whose lifetimes meet the one being placed can
    conflict with it, so only they are looked at: the lowest free offset is 0 or just past
    one of them (the end of its bytes, or the distance it allows), and the others' ends
    would add candidates that are never lower. The neighbours (_neighbours) do not depend on
    the order: the local search computes them once for its hundreds of orders."""
    neighbours = _neighbours(buffers) if neighbours is None else neighbours
    placed: dict[int, int] = {}
    for i in order:
        placed[i] = _first_fit(buffers[i].size, neighbours[i], placed)
    offsets = {buffers[i].id: offset for i, offset in placed.items()}
    arena = max((offsets[b.id] + b.size for b in buffers), default=0)
    return Plan(offsets=offsets, arena_size=_align(arena))


def plan_around(buffers: list[Buffer], previous_buffers: list[Buffer], previous: Plan) -> Plan:
    """A plan that keeps the previous plan's offset of every buffer it placed that is
    unchanged (size, lifetime, overlaps) and places the others first fit around them, largest
    first. A schedule choice that changes a few buffers (a layer's scratch, a band) tries it
    beside plan_memory: the local search's swaps may end elsewhere when one buffer is added
    (VWW at 12K: a late layer's 912 B scratch alive for one step made it 12,848 B, not
    12,176 B)."""
    unchanged = set(previous_buffers)
    neighbours = _neighbours(buffers)
    placed: dict[int, int] = {}
    kept = [i for i, b in enumerate(buffers) if b in unchanged and b.id in previous.offsets]
    others = sorted(set(range(len(buffers))) - set(kept),
                    key=lambda i: (-buffers[i].size, buffers[i].first, i))
    kept_set = set(kept)
    for i in kept + others:
        placed[i] = previous.offsets[buffers[i].id] if i in kept_set else \
            _first_fit(buffers[i].size, neighbours[i], placed)
    offsets = {buffers[i].id: offset for i, offset in placed.items()}
    arena = max((offsets[b.id] + b.size for b in buffers), default=0)
    return Plan(offsets=offsets, arena_size=_align(arena))


def _lifetime_neighbours(buffers: list[Buffer]) -> list[list[int]]:
    """Per buffer, the other buffers whose lifetimes meet its own, by index. A sweep in order
    of first use: linear in the buffers and the pairs found (a long chain stays linear), not
    in the steps of each lifetime."""
    meets: list[list[int]] = [[] for _ in buffers]
    by_first = sorted(range(len(buffers)), key=lambda i: buffers[i].first)
    open_: list[int] = []  # earlier buffers, some perhaps already over
    for i in by_first:
        first = buffers[i].first
        open_ = [j for j in open_ if buffers[j].last >= first]
        for j in open_:
            meets[i].append(j)
            meets[j].append(i)
        open_.append(i)
    return [sorted(found) for found in meets]


def _overlap_rules(buffers: list[Buffer]) -> dict[tuple[int, int], int]:
    """(writer, reader) index -> distance, the first Overlap a writer lists for a reader."""
    index = {b.id: i for i, b in enumerate(buffers)}
    rules: dict[tuple[int, int], int] = {}
    for i, b in enumerate(buffers):
        for overlap in b.overlaps:
            j = index.get(overlap.other)
            if j is not None:
                rules.setdefault((i, j), overlap.distance)
    return rules


# How buffer i may share bytes with a neighbour j (_neighbours): not at all, i written over
# j, or j written over i (_overlap_rule's writer; i's own rule first, as there).
APART, I_WRITES, J_WRITES = 0, 1, 2


def _neighbours(buffers: list[Buffer]) -> list[list[tuple[int, int, int, int]]]:
    """Per buffer i, the buffers whose lifetimes meet its own (_lifetime_neighbours), each
    as (index, size, how they may share, distance): what first fit compares for every
    candidate offset, looked up once per plan rather than per placement and candidate."""
    rules = _overlap_rules(buffers)
    found = []
    for i, meets in enumerate(_lifetime_neighbours(buffers)):
        row = []
        for j in meets:
            if (i, j) in rules:
                row.append((j, buffers[j].size, I_WRITES, rules[(i, j)]))
            elif (j, i) in rules:
                row.append((j, buffers[j].size, J_WRITES, rules[(j, i)]))
            else:
                row.append((j, buffers[j].size, APART, 0))
        found.append(row)
    return found


def _first_fit(size: int, neighbours: list[tuple[int, int, int, int]],
               placed: dict[int, int]) -> int:
    """The lowest offset for a buffer of size bytes where it collides (_conflicts) with none
    of its placed neighbours: 0 or just past one of them. Inlined, as the local search calls
    it for every buffer of hundreds of orders."""
    meeting = [(placed[j], other, how, distance) for j, other, how, distance in neighbours
               if j in placed]
    candidates = {0}
    for offset, other, how, distance in meeting:
        candidates.add(-(-(offset + other) // ALIGNMENT) * ALIGNMENT)
        # Just far enough below the buffer it overwrites (rounded down), or far enough
        # above the buffer that overwrites it (rounded up).
        if how == I_WRITES:
            if offset >= distance:
                candidates.add((offset - distance) // ALIGNMENT * ALIGNMENT)
        elif how == J_WRITES:
            candidates.add(-(-(offset + distance) // ALIGNMENT) * ALIGNMENT)
    for candidate in sorted(candidates):
        end = candidate + size
        for offset, other, how, distance in meeting:
            if end <= offset or offset + other <= candidate:
                continue  # apart
            if how == APART or (how == I_WRITES and offset - candidate < distance) or \
                    (how == J_WRITES and candidate - offset < distance):
                break
        else:
            return candidate
    raise AssertionError("unreachable: the end of the last buffer always fits")


def find_overlap_violations(buffers: list[Buffer], plan: Plan) -> list[tuple[str, str]]:
    """Pairs of buffers that the plan lets collide; empty for every plan we make (for tests)."""
    bad = []
    for i, a in enumerate(buffers):
        for b in buffers[i + 1:]:
            if _conflicts(a, plan.offsets[a.id], b, plan.offsets[b.id]):
                bad.append((a.id, b.id))
    return bad


def streaming_distance(write_end: np.ndarray, next_read: np.ndarray) -> int:
    """How far below its input an output must start so that writes never clobber unread input.

    For each output step p (in the order the kernel writes them), ``write_end[p]`` is the byte
    just past the last output byte written by step p, and ``next_read[p]`` the lowest input byte
    read by step p or any later step. Safe iff out + write_end[p] <= in + next_read[p] for all p.
    """
    return int(np.max(write_end - next_read))


def live_peak(buffers: list[Buffer]) -> int:
    """The most bytes alive at once, quick to compute: an estimate of the planner's arena.
    A buffer written over its input adds, at the step that writes it, only what sticks out
    beyond the input (the larger of the distance and the growth)."""
    by_id = {b.id: b for b in buffers}
    steps = max((b.last for b in buffers), default=0) + 2
    change = np.zeros(steps, dtype=np.int64)
    for b in buffers:
        first_bytes = b.size
        for overlap in b.overlaps:
            other = by_id.get(overlap.other)
            if other is not None and other.last == b.first:
                first_bytes = min(first_bytes, max(overlap.distance, b.size - other.size))
        change[b.first] += first_bytes
        change[b.first + 1] += b.size - first_bytes
        change[b.last + 1] -= b.size
    return int(np.cumsum(change).max(initial=0))


def plan_regions(buffers: list[Buffer], regions: list[tuple[str, int]]) -> Plan:
    """The arena split over RAM regions (name, bytes), fastest first: the small buffers first
    (a band, a scratch, a small late layer's output: touched most per byte) fill the first
    region as far as its plan fits, the next ones the next region, and so on; each region is
    planned like one arena. Raises McugenError when the last region overflows."""
    from .errors import McugenError

    remaining = sorted(buffers, key=lambda b: (b.size, b.first, b.id))
    plans: list[Plan] = []
    region_of: dict[str, int] = {}
    for index, (name, capacity) in enumerate(regions):
        last = index == len(regions) - 1
        chosen = list(remaining) if last else _filled(remaining, capacity)
        plan = plan_memory(chosen)
        while plan.arena_size > capacity and chosen and not last:
            chosen.remove(max(chosen, key=lambda b: (b.size, b.id)))
            plan = plan_memory(chosen)
        if plan.arena_size > capacity:
            raise McugenError(
                f"the arena does not fit the RAM regions {', '.join(n for n, _ in regions)}: "
                f"{name} would need {plan.arena_size:,} B of its {capacity:,}")
        plans.append(plan)
        region_of.update((b.id, index) for b in chosen)
        taken = {b.id for b in chosen}
        remaining = [b for b in remaining if b.id not in taken]
    offsets = {name: offset for plan in plans for name, offset in plan.offsets.items()}
    return Plan(offsets, sum(p.arena_size for p in plans),
                tuple((name, plan.arena_size) for (name, _), plan in zip(regions, plans)),
                region_of)


def _filled(candidates: list[Buffer], capacity: int) -> list[Buffer]:
    """The buffers, in order, that a region of capacity bytes takes while the bytes alive at
    once stay within it."""
    chosen: list[Buffer] = []
    for buffer in candidates:
        if live_peak(chosen + [buffer]) <= capacity:
            chosen.append(buffer)
    return chosen


def buffer_label(index: int) -> str:
    """A, B, ..., Z, AA, AB, ..., ZZ, AAA, ... (as spreadsheet columns): one label per buffer,
    however many there are."""
    label = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        label = chr(ord("A") + rest) + label
    return label


def format_plan(buffers: list[Buffer], plan: Plan, width: int = 64) -> str:
    """An ASCII picture of the arena: one row per step, each buffer alive there spelled by its
    label across its bytes (at least the label's width), `*` where two share bytes."""
    if not buffers or plan.arena_size == 0:
        return "(empty arena)"
    scale = plan.arena_size / width
    labels = {b.id: buffer_label(i) for i, b in enumerate(buffers)}
    first = min(b.first for b in buffers)
    steps = range(first, max(b.last for b in buffers) + 1)
    grid = [["."] * width for _ in steps]
    for b in buffers:  # each buffer marks its own rows: linear in the lifetimes, not steps x buffers
        label = labels[b.id]
        start = int(plan.offsets[b.id] / scale)
        end = max(start + len(label), int((plan.offsets[b.id] + b.size) / scale))
        for step in range(b.first, b.last + 1):
            row = grid[step - first]
            for x in range(start, min(end, width)):
                row[x] = label[(x - start) % len(label)] if row[x] == "." else "*"
    rows = [f"{step:4d} |{''.join(row)}|" for step, row in zip(steps, grid)]
    legend = [f"  {labels[b.id]} = {b.id} ({b.size} B at {plan.offsets[b.id]})" for b in buffers]
    return "\n".join(rows + legend)
