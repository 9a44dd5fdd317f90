"""Compiling generated C on the host: a shared library driven through cffi, and a sanitized
executable. Both use the strict flags the product promises."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import cffi
import numpy as np

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
            "-g", "-O1"]
HARNESS = Path(__file__).parent / "c" / "harness.c"


def compile_checked(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stderr[-4000:]}"


@dataclass
class HostModel:
    """A generated model compiled as a shared library; call it like a function."""

    name: str
    input_size: int
    output_size: int
    library: object
    ffi: cffi.FFI

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.int8).reshape(-1)
        assert x.size == self.input_size
        out = np.zeros(self.output_size, dtype=np.int8)
        status = getattr(self.library, f"{self.name}_invoke")(
            self.ffi.from_buffer("int8_t[]", x), self.ffi.from_buffer("int8_t[]", out))
        assert status == 0
        return out


def sources(model_dir: Path) -> list[str]:
    return sorted(str(p) for p in model_dir.glob("*.c"))


def build_shared(model_dir: Path, name: str, input_size: int, output_size: int,
                 work: Path, cflags: tuple[str, ...] = (), link: tuple[str, ...] = ()) -> HostModel:
    """link: objects or static libraries (built with -fPIC) to link in after the model."""
    # dlopen returns the library it already loaded from a path: one path per model folder.
    library = work / f"lib{name}_{model_dir.name}.so"
    compile_checked(["gcc", *STRICT, "-O2", "-shared", "-fPIC", *cflags, "-I", str(model_dir),
                     *sources(model_dir), *link, "-o", str(library)])
    ffi = cffi.FFI()
    ffi.cdef(f"int {name}_invoke(const int8_t *input, int8_t *output);")
    return HostModel(name, input_size, output_size, ffi.dlopen(str(library)), ffi)


def run_sanitized(model_dir: Path, name: str, input_size: int, output_size: int,
                  inputs: np.ndarray, work: Path) -> np.ndarray:
    """Build the model with ASan + UBSan into an executable, run it on inputs; any report
    aborts the program and fails the caller."""
    exe = work / f"{name}_sanitized"
    compile_checked(["gcc", *STRICT, *SANITIZE, "-I", str(model_dir),
                     f"-DMODEL_HEADER=\"{name}.h\"", f"-DMODEL_INVOKE={name}_invoke",
                     f"-DMODEL_INPUT_SIZE={input_size}", f"-DMODEL_OUTPUT_SIZE={output_size}",
                     str(HARNESS), *sources(model_dir), "-o", str(exe)])
    (work / "inputs.bin").write_bytes(np.ascontiguousarray(inputs, np.int8).tobytes())
    result = subprocess.run([str(exe), str(work / "inputs.bin"), str(work / "outputs.bin")],
                            capture_output=True, text=True,
                            env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
                                 "UBSAN_OPTIONS": "print_stacktrace=1"})
    assert result.returncode == 0, f"sanitized run failed:\n{result.stderr[-4000:]}"
    assert result.stderr == "", result.stderr[-4000:]
    return np.frombuffer((work / "outputs.bin").read_bytes(), np.int8).reshape(-1, output_size)


@dataclass
class ThreeWay:
    """One model's outputs on the same inputs from the three implementations."""

    c: np.ndarray
    reference: np.ndarray
    tflm: np.ndarray

    def assert_bit_exact(self, min_distinct: int = 2) -> None:
        np.testing.assert_array_equal(self.reference, self.tflm)
        np.testing.assert_array_equal(self.c, self.tflm)
        # A model whose outputs do not depend on its input would prove nothing.
        assert len({row.tobytes() for row in self.tflm}) >= min_distinct


def run_three_ways(model_dir: Path, graph, tflite: bytes, inputs: np.ndarray,
                   work: Path) -> ThreeWay:
    """The generated C (compiled strictly on the host), the NumPy reference on the compiled
    graph, and TFLM on the .tflite, each run on every input."""
    from conftest import tflm_outputs
    from mcugen.reference import run_reference

    c_model = build_shared(model_dir, graph.name, graph.input.size, graph.output.size, work)
    return ThreeWay(
        c=np.stack([c_model(x) for x in inputs]),
        reference=np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                            for x in inputs]),
        tflm=tflm_outputs(tflite, inputs))
