"""`mcugen run`: build a model for a Cortex-M target, run it in QEMU, check every output bit
for bit against the NumPy reference (and TFLM where it loads the model), and count the
instructions of each layer."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .build import BuildOptions, BuildResult, compile_build, output_names
from .codegen import template_environment
from .errors import McugenError
from .output import check_output_folder, write_output_folder
from .qemu import RunResult, build_firmware, firmware_target, run_firmware
from .reference import run_reference
from .resources import find_cmsis_nn
from .report import Report
from .targets import load_target


@dataclass(frozen=True)
class LayerCount:
    index: int
    op: str
    kernel: str
    macs: int
    instructions: int

    @property
    def macs_per_instruction(self) -> float:
        return self.macs / self.instructions if self.instructions else 0.0


@dataclass(frozen=True)
class RunSummary:
    build: BuildResult
    qemu: RunResult
    inputs: np.ndarray
    reference_outputs: np.ndarray
    tflm_outputs: np.ndarray | None  # None when TFLM cannot load the model
    layers: list[LayerCount]  # from the first inference

    @property
    def matches(self) -> bool:
        exact = np.array_equal(self.qemu.outputs, self.reference_outputs)
        if self.tflm_outputs is not None:
            exact = exact and np.array_equal(self.qemu.outputs, self.tflm_outputs)
        return exact


def default_inputs(size: int, seed: int) -> np.ndarray:
    """Zeros, the two extremes and two seeded random inputs."""
    rng = np.random.default_rng(seed)
    rows = [np.zeros(size), np.full(size, -128), np.full(size, 127),
            rng.integers(-128, 128, size), rng.integers(-128, 128, size)]
    return np.stack(rows).astype(np.int8)


def load_inputs(path: Path, size: int) -> np.ndarray:
    """A .npy of int8 inputs: one input, or N of them (any shape with N*size elements)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise McugenError(f"cannot read --inputs {path}: {error}") from None
    if array.dtype != np.int8:
        raise McugenError(f"--inputs {path} holds {array.dtype}; give quantized int8 inputs")
    if array.size == 0 or array.size % size:
        raise McugenError(f"--inputs {path} has {array.size} values, not a multiple of the "
                          f"model's input size {size}")
    return array.reshape(-1, size)


TFLM_MISSING = ("TFLM not checked: its Python package tflite-micro is not installed "
                "(python3 -m pip install tflite-micro)")
# The firmware's files in a kept folder (--out): the QEMU image and its linker map.
FIRMWARE_FILES = ("firmware/firmware.elf", "firmware/firmware.map")


def tflm_available() -> bool:
    try:
        from tflite_micro import runtime  # noqa: F401
    except ImportError:
        return False
    return True


def tflm_outputs(model: bytes, inputs: np.ndarray) -> np.ndarray | None:
    try:
        from tflite_micro import runtime
    except ImportError:  # format_summary says what is missing, not that the model failed
        return None
    try:
        interpreter = runtime.Interpreter.from_bytes(model)
    except Exception:  # TFLM refuses some models; the reference still checks every output
        return None
    shape = interpreter.get_input_details(0)["shape"]
    outputs = []
    for x in inputs:
        interpreter.set_input(x.reshape(shape), 0)
        interpreter.invoke()
        outputs.append(interpreter.get_output(0).reshape(-1).copy())
    return np.stack(outputs)


def cmsis_nn_dir(kernels: str) -> Path | None:
    """Users bring CMSIS-NN: the firmware build takes it from $CMSIS_NN_DIR."""
    if kernels != "cmsis-nn":
        return None
    folder = find_cmsis_nn()
    if folder is None:
        raise McugenError("--kernels cmsis-nn needs CMSIS_NN_DIR set to a CMSIS-NN checkout")
    return folder


def run(options: BuildOptions, inputs_path: Path | None, work_dir: Path,
        progress=lambda message: None, *, keep: Path | None = None,
        force: bool = False) -> RunSummary:
    """Build into work_dir/model, the firmware into work_dir/firmware, run and check. With
    keep, the model, its reports with the measured instructions and the firmware image are
    written into that folder at the end, as `mcugen build` writes its folder (force as there)."""
    target = load_target(options.target)
    firmware_target(target)  # refuses a target without a QEMU board before the slow steps
    if keep is not None:
        check_output_folder(keep, force, [*output_names(options.name), *FIRMWARE_FILES])
    model_dir = work_dir / "model"
    options = dataclasses.replace(options, out=model_dir, force=False)
    result = compile_build(options, progress)
    write_output_folder(model_dir, result.files, force=False)
    graph = result.compiled.graph
    inputs = (load_inputs(inputs_path, graph.input.size) if inputs_path is not None
              else default_inputs(graph.input.size, options.seed))
    progress(f"building the firmware for {target.qemu_board}")
    if options.name != "model":  # the firmware calls model_invoke
        (model_dir / "model.h").write_text(template_environment().get_template(
            "firmware_alias.h.j2").render(model=result.compiled.view))
    firmware_dir = work_dir / "firmware"
    elf = build_firmware(model_dir, target, firmware_dir,
                         cmsis_nn_dir=cmsis_nn_dir(options.kernels))
    progress(f"running {len(inputs)} inferences in QEMU ({target.qemu_board})")
    qemu = run_firmware(elf, target, inputs, graph.output.size, timeout=600)
    progress("checking the outputs against the reference")
    reference = np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                          for x in inputs])
    layers = layer_counts(result.compiled.report, qemu.layer_instructions[0])
    summary = RunSummary(result, qemu, inputs, reference, tflm_outputs(result.tflite, inputs),
                         layers)
    if keep is not None:
        progress(f"writing {keep}")
        files = {**result.files, **measured_report(summary).files()}
        for name in FIRMWARE_FILES:
            files[name] = (firmware_dir / Path(name).name).read_bytes()
        write_output_folder(keep, files, force)
        summary = dataclasses.replace(summary, build=dataclasses.replace(result, out_dir=keep))
    return summary


