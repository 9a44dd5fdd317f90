"""The row-band tests' models and their compiles, shared by test_row_bands.py (the search,
QEMU, the command line) and test_row_bands_host.py (host and sanitizer builds): two files so
that two workers share the long run (conftest.LONGEST_FIRST). Compiles are cached per process
(a worker's, whichever of the two files it runs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import PERSON_DETECT, mobilenet_tflite, standard_inputs
from hostc import run_three_ways
from mcugen.build import BuildOptions, build
from mcugen.compile import compile_graph
from mcugen.errors import McugenError
from mcugen.frontend.tflite import load_tflite
from mcugen.targets import load_target

MODELS = {
    # The issue's two MobileNets (V1 shared with test_qemu_models' cache key).
    "v1_a0.25_96": dict(arch="v1", seed=1, alpha=0.25, height=96, width=96, channels=3,
                        classes=2),
    "v2_a0.35_96": dict(arch="v2", seed=1, alpha=0.35, height=96, width=96, channels=3,
                        classes=2),
    # Residual blocks, grayscale, not square; V3's squeeze-and-excitation ends a segment.
    "v2_a0.5_48x40x1": dict(arch="v2", seed=2, alpha=0.5, height=48, width=40, channels=1,
                            classes=3),
    "v3-small_a0.5_64x64x1": dict(arch="v3-small", seed=2, alpha=0.5, height=64, width=64,
                                  channels=1, classes=5),
    "v3-large_a0.35_64x64x3": dict(arch="v3-large", seed=2, alpha=0.35, height=64, width=64,
                                   channels=3, classes=6),
}
ALL_MODELS = [*MODELS, "person_detect"]


def model_bytes(case: str) -> bytes:
    return PERSON_DETECT.read_bytes() if case == "person_detect" else \
        mobilenet_tflite(**MODELS[case])


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("row_band_models")
    paths = {}
    for case in ALL_MODELS:
        paths[case] = folder / f"{case}.tflite"
        paths[case].write_bytes(model_bytes(case))
    return paths


_whole: dict[tuple[str, str], object] = {}


def compiled(case: str, target: str, max_ram: int | None):
    """The case compiled for the target; layer by layer (no budget) once per case and
    target (several tests compare with it)."""
    if max_ram is None:
        if (case, target) not in _whole:
            _whole[case, target] = _compiled(case, target, None)
        return _whole[case, target]
    return _compiled(case, target, max_ram)


def _compiled(case: str, target: str, max_ram: int | None):
    return compile_graph(load_tflite(model_bytes(case), "model"), name="model",
                         target=load_target(target), source=case, memory_check=False,
                         max_ram=max_ram)


_tightest: dict[tuple[str, str], int] = {}


def tightest(case: str, target: str) -> int:
    """The smallest arena the schedule search reaches, as its error message names it."""
    if (case, target) not in _tightest:
        with pytest.raises(McugenError, match="smallest reachable") as error:
            compiled(case, target, max_ram=1024)
        found = re.search(r"smallest reachable is ([\d,]+) B", str(error.value))
        _tightest[case, target] = int(found.group(1).replace(",", ""))
    return _tightest[case, target]


@pytest.fixture(scope="session")
def builds(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("row_band_builds")


def budgets(case: str, target: str) -> dict[str, int]:
    """The tightest budget, and one half-way to the layer-by-layer arena."""
    low = tightest(case, target)
    whole = compiled(case, target, None).plan.arena_size
    return {"tightest": low, "half-way": (low + whole) // 2}


_host_builds: dict[tuple[str, int], object] = {}


def host_build(case: str, max_ram: int, models: dict[str, Path], folder: Path):
    """The case built for the host at max_ram (mcugen.build), once per process: the bit-exact
    and the sanitizer tests build the same tightest schedules."""
    if (case, max_ram) not in _host_builds:
        _host_builds[case, max_ram] = build(BuildOptions(
            model=models[case], target="host", max_ram=max_ram,
            out=folder / f"{case}_{max_ram}"))
    return _host_builds[case, max_ram]


# The cases whose bit-exact host test runs in test_row_bands.py rather than
# test_row_bands_host.py: the two files' times about equal (about 70 s of CPU each).
HOST_CASES_THERE = ("v3-large_a0.35_64x64x3",)


def assert_bit_exact_on_the_host(case: str, budget: str, models: dict[str, Path],
                                 builds: Path, tmp_path: Path) -> None:
    """The case's banded C at the budget ("tightest" or "half-way"), built for the host,
    bit-exact with the NumPy reference and TFLM."""
    max_ram = budgets(case, "host")[budget]
    result = host_build(case, max_ram, models, builds)
    report = result.compiled.report
    assert report.schedule is not None and report.arena_bytes <= max_ram
    graph = result.compiled.graph
    three = run_three_ways(result.out_dir, graph, result.tflite,
                           standard_inputs(graph.input.size), tmp_path)
    three.assert_bit_exact()
