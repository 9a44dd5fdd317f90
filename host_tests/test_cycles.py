"""The cycle estimate (mcugen/cycles.py): the icount plugin's log of the code that ran
(blocks=on), llvm-mca's timing of each piece, the cache, and what `mcugen run` prints and
reports. Needs arm-none-eabi-gcc, qemu-system-arm, gcc and LLVM 19 (llvm-mc-19, llvm-mca-19);
fails without them. No wall-clock timing is asserted anywhere."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import mcugen.cycles as cycles
from conftest import REPO, mobilenet_tflite
from mcugen.build import BuildOptions
from mcugen.cycles import (CYCLE_MODELS, ITERATIONS, estimate_cycles, piece_costs,
                           split_intervals, time_pieces, why_not_estimated)
from mcugen.qemu import (INVOKE_BEGIN_MARKER, INVOKE_END_MARKER, build_firmware, build_plugin,
                         run_firmware)
from mcugen.run import format_summary, run
from mcugen.targets import load_target

LOOP_MODEL = Path(__file__).parent / "qemu_loop_model"
LOOP_OUTPUT_SIZE = 2
LAYER_1_LOOP = bytes.fromhex("013afdd1")  # qemu_loop_model/model.c: "2: subs r2, r2, #1; bne 2b"
MOBILENET = dict(arch="v1", seed=1, alpha=0.25, height=96, width=96, channels=3, classes=2)


@pytest.mark.parametrize("tool", [cycles.LLVM_MC, cycles.LLVM_MCA])
def test_llvm_is_installed(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is missing: apt-get install {cycles.LLVM_PACKAGE}")


@pytest.fixture(scope="session")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_plugin(tmp_path_factory.mktemp("plugin"))


def elf_bytes(elf: Path, address: int, size: int) -> bytes:
    """size bytes at address in the ELF's loadable segments (32-bit little-endian ELF)."""
    data = elf.read_bytes()
    phoff, = struct.unpack_from("<I", data, 28)
    phentsize, phnum = struct.unpack_from("<HH", data, 42)
    for index in range(phnum):
        kind, offset, vaddr, _, filesz = struct.unpack_from("<IIIII", data,
                                                            phoff + index * phentsize)
        if kind == 1 and vaddr <= address and address + size <= vaddr + filesz:
            return data[offset + address - vaddr: offset + address - vaddr + size]
    raise AssertionError(f"no loadable segment holds {address:#x}")


def check_pieces(result, elf: Path) -> None:
    """Between consecutive markers, the pieces' executions times their instructions are the
    plugin's exact count; each piece's bytes are the firmware's at its address."""
    blocks = result.blocks
    assert len(blocks.intervals) == len(result.markers) + 1
    previous = 0
    for (_, count), executed in zip(result.markers, blocks.intervals):
        assert sum(blocks.pieces[p].instructions * times
                   for p, times in executed.items()) == count - previous
        previous = count
    for piece in blocks.pieces.values():
        assert piece.code == elf_bytes(elf, piece.address, len(piece.code)), hex(piece.address)


@pytest.mark.qemu
@pytest.mark.parametrize("core", sorted(CYCLE_MODELS))
def test_the_plugins_pieces_add_up_to_the_exact_counts(core, plugin, tmp_path) -> None:
    elf = build_firmware(LOOP_MODEL, core, tmp_path / "firmware")
    rows = [(3, 2, 0, 0), (200, 7, 0, 0)]
    inputs = np.array(rows, dtype=np.uint8).view(np.int8)
    plain = run_firmware(elf, core, inputs, LOOP_OUTPUT_SIZE, timeout=30, plugin=plugin)
    logged = run_firmware(elf, core, inputs, LOOP_OUTPUT_SIZE, timeout=30, plugin=plugin,
                          blocks=True)
    assert plain.blocks is None
    assert logged.markers == plain.markers  # logging blocks changes no count
    check_pieces(logged, elf)
    # Layer 1 of the loop model runs its two-instruction loop n1 times: the first in the
    # block that starts after layer 0's marker, the other n1 - 1 as a piece of its own.
    steps = split_intervals(logged.markers, logged.blocks)
    assert len(steps) == len(rows)
    for (_, n1, _, _), inference in zip(rows, steps):
        loop = [times for piece, times in inference[1].items()
                if logged.blocks.pieces[piece].code == LAYER_1_LOOP]
        assert loop == [n1 - 1]


# llvm-mca 19's results for hand-written pieces, in cycles per ITERATIONS executions, each
# following from the model's parameters (ARMScheduleM4.td: single issue, loads 2 cycles).
KNOWN = [
    # Four independent single-cycle additions, single issue: 4 cycles each time.
    ("cortex-m4", "01300131013201" "33", 4 * ITERATIONS, 4),  # adds r0..r3, #1
    # A load and an addition that needs its result: 2 + 1 cycles.
    ("cortex-m4", "01680131", 3 * ITERATIONS, 2),  # ldr r1, [r0]; adds r1, #1
    # push {r4, lr}; bl: timed as a branch (a call would be given 100 cycles of latency, and
    # the next push waits for lr).
    ("cortex-m4", "10b5" "00f000f8", 2 * ITERATIONS, 2),
    # Two independent SMLADs on the M7: one multiply-accumulate pipeline, 1 cycle each.
    ("cortex-m7", "21fb0200" "21fb0233", 2 * ITERATIONS, 2),
    # Low-overhead loops cost nothing and count as unmodelled: dls lr, lr on the M55 (whose
    # model has no timing for it); adds r0, #1; le lr, 1b on the M85 (whose model would time
    # the LE as a call: 100 cycles each time).
    ("cortex-m55", "4ef001e0", 0, 0),
    ("cortex-m85", "0130" "0ff003c8", 1 * ITERATIONS, 1),
]


