"""The QEMU firmware, its Makefile, the icount plugin and mcugen.qemu, on every core that runs
in QEMU (every core file in targets/ with a [qemu] table).

The model under test is host_tests/qemu_loop_model: model_invoke in assembly, so the number of
instructions each layer executes is known by construction and the plugin's counts can be
checked exactly. These tests need arm-none-eabi-gcc, make, gcc and qemu-system-arm; they fail
(never skip) without them, since CI must install them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mcugen.errors import McugenError
from mcugen.qemu import build_firmware, build_plugin, run_firmware
from mcugen.resources import firmware_dir
from mcugen.targets import qemu_targets

CORES = sorted(qemu_targets())

LOOP_MODEL = Path(__file__).parent / "qemu_loop_model"
LOOP_OUTPUT_SIZE = 2
LOOP_OFFSETS = (3, 100)  # model_offsets in qemu_loop_model/model.c (.data)
FUNCTION_ENTRY_MARKER, FUNCTION_EXIT_MARKER = 4, 5  # the loop model's own markers

REQUIRED_TOOLS = {
    "arm-none-eabi-gcc": "gcc-arm-none-eabi libnewlib-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
    "gcc": "gcc",
    "make": "make",
}


def loop_inputs(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    """(layer 0 iterations, layer 1 iterations, status, behaviour) per inference."""
    return np.array(rows, dtype=np.uint8).view(np.int8)


@pytest.fixture(scope="session")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_plugin(tmp_path_factory.mktemp("plugin"))


@pytest.fixture(scope="session")
def loop_elves(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The loop model's firmware for every core."""
    return {
        core: build_firmware(LOOP_MODEL, core, tmp_path_factory.mktemp(core))
        for core in CORES
    }


@pytest.fixture(params=CORES)
def loop_firmware(request: pytest.FixtureRequest, loop_elves) -> tuple[str, Path]:
    return request.param, loop_elves[request.param]


