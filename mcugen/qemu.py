"""Build the bare-metal firmware around a generated model, run it in QEMU, count instructions.

The firmware (examples/qemu) reads ``input.bin`` through semihosting, calls ``model_invoke``
on each input and writes ``output.bin``. The core's compiler flags, linker script and start-up
facts come from its file in targets/ (the only copy). The firmware executes marker
instructions (``dbg #n``, no-ops on the CPU) around each call and after each layer; the icount
TCG plugin (examples/qemu/plugin/icount.c) logs the exact number of instructions executed at
each marker, which gives per-inference and per-layer counts. With ``blocks=True`` it also logs
the code that ran between markers (pieces of translated blocks and their execution counts),
from which mcugen/cycles.py estimates cycles.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import McugenError
from .resources import firmware_dir, parts_firmware_dir
from .targets import Target, load_target, make_variables, qemu_targets, target_names

# The marker numbers of examples/qemu/mcugen_hooks.h.
LAYER_DONE_MARKER = 1
INVOKE_BEGIN_MARKER = 2
INVOKE_END_MARKER = 3

# The types a model's input and output may have (raw bytes in input.bin and output.bin).

# Host flags of the plugin; part of its cache key.
PLUGIN_CFLAGS = ("-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden")


@dataclass(frozen=True)
class CodePiece:
    """A run of instructions QEMU executes as a whole: a translated block, split at markers."""

    address: int
    instructions: int
    code: bytes  # the instructions' bytes, in memory order


@dataclass(frozen=True)
class BlockLog:
    """What the plugin's blocks=on logged: the pieces, and how many times each ran between
    consecutive markers: intervals[i] ends at RunResult.markers[i]; one more interval runs from
    the last marker to QEMU's exit."""

    pieces: dict[int, CodePiece]  # by the plugin's id
    intervals: list[dict[int, int]]  # piece id -> executions


@dataclass(frozen=True)
class RunResult:
    """What one QEMU run produced. Instruction counts exclude the markers themselves."""

    outputs: np.ndarray  # [N, output_size] of the model's output type
    instructions: list[int]  # per inference: from just before model_invoke to just after
    # Per inference, per layer: from the previous layer's end to this layer's end. The first
    # layer's count includes the few instructions of the call; the return after the last
    # layer belongs to no layer, so the layers sum to slightly less than `instructions`.
    layer_instructions: list[list[int]]
    markers: list[tuple[int, int]]  # every (marker number, instructions so far), in order
    console: str  # what the firmware printed
    blocks: BlockLog | None = None  # with run_firmware(blocks=True)


def firmware_target(name: str | Target) -> Target:
    """The target a firmware is built for: a target's name (a core or a part), or the name of a
    QEMU machine, which stands for the core that machine emulates (the M7's machine: cortex-m7)."""
    if isinstance(name, Target):
        target = name
    elif name in target_names():
        target = load_target(name)
    else:
        natives = [t for t in qemu_targets().values()
                   if t.qemu.machine == name and t.qemu.machine_cpu == t.name]
        if len(natives) != 1:
            raise McugenError(f"unknown target or QEMU machine {name!r}; the cores that run in "
                              f"QEMU: {', '.join(qemu_targets())}")
        target = natives[0]
    if target.qemu is None:
        raise McugenError(f"target {target.name} has no QEMU board; choose one of "
                          f"{', '.join(qemu_targets())} or a part with one of these cores")
    return target


@dataclass(frozen=True)
class BoardRegion:
    name: str  # the MEMORY region of the board's linker script
    bytes: int


@dataclass(frozen=True)
class BoardMemory:
    """What a QEMU board's linker script gives the firmware: the region behind each of the
    aliases boards/sections.ld places sections in (CODE, CONST, RAM, ARENA), and the stack."""

    script: str  # the file in examples/qemu/boards/
    aliases: dict[str, BoardRegion]
    stack_bytes: int


_LD_SIZE = re.compile(r"(0x[0-9a-fA-F]+|\d+)\s*([KM]?)")


