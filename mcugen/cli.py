"""The `mcugen` command: parse arguments, run a stage, turn every failure into one line."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from . import __version__
from .build import ARCHES, BuildOptions, build
from .errors import McugenError
from .kernels import KERNEL_SETS
from .targets import Target, core_order, load_target, make_variables, target_names


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise McugenError(f"{message} (see mcugen {self.prog.split()[-1]} --help)"
                          if " " in self.prog else f"{message} (see mcugen --help)")


class Progress:
    """One line per step on stderr, "mcugen: STEP...", completed with the seconds the step took
    when the next one starts or the command ends. With verbose, other programs' log lines may
    come in between, so each step line ends at once and its time follows on a line of its own.
    """

    def __init__(self, stream=None, verbose: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.verbose = verbose
        self.step: str | None = None
        self.started = 0.0

    def __call__(self, message: str) -> None:
        self.finish()
        self.step, self.started = message, time.monotonic()
        self._write(f"mcugen: {message}..." + ("\n" if self.verbose else ""))

    def finish(self) -> None:
        """The current step is done: show how long it took."""
        if self.step is None:
            return
        seconds = f"{time.monotonic() - self.started:.1f} s"
        self._write(f"mcugen: ({self.step}: {seconds})\n" if self.verbose else f" {seconds}\n")
        self.step = None

    def abandon(self) -> None:
        """The current step failed: end its line, so that the error gets a line of its own."""
        if self.step is not None and not self.verbose:
            self._write("\n")
        self.step = None

    def _write(self, text: str) -> None:
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


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("model (an int8 .tflite, or a MobileNet built from these)")
    source.add_argument("--model", type=Path, help="int8 .tflite file to compile")
    source.add_argument("--arch", default="v1", help=f"one of {', '.join(ARCHES)} (default v1)")
    source.add_argument("--alpha", type=float, default=0.25, help="width multiplier, 0 < A <= 1.5")
    source.add_argument("--res", default="96", help="input resolution: R or HxW (default 96)")
    source.add_argument("--channels", type=int, default=3, help="1 or 3 (default 3)")
    source.add_argument("--classes", type=int, default=2, help="output classes (default 2)")
    source.add_argument("--seed", type=int, default=0, help="seed for weights and calibration")
    source.add_argument("--calibration", type=Path,
                        help="folder of images or .npy array [N,H,W,C] in [-1, 1]")
    source.add_argument("--weights", type=Path, help="trained Keras weights to load")
    parser.add_argument("--target", default="host",
                        help="a core or a part, see `mcugen targets` (default host)")
    parser.add_argument("--max-ram", metavar="BYTES",
                        help="the arena may not exceed this (suffixes K, M): the first layers "
                             "then run in row bands when layer by layer needs more")
    parser.add_argument("--ram-regions", action="store_true",
                        help="split the arena over the part's RAM regions, small buffers "
                             "first in the fastest; one array and section per region")
    parser.add_argument("--weights-section", metavar="NAME",
                        help="put the constant tables in this linker section (e.g. .extflash)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show TensorFlow's own log lines")


def build_options(args: argparse.Namespace) -> BuildOptions:
    height, width = parse_resolution(args.res)
    return BuildOptions(
        model=args.model, arch=args.arch, alpha=args.alpha, height=height, width=width,
        channels=args.channels, classes=args.classes, seed=args.seed,
        calibration=args.calibration, weights=args.weights, target=args.target,
        name=args.name, out=args.out, force=args.force,
        memory_check=not args.no_memory_check, kernels=args.kernels, verbose=args.verbose,
        max_ram=parse_bytes(args.max_ram), weights_section=args.weights_section,
        ram_regions=args.ram_regions)


def command_build(args: argparse.Namespace) -> int:
    result = build(build_options(args), args.progress)
    args.progress.finish()
    report = result.compiled.report
    print(f"{report.model}: {len(report.layers)} layers, {report.macs:,} MACs, "
          f"flash {report.const_bytes:,} B (weights), RAM {report.arena_bytes:,} B (arena) "
          f"-> {result.out_dir}")
    if report.schedule is not None:
        print(schedule_summary(report.schedule))
    if report.regions:
        print("arena by RAM region: " + ", ".join(
            f"{r['name']} {r['arena_bytes']:,} of {r['region_bytes']:,} B" for r in report.regions))
    sizes = result.measured
    if sizes is not None:
        print(f"measured with {sizes.compiler}: flash {sizes.flash_bytes:,} B "
              f"(code {sizes.code_bytes:,} + weights {sizes.weight_bytes:,}), "
              f"RAM {sizes.ram_bytes:,} B (arena {sizes.arena_bytes:,} + other static "
              f"{sizes.other_ram_bytes:,} + stack {sizes.stack_bytes:,})")
    return 0


def schedule_summary(schedule: dict) -> str:
    """One line on a row-band schedule: what runs in bands, and what it saves and costs."""
    return (f"schedule: {schedule['description']} ({schedule['reason']}): arena {schedule['layer_by_layer_arena']:,} B layer by "
            f"layer -> {schedule['arena']:,} B, extra MACs 0, {schedule['steps']} steps, "
            f"{schedule['moved_bytes']:,} B of rows moved")


def command_run(args: argparse.Namespace) -> int:
    from .run import run_in_folder, run_in_temporary_folder

    options = build_options(args)
    if args.out is None:
        summary, text = run_in_temporary_folder(options, args.inputs, args.progress)
    else:
        summary, text = run_in_folder(options, args.inputs, args.out, args.progress,
                                      force=args.force)
    args.progress.finish()
    print(text)
    if args.out is not None:
        print(f"kept {args.out}: the model, report.md/json/html with the measured instructions, "
              f"and the firmware in {args.out / 'firmware'}")
    return 0 if summary.matches else 1


def command_inspect(args: argparse.Namespace) -> int:
    from .compile import compile_graph
    from .frontend.tflite import load_tflite, read_model_file

    graph = load_tflite(read_model_file(args.model), "model")
    compiled = compile_graph(graph, name="model", target=load_target("host"),
                             source=args.model.name, memory_check=False)
    report = compiled.report
    print(f"{args.model}: {len(graph.ops)} ops in the file, {len(report.layers)} layers after "
          f"folding")
    print(f"{'#':>3}  {'op':<18} {'input':<14} {'output':<14} {'MACs':>11} {'weights':>8}")
    for layer in report.layers:
        print(f"{layer.index:>3}  {layer.op:<18} {'x'.join(map(str, layer.input_shape)):<14} "
              f"{'x'.join(map(str, layer.output_shape)):<14} {layer.macs:>11,} "
              f"{layer.weight_bytes:>8,}")
    print(f"total: {report.macs:,} MACs, {report.weight_bytes:,} B of weights, "
          f"arena {report.arena_bytes:,} B")
    return 0


def command_targets(args: argparse.Namespace) -> int:
    if args.make is not None:
        target = load_target(args.make)
        variables = make_variables(target)  # refuses a target without a QEMU board first
        print(f"# {target.name}, from targets/{target.name}.toml (part of core {target.core})"
              if target.kind == "part" else f"# {target.name}, from targets/{target.name}.toml")
        print("# use: make -C examples/qemu MODEL_DIR=... BUILD=... TARGET_MK=this-file")
        for variable, value in variables.items():
            print(f"{variable} := {value}")
        return 0
    print(format_targets([load_target(name) for name in target_names()]))
    return 0


def format_targets(targets: list[Target]) -> str:
    """The targets grouped by core: the core's line, then the core's own row and its parts."""
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
            lines.append(f"  {target.name:<14} {clock:>8} {_kib(target.flash_bytes):>9} "
                         f"{_kib(target.ram_bytes):>9}  {target.description}")
    lines.append("RAM: a part's largest contiguous region (one arena must fit in it); a core's "
                 "figures are a typical part's.")
    return "\n".join(lines)


def _kib(size: int) -> str:
    return f"{size / 1024:,.0f} KB" if size < 1 << 30 else "-"


def one_line(message: str) -> str:
    """An error message as one line: a name from a model file or a path may hold a newline or
    another control character, which is written as an escape."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mcugen", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mcugen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    build_parser = commands.add_parser("build", help="compile a model into a folder of C99")
    add_model_arguments(build_parser)
    build_parser.add_argument("--name", default="model", help="C prefix and file names")
    build_parser.add_argument("--out", type=Path, help="output folder (default build/NAME)")
    build_parser.add_argument("--force", action="store_true",
                              help="write into a non-empty folder mcugen did not create")
    build_parser.add_argument("--no-memory-check", action="store_true",
                              help="allow a model bigger than the target's flash or RAM")
    build_parser.add_argument("--kernels", choices=KERNEL_SETS, default="mcugen",
                              help="mcugen's own C kernels (default), or cmsis-nn: Arm's "
                                   "CMSIS-NN where it has the layer (build with CMSIS_NN_DIR)")
    build_parser.set_defaults(run=command_build)

    run_parser = commands.add_parser(
        "run", help="build for a Cortex-M target, run in QEMU, check outputs, count instructions")
    add_model_arguments(run_parser)
    run_parser.add_argument("--inputs", type=Path,
                            help=".npy of int8 inputs (default: zeros, extremes, random)")
    run_parser.add_argument("--kernels", choices=KERNEL_SETS, default="mcugen",
                            help="mcugen (default) or cmsis-nn (needs CMSIS_NN_DIR)")
    run_parser.add_argument("--out", type=Path,
                            help="keep the build folder here, with the measured instructions "
                                 "in its reports (default: a temporary folder)")
    run_parser.add_argument("--force", action="store_true",
                            help="write into a non-empty --out folder mcugen did not create")
    run_parser.set_defaults(run=command_run, name="model", no_memory_check=False)

    inspect_parser = commands.add_parser("inspect", help="print a .tflite's layer table")
    inspect_parser.add_argument("model", type=Path)
    inspect_parser.set_defaults(run=command_inspect)

    targets_parser = commands.add_parser("targets", help="list the targets, grouped by core")
    targets_parser.add_argument("--make", metavar="TARGET",
                                help="print the make variables of TARGET's QEMU firmware "
                                     "(examples/qemu/Makefile's TARGET_MK)")
    targets_parser.set_defaults(run=command_targets)
    return parser


def main(argv: list[str] | None = None) -> int:
    progress = Progress()
    try:
        args = make_parser().parse_args(argv)
        progress.verbose = getattr(args, "verbose", False)
        args.progress = progress
        status = args.run(args)
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
    except KeyboardInterrupt:
        progress.abandon()
        print("mcugen: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug in mcugen: still one line, the traceback on request
        progress.abandon()
        if os.environ.get("MCUGEN_DEBUG"):
            raise
        print(f"mcugen: internal error: {type(error).__name__}: {one_line(str(error))} "
              f"(set MCUGEN_DEBUG=1 for a traceback, and please report it)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
