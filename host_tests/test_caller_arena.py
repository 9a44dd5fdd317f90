"""Issue 19 item 3: caller-owned arenas (--arena caller).

`NAME_invoke_arena(arena, input, output)` with NAME_ARENA_SIZE and NAME_ARENA_ALIGN, no
mutable static state in the generated C: two instances at once (host threads under
ThreadSanitizer, and in QEMU an interrupt running one instance inside the other's inference)
and two models time-sharing one arena give what the static build gives, bit for bit. Two real
models: person_detect in row bands (its band buffers live in the arena too) and TinyMaix's
MobileNet. Needs gcc with ASan, UBSan and TSan; the QEMU test needs arm-none-eabi-gcc and
qemu-system-arm. No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import cffi
import numpy as np
import pytest

from conftest import SHARED, typed_inputs
from hostc import SANITIZE, STRICT, build_shared, compile_checked
from mcugen.compile import CompiledModel, compile_graph
from mcugen.errors import McugenError
from mcugen.frontend.tflite import load_tflite
from mcugen.qemu import build_firmware
from mcugen.targets import RamRegion, load_target

C_DIR = Path(__file__).parent / "c"
TINYMAIX = SHARED / "models" / "tinymaix_mbnet96_0.25_q.tflite"
COUNT = 3  # inputs per model (arena_firmware.c's COUNT)
BAND_BUDGET = 20_000  # person_detect in row bands: its band buffers are in the arena
C_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "float32": "float"}


@dataclasses.dataclass(frozen=True)
class Model:
    name: str
    graph: object
    static: CompiledModel
    caller: CompiledModel
    inputs: np.ndarray
    expected: np.ndarray  # the static build's outputs on the host


def _compile(data: bytes, name: str, target, arena: str, max_ram: int | None = None
             ) -> CompiledModel:
    return compile_graph(load_tflite(data, name), name=name, target=target, source="test",
                         max_ram=max_ram, arena=arena)


def write_sources(compiled: CompiledModel, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for file, text in compiled.sources.items():
        if file.endswith((".c", ".h")):
            (folder / file).write_text(text)
    return folder


@pytest.fixture(scope="session")
def models(person_detect, tmp_path_factory) -> tuple[Model, Model]:
    assert TINYMAIX.is_file(), f"missing {TINYMAIX}"
    host = load_target("host")
    work = tmp_path_factory.mktemp("caller_arena")
    result = []
    for name, data, budget in (("pd", person_detect, BAND_BUDGET),
                               ("tm", TINYMAIX.read_bytes(), None)):
        static = _compile(data, name, host, "static", budget)
        caller = _compile(data, name, host, "caller", budget)
        graph = static.graph
        inputs = typed_inputs(graph, seed=5, count=4)[:COUNT]
        library = build_shared(write_sources(static, work / f"{name}_static"), name,
                               graph.input.size, graph.output.size, work,
                               input_dtype=graph.input.dtype, output_dtype=graph.output.dtype)
        expected = np.stack([library(x) for x in inputs])
        assert len({row.tobytes() for row in expected}) >= 2  # the inputs tell apart
        result.append(Model(name, graph, static, caller, inputs, expected))
    pd, tm = result
    assert pd.caller.schedule.banded and pd.caller.plan.arena_size <= BAND_BUDGET
    return pd, tm


def _symbols(compiled: CompiledModel, folder: Path) -> list[tuple[str, str]]:
    """(type, name) of every symbol the generated C defines, compiled for the host."""
    write_sources(compiled, folder)
    found = []
    for source in sorted(folder.glob("*.c")):
        obj = source.with_suffix(".o")
        compile_checked(["gcc", *STRICT, "-O2", "-c", "-I", str(folder), str(source),
                         "-o", str(obj)])
        listing = subprocess.run(["nm", str(obj)], capture_output=True, text=True, check=True)
        found += [tuple(line.split()[-2:]) for line in listing.stdout.splitlines()
                  if len(line.split()) == 3]
    return found


WRITABLE = set("bBdDcCgGsS")  # nm's types of zeroed and initialised data, common symbols


@pytest.mark.slow
def test_caller_build_has_no_mutable_static_state(models, tmp_path):
    for model in models:
        static = [name for kind, name in _symbols(model.static, tmp_path / f"{model.name}_s")
                  if kind in WRITABLE]
        assert static, "the static build holds its arena: the check must see it"
        caller = _symbols(model.caller, tmp_path / f"{model.name}_c")
        assert [s for s in caller if s[0] in WRITABLE] == []
        assert ("T", f"{model.name}_invoke_arena") in caller
        assert ("T", f"{model.name}_invoke") not in caller
        header = model.caller.sources[f"{model.name}.h"]
        upper = model.name.upper()
        assert f"#define {upper}_ARENA_SIZE {model.caller.plan.arena_size}\n" in header
        assert f"#define {upper}_ARENA_ALIGN 16 " in header
        assert f"int {model.name}_invoke_arena(void *arena, const" in header
    # The default build is as before: NAME_invoke, the static arena, no NAME_ARENA_ALIGN.
    assert "PD_ARENA_ALIGN 16" not in models[0].static.sources["pd.h"]


def _harness(models, work: Path, sanitize: list[str]) -> Path:
    pd, tm = models
    folders = [write_sources(m.caller, work / f"{m.name}_caller") for m in models]
    exe = work / "arena_threads"
    compile_checked(["gcc", *STRICT, *sanitize, "-pthread",
                     *(f"-I{f}" for f in folders),
                     f"-DMODEL_A={pd.name}", f"-DMODEL_A_UPPER={pd.name.upper()}",
                     f'-DMODEL_A_HEADER="{pd.name}.h"',
                     f"-DMODEL_B={tm.name}", f"-DMODEL_B_UPPER={tm.name.upper()}",
                     f'-DMODEL_B_HEADER="{tm.name}.h"',
                     str(C_DIR / "arena_threads.c"),
                     *(str(p) for f in folders for p in sorted(f.glob("*.c"))), "-o", str(exe)])
    return exe


def _run_harness(exe: Path, mode: str, models, work: Path) -> list[np.ndarray]:
    pd, tm = models
    paths = [work / f"{mode}_{name}" for name in ("in_a", "in_b", "out_a", "out_b")]
    paths[0].write_bytes(pd.inputs.tobytes())
    paths[1].write_bytes(tm.inputs.tobytes())
    result = subprocess.run([str(exe), mode, *map(str, paths)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stderr == "", result.stderr[-4000:]
    return [np.fromfile(paths[2], pd.graph.output.dtype).reshape(-1, pd.graph.output.size),
            np.fromfile(paths[3], tm.graph.output.dtype).reshape(-1, tm.graph.output.size)]


def _assert_copies_equal(outputs: np.ndarray, expected: np.ndarray) -> None:
    copies = outputs.reshape(-1, *expected.shape)
    assert len(copies) >= 1
    for copy in copies:
        np.testing.assert_array_equal(copy, expected)


TSAN = ["-fsanitize=thread", "-fno-omit-frame-pointer", "-g", "-fno-var-tracking", "-O1"]


@pytest.mark.slow
def test_instances_in_threads_under_thread_sanitizer(models, tmp_path):
    """Two threads per model, all four at once, each on its own arena."""
    exe = _harness(models, tmp_path, TSAN)
    out_a, out_b = _run_harness(exe, "threads", models, tmp_path)
    assert len(out_a) == 2 * COUNT and len(out_b) == 2 * COUNT
    _assert_copies_equal(out_a, models[0].expected)
    _assert_copies_equal(out_b, models[1].expected)


@pytest.mark.slow
def test_threads_and_a_shared_arena_under_asan_and_ubsan(models, tmp_path):
    exe = _harness(models, tmp_path, SANITIZE)
    for mode in ("threads", "shared"):
        out_a, out_b = _run_harness(exe, mode, models, tmp_path)
        _assert_copies_equal(out_a, models[0].expected)
        _assert_copies_equal(out_b, models[1].expected)


def test_ram_regions_take_one_pointer_per_region(models, person_detect, tmp_path):
    """--ram-regions with --arena caller: one pointer per region, each checked; results as
    the static build's."""
    pd = models[0]
    host = load_target("host")
    split = dataclasses.replace(host, ram_regions=(RamRegion("FAST", 0x2000_0000, 4096),
                                                   RamRegion("SLOW", 0x3000_0000, 65536)))
    compiled = compile_graph(load_tflite(person_detect, "pd"), name="pd", target=split,
                             source="test", max_ram=BAND_BUDGET,
                             ram_regions=True, arena="caller")
    sizes = dict(compiled.plan.regions)
    assert sizes["FAST"] > 0 and sizes["SLOW"] > 0  # both regions hold buffers
    header = compiled.sources["pd.h"]
    assert "int pd_invoke_arena(void *arena_fast, void *arena_slow, const pd_input_t *input" \
        in header
    folder = write_sources(compiled, tmp_path / "pd_regions")
    library = tmp_path / "libpd_regions.so"
    compile_checked(["gcc", *STRICT, "-O2", "-shared", "-fPIC", "-I", str(folder),
                     *map(str, sorted(folder.glob("*.c"))), "-o", str(library)])
    ffi = cffi.FFI()
    ffi.cdef("int pd_invoke_arena(void *, void *, const int8_t *, int8_t *);")
    lib = ffi.dlopen(str(library))

    def aligned(size: int, misalign: int = 0):
        keep = ffi.new("char[]", size + 32)
        address = int(ffi.cast("uintptr_t", keep))
        start = keep + (-address % 16) + misalign
        ffi.memmove(start, b"\xa5" * size, size)
        return keep, start

    fast, slow = aligned(sizes["FAST"]), aligned(sizes["SLOW"])
    output = np.zeros(pd.graph.output.size, np.int8)
    out = ffi.from_buffer("int8_t[]", output)
    for x, expected in zip(pd.inputs, pd.expected):
        assert lib.pd_invoke_arena(fast[1], slow[1], ffi.from_buffer("int8_t[]", x), out) == 0
        np.testing.assert_array_equal(output, expected)
    x = ffi.from_buffer("int8_t[]", pd.inputs[0])
    assert lib.pd_invoke_arena(fast[1], ffi.NULL, x, out) == 2
    assert lib.pd_invoke_arena(fast[1], aligned(sizes["SLOW"], 8)[1], x, out) == 2
    assert lib.pd_invoke_arena(fast[1], slow[1], ffi.NULL, out) == 1


