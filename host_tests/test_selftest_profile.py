"""Issue 19 items 1 and 2: `mcugen build --selftest N` and `--profile`, `mcugen report
--profile-log`.

On the host (gcc with ASan and UBSan): NAME_selftest() returns 0 on a correct build and the
index + 1 of the layer whose weight byte was changed in NAME_weights.c, layer by layer and in
row bands, for an int8 (TFLM), a uint8 (TensorFlow Lite's reference kernels) and a float-I/O
model. In QEMU (M0+, M4, M7, M33, M55: person_detect, one firmware per core, in parallel): the
same, and the profile the firmware prints, read back by `mcugen report`, matches QEMU's
instruction counts per layer (SysTick under -icount shift=0 ticks once per board-clock period
of instructions). Needs TensorFlow (the oracle of the uint8 and float models), tflite-micro,
gcc; the QEMU test needs arm-none-eabi-gcc and qemu-system-arm.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import PERSON_DETECT, SHARED
from hostc import SANITIZE, STRICT, compile_checked
from mcugen.build import with_selftest
from mcugen.compile import CompiledModel, compile_graph
from mcugen.frontend.tflite import load_tflite
from mcugen.output import write_output_folder
from mcugen.profile import parse_profile_log
from mcugen.qemu import build_firmware, run_firmware
from mcugen.reference import run_reference
from mcugen.targets import load_target

REPO = Path(__file__).resolve().parents[1]
HARNESS = Path(__file__).parent / "c" / "selftest_main.c"
MODELS = SHARED / "models"
CHANGED_LAYER = 10  # person_detect's layer 10: a pointwise CONV_2D 12x12x64 -> 12x12x64
QEMU_CORES = ("cortex-m0plus", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")


def compiled_model(model: Path, target: str, name: str = "model", vectors: int = 1,
                   profile: bool = False, max_ram: int | None = None) -> CompiledModel:
    data = model.read_bytes()
    graph = load_tflite(data, name)
    compiled = compile_graph(graph, name=name, target=load_target(target), source=model.name,
                             memory_check=False, max_ram=max_ram, profile=profile)
    return with_selftest(compiled, data, vectors, seed=0)


def write_model(compiled: CompiledModel, folder: Path) -> Path:
    write_output_folder(folder, {**compiled.sources, **compiled.report.files()}, force=False)
    return folder


def change_weight(folder: Path, name: str, layer: int) -> str:
    """Changes the first int8 value of layer's first int8 table in NAME_weights.c (by 64,
    wrapping within int8); returns the table's name."""
    path = folder / f"{name}_weights.c"
    text = path.read_text()
    pattern = re.compile(rf"(const int8_t ({name}_layer{layer}_\w+)\[\d+\] \w+ = \{{\s*)(-?\d+)")
    match = pattern.search(text)
    assert match, f"no int8 table of layer {layer} in {path}"
    value = (int(match.group(3)) + 64 + 128) % 256 - 128
    path.write_text(text[:match.start(3)] + str(value) + text[match.end(3):])
    return match.group(2)


