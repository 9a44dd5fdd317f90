"""`mcugen run`: build a model, run it on the target (in QEMU for a Cortex-M, as a host
program for `--target host`), check every output bit for bit against the NumPy reference and
the oracle (TFLM, or TensorFlow Lite's reference kernels where TFLM cannot load the model;
mcugen/oracle.py), and count the instructions of each layer (QEMU only). With `--image`, the
input is a picture (mcugen/image.py) and the result its top five classes, beside the oracle's.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .build import BuildOptions, BuildResult, compile_build, output_names
from .c_types import float_literal
from .codegen import template_environment
from .cycles import (CycleEstimate, cycles_facts, estimate_cycles, format_estimate,
                     why_not_estimated)
from .errors import McugenError
from .image import (INTEGER_RANGES, InputTensor, Labels, ModelInput, Picture, Ranked,
                    load_labels, load_picture, parse_input_range, pixels_to_input,
                    top_classes)
from .oracle import TFLM, OracleRun, oracle_outputs
from .output import check_output_folder, write_output_folder
from .qemu import RunResult, build_firmware, check_board_fits, firmware_target, run_firmware
from .reference import run_reference
from .resources import find_cmsis_nn
from .report import Report
from .targets import Target, load_target

# The C type of each tensor type a model's input or output may have.
C_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "float32": "float"}
HOST_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror")


@dataclass(frozen=True)
class LayerCount:
    index: int
    op: str
    kernel: str
    macs: int
    instructions: int
    cycles: float | None = None  # estimated (mcugen/cycles.py)

    @property
    def macs_per_instruction(self) -> float:
        return self.macs / self.instructions if self.instructions else 0.0

    @property
    def macs_per_cycle(self) -> float:
        return self.macs / self.cycles if self.cycles else 0.0


@dataclass(frozen=True)
class ImageRequest:
    """`--image FILE [--labels FILE] [--input-range LO,HI]`."""

    path: Path
    labels: Path | None = None
    input_range: tuple[float, float] | None = None


@dataclass(frozen=True)
class ImageResult:
    picture: Picture
    model_input: ModelInput
    labels: Labels
    top: list[Ranked]  # from the target's outputs
    oracle_top: list[Ranked] | None  # from the oracle's, when one ran


@dataclass(frozen=True)
class RunSummary:
    build: BuildResult
    device: RunResult  # the target's outputs (and, in QEMU, its instruction counts)
    inputs: np.ndarray
    reference_outputs: np.ndarray
    oracle: OracleRun
    layers: list[LayerCount]  # from the first inference; empty on the host (not counted)
    where: str  # "<core> in QEMU (<its board>)" or "the host (gcc)"
    image: ImageResult | None = None
    cycles: CycleEstimate | None = None  # QEMU runs on a core with an LLVM model
    no_cycles: str | None = None  # why there is no cycle estimate (QEMU runs)

    @property
    def qemu(self) -> RunResult:  # the name from when every run was in QEMU
        return self.device

    @property
    def tflm_outputs(self) -> np.ndarray | None:
        """The oracle's outputs when the oracle was TFLM."""
        return self.oracle.outputs if self.oracle.name == TFLM else None

    @property
    def matches_reference(self) -> bool:
        return bit_for_bit(self.device.outputs, self.reference_outputs)

    @property
    def matches_oracle(self) -> bool | None:
        if self.oracle.outputs is None:
            return None
        return bit_for_bit(self.device.outputs, self.oracle.outputs)

    @property
    def matches(self) -> bool:
        return self.matches_reference and self.matches_oracle is not False


