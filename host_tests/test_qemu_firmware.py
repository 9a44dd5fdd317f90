"""The QEMU firmware, its Makefile, the icount plugin and mcugen.qemu, on every board.

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
from mcugen.qemu import BOARDS, RunResult, build_firmware, build_plugin, run_firmware
from mcugen.resources import firmware_dir

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


def build_and_run(
    model_dir: Path,
    board: str,
    inputs: np.ndarray,
    output_size: int,
    build_root: Path,
    plugin: Path,
    timeout: float = 60.0,
) -> RunResult:
    """Build model_dir's firmware for board under build_root and run it on inputs."""
    elf = build_firmware(model_dir, board, build_root / board)
    return run_firmware(elf, board, inputs, output_size, timeout=timeout, plugin=plugin)


def loop_inputs(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    """(layer 0 iterations, layer 1 iterations, status, behaviour) per inference."""
    return np.array(rows, dtype=np.uint8).view(np.int8)


@pytest.fixture(scope="session")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_plugin(tmp_path_factory.mktemp("plugin"))


@pytest.fixture(scope="session")
def loop_elves(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The loop model's firmware for every board."""
    return {
        board: build_firmware(LOOP_MODEL, board, tmp_path_factory.mktemp(board))
        for board in BOARDS
    }


@pytest.fixture(params=sorted(BOARDS))
def loop_firmware(request: pytest.FixtureRequest, loop_elves) -> tuple[str, Path]:
    return request.param, loop_elves[request.param]


@pytest.mark.parametrize("tool", sorted(REQUIRED_TOOLS))
def test_tool_is_installed(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is missing: apt-get install {REQUIRED_TOOLS[tool]}")


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
    assert np.subtract(exits, entries).tolist() == (21 + 2 * (n0 + n1)).tolist()
    assert [layers[1:] for layers in result.layer_instructions] == [[2 + 2 * m, 0] for m in n1]
    # Layer 0 and the whole invoke also include main's fixed call overhead: constant offsets.
    layer0 = np.array([layers[0] for layers in result.layer_instructions])
    assert len(set(layer0 - 2 * n0)) == 1
    assert len(set(np.array(result.instructions) - 2 * (n0 + n1))) == 1
    assert result.console.count("model_invoke returned 0") == len(rows)


def test_floating_point_is_enabled(loop_firmware, plugin) -> None:
    board, elf = loop_firmware
    result = run_firmware(elf, board, loop_inputs([(1, 1, 0, 3)]), LOOP_OUTPUT_SIZE, 30,
                          plugin=plugin)  # fmt: skip
    assert "model_invoke returned 0" in result.console


def test_nonzero_status_fails(loop_firmware, plugin) -> None:
    board, elf = loop_firmware
    inputs = loop_inputs([(1, 1, 0, 0), (1, 1, 5, 0)])
    with pytest.raises(McugenError, match=r"exited with status 1: .*returned 5"):
        run_firmware(elf, board, inputs, LOOP_OUTPUT_SIZE, timeout=30, plugin=plugin)


def test_fault_fails_cleanly(loop_firmware, plugin) -> None:
    board, elf = loop_firmware
    # udf escalates to HardFault (exception 3): the handler reports it and exits with 2.
    with pytest.raises(McugenError, match=r"exited with status 2: fault: exception 3 at pc 0x"):
        run_firmware(elf, board, loop_inputs([(1, 1, 0, 1)]), LOOP_OUTPUT_SIZE, 30, plugin=plugin)


def test_hang_times_out(loop_elves, plugin) -> None:
    board = "mps2-an386"  # the timeout path does not depend on the board
    with pytest.raises(McugenError, match="for over 2 s"):
        run_firmware(loop_elves[board], board, loop_inputs([(1, 1, 0, 2)]), LOOP_OUTPUT_SIZE, 2,
                     plugin=plugin)  # fmt: skip


def test_inputs_must_be_int8(loop_firmware, plugin) -> None:
    board, elf = loop_firmware
    with pytest.raises(McugenError, match="int8"):
        run_firmware(elf, board, np.ones((1, 4), np.uint8), LOOP_OUTPUT_SIZE, plugin=plugin)


def test_build_error_is_one_clear_line(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(LOOP_MODEL / "model.h", model_dir)  # declares model_invoke, defines none
    with pytest.raises(McugenError, match="undefined reference to `model_invoke'") as error:
        build_firmware(model_dir, "mps2-an386", tmp_path / "build")
    assert "\n" not in str(error.value)


def test_unknown_board_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(McugenError, match="known boards: mps2-an386"):
        build_firmware(LOOP_MODEL, "mps2-an999", tmp_path)


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_makefile_board_flags_match_boards(board: str) -> None:
    printed = subprocess.run(
        ["make", "-s", "-C", str(firmware_dir()), f"BOARD={board}", f"MODEL_DIR={LOOP_MODEL}",
         "print-cpu-flags"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert tuple(printed.split()) == BOARDS[board].cpu_flags
