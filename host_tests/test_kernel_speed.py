"""How many instructions the hot kernels take, counted exactly in QEMU on hand-built one-op
graphs (test_kernels.CASES), next to their bit-exactness: a kernel that got slower, or a fast
path that silently stopped being taken, fails here rather than only in the benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcugen.qemu import build_firmware, run_firmware
from mcugen.report import count_macs
from test_kernels import (M0PLUS, M7, case_inputs, compile_case, reference_outputs,
                          write_sources)


def instructions_per_mac(case: str, target, tmp_path: Path) -> float:
    """The case's one layer, run in QEMU on the target's board and checked bit for bit: its
    instructions per multiply-accumulate (the fewest over the inputs)."""
    compiled = compile_case(case, target)
    assert len(compiled.layers) == 1, case
    elf = build_firmware(write_sources(compiled, tmp_path / "model"), target,
                         tmp_path / "firmware")
    inputs = case_inputs(compiled)
    result = run_firmware(elf, target, inputs, compiled.graph.output.size,
                          output_dtype=compiled.graph.output.dtype)
    np.testing.assert_array_equal(result.outputs, reference_outputs(compiled, inputs))
    macs = count_macs(compiled.graph.ops[0], compiled.graph)
    assert macs > 0, case
    return min(layer[0] for layer in result.layer_instructions) / macs


@pytest.mark.qemu
def test_a_fully_connected_layer_on_armv6m_takes_under_five_instructions_per_mac(tmp_path):
    """ARMv6-M's dot product of one row by two filter rows: nine instructions per two MACs in
    the loop (LDRSB, MULS and ADD; the index's ADDS sets BNE's flags), where GCC's own C loop
    took twelve (6.2 per MAC with the requantization, above the CMSIS-NN build's)."""
    assert instructions_per_mac("fc_1x250_99", M0PLUS, tmp_path) < 5.0


@pytest.mark.qemu
def test_a_narrow_pointwise_layer_on_the_cortex_m7_adds_k_with_the_high_multiply(tmp_path):
    """8 -> 16 channels (a MobileNet's second pointwise layer), ReLU6: the output stage is most
    of it. SMMLAR adds the short requantization's K with the high multiply (one instruction
    per output fewer): 3.360 instructions per MAC before, 3.203 after (5x7 pixels: the odd
    last pixel's column by plain C weighs here)."""
    assert instructions_per_mac("pw_8_16", M7, tmp_path) < 3.28