def bit_for_bit(a: np.ndarray, b: np.ndarray) -> bool:
    """The same values of the same type, float outputs compared as their bytes (a NaN equals
    the same NaN)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint8),
                                                                        b.view(np.uint8))


def input_tensor(graph) -> InputTensor:
    tensor = graph.input
    quantized = tensor.q is not None and tensor.dtype != "float32"
    return InputTensor(tuple(tensor.shape), tensor.dtype,
                       tensor.scale if quantized else None,
                       tensor.zero_point if quantized else None)


def default_inputs(tensor: InputTensor, seed: int,
                   real_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Zeros, the two extremes and two seeded random inputs, of the input's type (for a float
    input: the range its QUANTIZE covers, and a little beyond)."""
    size = int(np.prod(tensor.shape))
    rng = np.random.default_rng(seed)
    if tensor.dtype == "float32":
        low, high = real_range
        margin = (high - low) / 16
        rows = [np.zeros(size), np.full(size, low - margin), np.full(size, high + margin),
                rng.uniform(low - margin, high + margin, size),
                rng.uniform(low - margin, high + margin, size)]
        return np.stack(rows).astype(np.float32)
    low, high = INTEGER_RANGES.get(tensor.dtype, INTEGER_RANGES["int8"])
    rows = [np.full(size, tensor.zero_point or 0), np.full(size, low), np.full(size, high),
            rng.integers(low, high + 1, size), rng.integers(low, high + 1, size)]
    return np.stack(rows).astype(tensor.dtype)


def float_input_range(graph) -> tuple[float, float]:
    """The reals a float input's first QUANTIZE represents without saturating."""
    reader = graph.tensor(graph.ops[graph.consumers(graph.input.name)[0]].output)
    low, high = (0, 255) if reader.dtype == "uint8" else (-128, 127)
    return (reader.scale * (low - reader.zero_point), reader.scale * (high - reader.zero_point))