@pytest.mark.parametrize("core, code, expected, modelled", KNOWN)
def test_a_hand_written_piece_has_llvm_mcas_known_cycles(core, code, expected, modelled):
    cost, = time_pieces([bytes.fromhex(code)], CYCLE_MODELS[core])
    assert (cost.cycles, cost.modelled) == (expected, modelled)


def test_the_cache_is_reused_and_keyed_by_core(tmp_path, monkeypatch) -> None:
    codes = [bytes.fromhex(code) for _, code, _, _ in KNOWN[:4]]
    m4 = CYCLE_MODELS["cortex-m4"]
    first, timed = piece_costs(codes, m4, tmp_path)
    assert timed == len(codes)

    def no_llvm(*args, **kwargs):
        raise AssertionError("llvm-mc or llvm-mca ran although the cache holds every piece")

    monkeypatch.setattr(cycles, "_llvm_mca", no_llvm)
    monkeypatch.setattr(cycles, "disassemble", no_llvm)
    second, timed = piece_costs(codes, m4, tmp_path)
    assert timed == 0 and second == first
    with pytest.raises(AssertionError, match="ran although"):  # another core: not cached
        piece_costs(codes, CYCLE_MODELS["cortex-m7"], tmp_path)


def test_cores_without_a_model_say_why() -> None:
    assert "no LLVM machine model for cortex-m3" in why_not_estimated(load_target("cortex-m3"))
    assert why_not_estimated(load_target("stm32h743zi")) is None  # a part: its core's model


@pytest.fixture(scope="session")
def mobilenet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cycles") / "mobilenet_a025_96.tflite"
    path.write_bytes(mobilenet_tflite(**MOBILENET))
    return path


@pytest.mark.tensorflow
@pytest.mark.qemu
@pytest.mark.parametrize("target", ["stm32h743zi", "cortex-m55"])
def test_run_estimates_cycles_that_add_up(target, mobilenet_file, tmp_path, monkeypatch):
    """`mcugen run --out`: per-layer cycles add up to the inference's, which equals the sum
    over the pieces run between the invoke's markers; the reports and the summary carry them."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # a cold cycle cache
    out = tmp_path / "out"
    summary = run(BuildOptions(model=mobilenet_file, target=target), None, tmp_path / "work",
                  keep=out)
    assert summary.matches
    estimate, device = summary.cycles, summary.device
    assert estimate is not None and estimate.timed_pieces > 0
    check_pieces(device, out / "firmware" / "firmware.elf")

    # Each inference from the raw intervals, without the step split.
    inside = {device.blocks.pieces[piece].code
              for inference in split_intervals(device.markers, device.blocks)
              for step in inference for piece in step}  # the pieces model_invoke ran
    costs, timed = piece_costs(inside, estimate.model, tmp_path / "cache" / "mcugen")
    assert timed == 0  # the run cached every piece it timed
    inferences, current = [], None
    for (number, _), executed in zip(device.markers, device.blocks.intervals):
        if number == INVOKE_BEGIN_MARKER:
            current = [0, 0]  # cycle units, instructions
            continue
        if current is None:
            continue
        for piece, times in executed.items():
            current[0] += costs[device.blocks.pieces[piece].code].cycles * times
            current[1] += device.blocks.pieces[piece].instructions * times
        if number == INVOKE_END_MARKER:
            inferences.append(tuple(current))
            current = None
    assert [(i.units, i.instructions) for i in estimate.inferences] == inferences
    assert [i.instructions for i in estimate.inferences] == device.instructions
    first = estimate.inferences[0]
    assert first.units == sum(first.steps) + first.after_last_step
    per_layer = [layer.cycles for layer in summary.layers]
    assert sum(per_layer) + first.after_last_step / ITERATIONS == pytest.approx(first.cycles,
                                                                             rel=1e-12)
    # Both models issue at most two instructions a cycle.
    assert first.cycles >= (first.instructions - first.unmodelled) / 2
    assert first.unmodelled < first.instructions / 20  # M55: its low-overhead loops' LE

    text = format_summary(summary)
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["cycles"] == first.cycles
    assert [layer["cycles"] for layer in report["layers"]] == per_layer
    markdown = (out / "report.md").read_text()
    assert "est. cycles" in markdown and "MACs/cycle" in markdown
    assert "estimated cycles" in (out / "report.html").read_text()
    assert f"estimated cycles per inference: {first.cycles:,.0f}" in text
    if target == "stm32h743zi":  # a part: the time at its clock
        milliseconds = 1000 * first.cycles / 480e6
        assert report["run"]["milliseconds"] == pytest.approx(milliseconds)
        assert f"{milliseconds:.2f} ms at stm32h743zi's 480 MHz" in text
        assert f"{milliseconds:.2f} ms at stm32h743zi's 480 MHz" in markdown
    else:
        assert report["run"]["milliseconds"] is None and " ms at " not in text


def test_the_docs_describe_the_estimate_and_its_limits() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Cycles"):]
    section = section[:section.index("\n#")]
    for words in ("llvm-mca", "steady state", "wait states", "caches", "bus contention",
                  "branch", "Cortex-M4 model", "cortex-m33", "milliseconds", "cache"):
        assert words in section, words
    docstring = cycles.__doc__
    for words in ("ignores", "wait states", "caches", "bus contention", "Cortex-M33"):
        assert words in docstring, words
