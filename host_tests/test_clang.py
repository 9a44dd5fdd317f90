"""The generated C under clang as under gcc (issue 17, items 12 and 14): warning-free with the
strict flags on the host and for Cortex-M (newlib's headers), at -O2 and -O3, and on the host
the programs clang and gcc build at -O3 run bit-exact with TFLM.

Before the fix clang warned -Wunused-function about the shared helpers a model does not call,
and person_detect built by clang at -O2/-O3 crashed: the weight tables were defined
aligned(4) but declared without it, and clang assumed the x86-64 ABI's 16 bytes for the
extern arrays (aligned SSE loads)."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from conftest import PERSON_DETECT, mobilenet_tflite, standard_inputs, tflm_outputs
from hostc import HARNESS, STRICT, compile_checked, sources
from mcugen.build import BuildOptions, BuildResult, build
from mcugen.targets import load_target

OPTIMIZATIONS = ("-O2", "-O3")
# clang for arm-none-eabi assumes strict alignment unless told (gcc does not for ARMv7-M);
# the kernels for ARMv7-M load words at any address, and say so with an #error otherwise.
CROSS = {core: [*load_target(core).cpu_flags, "-munaligned-access"]
         for core in ("cortex-m3", "cortex-m7")}
V1 = dict(arch="v1", seed=1, alpha=0.25, height=96, width=96, channels=3, classes=2)

_built: dict[tuple[str, str], BuildResult] = {}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clang")


def built(model: str, target: str, work: Path) -> BuildResult:
    key = (model, target)
    if key not in _built:
        path = PERSON_DETECT
        if model == "v1":
            path = work / "v1.tflite"
            path.write_bytes(mobilenet_tflite(**V1))
        _built[key] = build(BuildOptions(model=path, target=target, name=model,
                                         out=work / f"{model}_{target}"))
    return _built[key]


@lru_cache(maxsize=None)
def newlib_include() -> str:
    """arm-none-eabi-gcc's newlib headers (its search list, without gcc's own folders)."""
    assert shutil.which("arm-none-eabi-gcc"), "arm-none-eabi-gcc is needed (scripts/test)"
    listing = subprocess.run(["arm-none-eabi-gcc", "-xc", "-E", "-v", "-"], input="",
                             capture_output=True, text=True).stderr
    folders = [line.strip() for line in listing.splitlines() if line.startswith(" /")]
    newlib = [f for f in folders if re.search(r"arm-none-eabi/include$", f) and "/gcc/" not in
              f.replace("/../", "/x/")]
    newlib = newlib or [f for f in folders if f.rstrip("/").endswith("arm-none-eabi/include")]
    assert newlib, f"no newlib include folder in arm-none-eabi-gcc's search list: {folders}"
    return str(Path(newlib[0]).resolve())


def clang() -> str:
    path = shutil.which("clang")
    assert path, "clang is needed (apt-get install clang)"
    return path


@pytest.mark.tensorflow
@pytest.mark.parametrize("optimization", OPTIMIZATIONS)
@pytest.mark.parametrize("model", ["person_detect", "v1"])
def test_host_c_is_warning_free_under_clang(model, optimization, work):
    result = built(model, "host", work)
    for source in sources(result.out_dir):
        compile_checked([clang(), *STRICT, "-Wpedantic", optimization, "-c",
                         "-I", str(result.out_dir), source, "-o", str(work / "x.o")])


@pytest.mark.tensorflow
@pytest.mark.parametrize("optimization", OPTIMIZATIONS)
@pytest.mark.parametrize("target", sorted(CROSS))
@pytest.mark.parametrize("model", ["person_detect", "v1"])
def test_cortex_m_c_is_warning_free_under_clang(model, target, optimization, work):
    result = built(model, target, work)
    for source in sources(result.out_dir):
        compile_checked([clang(), "--target=arm-none-eabi", "-mthumb", *CROSS[target],
                         *STRICT, "-Wpedantic", optimization, "-isystem", newlib_include(),
                         "-c", "-I", str(result.out_dir), source, "-o", str(work / "x.o")])


@pytest.mark.tensorflow
@pytest.mark.parametrize("compiler", ["clang", "gcc"])
@pytest.mark.parametrize("model", ["person_detect", "v1"])
def test_host_programs_built_at_O3_are_bit_exact_with_tflm(model, compiler, work):
    result = built(model, "host", work)
    graph = result.compiled.graph
    exe = work / f"{model}_{compiler}_O3"
    compile_checked([clang() if compiler == "clang" else "gcc", *STRICT, "-O3",
                     "-I", str(result.out_dir), f"-DMODEL_HEADER=\"{model}.h\"",
                     f"-DMODEL_INVOKE={model}_invoke", f"-DMODEL_INPUT_SIZE={graph.input.size}",
                     f"-DMODEL_OUTPUT_SIZE={graph.output.size}", str(HARNESS),
                     *sources(result.out_dir), "-o", str(exe)])
    inputs = standard_inputs(graph.input.size, seed=3)
    (work / "in.bin").write_bytes(inputs.tobytes())
    run = subprocess.run([str(exe), str(work / "in.bin"), str(work / "out.bin")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"{compiler} -O3 build of {model} failed: {run.returncode} " \
                                f"{run.stderr[-2000:]}"
    outputs = np.frombuffer((work / "out.bin").read_bytes(), np.int8).reshape(len(inputs), -1)
    np.testing.assert_array_equal(outputs, tflm_outputs(result.tflite, inputs))
