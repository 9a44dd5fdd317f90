"""Targets are data: one TOML file per target in targets/, read into a frozen Target.

Three kinds of file (the ``kind`` key):

- ``core``: a CPU as the compiler sees it: architecture, compiler flags, instruction-set
  features, the QEMU board that runs it, and the memory of a typical part. The only place
  where a core's flags and its board are written down.
- ``part``: a chip a user flashes. It names its core (``core = "cortex-m4"``) and adds its
  clock, flash and RAM regions; everything else comes from the core's file. A part may state
  its FPU where the silicon vendor chose a different one than the core's file assumes.
- ``host``: the build machine.

The memory check of a part uses its flash and its largest contiguous RAM region (adjacent
regions merged): the arena is one array, and a linker places an array in one region.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import McugenError
from .resources import targets_dir

KINDS = ("core", "part", "host")
# Instruction-set features (targets/README.md): code branches on these, never on names.
ISA_FEATURES = frozenset({"armv7m", "dsp", "mve", "fpu"})


@dataclass(frozen=True)
class RamRegion:
    name: str
    address: int
    bytes: int
    data: bool = True  # may hold the arena (an instruction TCM is for code: `data = false`)

    @property
    def end(self) -> int:
        return self.address + self.bytes


@dataclass(frozen=True)
class QemuBoard:
    """How the firmware in examples/qemu runs this core in QEMU."""

    machine: str  # qemu-system-arm -M
    machine_cpu: str  # the core the machine emulates (an M0+ runs on the M3 machine)
    linker_script: str  # in examples/qemu/boards/
    trap_unaligned: bool  # start-up sets CCR.UNALIGN_TRP: unaligned word accesses fault
    # The frequency of the board's system clock, which SysTick counts (CLKSOURCE = 1): under
    # -icount shift=0 one tick is 1e9 / systick_hz instructions (--profile's QEMU check).
    systick_hz: int | None = None
    # The firmware's folder under examples/: "qemu" (the MPS2/MPS3 boards, semihosting I/O)
    # or "parts" (a real part's own start-up and linker script, printing over its UART).
    firmware: str = "qemu"

    @property
    def uart(self) -> bool:
        """The firmware prints its outputs over the part's UART (inputs built in)."""
        return self.firmware == "parts"


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    compiler: str  # the C compiler for this target's builds
    cflags: tuple[str, ...]  # cpu_flags + opt_flags
    features: frozenset[str]  # "armv7m", "dsp", "mve", "fpu"
    flash_bytes: int
    ram_bytes: int  # for a part: its largest contiguous RAM region
    rounding: str  # "double": TFLite's default requantization rounding
    qemu_board: str | None = None  # the QEMU machine that runs this core, if any
    kind: str = "core"
    core: str = ""  # the core's target name (a core names itself; "" for the host)
    arch: str = ""  # e.g. "armv7e-m"
    cpu_flags: tuple[str, ...] = ()
    opt_flags: tuple[str, ...] = ()
    qemu: QemuBoard | None = None
    clock_hz: int | None = None  # parts only
    ram_regions: tuple[RamRegion, ...] = ()  # parts only
    largest_ram: str = "RAM"  # the region(s) ram_bytes measures, for messages
    # How the core's compiler schedules best, where kernels offer a choice (a [tuning] table
    # of the core's file; none today); measured, never a kernel selection.
    tuning: dict = field(default_factory=dict, compare=False)

    @property
    def is_host(self) -> bool:
        return self.kind == "host"

    @property
    def arena_regions(self) -> tuple[RamRegion, ...]:
        """The RAM regions an arena may be split over (--ram-regions), fastest first: the
        order the part's file lists them in, without those for code only."""
        return tuple(r for r in self.ram_regions if r.data)

    def check_fits(self, flash_needed: int, arena_bytes: int) -> None:
        """The model's constant tables must fit the flash, its arena one RAM region."""
        if flash_needed > self.flash_bytes:
            raise McugenError(
                f"the model needs {flash_needed:,} bytes of flash for its weights but "
                f"{self.name} has {self.flash_bytes:,}; use a smaller alpha, another target, "
                f"or --no-memory-check")
        if arena_bytes > self.ram_bytes:
            where = (f"{self.name}'s largest RAM region ({self.largest_ram}) holds "
                     f"{self.ram_bytes:,}" if self.kind == "part"
                     else f"{self.name} has {self.ram_bytes:,} bytes of RAM")
            raise McugenError(
                f"the model needs a {arena_bytes:,}-byte arena but {where}; use a smaller "
                f"resolution, another target, or --no-memory-check")


def target_names() -> list[str]:
    return sorted(p.stem for p in targets_dir().glob("*.toml"))


def load_target(name: str) -> Target:
    data = _read(name)
    kind = data.get("kind")
    if kind == "part":
        return _part(name, data, _core(data["core"], _read(data["core"])))
    if kind in ("core", "host"):
        return _core(name, data)
    raise McugenError(f"targets/{name}.toml: kind must be one of {', '.join(KINDS)}")


