"""A model that passes a part's memory check also runs on the part's QEMU board (issue 17,
item 3): the arena goes to the board's largest RAM (boards/*.ld, region ARENA), and what still
cannot fit is said in one line naming the flag that helps, before the firmware is compiled."""

from __future__ import annotations

import numpy as np
import pytest

import mcugen.qemu
from conftest import PERSON_DETECT, standard_inputs
from mcugen.build import BuildOptions
from mcugen.compile import compile_graph
from mcugen.errors import McugenError
from mcugen.ir import Activation, Conv2D, Graph, Padding, QParams, Tensor
from mcugen.qemu import (BoardMemory, BoardRegion, board_memory, build_firmware,
                         check_board_fits, run_firmware)
from mcugen.reference import run_reference
from mcugen.run import run
from mcugen.targets import load_target, qemu_targets

MIB = 1024 * 1024


def test_every_board_script_gives_the_arena_a_large_region():
    for name, target in qemu_targets().items():
        board = board_memory(target)
        assert set(board.aliases) >= {"CODE", "CONST", "RAM", "ARENA"}, name
        assert board.aliases["ARENA"].bytes >= 16 * MIB, name
        assert board.stack_bytes == 32 * 1024
    m55 = board_memory("cortex-m55")
    assert m55.aliases["RAM"] == BoardRegion("DTCM", 512 * 1024)  # the stack stays in DTCM
    # Every part's flash and RAM fit its board's CONST and ARENA, except a flash that the
    # board's 4 MiB holding code and weights together cannot (the check below says so).
    for part in ("alif-e3", "stm32h743zi", "stm32l4r5zi", "nrf5340"):
        target = load_target(part)
        board = board_memory(target)
        assert target.ram_bytes <= board.aliases["ARENA"].bytes
        assert target.flash_bytes <= board.aliases["CONST"].bytes


def big_arena_graph(h: int = 160, w: int = 160, middle: int = 24) -> Graph:
    """Two 1x1 convolutions: 160x160x3 -> 160x160x24 (614,400 B, more than the M55 board's
    512 KiB DTCM, which held .bss and so the arena) -> 160x160x2."""
    rng = np.random.default_rng(7)

    def activation(name, c, scale, zero_point):
        return Tensor(name, (1, h, w, c), "int8", QParams((scale,), (zero_point,)))

    def weights(name, cout, cin):
        scales = tuple(map(float, rng.uniform(0.005, 0.02, cout)))
        return Tensor(name, (cout, 1, 1, cin), "int8", QParams(scales, (0,) * cout, 0),
                      rng.integers(-127, 128, (cout, 1, 1, cin)).astype(np.int8))

    def bias(name, cout, scale):
        return Tensor(name, (cout,), "int32", QParams((scale,), (0,)),
                      rng.integers(-2000, 2000, cout).astype(np.int32))

    tensors = [activation("x", 3, 0.05, -3), weights("w1", middle, 3), bias("b1", middle, 5e-4),
               activation("t", middle, 0.03, 2), weights("w2", 2, middle), bias("b2", 2, 3e-4),
               activation("y", 2, 0.1, -1)]
    ops = (Conv2D("x", "w1", "b1", "t", (1, 1), (1, 1), Padding(0, 0, 0, 0), Activation.RELU6),
           Conv2D("t", "w2", "b2", "y", (1, 1), (1, 1), Padding(0, 0, 0, 0), Activation.NONE))
    return Graph("big_arena", {t.name: t for t in tensors}, ops, ("x",), ("y",))


@pytest.mark.qemu
def test_an_arena_larger_than_the_dtcm_runs_on_the_m55_board(tmp_path):
    """Before: the M55 board's script put the arena in .bss in 512 KiB of DTCM and the link
    failed; now it is in the board's DDR and runs bit-exact."""
    target = load_target("cortex-m55")
    compiled = compile_graph(big_arena_graph(), name="model", target=target, source="test",
                             memory_check=False)
    assert compiled.plan.arena_size > 512 * 1024
    check_board_fits(target, const_bytes=compiled.report.const_bytes,
                     arena_bytes=compiled.plan.arena_size,
                     io_bytes=compiled.report.input_bytes + compiled.report.output_bytes)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for file, text in compiled.sources.items():
        (model_dir / file).write_text(text)
    elf = build_firmware(model_dir, target, tmp_path / "firmware")
    graph = compiled.graph
    inputs = standard_inputs(graph.input.size, seed=5, random_count=1)
    result = run_firmware(elf, target, inputs, graph.output.size)
    expected = np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                         for x in inputs])
    np.testing.assert_array_equal(result.outputs, expected)
    assert len({row.tobytes() for row in expected}) > 1


@pytest.mark.tensorflow
def test_what_does_not_fit_the_board_is_one_line_naming_the_flag():
    m7 = load_target("cortex-m7")
    with pytest.raises(McugenError, match=r"20,000,000-byte arena does not fit the 16,777,216 B "
                                          rf"of PSRAM on the QEMU board {m7.qemu_board}.*--max-ram"):
        check_board_fits(m7, const_bytes=1000, arena_bytes=20_000_000, io_bytes=1000)
    with pytest.raises(McugenError, match=r"weights do not fit .* SSRAM1 .*--alpha"):
        check_board_fits(m7, const_bytes=4 * MIB, arena_bytes=1000, io_bytes=1000,
                         code_bytes=20_000)  # code and weights share the M7 board's SSRAM1
    check_board_fits("alif-e3", const_bytes=5 * MIB, arena_bytes=4 * MIB, io_bytes=150_528)
    with pytest.raises(McugenError, match=r"input and output buffers .* DTCM"):
        check_board_fits("cortex-m55", const_bytes=1000, arena_bytes=1000, io_bytes=500_000)


@pytest.mark.qemu
def test_run_checks_the_board_before_building_the_firmware(monkeypatch, tmp_path):
    """A board with a small ARENA region (a custom board script): `mcugen run` stops right
    after compiling, with the flag, and builds no firmware."""
    real = board_memory("cortex-m7")
    small = BoardMemory(real.script, {**real.aliases, "ARENA": BoardRegion("SMALL", 16 * 1024)},
                        real.stack_bytes)
    monkeypatch.setattr(mcugen.qemu, "board_memory", lambda target: small)
    with pytest.raises(McugenError, match=r"arena does not fit the 16,384 B of SMALL.*"
                                          r"--max-ram 16K"):
        run(BuildOptions(model=PERSON_DETECT, target="cortex-m7"), None, tmp_path)
    assert (tmp_path / "model" / "model.c").is_file() and not (tmp_path / "firmware").exists()
