"""Targets are data: one TOML file per target in targets/, read into a frozen Target."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field

from .errors import McugenError
from .resources import targets_dir


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    compiler: str  # the C compiler for this target's builds
    cflags: tuple[str, ...]
    features: frozenset[str]  # "dsp", "mve", "fpu": code branches on these, never on names
    flash_bytes: int
    ram_bytes: int
    rounding: str  # "double": TFLite's default requantization rounding
    qemu_board: str | None = None  # the QEMU machine that emulates this core, if any
    # How the core's compiler schedules best, where kernels offer a choice (e.g.
    # "dsp_depth_unroll"); measured, never a kernel selection.
    tuning: dict = field(default_factory=dict)

    @property
    def is_host(self) -> bool:
        return self.qemu_board is None


def target_names() -> list[str]:
    return sorted(p.stem for p in targets_dir().glob("*.toml"))


def load_target(name: str) -> Target:
    path = targets_dir() / f"{name}.toml"
    if not path.is_file():
        raise McugenError(f"unknown target {name!r}; known targets: {', '.join(target_names())}")
    data = tomllib.loads(path.read_text())
    return Target(
        name=name,
        description=data["description"],
        compiler=data["compiler"],
        cflags=tuple(data["cflags"]),
        features=frozenset(data["features"]),
        flash_bytes=int(data["flash_bytes"]),
        ram_bytes=int(data["ram_bytes"]),
        rounding=data["rounding"],
        qemu_board=data.get("qemu_board"),
        tuning=dict(data.get("tuning", {})),
    )
