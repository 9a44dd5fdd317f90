"""Layers share a C function when their variant and parameters are equal besides their tables
(mcugen/sharing.py), on every instruction set: the shared function is each layer's own code,
layers whose code is the same do share it, and the shared code is bit-exact.

The QEMU cases need the cross compiler and QEMU; person_detect's measured code needs the cross
compiler; nothing here needs TensorFlow."""

from __future__ import annotations

import dataclasses
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

import ir_graphs as g
from conftest import PERSON_DETECT, standard_inputs
from firmware_batch import run_batch
from hostc import run_sanitized
from mcugen.codegen import (CParameter, LayerView, scalar_arguments, table_arguments,
                            template_environment)
from mcugen.compile import CompiledModel, compile_graph
from mcugen.frontend.tflite import load_tflite
from mcugen.kernels.variant import ConstArray, LayerNames
from mcugen.measure import measure
from mcugen.reference import run_reference
from mcugen.sharing import record_shape
from mcugen.targets import load_target

# One core per instruction set: portable C (ARMv6-M), ARMv7-M, the DSP extension, Helium.
TARGETS = ("cortex-m0plus", "cortex-m3", "cortex-m7", "cortex-m55")
BLOCKS = 3


GRAPHS = {
    # Three equal depthwise + pointwise blocks (their own weights), then a pointwise layer of
    # another shape: three functions.
    "blocks": lambda: g.repeated_blocks(seed=5, h=6, w=6, c=10, blocks=BLOCKS, last_outputs=7),
    # The same with linear 1x1 convolutions of their own output zero points (MobileNetV2's
    # projections), which the short requantization folds into its tables.
    "projections": lambda: g.repeated_blocks(seed=5, h=6, w=6, c=10, blocks=BLOCKS,
                                             last_outputs=7, projections=(4, -9, 17)),
    # Three residual ADDs of one shape, with their own scales and zero points (data scalars).
    "residual": lambda: g.residual_adds(seed=2, shape=(1, 4, 5, 6), count=3),
}


def compiled_graph(graph: str, target: str) -> CompiledModel:
    return compile_graph(GRAPHS[graph](), name="model", target=load_target(target),
                         source=graph)


def blocks_compiled(target: str) -> CompiledModel:
    return compiled_graph("blocks", target)


def function_text(view: LayerView, names: LayerNames, label: str) -> str:
    """The layer's function as its template renders it under the given names and label."""
    template = template_environment().get_template(f"kernels/{view.variant.template}.c.j2")
    return template.render(layer=dataclasses.replace(view, names=names, label=label),
                           model=None)


def owners(compiled: CompiledModel) -> dict[int, LayerView]:
    """Each layer's index -> the view of the layer that defines the function it calls."""
    defining = {view.names.function: view for view in compiled.view.functions}
    return {view.index: defining[view.names.function] for view in compiled.view.layers}


@pytest.mark.parametrize("target", TARGETS)
def test_equal_layers_share_one_function_on_every_target(target):
    compiled = blocks_compiled(target)
    functions = compiled.view.functions
    assert [view.label for view in functions] == ["Layers 0, 2, 4", "Layers 1, 3, 5", "Layer 6"]
    for shared in functions[:2]:  # the tables are arguments, the last layer keeps its own
        assert shared.tables and all(t.parameter.startswith("t_") for t in shared.tables)
    assert functions[2].tables == ()
    calls = compiled.sources["model.c"].count(functions[0].names.function + "(")
    assert calls == 1 + BLOCKS  # defined once, called by every block


def shared_form(view: LayerView) -> LayerView:
    """The layer as a function shared with others renders it: its tables and data scalars as
    arguments."""
    params, tables = table_arguments(view.layer)
    params, scalars = scalar_arguments(params, view.variant.data_scalars)
    return dataclasses.replace(view, params=params, tables=tables, scalars=scalars)


def assert_each_layer_calls_its_own_code(compiled: CompiledModel) -> None:
    """A layer's own code, under its function's names and label, is the function it calls:
    no data of one layer is baked into another's code."""
    owner_of = owners(compiled)
    for view in compiled.view.layers:
        owner = owner_of[view.index]
        if owner.index != view.index:
            assert function_text(shared_form(view), owner.names, owner.label) == \
                function_text(owner, owner.names, owner.label), f"layer {view.index}"


def assert_equal_code_is_shared(compiled: CompiledModel) -> None:
    """No two functions render alike under one name and label."""
    texts = {view.index: function_text(shared_form(view),
                                       LayerNames("model", 999, view.names.variant), "Layer ?")
             for view in compiled.view.functions if view.variant.library is None}
    for a, b in combinations(texts, 2):
        assert texts[a] != texts[b], f"layers {a} and {b} have the same code, not shared"


@pytest.mark.parametrize("graph", sorted(GRAPHS))
@pytest.mark.parametrize("target", TARGETS)
def test_a_shared_function_is_each_layers_own_code(graph, target):
    assert_each_layer_calls_its_own_code(compiled_graph(graph, target))


@pytest.mark.parametrize("graph", ["blocks", "projections"])
@pytest.mark.parametrize("target", TARGETS)
def test_equal_code_is_shared(graph, target):
    """Not asserted of "residual": its 1x1 depthwise layers differ in input zero points that
    the DSP variant prints only for a border, which they lack (shape in its record, so they
    keep functions of their own; no real model has such a pair)."""
    assert_equal_code_is_shared(compiled_graph(graph, target))