def load_inputs(path: Path, size: int, dtype: str = "int8") -> np.ndarray:
    """A .npy of inputs of the model's input type: one input, or N of them (any shape with
    N*size elements)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:  # EOFError: an empty file
        raise McugenError(f"cannot read --inputs {path}: {error}") from None
    if array.dtype != np.dtype(dtype):
        raise McugenError(f"--inputs {path} holds {array.dtype}; the model takes {dtype} "
                          "inputs")
    if array.size == 0 or array.size % size:
        raise McugenError(f"--inputs {path} has {array.size} values, not a multiple of the "
                          f"model's input size {size}")
    return array.reshape(-1, size)


# The firmware's files in a kept folder (--out): the QEMU image and its linker map.
FIRMWARE_FILES = ("firmware/firmware.elf", "firmware/firmware.map")


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
        force: bool = False, image: ImageRequest | None = None) -> RunSummary:
    """Build into work_dir/model, the firmware (or the host program) into work_dir, run and
    check. With keep, the model, its reports (with the measured instructions) and the QEMU
    image are written into that folder at the end, as `mcugen build` writes its folder (force
    as there). With image, the one input is that picture (inputs_path unused)."""
    target = load_target(options.target)
    if not target.is_host:
        firmware_target(target)  # refuses a target without a QEMU board before the slow steps
    if image is not None:
        check_image_request(image)
    if keep is not None:
        check_output_folder(keep, force, [*output_names(options.name),
                                          *(() if target.is_host else FIRMWARE_FILES)])
    model_dir = work_dir / "model"
    options = dataclasses.replace(options, out=model_dir, force=False)
    result = compile_build(options, progress)
    write_output_folder(model_dir, result.files, force=False)
    graph = result.compiled.graph
    report = result.compiled.report
    tensor = input_tensor(graph)
    picture = model_input = labels = None
    if image is not None:
        picture = load_picture(image.path, tensor)
        model_input = pixels_to_input(picture.pixels, tensor, image.input_range)
        labels = load_labels(image.labels, graph.output.size)
        inputs = model_input.values.reshape(1, -1)
    elif inputs_path is not None:
        inputs = load_inputs(inputs_path, graph.input.size, tensor.dtype)
    else:
        inputs = default_inputs(tensor, options.seed, float_input_range(graph)
                                if tensor.dtype == "float32" else (-1.0, 1.0))
    if not target.is_host:  # before the slow firmware build: will it link on the board?
        # A part's firmware keeps its inputs in flash; the QEMU boards' read them into RAM.
        built_in = target.qemu.uart
        check_board_fits(target, const_bytes=report.const_bytes + built_in * inputs.nbytes,
                         arena_bytes=report.arena_bytes,
                         io_bytes=report.output_bytes + (not built_in) * report.input_bytes,
                         code_bytes=result.measured.code_bytes if result.measured else 0)
    firmware_dir = work_dir / "firmware"
    if target.is_host:
        device, where = run_on_host(model_dir, options.name, graph, inputs, work_dir / "host",
                                    progress, caller_arena=options.arena == "caller")
        layers: list[LayerCount] = []
        cycles = no_cycles = None
    else:
        if options.name != "model":  # the firmware calls model_invoke
            (model_dir / "model.h").write_text(template_environment().get_template(
                "firmware_alias.h.j2").render(model=result.compiled.view))
        device, where = run_in_qemu(options, target, result, inputs, firmware_dir, progress)
        cycles, no_cycles = _cycle_estimate(device, target, progress)
        layers = layer_counts(report, device.layer_instructions[0],
                              None if cycles is None else cycles.inferences[0].step_cycles)
    progress("checking the outputs against the reference and the oracle")
    reference = np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                          for x in inputs])
    oracle = oracle_outputs(result.tflite, inputs)
    image_result = None
    if image is not None:
        image_result = ImageResult(picture, model_input, labels,
                                   _top(device.outputs[0], labels, graph),
                                   None if oracle.outputs is None
                                   else _top(oracle.outputs[0], labels, graph))
    summary = RunSummary(result, device, inputs, reference, oracle, layers, where, image_result,
                         cycles, no_cycles)
    if keep is not None:
        progress(f"writing {keep}")
        files = dict(result.files)
        if not target.is_host:
            files.update(measured_report(summary).files())
            for name in FIRMWARE_FILES:
                files[name] = (firmware_dir / Path(name).name).read_bytes()
        write_output_folder(keep, files, force)
        summary = dataclasses.replace(summary, build=dataclasses.replace(result, out_dir=keep))
    return summary


def image_request(image: Path | None, labels: Path | None, input_range: str | None,
                  inputs: Path | None = None) -> ImageRequest | None:
    """The --image options of the command line, checked together."""
    if image is None:
        if labels is not None or input_range is not None:
            raise McugenError("--labels and --input-range go with --image FILE")
        return None
    if inputs is not None:
        raise McugenError("give --image or --inputs, not both")
    return ImageRequest(image, labels, parse_input_range(input_range))


def check_image_request(image: ImageRequest) -> None:
    """What can be checked of --image and --labels before the slow steps."""
    if not Path(image.path).is_file():
        raise McugenError(f"--image {image.path}: no such file")
    if image.labels is not None and not Path(image.labels).is_file():
        raise McugenError(f"--labels {image.labels}: no such file")


def _top(output: np.ndarray, labels: Labels, graph) -> list[Ranked]:
    tensor = graph.output
    quantized = tensor.q is not None and tensor.dtype != "float32"
    return top_classes(output, labels, tensor.dtype, tensor.scale if quantized else None,
                       tensor.zero_point if quantized else None)


def run_in_qemu(options: BuildOptions, target: Target, result: BuildResult,
                inputs: np.ndarray, firmware_dir: Path, progress) -> tuple[RunResult, str]:
    progress(f"building the firmware for {target.qemu_board}")
    extra = caller_arena_sources(result.compiled.view, firmware_dir / "arena") \
        if options.arena == "caller" else {}
    if target.qemu.uart:  # a part's firmware runs inputs built into it
        extra["inputs"] = inputs_source(inputs, firmware_dir / "inputs" / "inputs.c")
    elf = build_firmware(result.out_dir, target, firmware_dir,
                         cmsis_nn_dir=cmsis_nn_dir(options.kernels), **extra)
    progress(f"running {len(inputs)} inference{'s' * (len(inputs) > 1)} in QEMU "
             f"({target.qemu_board})")
    graph = result.compiled.graph
    device = run_firmware(elf, target, inputs, graph.output.size, timeout=600,
                          output_dtype=graph.output.dtype,
                          blocks=why_not_estimated(target) is None)
    return device, f"{target.name} in QEMU ({target.qemu_board})"


def inputs_source(inputs: np.ndarray, path: Path) -> Path:
    """inputs [N, size] as the C file examples/parts/main.c runs (in flash)."""
    def literal(value) -> str:
        return float_literal(float(value)) if inputs.dtype == np.float32 else str(int(value))

    rows = [[", ".join(literal(v) for v in row[i:i + 24]) + ","
             for i in range(0, len(row), 24)] for row in inputs]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(template_environment().get_template("firmware_inputs.c.j2").render(
        count=len(inputs), size=inputs.shape[1], rows=rows))
    return path


def caller_arena_sources(view, folder: Path) -> dict:
    """--arena caller: the firmware's model_invoke on arenas of its own (firmware_arena.c),
    declared by a header force-included into every source (main.c includes model.h, which
    is the model's own header when it is named model)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = template_environment()
    for file in ("firmware_arena.c", "firmware_arena.h"):
        (folder / file).write_text(env.get_template(f"{file}.j2").render(model=view))
    return {"extra_sources": [folder / "firmware_arena.c"], "extra_include_dirs": [folder],
            "extra_cflags": ["-include", str(folder / "firmware_arena.h")]}


def _cycle_estimate(device: RunResult, target: Target, progress
                    ) -> tuple[CycleEstimate | None, str | None]:
    """The cycle estimate of a QEMU run, or why there is none."""
    if device.blocks is None:
        return None, why_not_estimated(target)
    progress("estimating cycles with llvm-mca")
    return estimate_cycles(device, target), None


def run_on_host(model_dir: Path, name: str, graph, inputs: np.ndarray, work: Path,
                progress, caller_arena: bool = False) -> tuple[RunResult, str]:
    """`--target host`: the generated C compiled with the host's compiler and the strict flags
    into a small program (templates/run_host.c.j2) that runs every input (with caller_arena,
    on an arena of its own through NAME_invoke_arena)."""
    host = load_target("host")
    if shutil.which(host.compiler) is None:
        raise McugenError(f"{host.compiler} not found; install it (Debian package: gcc)")
    progress(f"compiling the host program with {host.compiler}")
    work.mkdir(parents=True, exist_ok=True)
    main = work / "run_host.c"
    main.write_text(template_environment().get_template("run_host.c.j2").render(
        name=name, input_type=C_TYPES[graph.input.dtype],
        output_type=C_TYPES[graph.output.dtype], caller_arena=caller_arena))
    program = work / "model_run"
    sources = sorted(str(p) for p in Path(model_dir).glob("*.c"))
    command = [host.compiler, *HOST_FLAGS, *host.opt_flags, "-I", str(model_dir), str(main),
               *sources, "-lm", "-o", str(program)]
    compiled = subprocess.run(command, capture_output=True, text=True)
    if compiled.returncode != 0:
        first = next((line for line in compiled.stderr.splitlines() if "error" in line),
                     compiled.stderr.strip()[:300])
        raise McugenError(f"the generated C does not compile on the host: {first}")
    progress(f"running {len(inputs)} inference{'s' * (len(inputs) > 1)} on the host")
    np.ascontiguousarray(inputs).tofile(work / "inputs.bin")
    ran = subprocess.run([str(program), str(work / "inputs.bin"), str(work / "outputs.bin")],
                         capture_output=True, text=True, timeout=600)
    if ran.returncode != 0:
        raise McugenError(f"the host program exited with status {ran.returncode}: "
                          f"{ran.stderr.strip()[-300:] or 'no message'}")
    outputs = np.fromfile(work / "outputs.bin", dtype=graph.output.dtype)
    if outputs.size != len(inputs) * graph.output.size:
        raise McugenError(f"the host program wrote {outputs.size} outputs, expected "
                          f"{len(inputs)} x {graph.output.size}")
    device = RunResult(outputs.reshape(len(inputs), -1), [], [], [], ran.stdout + ran.stderr)
    return device, f"the host ({host.compiler})"


def measured_report(summary: RunSummary) -> Report:
    """The build's report with what the run measured: instructions per layer and in total."""
    report = summary.build.compiled.report
    by_index = {layer.index: layer for layer in summary.layers}
    layers = [dataclasses.replace(s, instructions=by_index[s.index].instructions,
                                  cycles=by_index[s.index].cycles)
              if s.index in by_index else s for s in report.layers]
    target = load_target(report.target)
    return dataclasses.replace(report, layers=layers, run={
        "qemu_board": target.qemu_board,
        "inferences": len(summary.inputs),
        "instructions": summary.device.instructions[0],
        "bit_exact": summary.matches,
        "checked_against": "reference" if summary.oracle.name is None
        else f"reference and {summary.oracle.name}",
        **cycles_facts(summary.cycles, summary.no_cycles, target)})


def layer_counts(report: Report, instructions: list[int],
                 cycles: list[float] | None = None) -> list[LayerCount]:
    """Per layer, the instructions (and estimated cycles) of its steps (the firmware marks the
    end of each step)."""
    if len(instructions) != len(report.step_layers):
        raise McugenError(f"the firmware marked {len(instructions)} steps, the model has "
                          f"{len(report.step_layers)}")
    per_layer = _per_layer(report, instructions)
    per_layer_cycles = None if cycles is None else _per_layer(report, cycles)
    return [LayerCount(s.index, s.op, s.kernel, s.macs, per_layer[s.index],
                       None if per_layer_cycles is None else per_layer_cycles[s.index])
            for s in report.layers]


def _per_layer(report: Report, per_step: list) -> list:
    per_layer = [0] * len(report.layers)
    for layer, count in zip(report.step_layers, per_step):  # banded steps interleave
        per_layer[layer] += count
    return per_layer


def format_layer_table(summary: RunSummary, bar_width: int = 30) -> str:
    """Per-layer instructions with MACs per instruction (and the estimated cycles with MACs per
    cycle, when there is an estimate) and a bar of each layer's share of the instructions."""
    total = sum(layer.instructions for layer in summary.layers) or 1
    cycles = summary.cycles is not None
    rows = [f"{'#':>3}  {'op':<18} {'kernel':<15} {'MACs':>11} {'instructions':>13} "
            f"{'MACs/instr':>10}  " + (f"{'est. cycles':>13} {'MACs/cycle':>10}  " * cycles)
            + "share"]
    for layer in summary.layers:
        share = layer.instructions / total
        bar = "#" * round(share * bar_width)
        estimate = (f"{layer.cycles:>13,.0f} {layer.macs_per_cycle:>10.3f}  " if cycles
                    else "")
        rows.append(f"{layer.index:>3}  {layer.op:<18} {layer.kernel:<15} {layer.macs:>11,} "
                    f"{layer.instructions:>13,} {layer.macs_per_instruction:>10.3f}  "
                    f"{estimate}{bar:<{bar_width}} {share:6.1%}")
    return "\n".join(rows)


def verdict(summary: RunSummary) -> str:
    """One line: does the target's output equal the reference's and the oracle's, bit for bit?"""
    count = summary.device.outputs.size
    what = f"{count:,} output value{'s' * (count > 1)}"
    oracle = summary.oracle
    if not summary.matches_reference:
        differ = int(np.count_nonzero(summary.device.outputs != summary.reference_outputs))
        return (f"verdict: MISMATCH: {differ:,} of the {what} differ from the NumPy reference's"
                + ("" if oracle.name is None else
                   f" ({'equal' if summary.matches_oracle else 'unequal'} to {oracle.name}'s)"))
    if oracle.name is None:
        return (f"verdict: bit-exact with the NumPy reference ({what}); not checked against an "
                f"interpreter: {oracle.description}")
    if not summary.matches_oracle:
        differ = int(np.count_nonzero(summary.device.outputs != oracle.outputs))
        return (f"verdict: MISMATCH: {differ:,} of the {what} differ from "
                f"{oracle.description}")
    return (f"verdict: bit-exact: the {what} equal those of the NumPy reference and of "
            f"{oracle.description}")


def format_top(summary: RunSummary) -> str:
    """The picture, how it became the input, and the top five beside the oracle's."""
    image = summary.image
    picture, tensor = image.picture, input_tensor(summary.build.compiled.graph)
    width, height = picture.original_size
    lines = [f"image: {picture.path} ({width}x{height}) -> {tensor.height}x{tensor.width} "
             f"{'grayscale' if tensor.channels == 1 else 'RGB'} (Pillow, bilinear); "
             f"{image.model_input.description}"]
    if image.labels.note:
        lines.append(f"labels: {image.labels.note}")
    oracle_name = summary.oracle.name or "no oracle"
    label_width = max(12, *(len(r.label) for r in image.top),
                      *(len(r.label) for r in image.oracle_top or ()))
    lines.append(f"top {len(image.top)}: left mcugen on {summary.where}, right {oracle_name} "
                 f"(scores dequantized)")
    lines.append(f"{'rank':>4} {'class':>6} {'label':<{label_width}} {'score':>10}   | "
                 f"{'class':>6} {'label':<{label_width}} {'score':>10}")
    for rank, mine in enumerate(image.top, 1):
        theirs = image.oracle_top[rank - 1] if image.oracle_top else None
        right = "-" if theirs is None else \
            f"{theirs.index:>6} {theirs.label:<{label_width}} {theirs.score:>10.5f}"
        lines.append(f"{rank:>4} {mine.index:>6} {mine.label:<{label_width}} "
                     f"{mine.score:>10.5f}   | {right}")
    return "\n".join(lines)


def format_summary(summary: RunSummary) -> str:
    report = summary.build.compiled.report
    count = len(summary.inputs)
    lines = [] if summary.image is not None or not summary.layers else \
        [format_layer_table(summary), ""]
    if summary.image is not None:
        lines += [format_top(summary), ""]
    lines.append(f"{count} inference{'s' * (count > 1)} on {summary.where}, checked against "
                 f"the NumPy reference and {summary.oracle.description}")
    lines.append(verdict(summary))
    if summary.device.instructions:
        per_inference = summary.device.instructions[0]
        lines.append(f"instructions per inference: {per_inference:,} "
                     f"({report.macs / per_inference:.3f} MACs per instruction, "
                     f"{report.macs:,} MACs)")
        if len(set(summary.device.instructions)) > 1:
            lines.append("  (per input: "
                         f"{', '.join(f'{n:,}' for n in summary.device.instructions)})")
    if summary.cycles is not None:
        lines.append(format_estimate(summary.cycles, report.macs, load_target(report.target)))
    elif summary.no_cycles:
        lines.append(f"cycles: not estimated: {summary.no_cycles}")
    return "\n".join(lines)


def run_in_folder(options: BuildOptions, inputs_path: Path | None, out: Path,
                  progress=lambda message: None, force: bool = False,
                  image: ImageRequest | None = None) -> tuple[RunSummary, str]:
    """`mcugen run --out DIR`: the build folder is kept in DIR (the QEMU image in
    DIR/firmware)."""
    with tempfile.TemporaryDirectory(prefix="mcugen-run-") as scratch:
        summary = run(options, inputs_path, Path(scratch), progress, keep=out, force=force,
                      image=image)
        return summary, format_summary(summary)


def run_in_temporary_folder(options: BuildOptions, inputs_path: Path | None,
                            progress=lambda message: None,
                            image: ImageRequest | None = None) -> tuple[RunSummary, str]:
    with tempfile.TemporaryDirectory(prefix="mcugen-run-") as scratch:
        summary = run(options, inputs_path, Path(scratch), progress, image=image)
        return summary, format_summary(summary)