def _ld_number(text: str) -> int:
    match = _LD_SIZE.fullmatch(text.strip())
    if match is None:
        raise McugenError(f"cannot read the linker script size {text!r}")
    return int(match.group(1), 0) * {"": 1, "K": 1024, "M": 1024 * 1024}[match.group(2)]


def board_scripts_dir(target: Target) -> Path:
    """Where the linker scripts of target's firmware are: examples/qemu/boards, or
    examples/parts for a part QEMU emulates as a machine of its own."""
    return parts_firmware_dir() if target.qemu.uart else firmware_dir() / "boards"


def board_memory(target: str | Target) -> BoardMemory:
    """The memory of target's QEMU board, read from its linker script (the one place it is
    written): MEMORY lines "NAME (attrs) : ORIGIN = A, LENGTH = L" and REGION_ALIAS lines."""
    target = firmware_target(target)
    boards = board_scripts_dir(target)
    script = (boards / target.qemu.linker_script).read_text()
    lengths = {name: _ld_number(length) for name, length in re.findall(
        r"^\s*(\w+)\s*\([a-z]*\)\s*:\s*ORIGIN\s*=\s*\w+\s*,\s*LENGTH\s*=\s*(\w+)\s*$",
        script, re.MULTILINE)}
    aliases = {alias: BoardRegion(region, lengths[region]) for alias, region in re.findall(
        r'^\s*REGION_ALIAS\("(\w+)",\s*(\w+)\);', script, re.MULTILINE) if region in lengths}
    stack = re.search(r"^STACK_SIZE\s*=\s*(\w+);", script, re.MULTILINE) or re.search(
        r"^STACK_SIZE\s*=\s*(\w+);", (boards / "sections.ld").read_text(), re.MULTILINE)
    missing = {"CODE", "CONST", "RAM", "ARENA"} - aliases.keys()
    if missing or stack is None:
        raise McugenError(f"{_examples_path(target)}/{target.qemu.linker_script} does not "
                          f"define {', '.join(sorted(missing)) or 'STACK_SIZE'}")
    return BoardMemory(target.qemu.linker_script, aliases, _ld_number(stack.group(1)))


def check_board_fits(target: str | Target, *, const_bytes: int, arena_bytes: int,
                     io_bytes: int, code_bytes: int = 0) -> None:
    """Before the firmware is compiled: will the model link on target's QEMU board? The
    arena goes to ARENA, the weights (and the code, where CODE is the same region) to CONST,
    the firmware's input and output buffers and the stack to RAM. One line saying what does
    not fit and what helps, instead of a linker error after the slow steps."""
    target = firmware_target(target)
    board = board_memory(target)
    where = f"QEMU board {target.qemu.machine} ({_examples_path(target)}/{board.script})"
    const = board.aliases["CONST"]
    flash = const_bytes + (code_bytes if board.aliases["CODE"] == const else 0)
    if flash > const.bytes:
        raise McugenError(
            f"the model's {flash:,} B of weights do not fit the {const.bytes:,} B of "
            f"{const.name} that hold them on the {where}; use a smaller --alpha or fewer "
            f"--classes")
    arena = board.aliases["ARENA"]
    if arena_bytes > arena.bytes:
        raise McugenError(
            f"the model's {arena_bytes:,}-byte arena does not fit the {arena.bytes:,} B of "
            f"{arena.name} on the {where}; use --max-ram {arena.bytes // 1024}K (row bands) "
            f"or a smaller --res")
    ram = board.aliases["RAM"]
    if io_bytes + board.stack_bytes > ram.bytes:
        raise McugenError(
            f"the firmware's input and output buffers ({io_bytes:,} B) and its "
            f"{board.stack_bytes:,} B stack do not fit the {ram.bytes:,} B of {ram.name} on "
            f"the {where}; use a smaller --res")


def _examples_path(target: Target) -> str:
    return "examples/parts" if target.qemu.uart else "examples/qemu/boards"


