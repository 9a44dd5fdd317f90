"""`mcugen build` as a function: options in, an output folder and its report out."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import cache, estimate
from .compile import CompiledModel, check_profile_target, compile_graph, prepare
from .codegen import (SELFTEST_TEMPLATE, SOURCE_TEMPLATES, check_arena_kind, check_model_name,
                      check_section_name, render_sources)
from .errors import McugenError
from .kernels import KERNEL_SETS
from .measure import MeasuredSizes, measure
from .frontend.limits import check_mobilenet_request, check_path_components
from .frontend.tflite import load_tflite, read_model_file
from .output import check_output_folder, write_output_folder
from .resources import find_cmsis_nn
from .selftest import build_selftest, check_vector_count
from .targets import Target, load_target

Progress = Callable[[str], None]

ARCHES = ("v1", "v2", "v3-small", "v3-large")
IO_TYPES = ("int8", "uint8", "float")  # as frontend.keras.IO_TYPES (not imported: TensorFlow)


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    model: Path | None = None  # an int8 .tflite; otherwise a MobileNet is built from:
    arch: str = "v1"
    alpha: float = 0.25
    height: int = 96
    width: int = 96
    channels: int = 3
    classes: int = 2
    seed: int = 0
    calibration: Path | None = None
    weights: Path | None = None
    target: str = "host"
    name: str = "model"  # the command line's default is default_name(...)
    out: Path | None = None  # default build/NAME
    force: bool = False
    memory_check: bool = True
    kernels: str = "mcugen"  # or "cmsis-nn": call Arm's CMSIS-NN where it has the layer
    verbose: bool = False  # let TensorFlow's own log lines through
    max_ram: int | None = None  # the arena's budget in bytes: row bands when layer by layer exceeds it
    weights_section: str | None = None  # linker section of the constant tables
    ram_regions: bool = False  # split the arena over the part's RAM regions, fastest first
    io: str = "int8"  # a built MobileNet's input and output type: int8, uint8 or float
    selftest: int | None = None  # NAME_selftest.c with this many input vectors
    profile: bool = False  # NAME_invoke records each layer's cycles (the core's counter)
    arena: str = "static"  # "caller": NAME_invoke_arena on the caller's arena (codegen.ARENA_KINDS)

    @property
    def out_dir(self) -> Path:
        return self.out if self.out is not None else Path("build") / self.name

    def validate(self) -> None:
        """Everything that can be checked before the slow steps."""
        check_model_name(self.name)
        if self.weights_section is not None:
            check_section_name(self.weights_section)
        target = load_target(self.target)
        check_arena_kind(self.arena)
        if self.selftest is not None:
            check_vector_count(self.selftest)
        if self.profile:
            check_profile_target(target)
        if self.arena == "caller" and (self.selftest is not None or self.profile):
            # Their per-layer state (checksums so far, cycle counts) is static: it would be
            # shared by every instance the caller's arenas allow.
            raise McugenError("--selftest and --profile keep static state, so they cannot be "
                              "combined with --arena caller; build them separately")
        if self.kernels not in KERNEL_SETS:
            raise McugenError(f"unknown --kernels {self.kernels!r}; choose one of "
                              f"{', '.join(KERNEL_SETS)}")
        if self.model is not None and self.io != "int8":
            raise McugenError("--io applies to the MobileNets mcugen builds; a --model keeps "
                              "its own input and output types")
        if self.model is None:
            if self.io not in IO_TYPES:
                raise McugenError(f"--io {self.io}: use one of {', '.join(IO_TYPES)}")
            if self.arch not in ARCHES:
                raise McugenError(f"unknown --arch {self.arch!r}; choose one of {', '.join(ARCHES)}")
            if not 0 < self.alpha <= 1.5:
                raise McugenError(f"--alpha {self.alpha} is out of range: use 0 < alpha <= 1.5")
            if min(self.height, self.width) < 32:
                raise McugenError(f"--res {self.height}x{self.width} is too small: "
                                  f"MobileNet needs at least 32x32")
            if self.channels not in (1, 3):
                raise McugenError(f"--channels {self.channels}: use 1 (grayscale) or 3 (RGB)")
            if self.classes < 1:
                raise McugenError(f"--classes {self.classes}: need at least 1 class")
            if not 0 <= self.seed < 1 << 32:
                raise McugenError(f"--seed {self.seed}: use 0 to {(1 << 32) - 1}")
            check_mobilenet_request(self.alpha, self.height, self.width, self.classes)
        check_path_components(self.out_dir)
        check_output_folder(self.out_dir, self.force,
                            output_names(self.name, self.selftest is not None))


def output_names(name: str, selftest: bool = False) -> list[str]:
    """The files a build writes into its output folder (checked before the slow steps)."""
    sources = [*SOURCE_TEMPLATES, *([SELFTEST_TEMPLATE[0]] if selftest else [])]
    return [*(file.format(name=name) for file in sources), f"{name}.tflite",
            "report.json", "report.md", "report.html"]


def default_name(model: Path | None, arch: str = "v1", alpha: float = 0.25, height: int = 96,
                 width: int = 96, channels: int = 3) -> str:
    """The name a build takes without --name: the .tflite file's stem as a C identifier
    (person_detect), or the MobileNet's options (mobilenet_v1_a025_96), so that builds of
    different models do not land in one folder."""
    if model is not None:
        return c_identifier(model.stem)
    alpha_text = f"{alpha:.2f}" if round(alpha, 2) == alpha else f"{alpha:g}"
    resolution = f"{height}" if height == width else f"{height}x{width}"
    name = f"mobilenet_{arch}_a{alpha_text.replace('.', '')}_{resolution}"
    return c_identifier(name + ("_gray" if channels == 1 else ""))


def c_identifier(text: str) -> str:
    """text as a usable model name: ASCII letters (accents dropped), digits and underscores."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")[:48].strip("_")
    if not name:
        return "model"
    if name[0].isdigit():
        name = "model_" + name
    try:
        check_model_name(name)
    except McugenError:  # a C keyword or a name the C would trip on (stdint, main, ...)
        name += "_model"
    return name


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    tflite: bytes
    compiled: CompiledModel
    measured: MeasuredSizes | None  # from the cross compiler, when the target has one here

    @property
    def files(self) -> dict[str, str | bytes]:
        """The output folder's files: the C, the .tflite and the reports."""
        name = self.compiled.report.model
        return {**self.compiled.sources, f"{name}.tflite": self.tflite,
                **self.compiled.report.files()}


