"""Compiling generated C on the host: a shared library driven through cffi, and a sanitized
executable. Both use the strict flags the product promises."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import cffi
import numpy as np

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
# -fno-var-tracking: GCC's tracking of variables for the debugger (not the line table the
# sanitizers' reports use) took 282 of the 305 s of compiling MCUNet's model.c under the
# sanitizers; without it, 27 s. -fira-region=one: the register allocator's regional passes
# over the instrumented code took 58 % of what was left (MCUNet's model.c 35 s of CPU, with
# one region 17 s; person_detect's 9.8 s, 6.7 s); the checks are the same, only registers
# are allocated otherwise. -O0 (issue 20): the tests run a model on a few inputs, so GCC's
# optimizer over the instrumented code cost more than it saved; ASan and UBSan check the same
# accesses and operations (an unoptimized build keeps every one of them). test_fuzz keeps -O1
# (SANITIZE_OPTIMIZED: run_sanitized(optimized=True)), so optimized code is checked too.
SANITIZE_COMMON = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                   "-fno-omit-frame-pointer", "-g", "-fno-var-tracking"]
SANITIZE = [*SANITIZE_COMMON, "-O0"]
SANITIZE_OPTIMIZED = [*SANITIZE_COMMON, "-fira-region=one", "-O1"]
HARNESS = Path(__file__).parent / "c" / "harness.c"


def compile_checked(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stderr[-4000:]}"


C_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "float32": "float"}


@dataclass
class HostModel:
    """A generated model compiled as a shared library; call it like a function (on and
    returning arrays of the model's input and output types)."""

    name: str
    input_size: int
    output_size: int
    library: object
    ffi: cffi.FFI
    input_dtype: str = "int8"
    output_dtype: str = "int8"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.input_dtype != "int8":  # int8 inputs may come as any integer array
            assert x.dtype == np.dtype(self.input_dtype), x.dtype
        x = np.ascontiguousarray(x, dtype=self.input_dtype).reshape(-1)
        assert x.size == self.input_size
        out = np.zeros(self.output_size, dtype=self.output_dtype)
        status = getattr(self.library, f"{self.name}_invoke")(
            self.ffi.from_buffer(f"{C_TYPES[self.input_dtype]}[]", x),
            self.ffi.from_buffer(f"{C_TYPES[self.output_dtype]}[]", out))
        assert status == 0
        return out


def sources(model_dir: Path) -> list[str]:
    return sorted(str(p) for p in model_dir.glob("*.c"))


def build_shared(model_dir: Path, name: str, input_size: int, output_size: int,
                 work: Path, cflags: tuple[str, ...] = (), link: tuple[str, ...] = (),
                 input_dtype: str = "int8", output_dtype: str = "int8") -> HostModel:
    """link: objects or static libraries (built with -fPIC) to link in after the model."""
    # dlopen returns the library it already loaded from a path: one path per model folder.
    library = work / f"lib{name}_{model_dir.name}.so"
    compile_checked(["gcc", *STRICT, "-O2", "-shared", "-fPIC", *cflags, "-I", str(model_dir),
                     *sources(model_dir), *link, "-o", str(library)])
    ffi = cffi.FFI()
    ffi.cdef(f"int {name}_invoke(const {C_TYPES[input_dtype]} *input, "
             f"{C_TYPES[output_dtype]} *output);")
    return HostModel(name, input_size, output_size, ffi.dlopen(str(library)), ffi,
                     input_dtype, output_dtype)


def run_sanitized(model_dir: Path, name: str, input_size: int, output_size: int,
                  inputs: np.ndarray, work: Path, output_dtype: str = "int8",
                  optimized: bool = False) -> np.ndarray:
    """Build the model with ASan + UBSan into an executable (at -O0, or -O1 when optimized),
    run it on inputs (of the model's input type); any report aborts the program and fails the
    caller."""
    exe = work / f"{name}_sanitized"
    flags = SANITIZE_OPTIMIZED if optimized else SANITIZE
    compile_checked(["gcc", *STRICT, *flags, "-I", str(model_dir),
                     f"-DMODEL_HEADER=\"{name}.h\"", f"-DMODEL_INVOKE={name}_invoke",
                     f"-DMODEL_INPUT_T={name}_input_t", f"-DMODEL_OUTPUT_T={name}_output_t",
                     f"-DMODEL_INPUT_SIZE={input_size}", f"-DMODEL_OUTPUT_SIZE={output_size}",
                     str(HARNESS), *sources(model_dir), "-o", str(exe)])
    (work / "inputs.bin").write_bytes(np.ascontiguousarray(inputs).tobytes())
    result = subprocess.run([str(exe), str(work / "inputs.bin"), str(work / "outputs.bin")],
                            capture_output=True, text=True,
                            env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
                                 "UBSAN_OPTIONS": "print_stacktrace=1"})
    assert result.returncode == 0, f"sanitized run failed:\n{result.stderr[-4000:]}"
    assert result.stderr == "", result.stderr[-4000:]
    return np.frombuffer((work / "outputs.bin").read_bytes(), output_dtype).reshape(-1, output_size)


@dataclass
class ThreeWay:
    """One model's outputs on the same inputs from the three implementations."""

    c: np.ndarray
    reference: np.ndarray
    tflm: np.ndarray

    def assert_bit_exact(self, min_distinct: int = 2) -> None:
        assert self.c.dtype == self.reference.dtype == self.tflm.dtype
        # As bytes: float outputs must agree to the bit (-0.0 is not 0.0).
        np.testing.assert_array_equal(self.reference.view(np.uint8), self.tflm.view(np.uint8))
        np.testing.assert_array_equal(self.c.view(np.uint8), self.tflm.view(np.uint8))
        # A model whose outputs do not depend on its input would prove nothing.
        assert len({row.tobytes() for row in self.tflm}) >= min_distinct


def run_three_ways(model_dir: Path, graph, tflite: bytes, inputs: np.ndarray,
                   work: Path) -> ThreeWay:
    """The generated C (compiled strictly on the host), the NumPy reference on the compiled
    graph, and TFLM on the .tflite, each run on every input."""
    from conftest import tflm_outputs
    from mcugen.reference import run_reference

    c_model = build_shared(model_dir, graph.name, graph.input.size, graph.output.size, work,
                           input_dtype=graph.input.dtype, output_dtype=graph.output.dtype)
    return ThreeWay(
        c=np.stack([c_model(x) for x in inputs]),
        reference=np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                            for x in inputs]),
        tflm=tflm_outputs(tflite, inputs))


def assert_reference_outputs(sources: dict[str, str], graph, work: Path,
                             inputs: np.ndarray) -> tuple[Path, np.ndarray]:
    """A model's generated sources written to work/model, compiled as a shared library (named
    "model") and run on each input: bit-exact with the NumPy reference. Returns the folder and
    the reference outputs (for a sanitized run of the same inputs)."""
    from mcugen.reference import run_reference

    folder = work / "model"
    folder.mkdir()
    for file, text in sources.items():
        (folder / file).write_text(text)
    model = build_shared(folder, "model", graph.input.size, graph.output.size, work)
    expected = np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                         for x in inputs])
    for x, reference in zip(inputs, expected):
        np.testing.assert_array_equal(model(x), reference)
    return folder, expected