def measured_report(summary: RunSummary) -> Report:
    """The build's report with what the run measured: instructions per layer and in total."""
    report = summary.build.compiled.report
    by_index = {layer.index: layer.instructions for layer in summary.layers}
    layers = [dataclasses.replace(s, instructions=by_index.get(s.index)) for s in report.layers]
    return dataclasses.replace(report, layers=layers, run={
        "qemu_board": load_target(report.target).qemu_board,
        "inferences": len(summary.inputs),
        "instructions": summary.qemu.instructions[0],
        "bit_exact": summary.matches,
        "checked_against": "reference and TFLM" if summary.tflm_outputs is not None
        else "reference"})


def layer_counts(report: Report, instructions: list[int]) -> list[LayerCount]:
    """Per layer, the instructions of its steps (the firmware marks the end of each step)."""
    if len(instructions) != len(report.step_layers):
        raise McugenError(f"the firmware marked {len(instructions)} steps, the model has "
                          f"{len(report.step_layers)}")
    per_layer = [0] * len(report.layers)
    for layer, count in zip(report.step_layers, instructions):  # banded steps interleave
        per_layer[layer] += count
    return [LayerCount(s.index, s.op, s.kernel, s.macs, per_layer[s.index])
            for s in report.layers]


def format_layer_table(summary: RunSummary, bar_width: int = 30) -> str:
    """Per-layer instructions with MACs per instruction and a bar of each layer's share."""
    total = sum(layer.instructions for layer in summary.layers) or 1
    rows = [f"{'#':>3}  {'op':<18} {'kernel':<15} {'MACs':>11} {'instructions':>13} "
            f"{'MACs/instr':>10}  share"]
    for layer in summary.layers:
        share = layer.instructions / total
        bar = "#" * round(share * bar_width)
        rows.append(f"{layer.index:>3}  {layer.op:<18} {layer.kernel:<15} {layer.macs:>11,} "
                    f"{layer.instructions:>13,} {layer.macs_per_instruction:>10.3f}  "
                    f"{bar:<{bar_width}} {share:6.1%}")
    return "\n".join(rows)


def format_summary(summary: RunSummary) -> str:
    report = summary.build.compiled.report
    per_inference = summary.qemu.instructions[0]
    oracle = "the NumPy reference and TFLM" if summary.tflm_outputs is not None \
        else f"the NumPy reference ({TFLM_MISSING})" if not tflm_available() \
        else "the NumPy reference (TFLM could not load this model)"
    verdict = "bit-exact with " + oracle if summary.matches else "MISMATCH against " + oracle
    lines = [
        format_layer_table(summary),
        "",
        f"{len(summary.inputs)} inferences on {load_target(report.target).qemu_board}: "
        f"{verdict}",
        f"instructions per inference: {per_inference:,} "
        f"({report.macs / per_inference:.3f} MACs per instruction, {report.macs:,} MACs)",
    ]
    if len(set(summary.qemu.instructions)) > 1:
        lines.append(f"  (per input: {', '.join(f'{n:,}' for n in summary.qemu.instructions)})")
    return "\n".join(lines)


def run_in_folder(options: BuildOptions, inputs_path: Path | None, out: Path,
                  progress=lambda message: None, force: bool = False
                  ) -> tuple[RunSummary, str]:
    """`mcugen run --out DIR`: the build folder is kept in DIR (the QEMU image in
    DIR/firmware)."""
    with tempfile.TemporaryDirectory(prefix="mcugen-run-") as scratch:
        summary = run(options, inputs_path, Path(scratch), progress, keep=out, force=force)
        return summary, format_summary(summary)


def run_in_temporary_folder(options: BuildOptions, inputs_path: Path | None,
                            progress=lambda message: None) -> tuple[RunSummary, str]:
    with tempfile.TemporaryDirectory(prefix="mcugen-run-") as scratch:
        summary = run(options, inputs_path, Path(scratch), progress)
        return summary, format_summary(summary)
