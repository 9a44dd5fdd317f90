"""End to end on the host: build real int8 MobileNets with `mcugen build`, compile the C with
strict flags, and compare bit for bit with the NumPy reference and TFLM's interpreter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import PERSON_DETECT, mobilenet_tflite, standard_inputs, tflm_outputs
from hostc import run_sanitized, run_three_ways
from mcugen.build import BuildOptions, BuildResult, build

# α, resolution (one not a multiple of 32, one non-square), channels and classes all vary.
KERAS_CASES = {
    "v1_a0.25_96x96x3": dict(alpha=0.25, height=96, width=96, channels=3, classes=2),
    "v1_a0.35_80x80x1": dict(alpha=0.35, height=80, width=80, channels=1, classes=3),
    "v1_a0.5_72x56x3": dict(alpha=0.5, height=72, width=56, channels=3, classes=10),
    "v1_a1.0_64x64x3": dict(alpha=1.0, height=64, width=64, channels=3, classes=5),
}
CASES = [*KERAS_CASES, "person_detect"]

_built: dict[str, BuildResult] = {}


def built_case(case: str, work: Path) -> BuildResult:
    """`mcugen build --model X.tflite --target host` for a case, once per session."""
    if case not in _built:
        if case == "person_detect":
            model = PERSON_DETECT
        else:
            model = work / f"{case}.tflite"
            model.write_bytes(mobilenet_tflite(arch="v1", seed=1, **KERAS_CASES[case]))
        name = "pd" if case == "person_detect" else "model"
        _built[case] = build(BuildOptions(model=model, target="host", name=name,
                                          out=work / f"{case}_out"))
    return _built[case]


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("host_models")


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", CASES)
def test_c_is_bit_exact_with_reference_and_tflm(case, work):
    result = built_case(case, work)
    graph = result.compiled.graph
    inputs = standard_inputs(graph.input.size, seed=len(case))
    run_three_ways(result.out_dir, graph, result.tflite, inputs, work).assert_bit_exact()


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", ["v1_a0.25_96x96x3", "person_detect"])
def test_clean_under_address_and_undefined_behaviour_sanitizers(case, work):
    result = built_case(case, work)
    graph = result.compiled.graph
    inputs = standard_inputs(graph.input.size, seed=7, random_count=1)
    outputs = run_sanitized(result.out_dir, graph.name, graph.input.size, graph.output.size,
                            inputs, work)
    np.testing.assert_array_equal(outputs, tflm_outputs(result.tflite, inputs))


@pytest.mark.tensorflow
def test_output_folder_is_complete_and_deterministic(work):
    first = built_case("v1_a0.25_96x96x3", work)
    again = build(BuildOptions(model=work / "v1_a0.25_96x96x3.tflite", target="host",
                               out=work / "again"))
    names = sorted(p.name for p in first.out_dir.iterdir())
    assert names == sorted(p.name for p in again.out_dir.iterdir())
    assert {"model.h", "model.c", "model_weights.c", "model.tflite", "report.json",
            "report.md", "CMakeLists.txt", "model.mk"} <= set(names)
    for name in names:
        assert (first.out_dir / name).read_bytes() == (again.out_dir / name).read_bytes(), name
    assert (first.out_dir / "model.tflite").read_bytes() == first.tflite