@pytest.mark.parametrize("tool", sorted(REQUIRED_TOOLS))
def test_tool_is_installed(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is missing: apt-get install {REQUIRED_TOOLS[tool]}")


@pytest.mark.qemu
def test_counts_are_exact_and_linear(loop_firmware, plugin) -> None:
    board, elf = loop_firmware
    rows = [(1, 1, 0, 0), (10, 3, 0, 0), (200, 255, 0, 0), (37, 1, 0, 0)]
    inputs = loop_inputs(rows)
    result = run_firmware(elf, board, inputs, LOOP_OUTPUT_SIZE, timeout=30, plugin=plugin)

    n0 = np.array([row[0] for row in rows])
    n1 = np.array([row[1] for row in rows])
    expected_outputs = np.stack([n1 + LOOP_OFFSETS[0], n0 + LOOP_OFFSETS[1]], axis=1)
    np.testing.assert_array_equal(result.outputs, expected_outputs.astype(np.uint8).view(np.int8))

    # Counts written in qemu_loop_model/model.c, exact from model_invoke's first instruction
    # to its last before returning.
    entries = [count for number, count in result.markers if number == FUNCTION_ENTRY_MARKER]
    exits = [count for number, count in result.markers if number == FUNCTION_EXIT_MARKER]
    assert np.subtract(exits, entries).tolist() == (25 + 2 * (n0 + n1)).tolist()
    assert [layers[1:] for layers in result.layer_instructions] == [[2 + 2 * m, 0] for m in n1]
    # Layer 0 and the whole invoke also include main's fixed call overhead: constant offsets.
    layer0 = np.array([layers[0] for layers in result.layer_instructions])
    assert len(set(layer0 - 2 * n0)) == 1
    assert len(set(np.array(result.instructions) - 2 * (n0 + n1))) == 1
    assert result.console.count("model_invoke returned 0") == len(rows)


@pytest.mark.qemu
def test_floating_point_is_enabled(loop_firmware, plugin) -> None:
    board, elf = loop_firmware
    result = run_firmware(elf, board, loop_inputs([(1, 1, 0, 3)]), LOOP_OUTPUT_SIZE, 30,
                          plugin=plugin)  # fmt: skip
    assert "model_invoke returned 0" in result.console


@pytest.mark.qemu
def test_nonzero_status_fails(loop_firmware, plugin) -> None:
    board, elf = loop_firmware
    inputs = loop_inputs([(1, 1, 0, 0), (1, 1, 5, 0)])
    with pytest.raises(McugenError, match=r"exited with status 1: .*returned 5"):
        run_firmware(elf, board, inputs, LOOP_OUTPUT_SIZE, timeout=30, plugin=plugin)


@pytest.mark.qemu
def test_fault_fails_cleanly(loop_firmware, plugin) -> None:
    board, elf = loop_firmware
    # udf escalates to HardFault (exception 3): the handler reports it and exits with 2.
    with pytest.raises(McugenError, match=r"exited with status 2: fault: exception 3 at pc 0x"):
        run_firmware(elf, board, loop_inputs([(1, 1, 0, 1)]), LOOP_OUTPUT_SIZE, 30, plugin=plugin)


@pytest.mark.qemu
def test_unaligned_word_access_faults_only_where_it_should(loop_firmware, plugin) -> None:
    """QEMU honours CCR.UNALIGN_TRP: the Cortex-M0+ build (on the M3 board, with the trap set at
    reset) faults on an unaligned word load, with CFSR.UNALIGNED (bit 24) set, while every
    ARMv7-M and ARMv8-M core, the same M3 board without the trap included, just loads."""
    core, elf = loop_firmware
    inputs = loop_inputs([(1, 1, 0, 4)])
    if qemu_targets()[core].qemu.trap_unaligned:
        with pytest.raises(McugenError, match=r"status 2: fault: exception 3 .*cfsr 0x01000000"):
            run_firmware(elf, core, inputs, LOOP_OUTPUT_SIZE, timeout=30, plugin=plugin)
    else:
        result = run_firmware(elf, core, inputs, LOOP_OUTPUT_SIZE, timeout=30, plugin=plugin)
        assert "model_invoke returned 0" in result.console


@pytest.mark.qemu
def test_the_m0plus_build_traps_and_the_m3_build_does_not() -> None:
    """Both run on the same machine; only the start-up fact differs (the test above runs both)."""
    cores = qemu_targets()
    assert cores["cortex-m0plus"].qemu.machine == cores["cortex-m3"].qemu.machine
    assert cores["cortex-m0plus"].qemu.trap_unaligned and not cores["cortex-m3"].qemu.trap_unaligned
    assert cores["cortex-m0plus"].arch == "armv6-m" and cores["cortex-m3"].arch == "armv7-m"


@pytest.mark.qemu
def test_hang_times_out(loop_elves, plugin) -> None:
    core = "cortex-m4"  # the timeout path does not depend on the core
    with pytest.raises(McugenError, match="for over 2 s"):
        run_firmware(loop_elves[core], core, loop_inputs([(1, 1, 0, 2)]), LOOP_OUTPUT_SIZE, 2,
                     plugin=plugin)  # fmt: skip


@pytest.mark.qemu
def test_inputs_must_have_a_model_element_type(loop_firmware, plugin) -> None:
    """int8, uint8 or float32 (a model's input types); anything else is refused."""
    board, elf = loop_firmware
    for wrong in (np.int16, np.int64, np.float64):
        with pytest.raises(McugenError, match="int8, uint8 or float32"):
            run_firmware(elf, board, np.ones((1, 4), wrong), LOOP_OUTPUT_SIZE, plugin=plugin)


def test_build_error_is_one_clear_line(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(LOOP_MODEL / "model.h", model_dir)  # declares model_invoke, defines none
    with pytest.raises(McugenError, match="undefined reference to `model_invoke'") as error:
        build_firmware(model_dir, "cortex-m4", tmp_path / "build")
    assert "\n" not in str(error.value)


@pytest.mark.qemu
def test_unknown_target_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(McugenError, match="the cores that run in QEMU: cortex-m0plus"):
        build_firmware(LOOP_MODEL, "no-such-core", tmp_path)
    with pytest.raises(McugenError, match="host has no QEMU board"):
        build_firmware(LOOP_MODEL, "host", tmp_path)


@pytest.mark.qemu
def test_a_qemu_machine_name_stands_for_its_own_core(tmp_path: Path, plugin) -> None:
    """Older callers pass the machine; it means the core it emulates (never the M0+)."""
    m7 = qemu_targets()["cortex-m7"]
    elf = build_firmware(LOOP_MODEL, m7.qemu.machine, tmp_path / "by_machine")
    assert (tmp_path / "by_machine" / "cflags.txt").read_text().split()[:4] == list(m7.cpu_flags)
    result = run_firmware(elf, m7.qemu.machine, loop_inputs([(2, 2, 0, 0)]), LOOP_OUTPUT_SIZE,
                          timeout=30, plugin=plugin)
    assert result.instructions


@pytest.mark.qemu
def test_makefile_by_hand_with_the_fragment_mcugen_prints(tmp_path: Path) -> None:
    """README's by-hand build: `mcugen targets --make CORE` into a file, TARGET_MK=file. It
    compiles with exactly the flags mcugen.qemu passes."""
    import sys

    from conftest import REPO

    core = "cortex-m3"
    fragment = tmp_path / "core.mk"
    printed = subprocess.run([sys.executable, "-m", "mcugen", "targets", "--make", core],
                             capture_output=True, text=True, cwd=REPO, check=True)
    fragment.write_text(printed.stdout)
    # CMSIS_NN_DIR empty, as build_firmware passes it here (the environment may have one).
    subprocess.run(["make", "-s", "-C", str(firmware_dir()), f"MODEL_DIR={LOOP_MODEL}",
                    f"BUILD={tmp_path / 'by_hand'}", f"TARGET_MK={fragment}", "CMSIS_NN_DIR="],
                   capture_output=True, text=True, check=True)
    build_firmware(LOOP_MODEL, core, tmp_path / "by_qemu_py")
    by_hand = (tmp_path / "by_hand" / "cflags.txt").read_text()
    assert by_hand == (tmp_path / "by_qemu_py" / "cflags.txt").read_text()
    assert qemu_targets()[core].cpu_flags[0] in by_hand.split()
    assert (tmp_path / "by_hand" / "firmware.elf").is_file()


def test_makefile_without_cpu_flags_says_what_to_set(tmp_path: Path) -> None:
    result = subprocess.run(["make", "-s", "-C", str(firmware_dir()), f"MODEL_DIR={LOOP_MODEL}",
                             f"BUILD={tmp_path}"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "set CPU_FLAGS" in result.stderr and "mcugen targets --make" in result.stderr