def test_an_unknown_arena_kind_is_refused(person_detect):
    with pytest.raises(McugenError, match="--arena 'heap'"):
        _compile(person_detect, "pd", load_target("host"), "heap")


@pytest.mark.qemu
def test_in_qemu_an_interrupt_runs_an_instance_inside_another_and_models_share(
        models, person_detect, tmp_path):
    """Cortex-M7 (its QEMU board): arena_firmware.c's SysTick interrupt runs person_detect on one
    arena in the middle of main's inference on another; then both models on one arena."""
    pd, tm = models
    m7 = load_target("cortex-m7")
    folder = tmp_path / "models"
    for model, data in ((pd, person_detect),
                        (tm, TINYMAIX.read_bytes())):
        write_sources(_compile(data, model.name, m7, "caller",
                               BAND_BUDGET if model is pd else None), folder)
    flags = [f"-DMODEL_A={pd.name}", f"-DMODEL_A_UPPER={pd.name.upper()}",
             f'-DMODEL_A_HEADER=\\"{pd.name}.h\\"',
             f"-DMODEL_B={tm.name}", f"-DMODEL_B_UPPER={tm.name.upper()}",
             f'-DMODEL_B_HEADER=\\"{tm.name}.h\\"']
    elf = build_firmware(folder, m7, tmp_path / "firmware", extra_cflags=flags,
                         main=C_DIR / "arena_firmware.c")
    run = tmp_path / "run"
    run.mkdir()
    (run / "a.bin").write_bytes(pd.inputs.tobytes())
    (run / "b.bin").write_bytes(tm.inputs.tobytes())
    # -icount: virtual time counts instructions, so each tick lands at the same point.
    result = subprocess.run(["qemu-system-arm", "-M", m7.qemu.machine, "-kernel", str(elf),
                             "-icount", "shift=0", "-semihosting-config",
                             "enable=on,target=native", "-display", "none", "-monitor", "none",
                             "-serial", "null"], cwd=run, capture_output=True, text=True,
                            timeout=600)
    console = result.stdout + result.stderr  # semihosting writes to stderr
    assert result.returncode == 0, console
    assert f"interleaved: {COUNT} of {COUNT} interrupt inferences began inside main's" \
        in console, console

    def outputs(file: str, model: Model) -> np.ndarray:
        return np.fromfile(run / file, model.graph.output.dtype).reshape(COUNT, -1)

    for file in ("a_main.bin", "a_interrupt.bin", "a_shared.bin"):
        np.testing.assert_array_equal(outputs(file, pd), pd.expected, err_msg=file)
    np.testing.assert_array_equal(outputs("b_shared.bin", tm), tm.expected)


@pytest.mark.qemu
def test_mcugen_run_checks_a_caller_arena_build(tmp_path, mcugen_here):
    """`mcugen run --arena caller`: the host program gives the model an arena of its own; the
    QEMU firmware's model_invoke does (firmware_arena.c), the model named model too."""
    model = SHARED / "models" / "person_detect.tflite"
    for target, name in (("host", "person_detect"), ("cortex-m0plus", "model")):
        result = mcugen_here("run", "--model", str(model), "--arena", "caller", "--target",
                             target, "--name", name, "--max-ram", "20K", "--out",
                             str(tmp_path / target), cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "verdict: bit-exact" in result.stdout
        header = (tmp_path / target / f"{name}.h").read_text()
        assert f"int {name}_invoke_arena(void *arena," in header