def model_bytes_and_source(options: BuildOptions, progress: Progress) -> tuple[bytes, str]:
    """The int8 .tflite to compile, and a one-line description of where it came from. A
    MobileNet converted before with the same options is taken from the cache (cache.py)."""
    if options.model is not None:
        data = read_model_file(options.model)
        digest = hashlib.sha256(data).hexdigest()[:16]
        return data, f"{options.model.name} (sha256 {digest}...)"
    source = (f"MobileNet {options.arch} alpha={options.alpha:g} "
              f"{options.height}x{options.width}x{options.channels}, {options.classes} classes, "
              f"seed {options.seed}" + (f", {options.io} I/O" if options.io != "int8" else ""))
    if options.calibration is not None or options.weights is not None:
        source += " (user calibration/weights)"
    key = cache.conversion_key(options)
    data = cache.load(key)
    if data is not None:
        progress(f"building MobileNet {options.arch} α={options.alpha:g} "
                 f"{options.height}×{options.width}×{options.channels} (cached)")
        return data, source
    data = convert_mobilenet(options, progress)
    cache.store(key, data)
    return data, source


def convert_mobilenet(options: BuildOptions, progress: Progress) -> bytes:
    """Build the Keras MobileNet the options describe and convert it (TensorFlow: slow)."""
    from .frontend.keras import build_mobilenet_tflite, load_calibration

    calibration = None
    if options.calibration is not None:
        calibration = load_calibration(options.calibration, options.height, options.width,
                                       options.channels, verbose=options.verbose)
    return build_mobilenet_tflite(
        arch=options.arch, alpha=options.alpha, height=options.height, width=options.width,
        channels=options.channels, classes=options.classes, seed=options.seed,
        calibration=calibration,
        weights=str(options.weights) if options.weights is not None else None,
        progress=progress, verbose=options.verbose, io_type=options.io)



# --- what can be refused before the slow work ------------------------------------------------


# Before conversion, how much of a model dead-channel removal might take, at most, for the
# refusal to be certain. A freshly calibrated MobileNet has few constant channels (its batch
# norms are re-estimated on the calibration images) and mcugen removed none in any tested
# configuration; a refusal within this margin waits for the exact check after conversion.
REMOVABLE_BEFORE_CONVERSION = 1 / 64


def check_before_converting(options: BuildOptions) -> None:
    """A MobileNet's flash and arena from its shapes alone, before TensorFlow. Skipped with
    trained --weights for mcugen's kernels: a pruned model loses its dead channels
    (passes/dead_channels.py), which the shapes cannot know; the check after import runs."""
    if options.weights is not None and options.kernels == "mcugen":
        return
    shapes = estimate.keras_shapes(options.arch, options.alpha, options.height, options.width,
                                   options.channels, options.classes)
    margin = REMOVABLE_BEFORE_CONVERSION if options.kernels == "mcugen" else 0.0
    check_shapes(shapes, options, load_target(options.target), margin)


def check_after_import(graph, options: BuildOptions) -> None:
    """The same checks on an imported .tflite (or a converted MobileNet), before compiling.
    First on the graph without dead-channel removal (the graph CMSIS-NN's kernels get: the
    fast passes only); removal can only shrink a model, so when that graph would be refused
    for mcugen's kernels, the refusal stands only if the graph after removal (slower: seconds
    on a large model, spent only here) is refused too."""
    target = load_target(options.target)
    try:
        check_shapes(estimate.graph_shapes(prepare(graph, "cmsis-nn")), options, target)
    except McugenError:
        if options.kernels == "cmsis-nn":
            raise
        check_shapes(estimate.graph_shapes(prepare(graph, options.kernels)), options, target)


