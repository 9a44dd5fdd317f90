"""mcugen compiles an int8-quantized MobileNet (a .tflite file, or one it builds and converts
with TensorFlow) into a folder of static C99 for a microcontroller: no interpreter, no heap,
every byte of flash and RAM known before you flash, results bit-exact with TensorFlow Lite
Micro. `mcugen run` also runs the C in QEMU on the target's core and checks every output.

Start with `mcugen build --help`.
"""

# The command line: parse arguments, run a stage, turn every failure into one line. Only the
# standard library is imported up here, so that a Ctrl-C while mcugen starts is answered by
# main() like any other (the stages, NumPy and TensorFlow load inside it).

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import McugenError

if TYPE_CHECKING:
    from .build import BuildOptions, BuildResult
    from .targets import Target

TICK_SECONDS = 1.0  # how often a step's elapsed time is redrawn on a terminal


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise McugenError(f"{message} (see mcugen {self.prog.split()[-1]} --help)"
                          if " " in self.prog else f"{message} (see mcugen --help)")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (as ArgumentDefaultsHelpFormatter, but not for
    flags and options without one); descriptions and examples as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.option_strings and "%(default)" not in text and "default" not in text \
                and action.default is not None and action.default is not False \
                and action.default != argparse.SUPPRESS:
            text += " (default: %(default)s)"
        return text