def build_firmware(
    model_dir: Path,
    target: str | Target,
    build_dir: Path,
    extra_sources: Sequence[Path] = (),
    extra_include_dirs: Sequence[Path] = (),
    extra_cflags: Sequence[str] = (),
    *,
    cmsis_nn_dir: Path | None = None,
    main: Path | None = None,
    inputs: Path | None = None,
) -> Path:
    """Compile the firmware with every .c file under model_dir for target (see
    firmware_target), with the core's flags from its TOML file; returns firmware.elf's path.
    main: another main.c than the firmware's own (a test's). inputs: for a part's firmware
    (examples/parts), the C file of the inputs it runs (inputs_source)."""
    target = firmware_target(target)
    _require_tool("make", "make")
    _require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi and libnewlib-arm-none-eabi")
    model_dir = Path(model_dir).resolve()
    if main is None and not (model_dir / "model.h").is_file():
        raise McugenError(f"{model_dir} has no model.h")
    build_dir = Path(build_dir).resolve()
    if target.qemu.uart and inputs is None:
        raise McugenError(f"the firmware of {target.name} needs the C file of its inputs")
    paths = [model_dir, build_dir, *extra_sources, *extra_include_dirs,
             *(() if main is None else (main,)), *(() if inputs is None else (inputs,))]
    _reject_whitespace(paths if cmsis_nn_dir is None else [*paths, cmsis_nn_dir])
    variables = {
        "MODEL_DIR": str(model_dir),
        **make_variables(target),
        "BUILD": str(build_dir),
        "EXTRA_SOURCES": _joined_paths(extra_sources),
        "EXTRA_INCLUDE_DIRS": _joined_paths(extra_include_dirs),
        "EXTRA_CFLAGS": " ".join(extra_cflags),
        "CMSIS_NN_DIR": "" if cmsis_nn_dir is None else str(Path(cmsis_nn_dir).resolve()),
        **({} if main is None else {"MAIN": str(Path(main).resolve())}),
        **({"QEMU": "1", "QEMU_DIR": str(firmware_dir()), "INPUTS": str(Path(inputs).resolve())}
           if target.qemu.uart else {}),
    }
    command = [
        "make",
        f"-j{os.cpu_count() or 1}",
        "-C",
        str(parts_firmware_dir() if target.qemu.uart else firmware_dir()),
        *(f"{name}={value}" for name, value in variables.items()),
    ]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise McugenError(f"firmware build for {target.name} failed: "
                          f"{_first_error(completed.stderr)}")
    return build_dir / "firmware.elf"


def build_plugin(cache_dir: Path) -> Path:
    """Compile the icount plugin for the host once per source version; returns the .so path."""
    _require_tool("gcc", "gcc")
    source = firmware_dir() / "plugin" / "icount.c"
    key = hashlib.sha256(source.read_bytes() + " ".join(PLUGIN_CFLAGS).encode()).hexdigest()
    plugin = Path(cache_dir) / f"icount-{key[:16]}.so"
    if plugin.is_file():
        return plugin
    plugin.parent.mkdir(parents=True, exist_ok=True)
    # Build under a unique name and rename: concurrent builds never see a partial file.
    partial = plugin.with_name(f"{plugin.name}.{os.getpid()}.partial")
    completed = subprocess.run(
        ["gcc", *PLUGIN_CFLAGS, "-o", str(partial), str(source)], capture_output=True, text=True
    )
    if completed.returncode != 0:
        raise McugenError(f"building the QEMU plugin failed: {_first_error(completed.stderr)}")
    partial.replace(plugin)
    return plugin


