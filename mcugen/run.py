"""`mcugen run`: build a model for a Cortex-M target, run it in QEMU, check every output bit
for bit against the NumPy reference (and TFLM where it loads the model), and count the
instructions of each layer."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .build import BuildOptions, BuildResult, build
from .errors import McugenError
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
        """Bit for bit (float outputs as their bytes)."""
        def same(a: np.ndarray, b: np.ndarray) -> bool:
            return a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))

        exact = same(self.qemu.outputs, self.reference_outputs)
        if self.tflm_outputs is not None:
            exact = exact and same(self.qemu.outputs, self.tflm_outputs)
        return exact


def default_inputs(size: int, seed: int, dtype: str = "int8",
                   real_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Zeros, the two extremes and two seeded random inputs of the model's input type (for a
    float input: the range its QUANTIZE covers, and a little beyond)."""
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        low, high = real_range
        margin = (high - low) / 16
        rows = [np.zeros(size), np.full(size, low - margin), np.full(size, high + margin),
                rng.uniform(low - margin, high + margin, size),
                rng.uniform(low - margin, high + margin, size)]
        return np.stack(rows).astype(np.float32)
    low, high = (0, 255) if dtype == "uint8" else (-128, 127)
    rows = [np.zeros(size), np.full(size, low), np.full(size, high),
            rng.integers(low, high + 1, size), rng.integers(low, high + 1, size)]
    return np.stack(rows).astype(dtype)


def float_input_range(graph) -> tuple[float, float]:
    """The reals a float input's first QUANTIZE represents without saturating."""
    reader = graph.tensor(graph.ops[graph.consumers(graph.input.name)[0]].output)
    low, high = (0, 255) if reader.dtype == "uint8" else (-128, 127)
    return (reader.scale * (low - reader.zero_point), reader.scale * (high - reader.zero_point))


def model_inputs(graph, seed: int) -> np.ndarray:
    dtype = graph.input.dtype
    if dtype == "float32":
        return default_inputs(graph.input.size, seed, dtype, float_input_range(graph))
    return default_inputs(graph.input.size, seed, dtype)


def load_inputs(path: Path, size: int, dtype: str = "int8") -> np.ndarray:
    """A .npy of inputs of the model's input type: one input, or N of them (any shape with
    N*size elements)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise McugenError(f"cannot read --inputs {path}: {error}") from None
    if array.dtype != np.dtype(dtype):
        raise McugenError(f"--inputs {path} holds {array.dtype}; the model takes {dtype} "
                          "inputs")
    if array.size == 0 or array.size % size:
        raise McugenError(f"--inputs {path} has {array.size} values, not a multiple of the "
                          f"model's input size {size}")
    return array.reshape(-1, size)


def tflm_outputs(model: bytes, inputs: np.ndarray) -> np.ndarray | None:
    try:
        from tflite_micro import runtime
    except ImportError:
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
    keep, the model goes into that folder instead (an output folder as `mcugen build` writes,
    force as there), the firmware into keep/firmware, and its reports get the measured
    instructions."""
    target = load_target(options.target)
    firmware_target(target)  # refuses a target without a QEMU board before the slow steps
    # The firmware calls model_invoke: the run builds under that name.
    model_dir = keep if keep is not None else work_dir / "model"
    options = dataclasses.replace(options, name="model", out=model_dir,
                                  force=force if keep is not None else False)
    result = build(options, progress)
    graph = result.compiled.graph
    inputs = (load_inputs(inputs_path, graph.input.size, graph.input.dtype)
              if inputs_path is not None else model_inputs(graph, options.seed))
    progress(f"building the firmware for {target.qemu_board}")
    firmware_dir = model_dir / "firmware" if keep is not None else work_dir / "firmware"
    elf = build_firmware(result.out_dir, target, firmware_dir,
                         cmsis_nn_dir=cmsis_nn_dir(options.kernels))
    progress(f"running {len(inputs)} inferences in QEMU ({target.qemu_board})")
    qemu = run_firmware(elf, target, inputs, graph.output.size, timeout=600,
                        output_dtype=graph.output.dtype)
    progress("checking the outputs against the reference")
    reference = np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                          for x in inputs])
    layers = layer_counts(result.compiled.report, qemu.layer_instructions[0])
    summary = RunSummary(result, qemu, inputs, reference, tflm_outputs(result.tflite, inputs),
                         layers)
    if keep is not None:
        progress(f"writing the measured instructions into {keep}'s reports")
        write_measured_reports(summary, keep)
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


def write_measured_reports(summary: RunSummary, folder: Path) -> None:
    try:
        for name, text in measured_report(summary).files().items():
            (folder / name).write_text(text)
    except OSError as error:
        raise McugenError(f"cannot write the reports into {folder}: {error.strerror}") from None


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
    """`mcugen run --out DIR`: the build folder is kept in DIR (the firmware in DIR/firmware)."""
    with tempfile.TemporaryDirectory(prefix="mcugen-run-") as scratch:
        summary = run(options, inputs_path, Path(scratch), progress, keep=out, force=force)
        return summary, format_summary(summary)


def run_in_temporary_folder(options: BuildOptions, inputs_path: Path | None,
                            progress=lambda message: None) -> tuple[RunSummary, str]:
    with tempfile.TemporaryDirectory(prefix="mcugen-run-") as scratch:
        summary = run(options, inputs_path, Path(scratch), progress)
        return summary, format_summary(summary)