class Progress:
    """One line per step on stderr, "mcugen: STEP...", completed with the seconds the step took
    when the next one starts or the command ends. On a terminal the line counts the seconds
    while the step runs (converting or compiling a large model takes a minute); elsewhere (a
    log, a pipe) it is written once. With verbose, other programs' log lines may come in
    between, so each step line ends at once and its time follows on a line of its own.
    """

    def __init__(self, stream=None, verbose: bool = False, tick: float = TICK_SECONDS,
                 interruptions: Interruptions | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interruptions = interruptions
        self.verbose = verbose
        self.tick = tick
        self.step: str | None = None
        self.started = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __call__(self, message: str) -> None:
        if self.interruptions is not None:  # one that Python dropped: stop before this step
            self.interruptions.raise_pending()
        self.finish()
        self.step, self.started = message, time.monotonic()
        self._write(f"mcugen: {message}..." + ("\n" if self.verbose else ""))
        # A line wider than the terminal wraps, and a carriage return cannot redraw it.
        fits = len(f"mcugen: {message}... 9999 s") < shutil.get_terminal_size().columns
        if not self.verbose and self._is_terminal() and fits:
            self._stop = threading.Event()
            self._ticker = threading.Thread(target=self._count, args=(message, self._stop),
                                            daemon=True, name="mcugen-progress")
            self._ticker.start()

    def finish(self) -> None:
        """The current step is done: show how long it took."""
        if self.step is None:
            return
        ticked = self._stop_ticker()
        seconds = f"{time.monotonic() - self.started:.1f} s"
        if self.verbose:
            self._write(f"mcugen: ({self.step}: {seconds})\n")
        elif ticked:  # the ticker has redrawn the line: redraw it whole, then the time
            self._write(f"\r\x1b[Kmcugen: {self.step}... {seconds}\n")
        else:
            self._write(f" {seconds}\n")
        self.step = None

    def abandon(self) -> None:
        """The current step failed: end its line, so that the error gets a line of its own."""
        self._stop_ticker()
        if self.step is not None and not self.verbose:
            self._write("\n")
        self.step = None

    def _count(self, message: str, stop: threading.Event) -> None:
        while not stop.wait(self.tick):
            elapsed = time.monotonic() - self.started
            with self._lock:
                if not stop.is_set():
                    self._raw_write(f"\r\x1b[Kmcugen: {message}... {elapsed:.0f} s")

    def _stop_ticker(self) -> bool:
        """Stop the ticker; whether there was one."""
        if self._ticker is None:
            return False
        self._stop.set()
        self._ticker.join()
        self._ticker = None
        return True

    def _is_terminal(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def _write(self, text: str) -> None:
        with self._lock:
            self._raw_write(text)

    def _raw_write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def parse_resolution(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise McugenError(f"--res {text!r}: give R or HxW, e.g. 96 or 128x96") from None
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise McugenError(f"--res {text!r}: give R or HxW, e.g. 96 or 128x96")


def _vector_count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise McugenError(f"--selftest {text!r}: give the number of input vectors, e.g. "
                          f"--selftest 3") from None


def parse_bytes(text: str | None) -> int | None:
    """A size in bytes: 20000, 20K (x1024) or 1.5M (x1024x1024)."""
    if text is None:
        return None
    scale = {"K": 1024, "M": 1024 * 1024}.get(text[-1:].upper(), 1)
    number = text[:-1] if scale > 1 else text
    try:
        value = float(number) * scale
    except ValueError:
        raise McugenError(f"--max-ram {text!r}: give bytes, e.g. 20000, 20K or 1.5M") from None
    if not math.isfinite(value) or value < 1:
        raise McugenError(f"--max-ram {text!r}: give a positive size, e.g. 20K")
    return int(value)


def add_model_arguments(parser: argparse.ArgumentParser, default_target: str) -> None:
    from .build import ARCHES, IO_TYPES

    source = parser.add_argument_group("model (an int8 .tflite, or a MobileNet built from these)")
    source.add_argument("--model", type=Path, help="int8 .tflite file to compile")
    source.add_argument("--arch", default="v1", help=f"one of {', '.join(ARCHES)}")
    source.add_argument("--alpha", type=float, default=0.25, help="width multiplier, 0 < A <= 1.5")
    source.add_argument("--res", default="96", help="input resolution: R or HxW")
    source.add_argument("--channels", type=int, default=3, help="1 or 3")
    source.add_argument("--classes", type=int, default=2, help="output classes")
    source.add_argument("--seed", type=int, default=0, help="seed for weights and calibration")
    source.add_argument("--calibration", type=Path,
                        help="folder of images or .npy array [N,H,W,C] in [-1, 1]")
    source.add_argument("--weights", type=Path, help="trained Keras weights to load")
    source.add_argument("--io", choices=IO_TYPES, default="int8",
                        help="the built MobileNet's input and output type: int8, uint8, or "
                             "float (QUANTIZE first, DEQUANTIZE last)")
    parser.add_argument("--target", default=default_target,
                        help="a core or a part, see `mcugen targets`")
    parser.add_argument("--max-ram", metavar="BYTES",
                        help="the arena may not exceed this (suffixes K, M): the first layers "
                             "then run in row bands when layer by layer needs more")
    parser.add_argument("--ram-regions", action="store_true",
                        help="split the arena over the part's RAM regions, small buffers "
                             "first in the fastest; one array and section per region")
    parser.add_argument("--arena", choices=("static", "caller"), default="static",
                        help="static: NAME_invoke on an arena array in NAME.c; caller: "
                             "NAME_invoke_arena(arena, input, output) on yours (NAME_ARENA_SIZE "
                             "bytes, NAME_ARENA_ALIGN-aligned; one pointer per region with "
                             "--ram-regions), no static state: reentrant")
    parser.add_argument("--weights-section", metavar="NAME",
                        help="put the constant tables in this linker section (e.g. .extflash)")
    parser.add_argument("--name", help="C prefix and file names (default: the --model file's "
                                       "name as a C identifier, e.g. person_detect, or the "
                                       "MobileNet's options, e.g. mobilenet_v1_a025_96)")
    parser.add_argument("--no-memory-check", action="store_true",
                        help="allow a model bigger than the target's flash or RAM (the summary "
                             "then says by how much it does not fit)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show TensorFlow's own log lines")


def build_options(args: argparse.Namespace) -> BuildOptions:
    from .build import BuildOptions, default_name

    height, width = parse_resolution(args.res)
    name = args.name if args.name is not None else default_name(
        args.model, args.arch, args.alpha, height, width, args.channels)
    return BuildOptions(
        model=args.model, arch=args.arch, alpha=args.alpha, height=height, width=width,
        channels=args.channels, classes=args.classes, seed=args.seed,
        calibration=args.calibration, weights=args.weights, target=args.target,
        name=name, out=args.out, force=args.force,
        memory_check=not args.no_memory_check, kernels=args.kernels, verbose=args.verbose,
        max_ram=parse_bytes(args.max_ram), weights_section=args.weights_section,
        ram_regions=args.ram_regions, io=args.io, arena=args.arena,
        selftest=getattr(args, "selftest", None), profile=getattr(args, "profile", False))


def command_build(args: argparse.Namespace) -> int:
    from .build import build

    result = build(build_options(args), args.progress)
    args.progress.finish()
    print_build_summary(result, result.out_dir)
    return 0


def print_build_summary(result: BuildResult, out_dir: Path | None) -> None:
    """The model's size against the target's, as `build` and `run` print it; a figure over
    the target's memory (built anyway with --no-memory-check) says so here and on stderr."""
    from .targets import load_target

    report, sizes = result.compiled.report, result.measured
    target = load_target(report.target)
    overflows: list[str] = []

    def fit(what: str, needed: int, available: int, where: str) -> str:
        clause = over_limit(needed, available, where) if not target.is_host else ""
        if clause:
            overflows.append(f"{what} {needed:,} B{clause}")
        return clause

    whose = f"{target.name}'s"
    region = f"{whose} {target.largest_ram}" if target.kind == "part" else whose
    arena_check = "" if report.regions else \
        fit("RAM", report.arena_bytes, target.ram_bytes, region)  # --ram-regions: checked each
    print(f"{report.model}: {len(report.layers)} layers, {report.macs:,} MACs, "
          f"flash {report.const_bytes:,} B (weights)"
          f"{fit('flash', report.const_bytes, target.flash_bytes, whose)}, "
          f"RAM {report.arena_bytes:,} B (arena){arena_check}"
          + (f" -> {out_dir}" if out_dir is not None else ""))
    if report.folded:
        print(report.folded_line)
    if report.schedule is not None:
        print(schedule_summary(report.schedule))
    if report.regions:
        print("arena by RAM region: " + ", ".join(
            f"{r['name']} {r['arena_bytes']:,} of {r['region_bytes']:,} B" for r in report.regions))
    if sizes is not None:  # the stack may live in another region: all of the part's RAM
        all_ram = sum(r.bytes for r in target.ram_regions) or target.ram_bytes
        print(f"measured with {sizes.compiler}: flash {sizes.flash_bytes:,} B "
              f"(code {sizes.code_bytes:,} + weights {sizes.weight_bytes:,})"
              f"{fit('flash (measured)', sizes.flash_bytes, target.flash_bytes, whose)}, "
              f"RAM {sizes.ram_bytes:,} B (arena {sizes.arena_bytes:,} + other static "
              f"{sizes.other_ram_bytes:,} + stack {sizes.stack_bytes:,})"
              f"{fit('RAM (measured)', sizes.ram_bytes, all_ram, whose)}")
    if report.selftest is not None:
        from .selftest import selftest_summary

        print(selftest_summary(report.selftest))
    sys.stdout.flush()
    for overflow in overflows:
        print(f"mcugen: warning: {overflow}", file=sys.stderr)


def over_limit(needed: int, available: int, where: str) -> str:
    """ " — 323 % of stm32h743zi's 1,048,576 B: does not fit", or "" when it fits."""
    if needed <= available:
        return ""
    return f" — {100 * needed / available:.0f} % of {where} {available:,} B: does not fit"


def schedule_summary(schedule: dict) -> str:
    """One line on a row-band schedule: what runs in bands, and what it saves and costs."""
    return (f"schedule: {schedule['description']} ({schedule['reason']}): arena {schedule['layer_by_layer_arena']:,} B layer by "
            f"layer -> {schedule['arena']:,} B, extra MACs {schedule['extra_macs']:,}, "
            f"{schedule['steps']} steps, "
            f"{schedule['moved_bytes']:,} B of rows moved")


def command_run(args: argparse.Namespace) -> int:
    from .run import image_request, run_in_folder, run_in_temporary_folder
    from .targets import load_target

    options = build_options(args)
    image = image_request(args.image, args.labels, args.input_range, args.inputs)
    if args.out is None:
        summary, text = run_in_temporary_folder(options, args.inputs, args.progress,
                                                image=image)
    else:
        summary, text = run_in_folder(options, args.inputs, args.out, args.progress,
                                      force=args.force, image=image)
    args.progress.finish()
    print_build_summary(summary.build, args.out)
    print(text)
    if args.out is not None and not summary.device.instructions:  # the host: nothing counted
        print(f"kept {args.out}: the model's C and report.md/json/html")
    elif args.out is not None:
        target = load_target(options.target)
        elf = args.out / "firmware" / "firmware.elf"
        if target.qemu.uart:  # examples/parts: the part's own firmware
            print(f"kept {args.out}: the model's C, report.md/json/html with the measured "
                  f"instructions, and {elf}: the {target.name} firmware of examples/parts "
                  f"(its inputs built in, outputs over the UART; built for QEMU's "
                  f"{target.qemu_board}: without QEMU=1 it runs on the part)")
            return 0 if summary.matches else 1
        not_for = f", not a firmware for the {target.name}" if target.kind == "part" else ""
        print(f"kept {args.out}: the model's C, report.md/json/html with the measured "
              f"instructions, and {elf}: a test image for "
              f"QEMU's {target.qemu_board} board ({target.core} code, inputs and outputs by "
              f"semihosting){not_for}; your own firmware compiles the C files")
    return 0 if summary.matches else 1


def command_report(args: argparse.Namespace) -> int:
    from .profile import report_with_profile

    text = report_with_profile(args.folder, args.profile_log, args.force)
    print(text)
    return 0


def command_inspect(args: argparse.Namespace) -> int:
    from .compile import compile_graph
    from .frontend.tflite import load_tflite, read_model_file
    from .targets import load_target

    graph = load_tflite(read_model_file(args.model), "model")
    compiled = compile_graph(graph, name="model", target=load_target("host"),
                             source=args.model.name, memory_check=False)
    report = compiled.report
    print(f"{args.model}: {len(graph.ops) + len(graph.folded)} ops in the file, "
          f"{len(report.layers)} layers after "
          f"folding")
    print(f"{'#':>3}  {'op':<18} {'input':<14} {'output':<14} {'MACs':>11} {'weights':>8}")
    for layer in report.layers:
        print(f"{layer.index:>3}  {layer.op:<18} {'x'.join(map(str, layer.input_shape)):<14} "
              f"{'x'.join(map(str, layer.output_shape)):<14} {layer.macs:>11,} "
              f"{layer.weight_bytes:>8,}")
    print(f"total: {report.macs:,} MACs, {report.weight_bytes:,} B of weights, "
          f"arena {report.arena_bytes:,} B")
    if report.dead_channel_text:
        print(f"dead channels: {report.dead_channel_text}")
    if report.folded:
        print(report.folded_line)
    return 0


def command_targets(args: argparse.Namespace) -> int:
    from .targets import load_target, make_variables, target_names

    if args.make is not None:
        target = load_target(args.make)
        variables = make_variables(target)  # refuses a target without a QEMU board first
        print(f"# {target.name}, from targets/{target.name}.toml (part of core {target.core})"
              if target.kind == "part" else f"# {target.name}, from targets/{target.name}.toml")
        folder = "examples/parts" if target.qemu is not None and target.qemu.uart \
            else "examples/qemu"
        print(f"# use: make -C {folder} MODEL_DIR=... BUILD=... TARGET_MK=this-file")
        for variable, value in variables.items():
            print(f"{variable} := {value}")
        return 0
    print(format_targets([load_target(name) for name in target_names()]))
    return 0


def format_targets(targets: list[Target]) -> str:
    """The targets grouped by core: the core's line, then the core's own row and its parts."""
    from .targets import core_order

    cores = {t.name: t for t in targets if t.kind != "part"}
    order = sorted(cores, key=lambda name: (cores[name].is_host, core_order(name)))
    lines = [f"  {'target':<14} {'clock':>8} {'flash':>9} {'RAM':>9}  description"]
    for name in order:
        core = cores[name]
        if core.is_host:
            lines.append(f"host: {core.description}")
            continue
        features = ", ".join(sorted(core.features)) or "none"
        qemu = core.qemu.machine + (" with unaligned accesses trapping"
                                    if core.qemu.trap_unaligned else "") if core.qemu else "none"
        lines.append(f"{name}: {core.arch}, features {features}, QEMU {qemu}")
        for target in [core, *sorted((t for t in targets if t.core == name and t.kind == "part"),
                                     key=lambda t: t.name)]:
            clock = f"{target.clock_hz // 1_000_000} MHz" if target.clock_hz else "-"
            own = f" (QEMU {target.qemu.machine}, examples/parts)" \
                if target.qemu is not None and target.qemu.uart else ""
            lines.append(f"  {target.name:<14} {clock:>8} {_kib(target.flash_bytes):>9} "
                         f"{_kib(target.ram_bytes):>9}  {target.description}{own}")
    lines.append("RAM: a part's largest contiguous region (one arena must fit in it); a core's "
                 "figures are a typical part's.")
    return "\n".join(lines)


def _kib(size: int) -> str:
    return f"{size / 1024:,.0f} KB" if size < 1 << 30 else "-"


def one_line(message: str) -> str:
    """An error message as one line: a name from a model file or a path may hold a newline or
    another control character, which is written as an escape."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


BUILD_EXAMPLES = """examples:
  mcugen build --model person_detect.tflite --target cortex-m4
      compile a .tflite for a Cortex-M4, into build/person_detect
  mcugen build --alpha 0.5 --res 128x96 --channels 1 --target stm32h743zi --out fw/net
      build and convert a MobileNet V1 (TensorFlow), compile it for an STM32H743, into fw/net
"""

RUN_EXAMPLES = """examples:
  mcugen run --model person_detect.tflite --target cortex-m4
      compile, run in QEMU on a Cortex-M4 board, check the outputs, count the instructions
  mcugen run --arch v2 --alpha 0.35 --res 96 --target cortex-m55 --out build/v2
      the same for a MobileNet V2 on Cortex-M55, keeping the C, the reports and the image
"""

REPORT_EXAMPLES = """examples:
  mcugen report build/person_detect --profile-log uart.txt
      the cycles per layer a --profile build's firmware printed, into its reports
  mcugen report build/pd --profile-log qemu.log --force
      the same into a `mcugen run --out build/pd` folder (beside QEMU's instructions and the
      estimate), overwriting report files you edited
"""

INSPECT_EXAMPLES = """examples:
  mcugen inspect person_detect.tflite
  mcugen inspect build/person_detect/person_detect.tflite   (the model a build compiled)
"""

TARGETS_EXAMPLES = """examples:
  mcugen targets
  mcugen targets --make cortex-m3 > m3.mk   (then: make -C examples/qemu TARGET_MK=m3.mk ...)
"""

MAIN_EXAMPLES = """commands' help: mcugen build --help, mcugen run --help, ...

examples:
  mcugen build --model person_detect.tflite --target cortex-m4
  mcugen run --alpha 0.25 --res 96 --target cortex-m7
"""


def make_parser() -> argparse.ArgumentParser:
    from .kernels import KERNEL_SETS

    def command(name: str, summary: str, examples: str) -> argparse.ArgumentParser:
        description = textwrap.fill(summary[0].upper() + summary[1:] + ".", width=79)
        return commands.add_parser(name, help=summary, description=description,
                                   epilog=examples, formatter_class=_HelpFormatter)

    parser = _Parser(prog="mcugen", description=__doc__, epilog=MAIN_EXAMPLES,
                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"mcugen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                     metavar="{build,run,report,inspect,targets}")

    build_parser = command("build", "compile a model into a folder of C99", BUILD_EXAMPLES)
    add_model_arguments(build_parser, default_target="host")
    build_parser.add_argument("--out", type=Path, help="output folder (default: build/NAME)")
    build_parser.add_argument("--force", action="store_true", help=FORCE_HELP)
    build_parser.add_argument("--kernels", choices=KERNEL_SETS, default="mcugen",
                              help="mcugen's own C kernels, or cmsis-nn: Arm's CMSIS-NN where "
                                   "it has the layer (build with CMSIS_NN_DIR)")
    build_parser.add_argument("--selftest", type=_vector_count, nargs="?", const=1,
                              metavar="N",
                              help="also write NAME_selftest.c: N input vectors (1 without a "
                                   "number; edge cases first) and the oracle's checksum of "
                                   "every layer's output; NAME_selftest() returns 0, or the "
                                   "index + 1 of the first layer that differs on the board")
    build_parser.add_argument("--profile", action="store_true",
                              help="NAME_invoke records each layer's cycles (DWT CYCCNT; "
                                   "SysTick on ARMv6-M) in NAME_layer_cycles; read what the "
                                   "board prints with `mcugen report DIR --profile-log FILE`")
    build_parser.set_defaults(run=command_build)

    run_parser = command("run", "build for a Cortex-M core or part, run in QEMU on the core's "
                         "board (--target host: a program on this machine), check every "
                         "output against the reference and the oracle (TFLM, or TensorFlow "
                         "Lite's reference kernels), count instructions", RUN_EXAMPLES)
    add_model_arguments(run_parser, default_target="cortex-m7")
    run_parser.add_argument("--inputs", type=Path,
                            help=".npy of inputs of the model's input type (default: zeros, "
                                 "extremes, random)")
    run_parser.add_argument("--kernels", choices=KERNEL_SETS, default="mcugen",
                            help="mcugen's or cmsis-nn (needs CMSIS_NN_DIR)")
    run_parser.add_argument("--out", type=Path,
                            help="keep the build folder here, with the measured instructions "
                                 "in its reports and the QEMU image (default: a temporary "
                                 "folder)")
    run_parser.add_argument("--force", action="store_true", help=FORCE_HELP)
    # --image, --labels, --input-range (mcugen/run.py, mcugen/image.py)
    run_parser.add_argument("--image", type=Path, metavar="FILE",
                            help="classify this picture (BMP, PNG, JPEG): resized to the "
                                 "model's HxW with Pillow's bilinear filter (grayscale for "
                                 "1 channel); uint8 inputs get the pixels p, int8 inputs "
                                 "p - 128, float inputs p / 127.5 - 1; prints the top 5 "
                                 "beside the oracle's")
    run_parser.add_argument("--labels", type=Path, metavar="FILE",
                            help="with --image: class names, one a line (a first "
                                 "'background' line more or less than the classes is "
                                 "matched up and said so)")
    run_parser.add_argument("--input-range", metavar="LO,HI",
                            help="with --image: map pixels 0..255 linearly onto the real "
                                 "values LO..HI, quantized with the input's scale and zero "
                                 "point, instead of the default above (a negative LO "
                                 "needs the = form: --input-range=-1,1)")
    run_parser.set_defaults(run=command_run)

    report_parser = command("report", "rewrite a build folder's report.json, report.md and "
                            "report.html with what the board printed (--profile-log)",
                            REPORT_EXAMPLES)
    report_parser.add_argument("folder", type=Path, help="the build's output folder")
    report_parser.add_argument("--profile-log", type=Path, metavar="FILE", required=True,
                               help="what the firmware of a --profile build printed: its "
                                    "'mcugen-profile' lines (examples/qemu/main.c)")
    report_parser.add_argument("--force", action="store_true",
                               help="overwrite report files you edited")
    report_parser.set_defaults(run=command_report)

    inspect_parser = command("inspect", "print a .tflite's layer table", INSPECT_EXAMPLES)
    inspect_parser.add_argument("model", type=Path)
    inspect_parser.set_defaults(run=command_inspect)

    targets_parser = command("targets", "list the targets, grouped by core", TARGETS_EXAMPLES)
    targets_parser.add_argument("--make", metavar="TARGET",
                                help="print the make variables of TARGET's QEMU firmware "
                                     "(examples/qemu/Makefile's TARGET_MK)")
    targets_parser.set_defaults(run=command_targets)
    return parser


FORCE_HELP = ("write into a non-empty folder mcugen did not make, and overwrite generated files "
              "you edited; a file of yours with a generated file's name is never overwritten")


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that cleanup runs as for Ctrl-C."""


class Interruptions:
    """SIGINT and SIGTERM while mcugen runs: each raises KeyboardInterrupt (Terminated for
    SIGTERM) so that every `finally` cleans up. Python drops an exception raised where it
    cannot propagate (a weak reference's callback, a __del__, the import machinery's locks)
    after printing "Exception ignored ... Traceback"; such an interruption is kept here and
    raised again at the next step (raise_pending), and its traceback is not printed."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self._previous: dict[int, object] = {}
        self._unraisable = sys.unraisablehook

    def __enter__(self) -> Interruptions:
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle)
                              for number in (signal.SIGINT, signal.SIGTERM)
                              if signal.getsignal(number) is not signal.SIG_IGN}  # nohup
            sys.unraisablehook = self._hide_interruption
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        sys.unraisablehook = self._unraisable

    def _handle(self, number: int, frame) -> None:
        self.pending = number
        self.raise_pending()

    def raise_pending(self) -> None:
        if self.pending is not None:
            raise Terminated() if self.pending == signal.SIGTERM else KeyboardInterrupt()

    def _hide_interruption(self, unraisable) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            self._unraisable(unraisable)


def main(argv: list[str] | None = None) -> int:
    try:
        with Interruptions() as interruptions:
            return _main(argv, interruptions)
    except KeyboardInterrupt:  # before its handlers were in place, or after they were gone
        print("mcugen: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None, interruptions: Interruptions) -> int:
    progress = Progress(interruptions=interruptions)
    try:
        args = make_parser().parse_args(argv)
        progress.verbose = getattr(args, "verbose", False)
        args.progress = progress
        status = args.run(args)
        interruptions.raise_pending()
        sys.stdout.flush()  # here, so that a closed pipe is seen below and not at exit
        return status
    except BrokenPipeError:
        # The reader went away (`mcugen inspect m.tflite | head -1`): stop quietly, as cat does.
        # Point stdout at /dev/null so that Python's own flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a program a closed pipe ended
    except McugenError as error:
        progress.abandon()
        print(f"mcugen: error: {one_line(str(error))}", file=sys.stderr)
        return 1
    except OSError as error:  # the system refused a file operation: the user's environment
        progress.abandon()
        where = f"{error.filename}: " if error.filename else ""
        print(f"mcugen: error: {one_line(where + (error.strerror or str(error)))}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM: what was begun is undone
        progress.abandon()
        return _interrupted(signal.SIGTERM if isinstance(interrupt, Terminated)
                            else signal.SIGINT)
    except Exception as error:  # a bug in mcugen: still one line, the traceback on request
        progress.abandon()
        if interruptions.pending is not None:
            # The interruption, turned into another error by the code it stopped: NumPy's
            # import, hit while it loads its C extension, raises ImportError.
            return _interrupted(interruptions.pending)
        if os.environ.get("MCUGEN_DEBUG"):
            raise
        print(f"mcugen: internal error: {type(error).__name__}: {one_line(str(error))} "
              f"(set MCUGEN_DEBUG=1 for a traceback, and please report it)", file=sys.stderr)
        return 2


def _interrupted(number: int) -> int:
    terminated = number == signal.SIGTERM
    print(f"mcugen: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
    return 128 + number


if __name__ == "__main__":
    sys.exit(main())