def run_firmware(
    elf: Path,
    target: str | Target,
    inputs: np.ndarray,
    output_size: int,
    timeout: float = 120.0,
    *,
    plugin: Path | None = None,
    output_dtype: str = "int8",
    blocks: bool = False,
    icount: bool = False,
) -> RunResult:
    """Run firmware.elf in QEMU on target's machine (see firmware_target) on inputs
    [N, input_size] of the model's input type (int8, uint8 or float32: the firmware reads
    them as NAME_input_t), outputs of output_dtype; exact instruction counts. With blocks,
    also the code that ran between markers (RunResult.blocks; the plugin's blocks=on). With
    icount, QEMU runs with `-icount shift=0`: its virtual clock advances one nanosecond per
    instruction, so the SysTick a --profile build reads counts instructions (one tick per
    board-clock period of them: 40 at the 25 MHz of the MPS2 boards).

    Raises McugenError if QEMU is missing, the firmware exits with a non-zero status (an
    invoke failed, a fault, an I/O error) or runs longer than timeout seconds.
    """
    board = firmware_target(target).qemu
    machine = board.machine
    _require_tool("qemu-system-arm", "qemu-system-arm")
    inputs = _checked_inputs(inputs)
    plugin = plugin if plugin is not None else build_plugin(_default_cache_dir())
    with tempfile.TemporaryDirectory(prefix="mcugen-qemu-") as scratch:
        run_dir = Path(scratch)
        inputs.tofile(run_dir / "input.bin")
        log = run_dir / "icount.log"
        uart = run_dir / "uart.log" if board.uart else None
        completed = _run_qemu(Path(elf).resolve(), machine,
                              f"{plugin},blocks=on" if blocks else str(plugin), log, run_dir,
                              timeout, icount, uart)
        console = completed.stdout + completed.stderr
        if uart is not None and uart.is_file():
            console = uart.read_text(errors="replace") + console
        if completed.returncode != 0:
            raise McugenError(
                f"firmware on {machine} exited with status {completed.returncode}: "
                f"{_failure_reason(console)}"
            )
        if uart is None:
            outputs = _read_outputs(run_dir / "output.bin", len(inputs), output_size,
                                    output_dtype)
        else:
            outputs = _uart_outputs(console, len(inputs), output_size, output_dtype)
        log_text = log.read_text()
        markers = _parse_markers(log_text)
    instructions, layer_instructions = _split_inferences(markers)
    if len(instructions) != len(inputs):
        raise McugenError(
            f"expected {len(inputs)} inferences, the markers show {len(instructions)}"
        )
    return RunResult(outputs, instructions, layer_instructions, markers, console,
                     _parse_blocks(log_text) if blocks else None)


