"""Regions in the schedule (issue 20, item 2): a step computes a region of its output (rows
by columns) and reads and writes each operand through a view (the row and column its buffer
starts at). mcugen's own schedules are full-width, their views at column 0: the generated C is
what it was (test_snapshots). The replay (row_bands.verify) checks the columns as it checks
the rows: a step whose view does not hold the columns it reads or writes, or that asks a
kernel without Variant.columns for part of a row, is refused, in the steps and in a loop's
body alike. A new schedule is a module of steps alone: two made in this file (row halves, and
2x2 tiles of rows by columns) run bit-exact on the host.

A hand-built graph (ir_graphs.conv_chain), no TensorFlow, no QEMU."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

import ir_graphs as g
from hostc import assert_reference_outputs, run_sanitized
from mcugen import row_bands
from mcugen.codegen import build_model_view, render_sources
from mcugen.compile import compile_graph, prepare
from mcugen.geometry import Region, input_region
from mcugen.kernels import lower_layers
from mcugen.kernels.pointwise import PW_CONV_S8, PW_CONV_S8_ARMV7M
from mcugen.planner import plan_memory
from mcugen.row_bands import activation_inputs
from mcugen.schedule import Schedule, Step, View, arena_buffers, column_layers, whole_step
from mcugen.targets import load_target


@pytest.fixture(scope="module")
def banded():
    compiled = compile_graph(g.conv_chain(3), name="model", target=load_target("host"),
                             source="conv_chain", memory_check=False, max_ram=2_500)
    assert compiled.schedule.banded and compiled.schedule.repeats
    return compiled


def test_every_step_computes_a_full_width_region_through_views_at_column_0(banded):
    graph, layers = banded.graph, banded.layers
    for step in banded.schedule.steps:
        layer = layers[step.layer]
        width = graph.tensor(layer.op.output).shape[2]
        assert step.region == Region(step.rows, (0, width))
        if step.origins is None:  # a whole step: no views, its tensors whole
            assert step.views is None
            continue
        inputs = activation_inputs(layer.op, graph)
        assert step.views == tuple(View(row, 0) for row in step.origins)
        assert len(step.views) == len(inputs) + 1
        # The columns it reads: all its inputs' (a full-width output reads whole rows).
        for operand, name in enumerate(inputs):
            first, last = input_region(layer.op, graph, step.region, operand).columns
            assert first == 0 and last <= graph.tensor(name).shape[2]
    # A loop's iterations carry their regions and views (the replay compares them).
    # (With a fill or drain folded in, an iteration runs only its guarded statements.)
    program = row_bands.program_steps(banded.schedule)
    assert len(program) == len(banded.schedule.steps)
    for step, actual in zip(program, banded.schedule.steps):
        assert (step.layer, step.region, step.views) == \
            (actual.layer, actual.region, actual.views)


def replaced(schedule, position: int, **changes):
    steps = list(schedule.steps)
    steps[position] = dataclasses.replace(steps[position], **changes)
    return dataclasses.replace(schedule, steps=tuple(steps), repeats=())


def test_the_replay_refuses_a_broken_column_view(banded):
    schedule, graph, layers = banded.schedule, banded.graph, banded.layers
    row_bands.verify(schedule, graph, layers)
    unlooped = dataclasses.replace(schedule, repeats=())
    row_bands.verify(unlooped, graph, layers)
    position, step = next((p, s) for p, s in enumerate(schedule.steps)
                          if s.origins is not None and s.layer > 0)
    wrong_input = (1, *step.column_origins[1:])  # its input's buffer from column 1 on
    wrong_output = (*step.column_origins[:-1], 1)
    width = step.columns[1]
    for wrong in (replaced(unlooped, position, column_origins=wrong_input),
                  replaced(unlooped, position, column_origins=wrong_output),
                  replaced(unlooped, position, columns=(0, width - 1)),  # part of a row
                  replaced(unlooped, position, columns=(1, width + 1)),
                  replaced(unlooped, position, column_origins=step.column_origins[:-1])):
        with pytest.raises(AssertionError):
            row_bands.verify(wrong, graph, layers)
    # A whole step asked for part of its rows.
    whole = next(p for p, s in enumerate(schedule.steps) if s.origins is None and s.rows)
    columns = schedule.steps[whole].columns
    with pytest.raises(AssertionError):
        row_bands.verify(replaced(unlooped, whole, columns=(0, columns[1] - 1)), graph,
                         layers)


def test_the_replay_refuses_a_loop_whose_body_has_a_broken_column_view(banded):
    schedule, graph, layers = banded.schedule, banded.graph, banded.layers
    repeat = schedule.repeats[0]
    body = list(repeat.body)
    body[0] = dataclasses.replace(body[0], column_origins=(1, *body[0].column_origins[1:]))
    wrong = dataclasses.replace(schedule, repeats=(
        dataclasses.replace(repeat, body=tuple(body)), *schedule.repeats[1:]))
    with pytest.raises(AssertionError, match="a loop is not its steps"):
        row_bands.verify(wrong, graph, layers)
    # Its own steps, made from the broken loop, are refused by the replay of their columns.
    with pytest.raises(AssertionError, match="column"):
        row_bands.verify(dataclasses.replace(
            wrong, steps=tuple(row_bands.program_steps(wrong))), graph, layers)
    # A loop whose columns drift from one iteration to the next: not its steps either.
    increments = list(repeat.increments)
    increments[0] = (*increments[0][:-1], increments[0][-1] + 1)  # the output's column origin
    drifting = dataclasses.replace(schedule, repeats=(
        dataclasses.replace(repeat, increments=tuple(increments)), *schedule.repeats[1:]))
    with pytest.raises(AssertionError):
        row_bands.verify(drifting, graph, layers)


def halves(graph, layers) -> Schedule:
    """A schedule mcugen does not have, made here of steps and geometry alone: each layer
    that can take a row range computes its output in two steps, the top half of its rows and
    then the bottom half, reading whole tensors (views at row 0 and column 0)."""
    steps, segments = [], []
    for layer in layers:
        if not row_bands.can_band(layer, graph):
            steps.append(whole_step(layer))
            continue
        height, operands = layer.output_rows, len(activation_inputs(layer.op, graph)) + 1
        region_columns = (0, layer.output_columns)
        steps += [Step(layer.index, rows, (0,) * operands, (), region_columns, (0,) * operands)
                  for rows in ((0, height // 2), (height // 2, height))]
        segments.append((layer.index, layer.index + 1))  # its function takes rows and views
    return Schedule(tuple(steps), {}, tuple(segments), band_rows=max(
        layer.output_rows for layer in layers))


def test_a_new_schedule_needs_only_steps_and_geometry(tmp_path):
    """docs/extending.md, "A new schedule": a module that returns a Schedule of Steps
    (regions and views) is replayed, planned, emitted and runs bit-exact with nothing else
    changed (here the module is `halves` above; choosing it automatically would be a branch
    in compile.py, and the early arena bound estimate.py's)."""
    graph = prepare(g.conv_chain(3, h=12, w=10))
    layers = lower_layers(graph, load_target("host"), "model")
    schedule = halves(graph, layers)
    row_bands.verify(schedule, graph, layers)
    assert len(schedule.steps) == 2 * len(layers)
    plan = plan_memory(arena_buffers(graph, layers, schedule))
    sources = render_sources(build_model_view(graph, layers, schedule, plan, "model",
                                              "halves"))
    body = sources["model.c"][sources["model.c"].index("int model_invoke("):]
    assert len(re.findall(r"^\s+layer\d+_\w+\(", body[:body.index("\n}\n")], re.M)) == \
        2 * len(layers)
    inputs = np.random.default_rng(5).integers(-128, 128, (2, graph.input.size), dtype=np.int8)
    assert_reference_outputs(sources, graph, tmp_path, inputs)


def tiles(graph, layers) -> Schedule:
    """A 2-D tile schedule, made here of steps and geometry alone: each layer whose kernel
    computes column regions (Variant.columns) computes its output in 2x2 regions (rows by
    columns, in raster order), the other layers that take rows in two halves of rows, each
    reading whole tensors (views at row 0 and column 0)."""
    steps, segments = [], []
    for layer in layers:
        if not row_bands.can_band(layer, graph):
            steps.append(whole_step(layer))
            continue
        height, width = layer.output_rows, layer.output_columns
        operands = len(activation_inputs(layer.op, graph)) + 1
        rows = ((0, height // 2), (height // 2, height))
        columns = ((0, width // 2), (width // 2, width)) if layer.variant.columns else \
            ((0, width),)
        steps += [Step(layer.index, r, (0,) * operands, (), c, (0,) * operands)
                  for r in rows for c in columns]
        segments.append((layer.index, layer.index + 1))
    return Schedule(tuple(steps), {}, tuple(segments), band_rows=max(
        layer.output_rows for layer in layers))


@pytest.mark.parametrize("pointwise_block", [1, 2])
def test_a_schedule_of_2x2_tiles_runs_bit_exact(tmp_path, pointwise_block):
    """issue 20, item 2: a step's region may be narrower than a row for a kernel that
    addresses columns (the portable convolution, depthwise and pointwise): its function takes
    the columns and each operand's column origin; the replay checks every pixel a tile reads
    was written; the C runs bit-exact. Odd sizes: halves of 5 columns are 2 and 3, so the
    convolution's blocks of two pixels cross rows. pointwise_block 2: the pointwise layers
    lowered as pw_conv_s8_armv7m (its template, blocks of two pixels and an odd last one;
    its core's QEMU tests do not tile) and rendered as portable C."""
    graph = prepare(g.conv_chain(4, h=12, w=10))
    target = load_target("host")
    layers = lower_layers(graph, target, "model")
    if pointwise_block == 2:
        layers = tuple(dataclasses.replace(layer, params=PW_CONV_S8_ARMV7M.lower(
            layer.op, graph, target, layer.names)) if layer.variant is PW_CONV_S8 else layer
            for layer in layers)
        assert any(layer.params.block_pixels == 2 for layer in layers)
    schedule = tiles(graph, layers)
    row_bands.verify(schedule, graph, layers)
    tiled = column_layers(schedule, layers)
    assert {layers[i].variant.name for i in tiled} == {"conv_s8", "dw_conv_s8", "pw_conv_s8"}
    assert len(tiled) == len(layers)
    plan = plan_memory(arena_buffers(graph, layers, schedule))
    sources = render_sources(build_model_view(graph, layers, schedule, plan, "model", "tiles"))
    text = sources["model.c"]
    assert "int32_t column_begin, int32_t column_end" in text and "input_column0" in text
    body = text[text.index("int model_invoke("):]
    assert len(re.findall(r"^\s+layer\d+_\w+\(", body[:body.index("\n}\n")], re.M)) == \
        4 * len(layers)
    inputs = np.random.default_rng(6).integers(-128, 128, (3, graph.input.size), dtype=np.int8)
    folder, expected = assert_reference_outputs(sources, graph, tmp_path, inputs)
    # No tile reads or writes outside its operands (ASan, UBSan).
    np.testing.assert_array_equal(run_sanitized(folder, "model", graph.input.size,
                                                graph.output.size, inputs, tmp_path), expected)


def test_the_replay_refuses_column_regions_a_kernel_cannot_compute():
    """A region narrower than a row given to a variant without `columns`, a tile read before
    it is written, a tile written twice: refused, with what went wrong."""
    graph = prepare(g.conv_chain(4, h=12, w=10))
    layers = lower_layers(graph, load_target("host"), "model")
    schedule = tiles(graph, layers)
    rows_only = list(layers)
    rows_only[1] = dataclasses.replace(layers[1], variant=dataclasses.replace(
        layers[1].variant, columns=False))
    with pytest.raises(AssertionError, match="computes whole rows"):
        row_bands.verify(schedule, graph, tuple(rows_only))
    with pytest.raises(AssertionError, match="computes whole rows"):
        column_layers(schedule, tuple(rows_only))
    steps = list(schedule.steps)
    # Layer 1's first tile before layer 0's last: a pixel it reads is not written yet.
    early = [*steps[:3], steps[4], steps[3], *steps[5:]]
    with pytest.raises(AssertionError):
        row_bands.verify(dataclasses.replace(schedule, steps=tuple(early)), graph, layers)
    twice = [*steps[:2], steps[1], *steps[3:]]
    with pytest.raises(AssertionError, match="written twice"):
        row_bands.verify(dataclasses.replace(schedule, steps=tuple(twice)), graph, layers)
    # Every buffer holds whole rows from column 0: a view from another column is refused.
    moved = dataclasses.replace(steps[5], column_origins=(1, 0))
    with pytest.raises(AssertionError, match="column 0"):
        row_bands.verify(dataclasses.replace(
            schedule, steps=(*steps[:5], moved, *steps[6:])), graph, layers)