def _read(name: str) -> dict:
    path: Path = targets_dir() / f"{name}.toml"
    if not path.is_file():
        raise McugenError(f"unknown target {name!r}; known targets: {', '.join(target_names())} "
                          f"(see mcugen targets)")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise McugenError(f"targets/{name}.toml: {error}") from None


def _core(name: str, data: dict) -> Target:
    if data.get("kind") not in ("core", "host"):
        raise McugenError(f"targets/{name}.toml is not a core")
    qemu = data.get("qemu")
    cpu_flags = tuple(data.get("cpu_flags", ()))
    opt_flags = tuple(data["opt_flags"])
    return Target(
        name=name, description=data["description"], compiler=data["compiler"],
        cflags=cpu_flags + opt_flags, features=_features(name, data["features"]),
        flash_bytes=int(data["flash_bytes"]), ram_bytes=int(data["ram_bytes"]),
        rounding=data["rounding"], qemu_board=qemu["machine"] if qemu else None,
        kind=data["kind"], core=data.get("core", ""), arch=data.get("arch", ""),
        cpu_flags=cpu_flags, opt_flags=opt_flags,
        qemu=_qemu_board(qemu) if qemu else None, tuning=dict(data.get("tuning", {})))


def _qemu_board(qemu: dict) -> QemuBoard:
    return QemuBoard(machine=qemu["machine"], machine_cpu=qemu["machine_cpu"],
                     linker_script=qemu["linker_script"],
                     trap_unaligned=bool(qemu.get("trap_unaligned", False)),
                     systick_hz=qemu.get("systick_hz"),
                     firmware=qemu.get("firmware", "qemu"))


def _part(name: str, data: dict, core: Target) -> Target:
    regions = tuple(RamRegion(r["name"], int(r["address"]), int(r["bytes"]),
                              bool(r.get("data", True)))
                    for r in data["ram"])
    largest = max(contiguous_ram(regions), key=lambda run: sum(r.bytes for r in run))
    cpu_flags = core.cpu_flags
    if "fpu" in data:  # the vendor's FPU option replaces the core file's -mfpu
        cpu_flags = tuple(f"-mfpu={data['fpu']}" if flag.startswith("-mfpu=") else flag
                          for flag in cpu_flags)
    if "cpu" in data:  # a core of the same instruction set (a Cortex-M0 on the M0+'s kernels)
        cpu_flags = tuple(f"-mcpu={data['cpu']}" if flag.startswith("-mcpu=") else flag
                          for flag in cpu_flags)
    # A part QEMU emulates as a machine of its own runs there (examples/parts), not on its
    # core's board.
    qemu = _qemu_board(data["qemu"]) if "qemu" in data else core.qemu
    return Target(
        name=name, description=data["description"], compiler=core.compiler,
        cflags=cpu_flags + core.opt_flags, features=core.features,
        flash_bytes=int(data["flash_bytes"]), ram_bytes=sum(r.bytes for r in largest),
        rounding=core.rounding, qemu_board=qemu.machine if qemu else None, kind="part",
        core=core.name, arch=core.arch, cpu_flags=cpu_flags, opt_flags=core.opt_flags, qemu=qemu,
        clock_hz=int(data["clock_hz"]), ram_regions=regions,
        largest_ram="+".join(r.name for r in largest), tuning=core.tuning)


def _features(name: str, features: list[str]) -> frozenset[str]:
    unknown = set(features) - ISA_FEATURES
    if unknown:
        raise McugenError(f"targets/{name}.toml: unknown features {sorted(unknown)}")
    return frozenset(features)


def contiguous_ram(regions: tuple[RamRegion, ...]) -> list[list[RamRegion]]:
    """The regions grouped into runs of adjacent addresses, in address order."""
    runs: list[list[RamRegion]] = []
    for region in sorted(regions, key=lambda r: r.address):
        if runs and runs[-1][-1].end == region.address:
            runs[-1].append(region)
        else:
            runs.append([region])
    return runs


def core_order(name: str) -> tuple[int, str]:
    """cortex-m0plus < cortex-m3 < cortex-m4 < cortex-m7 < cortex-m33 < cortex-m55."""
    digits = "".join(c for c in name if c.isdigit())
    return (int(digits) if digits else 0, name)


def qemu_targets() -> dict[str, Target]:
    """Every core that runs in QEMU, by name, in core order: what the firmware tests and the
    benchmark cover."""
    cores = (load_target(name) for name in sorted(target_names(), key=core_order))
    return {t.name: t for t in cores if t.kind == "core" and t.qemu is not None}


def make_variables(target: Target) -> dict[str, str]:
    """What examples/qemu/Makefile needs to build the firmware for this target."""
    if target.qemu is None:
        raise McugenError(f"target {target.name} has no QEMU board; choose one of "
                          f"{', '.join(qemu_targets())} or a part with one of these cores")
    return {
        "CPU_FLAGS": " ".join(target.cpu_flags),
        **({"PART": target.name} if target.qemu.uart else {}),
        "OPT_FLAGS": " ".join(target.opt_flags),
        "LINKER_SCRIPT": target.qemu.linker_script,
        "TRAP_UNALIGNED": "1" if target.qemu.trap_unaligned else "0",
    }
