"""Issue 19 item 4: real parts in QEMU, end to end.

`mcugen run --target stm32f405rg` and `--target nrf51822` build examples/parts' firmware
(our own start-up and linker scripts, the inputs in flash, the outputs printed over the part's
UART) and run it on QEMU's models of the chips, netduinoplus2 and microbit, bit-exact with
TFLM, with exact instruction counts (on the Cortex-M0 through 16-bit hint markers). Needs
arm-none-eabi-gcc and qemu-system-arm; the nrf51822 case also TensorFlow (one MobileNet V1
conversion, cached).
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from conftest import PERSON_DETECT, mobilenet_tflite
from mcugen.build import BuildOptions
from mcugen.errors import McugenError
from mcugen.qemu import board_memory, check_board_fits
from mcugen.run import run
from mcugen.targets import load_target

# The V1 that fits the micro:bit's 16 KB of RAM: 27,680 B of arena layer by layer, 11,104 B in
# row bands; its 165 KB of weights and the code fit the 256 KB of flash (alpha 0.25's 247 KB do
# not), with two 96x96x3 inputs built in.
SMALL_V1 = dict(arch="v1", seed=3, alpha=0.2, height=96, width=96, channels=3, classes=2)
SMALL_V1_RAM = 13 * 1024


def test_the_parts_name_their_own_machines_and_memory():
    f4, nrf = load_target("stm32f405rg"), load_target("nrf51822")
    assert (f4.core, f4.qemu.machine, f4.qemu.uart) == ("cortex-m4", "netduinoplus2", True)
    assert (nrf.core, nrf.qemu.machine, nrf.qemu.uart) == ("cortex-m0plus", "microbit", True)
    # The M0+'s kernels, the M0's compiler flags (the part's `cpu`).
    assert nrf.cpu_flags[0].endswith("=cortex-m0") and nrf.features == frozenset()
    assert {r.name: (r.address, r.bytes) for r in f4.ram_regions} == {
        "CCM": (0x1000_0000, 64 * 1024), "SRAM": (0x2000_0000, 128 * 1024)}
    assert (f4.flash_bytes, f4.ram_bytes, nrf.flash_bytes, nrf.ram_bytes) == \
        (1024 * 1024, 128 * 1024, 256 * 1024, 16 * 1024)
    # The firmware's linker scripts hold the same memory (examples/parts).
    for target, ram, stack in ((f4, 128 * 1024, 8 * 1024), (nrf, 16 * 1024, 2 * 1024)):
        board = board_memory(target)
        assert board.aliases["CONST"].bytes == target.flash_bytes
        assert board.aliases["RAM"] == board.aliases["ARENA"]
        assert board.aliases["ARENA"].bytes == ram and board.stack_bytes == stack
    with pytest.raises(McugenError, match="microbit .*examples/parts/nrf51822.ld"):
        check_board_fits(nrf, const_bytes=0, arena_bytes=27_680, io_bytes=0)


def _uart_lines(summary) -> list[str]:
    return re.findall(r"^(?:output \d+: [0-9a-f]+|done \d+ \d)$", summary.device.console,
                      re.MULTILINE)


@pytest.mark.qemu
def test_person_detect_on_stm32f405rg_in_netduinoplus2(tmp_path):
    summary = run(BuildOptions(model=PERSON_DETECT, target="stm32f405rg", name="person_detect"),
                  None, tmp_path)
    assert summary.where == "stm32f405rg in QEMU (netduinoplus2)"
    assert summary.matches_reference and summary.matches_oracle, summary.device.outputs
    count = len(summary.inputs)
    lines = _uart_lines(summary)  # what the firmware printed over USART1
    assert len(lines) == count + 1 and lines[-1] == f"done {count} 0"
    assert len(summary.device.instructions) == count
    # Counted on the part's own machine: at most two MACs an instruction (SMLAD), and no
    # more than the portable C's three instructions per MAC.
    macs = summary.build.compiled.report.macs
    assert all(macs / 2 < n < 3 * macs for n in summary.device.instructions)
    assert summary.cycles is not None  # the M4's LLVM model


@pytest.mark.tensorflow
@pytest.mark.qemu
def test_a_v1_in_16_kb_on_nrf51822_in_microbit(tmp_path):
    model = tmp_path / "v1.tflite"
    model.write_bytes(mobilenet_tflite(**SMALL_V1))
    rng = np.random.default_rng(0)
    inputs = tmp_path / "inputs.npy"
    np.save(inputs, np.stack([np.zeros(96 * 96 * 3), rng.integers(-128, 128, 96 * 96 * 3)])
            .astype(np.int8))
    summary = run(BuildOptions(model=model, target="nrf51822", name="v1",
                               max_ram=SMALL_V1_RAM), inputs, tmp_path / "work",
                  keep=tmp_path / "kept")
    assert summary.where == "nrf51822 in QEMU (microbit)"
    assert summary.matches_reference and summary.matches_oracle, summary.device.outputs
    report = summary.build.compiled.report
    assert report.schedule is not None and report.arena_bytes <= SMALL_V1_RAM
    assert report.schedule["layer_by_layer_arena"] > 16 * 1024  # bands make it fit
    assert _uart_lines(summary)[-1] == "done 2 0"
    # Per-layer counts through the hint markers on the Cortex-M0 (one per step of the bands).
    assert len(summary.device.layer_instructions[0]) == report.schedule["steps"]
    assert [layer.index for layer in summary.layers] == [layer.index for layer in report.layers]
    assert all(layer.instructions > 0 for layer in summary.layers)
    # What the firmware takes of the part: every RAM section within its 16 KB.
    sizes = subprocess.run(["arm-none-eabi-size", "-A", str(tmp_path / "kept" / "firmware" /
                                                              "firmware.elf")],
                           capture_output=True, text=True, check=True).stdout
    ram = sum(int(size) for _, size, address in re.findall(r"^(\.\w+)\s+(\d+)\s+(\d+)$", sizes,
                                                            re.MULTILINE)
              if int(address) >= 0x2000_0000)
    assert ram <= 16 * 1024
