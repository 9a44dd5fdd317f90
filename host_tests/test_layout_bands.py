"""Row bands through layout ops (issue 20, item 4): a model that starts with TRANSPOSE (an NCHW
input, as PyTorch's converters give) or RESHAPE, then PAD, runs in row bands from its first
layer (mcugen/geometry.py: a layout op's output rows read its whole input, which is the
caller's), bit-exact with the NumPy reference; the early arena bound stays below what the
search reaches. (The converted PyTorch MobileNetV2 at 160K on Cortex-M7 is a measurement in
README, not a test: its file is not in this repository.)"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import ir_graphs as g
from conftest import standard_inputs
from hostc import build_shared, run_sanitized
from mcugen import estimate
from mcugen.compile import compile_graph, prepare
from mcugen.errors import McugenError
from mcugen.geometry import input_rows
from mcugen.qemu import build_firmware, run_firmware
from mcugen.reference import run_reference
from mcugen.targets import load_target

HOST = load_target("host")
FIRST = ["transpose", "reshape"]


def compiled(first: str, max_ram: int | None, target=HOST):
    return compile_graph(g.layout_first(11, first), name="model", target=target, source=first,
                         memory_check=False, max_ram=max_ram)


def tightest(first: str, target=HOST) -> int:
    with pytest.raises(McugenError, match="smallest reachable") as error:
        compiled(first, max_ram=64, target=target)
    return int(re.search(r"smallest reachable is ([\d,]+) B", str(error.value))
               .group(1).replace(",", ""))


def written(result, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, text in result.sources.items():
        (folder / name).write_text(text)
    return folder


def reference(graph, inputs: np.ndarray) -> np.ndarray:
    return np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                     for x in inputs])


def test_a_layout_op_reads_its_whole_input_for_any_rows():
    graph = prepare(g.layout_first(11, "transpose"))
    transpose, pad = graph.ops[0], graph.ops[1]
    assert input_rows(transpose, graph, 5, 6) == (0, 4)  # all C of the NCHW input
    assert input_rows(pad, graph, 0, 3) == (0, 1)  # two padding rows, then row 0
    assert input_rows(pad, graph, 16, 17) == (14, 14)  # bottom padding reads nothing


@pytest.mark.parametrize("first", FIRST)
def test_bands_from_the_first_layer_are_bit_exact(first, tmp_path):
    whole = compiled(first, None)
    budget = tightest(first)
    result = compiled(first, budget)
    schedule = result.schedule
    assert schedule.segments[0][0] == 0, schedule.describe()
    # The layout op's and the PAD's outputs never exist whole: a row or two at a time.
    assert schedule.bands["t"] <= 2 and schedule.bands["p"] <= 2, schedule.bands
    assert result.plan.arena_size <= budget < whole.plan.arena_size
    graph = result.graph
    folder = written(result, tmp_path / "model")
    model = build_shared(folder, "model", graph.input.size, graph.output.size, tmp_path)
    inputs = standard_inputs(graph.input.size, seed=4)
    expected = reference(graph, inputs)
    np.testing.assert_array_equal(np.stack([model(x) for x in inputs]), expected)
    assert len(set(map(bytes, expected))) >= len(inputs) - 1  # outputs tell inputs apart


@pytest.mark.slow
def test_bands_from_the_first_layer_are_clean_under_sanitizers(tmp_path):
    result = compiled("transpose", tightest("transpose"))
    graph = result.graph
    inputs = standard_inputs(graph.input.size, seed=4, random_count=2)
    outputs = run_sanitized(written(result, tmp_path / "model"), "model", graph.input.size,
                            graph.output.size, inputs, tmp_path)
    np.testing.assert_array_equal(outputs, reference(graph, inputs))


@pytest.mark.qemu
@pytest.mark.parametrize("target", ["cortex-m7", "cortex-m0plus"])
def test_bands_from_the_first_layer_are_bit_exact_in_qemu(target, tmp_path):
    """The same on a core: the DSP kernels on M7, the portable ones where an unaligned word
    access traps (M0+)."""
    core = load_target(target)
    result = compiled("transpose", tightest("transpose", core), core)
    assert result.schedule.segments[0][0] == 0
    graph = result.graph
    elf = build_firmware(written(result, tmp_path / "model"), core, tmp_path / "firmware")
    inputs = standard_inputs(graph.input.size, seed=5, random_count=2)
    ran = run_firmware(elf, core, inputs, graph.output.size)
    np.testing.assert_array_equal(ran.outputs, reference(graph, inputs))


@pytest.mark.parametrize("first", FIRST)
def test_the_early_arena_bound_stays_below_the_arena_reached(first):
    """build.check_shapes refuses a budget below estimate.arena_lower_bound before compiling:
    the bound must know that layout ops run in bands too."""
    bound = estimate.arena_lower_bound(estimate.graph_shapes(prepare(g.layout_first(11, first))))
    assert bound <= tightest(first)