def check_shapes(shapes: estimate.Shapes, options: BuildOptions, target: Target,
                 margin: float = 0.0) -> None:
    """Refuse, in one line, what cannot fit whatever mcugen does next: weights over the
    target's flash, an arena lower bound over its RAM (both unless --no-memory-check), or
    over --max-ram; by more than `margin` (a fraction of the figure)."""
    def over(needed: int, available: int) -> bool:
        return needed * (1 - margin) > available

    if options.memory_check and over(shapes.weight_bytes, target.flash_bytes):
        raise McugenError(
            f"the model needs at least {shapes.weight_bytes:,} bytes of flash for its weights "
            f"but {target.name} has {target.flash_bytes:,}; use a smaller alpha, another "
            f"target, or --no-memory-check")
    arena = estimate.arena_lower_bound(shapes)
    if options.max_ram is not None and over(arena, options.max_ram):
        raise McugenError(
            f"no schedule fits an arena of {options.max_ram:,} B: the smallest reachable is "
            f"{arena:,} B or more (the tensors that must be held at once); raise --max-ram")
    if options.ram_regions and len(target.arena_regions) < 2:
        return  # compiling says that --ram-regions needs a part with several
    ram = sum(r.bytes for r in target.arena_regions) if options.ram_regions \
        else target.ram_bytes
    if options.memory_check and over(arena, ram):
        where = (f"{target.name}'s largest RAM region ({target.largest_ram}) holds {ram:,}"
                 if target.kind == "part" and not options.ram_regions
                 else f"{target.name} has {ram:,} bytes of RAM")
        raise McugenError(
            f"the model needs an arena of at least {arena:,} bytes whatever the schedule (the "
            f"tensors that must be held at once) but {where}; use a smaller resolution, "
            f"another target, or --no-memory-check")



def with_selftest(compiled: CompiledModel, tflite: bytes, count: int, seed: int
                  ) -> CompiledModel:
    """The compiled model with NAME_selftest.c: its vectors' per-layer checksums from the
    oracle (selftest.py), in the sources and the report."""
    selftest = build_selftest(compiled, tflite, count, seed)
    view = dataclasses.replace(compiled.view, selftest=selftest)
    report = dataclasses.replace(compiled.report, selftest=selftest.as_dict())
    return dataclasses.replace(compiled, view=view, sources=render_sources(view), report=report)


def build(options: BuildOptions, progress: Progress = lambda message: None) -> BuildResult:
    result = compile_build(options, progress)
    progress(f"writing {options.out_dir}")
    write_output_folder(options.out_dir, result.files, options.force)
    return result


def compile_build(options: BuildOptions, progress: Progress = lambda message: None
                  ) -> BuildResult:
    """Everything `build` does but write the folder: the result's files are in memory."""
    options.validate()
    if options.model is None:
        check_before_converting(options)
    data, source = model_bytes_and_source(options, progress)
    try:
        graph = load_tflite(data, options.name)
    except McugenError as error:
        if options.model is None:
            raise
        raise McugenError(f"{options.model}: {error}") from None
    check_after_import(graph, options)
    progress("compiling")
    target = load_target(options.target)
    # The memory check is the target's: a part's flash and its largest RAM region.
    fit_ram = target.ram_bytes if options.memory_check and not target.is_host else None
    compiled = compile_graph(graph, name=options.name, target=target, source=source,
                             memory_check=False, kernel_set=options.kernels,
                             max_ram=options.max_ram, fit_ram=fit_ram,
                             weights_section=options.weights_section,
                             ram_regions=options.ram_regions, profile=options.profile,
                             arena=options.arena)
    if options.selftest is not None:
        progress(f"computing the self-check's checksums ({options.selftest} "
                 f"vector{'s' * (options.selftest > 1)}, every layer) with the oracle")
        compiled = with_selftest(compiled, data, options.selftest, options.seed)
    if options.memory_check:  # with --ram-regions, plan_regions has checked each region
        target.check_fits(compiled.report.const_bytes,
                          0 if options.ram_regions else compiled.report.arena_bytes)
    if not target.is_host:
        progress(f"measuring with {target.compiler}" if shutil.which(target.compiler) else
                 f"not measuring: {target.compiler} is not installed (scripts/test installs it)")
    # CMSIS-NN is the user's, not ours: without a copy here its build cannot be measured.
    library = find_cmsis_nn() if options.kernels == "cmsis-nn" else None
    measured = None if options.kernels == "cmsis-nn" and library is None else \
        measure(compiled.sources, options.name, target, compiled.plan.arena_size, library,
                options.weights_section, caller_arena=options.arena == "caller")
    report = dataclasses.replace(compiled.report,
                                 measured=measured.as_dict() if measured else None)
    if measured is not None and measured.selftest is not None:
        report = dataclasses.replace(report, selftest={**report.selftest,
                                                       "measured": measured.selftest})
    return BuildResult(options.out_dir, data, dataclasses.replace(compiled, report=report),
                       measured)