@pytest.mark.parametrize("target", ["cortex-m0plus", "cortex-m3", "cortex-m7"])
def test_projections_that_differ_in_a_folded_zero_point_share(target):
    labels = [view.label for view in compiled_graph("projections", target).view.functions]
    assert "Layers 1, 3, 5" in labels, labels


@pytest.mark.parametrize("target", ["cortex-m0plus", "cortex-m3", "cortex-m7"])
def test_adds_that_differ_in_data_scalars_alone_share_one_function(target):
    compiled = compiled_graph("residual", target)
    adds = [view for view in compiled.view.layers if view.variant.name == "add_s8"]
    assert len(adds) == 3 and {view.label for view in adds} == {"Layers 1, 3, 5"}
    values = {view.index: [s.value for s in view.scalars] for view in adds}
    assert all(len(v) == len(adds[0].variant.data_scalars) for v in values.values())
    assert len({tuple(v) for v in values.values()}) == 3  # each passes its own
    source = compiled.sources["model.c"]
    for view in adds:  # each call passes its layer's values
        assert ", ".join(map(str, values[view.index])) + ");" in source


def test_a_layer_alone_keeps_its_data_scalars_as_constants():
    compiled = compile_graph(g.elementwise(1, "add", (1, 3, 4, 5), "same"), name="model",
                             target=load_target("cortex-m7"), source="add")
    (add,) = [view for view in compiled.view.layers if view.variant.name == "add_s8"]
    assert add.scalars == () and "int32_t d_" not in compiled.sources["model.c"]


def test_a_template_cannot_compute_with_a_run_time_value():
    value = CParameter("d_input_offset")
    assert str(value) == "d_input_offset"
    with pytest.raises(TypeError):
        bool(value)
    with pytest.raises(TypeError):
        template_environment().from_string("{{ x + 1 }}").render(x=value)


@pytest.fixture(scope="module")
def person_detect_graph():
    return load_tflite(PERSON_DETECT.read_bytes(), "person_detect")


@pytest.mark.parametrize("target", TARGETS)
def test_person_detect_shares_exactly_its_equal_layers(person_detect_graph, target):
    compiled = compile_graph(person_detect_graph, name="person_detect",
                             target=load_target(target), source="person_detect")
    # On the DSP extension the pointwise layers before the four stride-2 depthwise layers
    # write channel-planar rows (kernels/depthwise_planar.py): a function of their own.
    functions = 23 if target == "cortex-m7" else 22
    assert len(compiled.view.functions) == functions, [v.label for v in compiled.view.functions]
    assert_each_layer_calls_its_own_code(compiled)
    assert_equal_code_is_shared(compiled)


def test_person_detect_on_helium_fits_its_code_budget(person_detect_graph):
    """Issue 20: person_detect's code on Cortex-M55 at most 14 KB (18,800 B unshared)."""
    target = load_target("cortex-m55")
    compiled = compile_graph(person_detect_graph, name="person_detect", target=target,
                             source="person_detect")
    sizes = measure(compiled.sources, "person_detect", target, compiled.plan.arena_size)
    assert sizes is not None, f"{target.compiler} is needed to measure the code"
    assert sizes.code_bytes <= 14 * 1024, sizes


def test_the_shape_of_a_record_leaves_out_its_tables_values_only():
    params = blocks_compiled("cortex-m7").layers[1].params
    matrix = params.matrix
    other = dataclasses.replace(matrix.filter, name="x", values=matrix.filter.values[::-1])
    assert record_shape(dataclasses.replace(
        params, matrix=dataclasses.replace(matrix, filter=other))) == record_shape(params)
    shorter = ConstArray("x", "int8_t", matrix.filter.values[:-1])
    wider = ConstArray("x", "int16_t", matrix.filter.values.astype(np.int16))
    for changed in (dataclasses.replace(matrix, filter=shorter),
                    dataclasses.replace(matrix, filter=wider),
                    dataclasses.replace(matrix, offset=1), dataclasses.replace(matrix, depth=11)):
        assert record_shape(dataclasses.replace(params, matrix=changed)) != \
            record_shape(params), changed


def reference_outputs(compiled: CompiledModel, inputs: np.ndarray) -> np.ndarray:
    graph = compiled.graph
    return np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                     for x in inputs])


def write_sources(compiled: CompiledModel, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for file, text in compiled.sources.items():
        (folder / file).write_text(text)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_shared_functions_are_bit_exact_on_the_host_under_sanitizers(graph, tmp_path):
    compiled = compiled_graph(graph, "host")
    assert len(compiled.view.functions) < len(compiled.layers)
    inputs = standard_inputs(compiled.graph.input.size, seed=4)
    outputs = run_sanitized(write_sources(compiled, tmp_path / "model"), "model",
                            compiled.graph.input.size, compiled.graph.output.size, inputs,
                            tmp_path)
    np.testing.assert_array_equal(outputs, reference_outputs(compiled, inputs))


@pytest.mark.qemu
def test_shared_functions_are_bit_exact_in_qemu_on_every_instruction_set(tmp_path):
    for target_name in TARGETS:  # per target, every graph in one firmware (firmware_batch.py)
        compiled = {graph: compile_graph(GRAPHS[graph](), name=graph,
                                         target=load_target(target_name), source=graph)
                    for graph in sorted(GRAPHS)}
        inputs = {graph: standard_inputs(model.graph.input.size, seed=4)
                  for graph, model in compiled.items()}
        runs = run_batch(compiled, inputs, load_target(target_name), tmp_path / target_name)
        for graph, model in compiled.items():
            np.testing.assert_array_equal(runs[graph].outputs,
                                          reference_outputs(model, inputs[graph]),
                                          err_msg=f"{graph} on {target_name}")
