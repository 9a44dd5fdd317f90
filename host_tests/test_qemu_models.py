"""Real models on emulated Cortex-M boards: `mcugen run` cross-compiles the firmware, runs it in
QEMU, and every output must equal the NumPy reference's and TFLM's bit for bit. These tests
never skip: CI installs the toolchain and QEMU (.ci/run)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import PERSON_DETECT, mobilenet_tflite, tflm_outputs
from mcugen.build import BuildOptions
from mcugen.qemu import build_firmware, run_firmware
from mcugen.run import format_summary, run
from mcugen.targets import load_target

MOBILENET = dict(arch="v1", seed=1, alpha=0.25, height=96, width=96, channels=3, classes=2)


@pytest.fixture(scope="session")
def mobilenet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("qemu_models") / "mobilenet_a025_96.tflite"
    path.write_bytes(mobilenet_tflite(**MOBILENET))
    return path


_mobilenet_runs: dict[str, tuple[object, object]] = {}


def mobilenet_run(target: str, mobilenet_file, tmp_path_factory):
    """`mcugen run` of the MobileNet on the target and its work folder, once per target and
    file: the corruption test below takes the Cortex-M7's run (firmware built, QEMU run, TFLM)
    from the bit-exactness test rather than repeating it."""
    if target not in _mobilenet_runs:
        work = tmp_path_factory.mktemp(f"mobilenet_{target}")
        _mobilenet_runs[target] = run(BuildOptions(model=mobilenet_file, target=target), None,
                                      work), work
    return _mobilenet_runs[target]


@pytest.mark.tensorflow
@pytest.mark.qemu
@pytest.mark.parametrize("target", ["cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7",
                                    "cortex-m33", "cortex-m55"])
def test_mobilenet_runs_bit_exact_in_qemu(target, mobilenet_file, tmp_path_factory):
    summary, _ = mobilenet_run(target, mobilenet_file, tmp_path_factory)
    assert summary.tflm_outputs is not None
    np.testing.assert_array_equal(summary.qemu.outputs, summary.reference_outputs)
    np.testing.assert_array_equal(summary.qemu.outputs, summary.tflm_outputs)
    assert summary.matches
    assert len(summary.layers) == len(summary.build.compiled.report.layers)
    assert all(layer.instructions > 0 for layer in summary.layers)
    assert sum(layer.instructions for layer in summary.layers) <= summary.qemu.instructions[0]
    print(target, format_summary(summary).splitlines()[-2:])


@pytest.mark.qemu
@pytest.mark.parametrize("target", ["cortex-m0plus", "cortex-m3", "cortex-m7", "cortex-m33"])
def test_person_detect_runs_bit_exact(target, tmp_path):
    summary = run(BuildOptions(model=PERSON_DETECT, target=target), None, tmp_path)
    np.testing.assert_array_equal(summary.qemu.outputs, summary.tflm_outputs)
    assert summary.matches


@pytest.mark.qemu
def test_a_part_runs_on_its_cores_board(tmp_path):
    """--target nrf52840: the part's memory check, its core's flags and QEMU board."""
    summary = run(BuildOptions(model=PERSON_DETECT, target="nrf52840"), None, tmp_path)
    assert summary.matches
    flags = (tmp_path / "firmware" / "cflags.txt").read_text().split()
    core_flags = load_target("cortex-m4").cpu_flags
    assert load_target("nrf52840").cpu_flags == core_flags
    assert flags[:len(core_flags)] == list(core_flags)


@pytest.mark.tensorflow
@pytest.mark.qemu
def test_a_firmware_with_a_wrong_answer_fails_the_check(mobilenet_file, tmp_path_factory,
                                                        tmp_path):
    """Corrupt one weight of the generated C (a copy of the M7 run's): the firmware still
    runs, and the comparison with TFLM must catch it (the check is not vacuous)."""
    summary, work = mobilenet_run("cortex-m7", mobilenet_file, tmp_path_factory)
    shutil.copytree(work / "model", tmp_path / "model")
    weights = tmp_path / "model" / "model_weights.c"
    text = weights.read_text()
    # The first int32 table of layer 0 (its bias, alone or with the requantization constants).
    start = text.index("int32_t model_layer0_")
    head, tail = text[:start], text[start:]
    first_number_end = tail.index(",", tail.index("{"))
    first_number_start = tail.index("{") + 1
    tail = tail[:first_number_start] + " 123456789" + tail[first_number_end:]
    weights.write_text(head + tail)
    elf = build_firmware(tmp_path / "model", "cortex-m7", tmp_path / "corrupt")
    corrupted = run_firmware(elf, "cortex-m7", summary.inputs,
                             summary.build.compiled.graph.output.size)
    expected = tflm_outputs(summary.build.tflite, summary.inputs)
    assert not np.array_equal(corrupted.outputs, expected)


def test_run_on_the_host_target_runs_the_host_build(tmp_path):
    """--target host: no QEMU board, the generated C compiled on the host and checked the same
    way (no instruction counts)."""
    summary = run(BuildOptions(model=PERSON_DETECT, target="host"), None, tmp_path)
    assert summary.where.startswith("the host") and summary.matches
    np.testing.assert_array_equal(summary.device.outputs, summary.tflm_outputs)
    assert summary.layers == [] and "verdict: bit-exact" in format_summary(summary)
