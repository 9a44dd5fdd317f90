"""MobileNet V2, V3-Small and V3-Large from mcugen's Keras front end, end to end: the C on the
host and the firmware in QEMU are bit-exact with the NumPy reference and TFLM. Each generation
is tried at two alphas and two resolutions, one of them grayscale and one not square."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import mobilenet_tflite, standard_inputs, tflm_outputs
from firmware_batch import compile_for, run_batch
from hostc import run_sanitized, run_three_ways
from mcugen.build import BuildOptions, BuildResult, build
from mcugen.ir import Add
from mcugen.planner import find_overlap_violations
from mcugen.reference import run_reference
from mcugen.run import (bit_for_bit, default_inputs, float_input_range, format_summary,
                        input_tensor, run)
from mcugen.targets import load_target

CASES = {
    "v2_a0.35_64x64x3": dict(arch="v2", alpha=0.35, height=64, width=64, channels=3, classes=4),
    "v2_a0.5_48x40x1": dict(arch="v2", alpha=0.5, height=48, width=40, channels=1, classes=3),
    "v3-small_a0.5_64x64x1": dict(arch="v3-small", alpha=0.5, height=64, width=64, channels=1,
                                  classes=5),
    "v3-small_a0.35_56x48x3": dict(arch="v3-small", alpha=0.35, height=56, width=48,
                                   channels=3, classes=2),
    "v3-large_a0.35_64x64x3": dict(arch="v3-large", alpha=0.35, height=64, width=64,
                                   channels=3, classes=6),
    "v3-large_a0.25_40x40x1": dict(arch="v3-large", alpha=0.25, height=40, width=40, channels=1,
                                  classes=3),
}
# The TFLite ops each generation must bring (what this issue added), before the passes.
GENERATION_OPS = {
    "v2": {"ADD"},
    "v3-small": {"ADD", "MUL", "HARD_SWISH"},
    "v3-large": {"ADD", "MUL", "HARD_SWISH"},
}
# One case per generation on Cortex-M4 and M55, every case on M7.
QEMU_RUNS = [(case, "cortex-m7") for case in CASES] + [
    ("v3-small_a0.35_56x48x3", "cortex-m4"), ("v2_a0.5_48x40x1", "cortex-m4"),
    ("v3-large_a0.35_64x64x3", "cortex-m4"),
    ("v2_a0.35_64x64x3", "cortex-m55"), ("v3-small_a0.5_64x64x1", "cortex-m55"),
    ("v3-large_a0.25_40x40x1", "cortex-m55"),
]

_built: dict[str, BuildResult] = {}


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("generations")


def model_file(case: str, work: Path) -> Path:
    path = work / f"{case}.tflite"
    if not path.exists():
        path.write_bytes(mobilenet_tflite(seed=2, **CASES[case]))
    return path


def built_case(case: str, work: Path) -> BuildResult:
    if case not in _built:
        _built[case] = build(BuildOptions(model=model_file(case, work), target="host",
                                          name="model", out=work / f"{case}_out"))
    return _built[case]


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", CASES)
def test_c_is_bit_exact_with_reference_and_tflm(case, work):
    result = built_case(case, work)
    graph = result.compiled.graph
    inputs = standard_inputs(graph.input.size, seed=len(case), random_count=4)
    run_three_ways(result.out_dir, graph, result.tflite, inputs, work).assert_bit_exact(3)


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", CASES)
def test_the_model_has_the_generation_ops(case, work):
    from mcugen.frontend.tflite import load_tflite

    imported = load_tflite(model_file(case, work).read_bytes(), "m")
    ops = {op.OP for op in imported.ops}
    assert GENERATION_OPS[CASES[case]["arch"]] <= ops
    compiled_ops = {op.OP for op in built_case(case, work).compiled.graph.ops}
    assert "HARD_SWISH" not in compiled_ops  # became lookup tables
    assert ("LOOKUP" in compiled_ops) == ("HARD_SWISH" in ops)


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", ["v2_a0.35_64x64x3", "v3-small_a0.35_56x48x3"])
def test_clean_under_sanitizers(case, work):
    result = built_case(case, work)
    graph = result.compiled.graph
    inputs = standard_inputs(graph.input.size, seed=5, random_count=1)
    outputs = run_sanitized(result.out_dir, graph.name, graph.input.size, graph.output.size,
                            inputs, work)
    np.testing.assert_array_equal(outputs, tflm_outputs(result.tflite, inputs))


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", CASES)
def test_residual_inputs_stay_alive_and_memory_is_reused(case, work):
    """The planner keeps each residual's first input alive until its ADD, never lets another
    buffer into its bytes meanwhile, and still reuses memory: the arena is far smaller than
    the sum of the activations, and an ADD that ends both inputs writes over one of them."""
    compiled = built_case(case, work).compiled
    buffers = {b.id: b for b in compiled.buffers}
    adds = [(i, op) for i, op in enumerate(compiled.graph.ops) if isinstance(op, Add)]
    assert adds
    for index, op in adds:
        for source in (op.input, op.input2):
            if source in buffers:
                assert buffers[source].last >= index
        producer = compiled.graph.producers()[op.input2]
        assert producer - compiled.graph.producers()[op.input] >= 2  # spans a block
    assert find_overlap_violations(list(compiled.buffers), compiled.plan) == []
    total = sum(b.size for b in compiled.buffers)
    assert compiled.plan.arena_size < total / 3
    in_place = [op for _, op in adds if op.output in compiled.plan.offsets and
                compiled.plan.offsets[op.output] in
                (compiled.plan.offsets.get(op.input), compiled.plan.offsets.get(op.input2))]
    assert in_place


# The M4 and M55 cases run in one firmware per core (firmware_batch.py: the firmware's own
# files compiled and QEMU started once per core, not once per case; the 6 cases 81-87 ->
# 49-51 s, 40 -> 25 s CPU), on `mcugen run`'s inputs, checked as `mcugen run` checks them;
# the M7 cases run through `mcugen run` itself (its summary's text is checked too).
BATCHED = ("cortex-m4", "cortex-m55")
_batches: dict[str, dict[str, tuple]] = {}


def batched_runs(target: str, work: Path) -> dict[str, tuple]:
    """Per case of QEMU_RUNS on the target: the compiled model, its outputs in QEMU, and the
    NumPy reference's and TFLM's on the same inputs (`mcugen run`'s default ones). Once per
    target and file."""
    if target not in _batches:
        core = load_target(target)
        names = {case: "m_" + "".join(c if c.isalnum() else "_" for c in case)
                 for case, where in QEMU_RUNS if where == target}
        models, inputs = {}, {}
        for case, name in names.items():
            models[name] = compile_for(model_file(case, work).read_bytes(), name, core)
            graph = models[name].graph
            tensor = input_tensor(graph)
            inputs[name] = default_inputs(tensor, BuildOptions.seed, float_input_range(graph)
                                          if tensor.dtype == "float32" else (-1.0, 1.0))
        runs = run_batch(models, inputs, core, work / f"batch_{target}")
        _batches[target] = {}
        for case, name in names.items():
            graph = models[name].graph
            reference = np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                                  for x in inputs[name]])
            tflm = tflm_outputs(model_file(case, work).read_bytes(), inputs[name])
            _batches[target][case] = (models[name], runs[name].outputs, reference, tflm)
    return _batches[target]


@pytest.mark.tensorflow
@pytest.mark.qemu
@pytest.mark.parametrize("case,target", QEMU_RUNS)
def test_bit_exact_in_qemu(case, target, work, tmp_path):
    if target in BATCHED:
        compiled, outputs, reference, tflm = batched_runs(target, work)[case]
        report = compiled.report
    else:
        summary = run(BuildOptions(model=model_file(case, work), target=target), None, tmp_path)
        outputs, reference, tflm = summary.qemu.outputs, summary.reference_outputs, \
            summary.tflm_outputs
        assert summary.matches
        report = summary.build.compiled.report
    np.testing.assert_array_equal(outputs, reference)
    np.testing.assert_array_equal(outputs, tflm)
    assert bit_for_bit(outputs, reference) and bit_for_bit(outputs, tflm)  # RunSummary.matches
    assert len({row.tobytes() for row in tflm}) > 1
    if "mve" in load_target(target).features:  # through the Helium kernels
        assert {layer.isa for layer in report.layers if layer.kernel != "softmax_s8"} == {"mve"}
    if target == "cortex-m7":  # what `mcugen run --arch ...` prints (test_cli: its options)
        text = format_summary(summary)
        assert "verdict: bit-exact" in text and "TFLM" in text