def _run_qemu(
    elf: Path, machine: str, plugin: str, log: Path, run_dir: Path, timeout: float,
    icount: bool = False,
    uart: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """uart: the file that receives what the firmware prints on the machine's first serial
    port (a part's firmware); otherwise the port is not connected."""
    command = [
        "qemu-system-arm",
        "-M", machine,
        "-kernel", str(elf),
        "-semihosting-config", "enable=on,target=native",
        "-display", "none",
        "-monitor", "none",
        "-serial", "null" if uart is None else f"file:{uart}",
        "-plugin", plugin,
        "-d", "plugin",
        "-D", str(log),
        *(("-icount", "shift=0") if icount else ()),
    ]  # fmt: skip
    try:
        return subprocess.run(
            command, cwd=run_dir, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise McugenError(f"QEMU ran {elf.name} on {machine} for over {timeout:g} s") from None


# The element types a model's input and output may have, as the firmware reads and writes
# them (the Arm cores and the hosts we run on are little-endian, as NumPy's "<f4").
ELEMENT_TYPES = ("int8", "uint8", "float32")


def _checked_inputs(inputs: np.ndarray) -> np.ndarray:
    inputs = np.asarray(inputs)
    if inputs.dtype.name not in ELEMENT_TYPES or inputs.ndim != 2 or len(inputs) == 0:
        raise McugenError(
            f"inputs must be a non-empty [N, input_size] int8, uint8 or float32 array, got "
            f"{inputs.dtype} {inputs.shape}"
        )
    return np.ascontiguousarray(inputs, dtype=inputs.dtype.newbyteorder("<"))


def _read_outputs(path: Path, count: int, output_size: int, dtype: str = "int8") -> np.ndarray:
    element = np.dtype(dtype).newbyteorder("<")
    data = np.fromfile(path, dtype=element) if path.is_file() else np.empty(0, element)
    if data.size != count * output_size:
        raise McugenError(
            f"output.bin holds {data.size} {dtype} values, expected {count} x {output_size}"
        )
    return data.reshape(count, output_size).astype(dtype)


def _uart_outputs(console: str, count: int, output_size: int, dtype: str) -> np.ndarray:
    """The outputs a part's firmware printed (examples/parts/main.c): one line
    "output <i>: <hex bytes>" per inference, then "done <count> <status>"."""
    element = np.dtype(dtype).newbyteorder("<")
    lines = dict(re.findall(r"^output (\d+): ([0-9a-f]*)$", console, re.MULTILINE))
    rows = []
    for index in range(count):
        data = bytes.fromhex(lines.get(str(index), ""))
        if len(data) != output_size * element.itemsize:
            raise McugenError(f"the firmware printed {len(data)} bytes for output {index} over "
                              f"its UART, expected {output_size * element.itemsize}")
        rows.append(np.frombuffer(data, element))
    return np.stack(rows).astype(dtype)


def _parse_markers(log_text: str) -> list[tuple[int, int]]:
    """The plugin's "marker <n> <count>" lines; other lines (the final total) are skipped."""
    return [
        (int(number), int(count))
        for number, count in re.findall(r"^marker (\d+) (\d+)$", log_text, re.MULTILINE)
    ]


def _parse_blocks(log_text: str) -> BlockLog:
    """The plugin's "block", "exec", "marker" and "total" lines (blocks=on), in order."""
    pieces: dict[int, CodePiece] = {}
    intervals: list[dict[int, int]] = [{}]
    for line in log_text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "block":
            number, address, count, code = rest.split()
            pieces[int(number)] = CodePiece(int(address, 16), int(count), bytes.fromhex(code))
        elif kind == "exec":
            current = intervals[-1]
            for entry in rest.split():
                number, times = entry.split(":")
                current[int(number)] = current.get(int(number), 0) + int(times)
        elif kind in ("marker", "total"):
            intervals.append({})
    return BlockLog(pieces, intervals[:-1])


def _split_inferences(markers: list[tuple[int, int]]) -> tuple[list[int], list[list[int]]]:
    """Per-inference totals and per-layer counts; markers outside an invoke are ignored."""
    totals: list[int] = []
    layers: list[list[int]] = []
    begin = previous = None
    for number, count in markers:
        if number == INVOKE_BEGIN_MARKER:
            begin = previous = count
            layers.append([])
        elif begin is None:
            continue
        elif number == LAYER_DONE_MARKER:
            layers[-1].append(count - previous)
            previous = count
        elif number == INVOKE_END_MARKER:
            totals.append(count - begin)
            begin = None
    return totals, layers[: len(totals)]


def _first_error(stderr: str) -> str:
    """The line of a compiler or linker failure that says what went wrong."""
    lines = [line.strip() for line in stderr.splitlines() if not line.startswith("make")]
    lines = [line for line in lines if line]
    telling = re.compile(r"error:|undefined reference|overflowed|will not fit|\*\*\*")
    for line in lines:
        if telling.search(line) and not line.startswith("collect2"):
            return line
    return lines[0] if lines else "no message"


def _failure_reason(console: str) -> str:
    """QEMU's own fatal error (e.g. a CPU lockup) if any, else the firmware's last line."""
    fatal = re.search(r"qemu(-system-arm)?: .*", console)
    if fatal:
        return fatal.group(0).strip()
    lines = [line.strip() for line in console.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _require_tool(program: str, debian_package: str) -> None:
    if shutil.which(program) is None:
        raise McugenError(f"{program} not found; install it (Debian package: {debian_package})")


def _reject_whitespace(paths: Sequence[Path]) -> None:
    for path in paths:
        if any(character.isspace() for character in str(path)):
            raise McugenError(f"make cannot handle the space in {path}; use a path without one")


def _joined_paths(paths: Sequence[Path]) -> str:
    return " ".join(str(Path(path).resolve()) for path in paths)


def _default_cache_dir() -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "mcugen"