def run_selftest_on_host(folder: Path, name: str, work: Path, sanitize: bool = False) -> str:
    """NAME_selftest() in a host program (with ASan and UBSan: slower), its output."""
    exe = work / f"{name}_selftest_{folder.name}"
    upper = name.upper()
    flags = [*STRICT, *(SANITIZE if sanitize else ["-O2"]), "-I", str(folder),
             f"-DMODEL_HEADER=\"{name}.h\"", f"-DMODEL_PREFIX={name}", f"-DMODEL_UPPER={upper}"]
    objects = [_object(source, flags, work) for source in
               [HARNESS, *sorted(folder.glob("*.c"))]]
    compile_checked(["gcc", *flags, *map(str, objects), "-o", str(exe)])
    result = subprocess.run([str(exe)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr[-3000:]
    return result.stdout


def _object(source: Path, flags: list[str], work: Path) -> Path:
    """source compiled with flags; a file compiled before with the same text and flags is
    not compiled again (a changed weight recompiles NAME_weights.c only)."""
    key = hashlib.sha256(source.read_bytes() + " ".join(flags).encode()).hexdigest()[:16]
    obj = work / "objects" / f"{source.stem}-{key}.o"
    if not obj.is_file():
        obj.parent.mkdir(parents=True, exist_ok=True)
        compile_checked(["gcc", *flags, "-c", str(source), "-o", str(obj)])
    return obj


def selftest_result(console: str) -> int:
    match = re.search(r"^selftest: (-?\d+)", console, re.MULTILINE)
    assert match, console[-2000:]
    return int(match.group(1))


# --- on the host ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("max_ram", [None, 20 * 1024], ids=["layer-by-layer", "row-bands"])
def test_selftest_passes_and_names_the_changed_layer_on_the_host(tmp_path, max_ram):
    compiled = compiled_model(PERSON_DETECT, "host", vectors=2, max_ram=max_ram)
    assert compiled.schedule.banded == (max_ram is not None)
    folder = write_model(compiled, tmp_path / "model")
    sanitize = max_ram is None
    assert selftest_result(run_selftest_on_host(folder, "model", tmp_path, sanitize)) == 0
    change_weight(folder, "model", CHANGED_LAYER)
    output = run_selftest_on_host(folder, "model", tmp_path, sanitize)
    assert selftest_result(output) == CHANGED_LAYER + 1
    assert f"vector 0 layer {CHANGED_LAYER} expected" in output


def test_selftest_names_the_first_layer_when_its_weight_changes(tmp_path):
    """Layer 0 reads the vector itself: the first vector (extremes, mixed) exposes it, where
    an input at the zero point would not (its products with the weights are all zero)."""
    compiled = compiled_model(PERSON_DETECT, "host")
    folder = write_model(compiled, tmp_path / "model")
    change_weight(folder, "model", 0)
    assert selftest_result(run_selftest_on_host(folder, "model", tmp_path)) == 1


@pytest.mark.tensorflow
@pytest.mark.parametrize("model", ["mobilenet_v1_0.25_128_quant.tflite",
                                   "mcunet_vww_float_io.tflite"])
def test_selftest_of_uint8_and_float_models_passes_on_the_host(tmp_path, model):
    """The uint8 model's oracle is TensorFlow Lite's reference kernels (TFLM has no uint8
    kernels), its activations held as int8 shifted by 128; the float model's vectors are
    floats, beyond its QUANTIZE's range at the extremes."""
    compiled = compiled_model(MODELS / model, "host", name="net", vectors=4)
    selftest = compiled.report.selftest
    assert selftest["layers_from_oracle"] == selftest["layers"] == len(compiled.layers)
    assert selftest["kinds"][:3] == ["each element the minimum or the maximum, at random",
                                     "all the minimum", "all the maximum"]
    if model.startswith("mobilenet"):
        assert selftest["oracle"].startswith("TensorFlow Lite (reference kernels)")
    folder = write_model(compiled, tmp_path / "net")
    assert selftest_result(run_selftest_on_host(folder, "net", tmp_path)) == 0


# --- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--selftest", "0"], "--selftest 0: give 1 to 64 input vectors"),
    (["--selftest", "many"], "--selftest 'many': give the number of input vectors"),
    (["--profile"], "--profile counts with a Cortex-M core's own counter"),
])
def test_bad_selftest_and_profile_options_are_one_line(tmp_path, args, message, mcugen_here):
    result = mcugen_here("build", "--model", str(PERSON_DETECT), "--target", "host",
                         "--out", str(tmp_path / "out"), *args)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.qemu
def test_build_selftest_defaults_to_one_vector_and_says_its_cost(tmp_path, mcugen_here):
    out = tmp_path / "pd"
    result = mcugen_here("build", "--model", str(PERSON_DETECT), "--target", "cortex-m0plus",
                         "--selftest", "--profile", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    selftest = report["selftest"]
    assert selftest["vectors"] == 1 and selftest["oracle"] == "TFLM"
    assert selftest["data_bytes"] == 9216 + 4 * 30 + 64  # the vector, 30 checksums, the table
    assert selftest["measured"]["flash_bytes"] > selftest["data_bytes"]  # with its code
    line = next(l for l in result.stdout.splitlines() if l.startswith("selftest:"))
    assert f"flash {selftest['measured']['flash_bytes']:,} B measured" in line
    assert "PERSON_DETECT_SELFTEST_VECTORS 1" in (out / "person_detect.h").read_text()
    assert "SysTick" in (out / "person_detect.c").read_text()  # ARMv6-M: no DWT counter


@pytest.mark.qemu
def test_report_refuses_a_log_without_a_profile_or_of_another_model(tmp_path, mcugen_here):
    out = tmp_path / "pd"
    assert mcugen_here("build", "--model", str(PERSON_DETECT), "--target", "cortex-m4",
                       "--out", str(out)).returncode == 0
    log = tmp_path / "uart.txt"
    log.write_text("booting\ninference 0: model_invoke returned 0\n")
    result = mcugen_here("report", str(out), "--profile-log", str(log))
    assert result.returncode == 1 and "no complete block of 'mcugen-profile' lines" in \
        result.stderr, result.stderr
    log.write_text("mcugen-profile counter=SysTick layers=3\n")
    result = mcugen_here("report", str(out), "--profile-log", str(log))
    assert result.returncode == 1 and "3 layers; this build has 30" in result.stderr
    # What a DWT build prints in QEMU (checked there: QEMU does not model the DWT).
    log.write_text("mcugen-profile counter=DWT CYCCNT layers=30\n" + "".join(
        f"mcugen-profile {i} 0 layer\n" for i in range(30)))
    result = mcugen_here("report", str(out), "--profile-log", str(log))
    assert result.returncode == 1 and "the counter did not run" in result.stderr


# --- in QEMU ----------------------------------------------------------------------------------


def qemu_selftest_and_profile(core: str, work: Path) -> dict:
    """One core: the firmware's self-check (correct build, then one weight byte changed) and
    the profile it printed, with QEMU's instruction counts."""
    compiled = compiled_model(PERSON_DETECT, core, profile=True)
    folder = write_model(compiled, work / "model")
    target = load_target(core)
    # QEMU does not model the DWT: SysTick on every core (ARMv6-M's default anyway).
    flags = () if target.arch == "armv6-m" else ("-DMCUGEN_PROFILE_SYSTICK",)
    elf = build_firmware(folder, target, work / "firmware", extra_cflags=flags)
    x = np.random.default_rng(7).integers(-128, 128, (1, compiled.graph.input.size),
                                          dtype=np.int8)
    run = run_firmware(elf, target, x, compiled.graph.output.size, icount=True)
    expected = run_reference(compiled.graph, x.reshape(compiled.graph.input.shape))
    (work / "uart.txt").write_text(run.console)
    table = change_weight(folder, "model", CHANGED_LAYER)
    elf = build_firmware(folder, target, work / "firmware", extra_cflags=flags)
    changed = run_firmware(elf, target, x, compiled.graph.output.size)
    return dict(selftest=selftest_result(run.console), changed=selftest_result(changed.console),
                table=table, instructions=run.layer_instructions[0], console=run.console,
                bit_exact=np.array_equal(run.outputs[0], expected.reshape(-1)),
                layers=len(compiled.layers), systick_hz=target.qemu.systick_hz, folder=folder)


@pytest.mark.qemu
def test_selftest_and_profile_in_qemu(tmp_path, mcugen_here):
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = dict(zip(QEMU_CORES, pool.map(
            lambda core: qemu_selftest_and_profile(core, tmp_path / core), QEMU_CORES)))
    for core, r in results.items():
        assert r["bit_exact"], core
        assert r["selftest"] == 0, (core, r["console"][-2000:])
        assert r["changed"] == CHANGED_LAYER + 1, (core, r["table"])
        profile = parse_profile_log(r["console"], r["layers"])
        assert profile.counter == "SysTick"
        # -icount shift=0: one instruction per nanosecond; SysTick ticks at the board's clock.
        per_tick = 1e9 / r["systick_hz"]
        off = [round(instructions - ticks * per_tick)
               for ticks, instructions in zip(profile.cycles, r["instructions"])]
        # A tick is per_tick instructions, and the two counts of a layer start and end a call
        # apart. QEMU's count of the first layer starts before the call of model_invoke, the
        # profile's after NAME_invoke has zeroed NAME_layer_cycles (a few per layer).
        assert all(abs(d) <= per_tick + 16 for d in off[1:]), (core, off)
        assert -per_tick <= off[0] <= per_tick + 8 * r["layers"] + 64, (core, off)
    # The whole path once: `mcugen report` reads the log into the three reports.
    folder = results["cortex-m7"]["folder"]
    result = mcugen_here("report", str(folder), "--profile-log",
                         str(tmp_path / "cortex-m7" / "uart.txt"))
    assert result.returncode == 0, result.stderr
    report = json.loads((folder / "report.json").read_text())
    cycles = parse_profile_log(results["cortex-m7"]["console"], results["cortex-m7"]["layers"])
    assert [l["board_cycles"] for l in report["layers"]] == cycles.cycles
    assert report["profile"]["cycles"] == sum(cycles.cycles)
    assert "cycles on the board" in (folder / "report.html").read_text()
    assert "board cycles" in (folder / "report.md").read_text()
    assert "model_selftest.c" in json.loads(
        (folder / ".mcugen-manifest.json").read_text())["files"]  # the others stay mcugen's
    # For a part, the milliseconds at its clock: the M0+ log read into an RP2040 build.
    part = write_model(compiled_model(PERSON_DETECT, "rp2040", profile=True), tmp_path / "rp")
    (tmp_path / "m0.txt").write_text(results["cortex-m0plus"]["console"])
    result = mcugen_here("report", str(part), "--profile-log", str(tmp_path / "m0.txt"))
    assert result.returncode == 0, result.stderr
    profile = json.loads((part / "report.json").read_text())["profile"]
    clock = load_target("rp2040").clock_hz
    assert profile["milliseconds"] == pytest.approx(1000 * profile["cycles"] / clock)
    assert f"ms at {clock / 1e6:g} MHz" in (part / "report.md").read_text()


# --- the on-board example ---------------------------------------------------------------------


@pytest.mark.qemu
@pytest.mark.parametrize("options", ["selftest-profile", "plain"])
def test_on_board_example_compiles_strictly(tmp_path, options):
    """examples/on_board/main.c with a --selftest --profile build, and with a plain one (its
    self-check and profile compile away): arm-none-eabi-gcc, the strict flags."""
    target = load_target("cortex-m4")
    if options == "plain":
        data = PERSON_DETECT.read_bytes()
        compiled = compile_graph(load_tflite(data, "model"), name="model", target=target,
                                 source="person_detect.tflite")
    else:
        compiled = compiled_model(PERSON_DETECT, "cortex-m4", profile=True)
    folder = write_model(compiled, tmp_path / "model")
    compile_checked(["arm-none-eabi-gcc", *target.cflags, *STRICT, "-I", str(folder), "-c",
                     str(REPO / "examples" / "on_board" / "main.c"),
                     "-o", str(tmp_path / "main.o")])
    symbols = subprocess.run(["arm-none-eabi-nm", str(tmp_path / "main.o")],
                             capture_output=True, text=True, check=True).stdout
    assert ("model_selftest" in symbols) == (options != "plain")
    assert ("model_layer_cycles" in symbols) == (options != "plain")


@pytest.mark.slow
@pytest.mark.parametrize("core", ["cortex-m0plus", "cortex-m7"])
def test_selftest_and_profile_c_is_warning_free(tmp_path, core):
    """NAME.c (with the profile's both counters) and NAME_selftest.c under the strict flags
    and -Wpedantic: arm-none-eabi-gcc; gcc and clang on the host for the M0+'s portable C,
    clang for the Cortex-M7's."""
    from test_clang import CROSS, clang, newlib_include

    folder = write_model(compiled_model(PERSON_DETECT, core, profile=True), tmp_path / "model")
    target = load_target(core)
    compilers = [["arm-none-eabi-gcc", *target.cpu_flags]]
    if not target.features:  # portable C: the host's compilers too
        compilers += [["gcc"], [clang()]]
    if core in CROSS:
        compilers.append([clang(), "--target=arm-none-eabi", "-mthumb", *CROSS[core],
                          "-isystem", newlib_include()])
    for compiler in compilers:
        for counter in ([], ["-DMCUGEN_PROFILE_SYSTICK"]):
            for source in ("model.c", "model_selftest.c"):
                compile_checked([*compiler, *STRICT, "-Wpedantic", "-O2", *counter, "-c",
                                 str(folder / source), "-o", str(tmp_path / "out.o")])
