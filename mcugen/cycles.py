"""A cycle estimate beside QEMU's exact instruction counts: each piece of code that ran (a
translated block of QEMU's, split at the firmware's markers; mcugen/qemu.py's blocks=True) is
timed once by LLVM's machine model of the core (llvm-mca), and weighted by how many times it
ran in each layer.

How a piece is timed. Its bytes, as QEMU executed them, are disassembled by llvm-mc and given
to llvm-mca, which simulates them repeated back to back; a piece's cost is its steady-state
cycles per execution: the cycles of iterations 11 to 30, divided by 20. The hot pieces are
loop bodies, which do run back to back, each iteration overlapping the previous one's latency;
timing one iteration alone would charge every execution its pipeline's fill and drain (the
full latency of its last loads and multiplies, several cycles on a 20-cycle loop body). For
straight-line code the repetition stands in for the overlap with the next piece. Steady state
is reached within a few iterations on these in-order cores (measured: the same totals after
5, 10 or 50 iterations of warm-up on VWW-sized MobileNets); 20 more make it exact for patterns
that repeat every 2, 4 or 5 iterations. Costs are kept as integers (cycles of 20 iterations),
so per-layer sums add up exactly to the inference's.

What the estimate ignores (it is the core's pipeline alone, as LLVM models it):
- memory: flash wait states, caches (every load hits at the model's load latency), TCM
  versus bus RAM, bus contention, DMA;
- branches: taken-branch refills and mispredictions are not charged (llvm-mca treats a branch
  as an ordinary instruction); calls are timed as branches, since llvm-mca 19 would give a
  call a latency of 100 cycles;
- instructions LLVM's model has no timing for (`unmodelled` counts them): they cost nothing.
  They are IT (which the M4 and M7 fold into a neighbour anyway), barriers and BKPT, and
  Armv8.1-M's low-overhead loop instructions DLS, WLS and LE, left out on purpose: the M55
  model has no timing for them, the M85 model times LE as a call (100 cycles), and on both
  cores a loop end costs nothing once its loop is in the loop cache;
- interrupts, and the start-up and I/O code outside model_invoke (never counted).
On silicon this makes it an optimistic bound for code running from slow flash and close for
code and data in TCM or zero-wait-state memory.

Which model for which core (LLVM 19, Debian's llvm-19; the model decides everything here):
- Cortex-M7: LLVM's CPU cortex-m7, its Cortex-M7 model (dual issue, in order).
- Cortex-M55: LLVM's CPU cortex-m55, its Cortex-M55 model (dual issue of scalar instructions,
  MVE instructions in beats).
- Cortex-M85: LLVM's CPU cortex-m85, its Cortex-M85 model.
- Cortex-M4: LLVM's CPU cortex-m4, its Cortex-M4 model (single issue, in order, 2-cycle loads
  unless pipelined, single-cycle SMLAD).
- Cortex-M33: LLVM's CPU cortex-m33. LLVM has no model of the M33's own: its cortex-m33 CPU uses
  the Cortex-M4 model, the closest available: the M33 is, like the M4, a 3-stage in-order
  pipeline with single-cycle 32-bit multiplies and DSP MACs (it can dual-issue only some pairs
  of 16-bit instructions, which this ignores); the M55 and M7 models describe dual-issue
  4- and 6-stage pipelines instead.
Other cores (M0+, M3) get no estimate.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import McugenError
from .qemu import (INVOKE_BEGIN_MARKER, INVOKE_END_MARKER, LAYER_DONE_MARKER, BlockLog,
                   RunResult)
from .targets import Target

# What the estimate leaves out, in the reports' words (the module docstring has the details).
IGNORED = ("flash wait states, caches, bus contention, branch penalties and the instructions "
           "LLVM's model does not time")

LLVM_MC = "llvm-mc-19"
LLVM_MCA = "llvm-mca-19"
LLVM_PACKAGE = "llvm-19"

# Steady state: cycles of iterations WARM_UP + 1 to WARM_UP + ITERATIONS (see the docstring).
WARM_UP = 10
ITERATIONS = 20
# Part of every cache key: change it when the way a piece is timed changes.
METHOD = f"steady-state {WARM_UP}+{ITERATIONS}, calls as branches, unsupported skipped, v2"

# Put between pieces for one llvm-mc run: UDF #254 (DEFE), which the pieces never execute; it
# disassembles as "trap".
SEPARATOR = bytes.fromhex("fede")
SEPARATOR_TEXT = "trap"


@dataclass(frozen=True)
class CycleModel:
    core: str  # mcugen's core (targets/*.toml)
    triple: str
    mcpu: str  # llvm-mca's -mcpu: whose LLVM scheduling model times the code
    model: str  # what that model is, in words


# Why each: see the module docstring.
CYCLE_MODELS = {m.core: m for m in (
    CycleModel("cortex-m4", "thumbv7em-none-eabi", "cortex-m4", "LLVM's Cortex-M4 model"),
    CycleModel("cortex-m7", "thumbv7em-none-eabi", "cortex-m7", "LLVM's Cortex-M7 model"),
    CycleModel("cortex-m33", "thumbv8m.main-none-eabi", "cortex-m33",
               "LLVM's Cortex-M4 model (LLVM has none of the M33's own)"),
    CycleModel("cortex-m55", "thumbv8.1m.main-none-eabi", "cortex-m55",
               "LLVM's Cortex-M55 model"),
    CycleModel("cortex-m85", "thumbv8.1m.main-none-eabi", "cortex-m85",
               "LLVM's Cortex-M85 model"),
)}


def cycle_model(target: Target) -> CycleModel | None:
    """The LLVM model that times target's core, or None for a core without one."""
    return CYCLE_MODELS.get(target.core)


def missing_tools() -> str | None:
    """Why cycles cannot be estimated on this machine, or None when they can."""
    missing = [tool for tool in (LLVM_MC, LLVM_MCA) if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found (Debian package: {LLVM_PACKAGE})"
    return None


@dataclass(frozen=True)
class PieceCost:
    cycles: int  # cycles of ITERATIONS back-to-back executions, in steady state
    modelled: int  # how many of its instructions llvm-mca timed (the rest cost nothing)


@dataclass(frozen=True)
class InferenceCycles:
    steps: list[int]  # per step (between layer markers), in 1/ITERATIONS cycles
    after_last_step: int  # from the last step's marker to model_invoke's return
    instructions: int  # executed, from the pieces (equals QEMU's count)
    unmodelled: int  # executed instructions llvm-mca had no timing for

    @property
    def units(self) -> int:
        return sum(self.steps) + self.after_last_step

    @property
    def cycles(self) -> float:
        return self.units / ITERATIONS

    @property
    def step_cycles(self) -> list[float]:
        return [units / ITERATIONS for units in self.steps]


@dataclass(frozen=True)
class CycleEstimate:
    model: CycleModel
    inferences: list[InferenceCycles]
    timed_pieces: int  # pieces llvm-mca timed in this estimate (0: all from the cache)

    @property
    def cycles(self) -> list[float]:
        return [inference.cycles for inference in self.inferences]

    def describe(self) -> str:
        return f"{self.model.model}, llvm-mca -mcpu={self.model.mcpu}"


def estimate_cycles(run: RunResult, target: Target, cache_dir: Path | None = None
                    ) -> CycleEstimate:
    """Per inference and per step, the estimated cycles of a run made with blocks=True."""
    model = cycle_model(target)
    if model is None:
        raise McugenError(f"no cycle model for {target.core}; the cores with one: "
                          f"{', '.join(CYCLE_MODELS)}")
    if run.blocks is None:
        raise McugenError("the run logged no blocks: run the firmware with blocks=True")
    per_inference = split_intervals(run.markers, run.blocks)
    used = {piece for inference in per_inference for step in inference for piece in step}
    codes = {run.blocks.pieces[piece].code for piece in used}
    costs, timed = piece_costs(codes, model, cache_dir or default_cache_dir())
    inferences = []
    for intervals in per_inference:
        pieces = [(run.blocks.pieces[piece], times) for step in intervals
                  for piece, times in step.items()]
        units = [sum(costs[run.blocks.pieces[p].code].cycles * t for p, t in step.items())
                 for step in intervals]
        inferences.append(InferenceCycles(
            steps=units[:-1], after_last_step=units[-1],
            instructions=sum(piece.instructions * times for piece, times in pieces),
            unmodelled=sum((piece.instructions - costs[piece.code].modelled) * times
                           for piece, times in pieces)))
    counted = [inference.instructions for inference in inferences]
    if counted != run.instructions:  # the two counts of the plugin must agree
        raise McugenError(f"the executed pieces add up to {counted} instructions per "
                          f"inference, the instruction counter to {run.instructions}")
    return CycleEstimate(model, inferences, timed)


def split_intervals(markers: list[tuple[int, int]], blocks: BlockLog
                    ) -> list[list[dict[int, int]]]:
    """Per inference, the pieces executed in each of its steps (from the invoke's start or the
    previous layer marker to a layer marker), then those after its last step up to its end,
    as qemu._split_inferences splits the instruction counts."""
    inferences: list[list[dict[int, int]]] = []
    current: list[dict[int, int]] | None = None
    for (number, _), executed in zip(markers, blocks.intervals):
        if number == INVOKE_BEGIN_MARKER:
            current = [{}]
            continue
        if current is None:
            continue
        for piece, times in executed.items():
            current[-1][piece] = current[-1].get(piece, 0) + times
        if number == LAYER_DONE_MARKER:
            current.append({})
        elif number == INVOKE_END_MARKER:
            inferences.append(current)
            current = None
    return inferences


def piece_costs(codes: Iterable[bytes], model: CycleModel, cache_dir: Path
                ) -> tuple[dict[bytes, PieceCost], int]:
    """Each piece's cost, from the cache when it has it, else from llvm-mca (all the missing
    pieces in one run of llvm-mc and one of llvm-mca per iteration count); returns the costs
    and how many pieces llvm-mca timed."""
    codes = sorted(set(codes))
    cache = CostCache(cache_dir, model)
    costs = cache.get(codes)
    missing = [code for code in codes if code not in costs]
    if missing:
        why_not = missing_tools()
        if why_not:
            raise McugenError(f"cannot estimate cycles: {why_not}")
        timed = dict(zip(missing, time_pieces(missing, model)))
        cache.put(timed)
        costs.update(timed)
    return costs, len(missing)


def time_pieces(codes: list[bytes], model: CycleModel) -> list[PieceCost]:
    """llvm-mca's steady-state cycles of each piece of machine code (see the docstring). A
    piece llvm-mca cannot read at all (it drops the region) costs nothing, all unmodelled."""
    assembly = [_for_llvm_mca(lines) for lines in disassemble(codes, model)]
    source = "".join(f"# LLVM-MCA-BEGIN p{index}\n" + "".join(f"{line}\n" for line in lines)
                     + f"# LLVM-MCA-END p{index}\n" for index, lines in enumerate(assembly))
    warm = _llvm_mca(source, model, WARM_UP)
    total = _llvm_mca(source, model, WARM_UP + ITERATIONS)
    costs = []
    for index in range(len(codes)):
        before, after = warm.get(f"p{index}"), total.get(f"p{index}")
        if before is None or after is None:
            costs.append(PieceCost(cycles=0, modelled=0))
        else:
            costs.append(PieceCost(cycles=after[0] - before[0], modelled=after[1]))
    return costs


def disassemble(codes: list[bytes], model: CycleModel) -> list[list[str]]:
    """Each piece's instructions as assembly text, from one run of llvm-mc."""
    stream = SEPARATOR.join([*codes, b""])
    completed = subprocess.run(
        [LLVM_MC, "--disassemble", f"-triple={model.triple}", f"-mcpu={model.mcpu}"],
        input=" ".join(f"0x{byte:02x}" for byte in stream), capture_output=True, text=True)
    if completed.returncode != 0:
        raise McugenError(f"{LLVM_MC} could not disassemble the executed code: "
                          f"{_first_line(completed.stderr)}")
    pieces: list[list[str]] = [[]]
    for line in completed.stdout.splitlines():
        text = line.strip()
        if not text or text.startswith("."):
            continue
        if text == SEPARATOR_TEXT:
            pieces.append([])
        else:
            pieces[-1].append(text)
    if len(pieces) != len(codes) + 1 or pieces[-1]:
        raise McugenError(f"{LLVM_MC} disassembled {len(pieces) - 1} pieces of code, "
                          f"expected {len(codes)}")
    return pieces[:-1]


_CALL = re.compile(r"^bl(\s)")
_CALL_REGISTER = re.compile(r"^blx(\s)")
# Armv8.1-M's low-overhead loops: LLVM's M55 model has no timing for them, its M85 model times
# LE as a call (100 cycles). On both cores a loop end in the loop cache costs no cycle.
_LOW_OVERHEAD_LOOP = re.compile(r"^(dls|dlstp|wls|wlstp|le|letp)\b")


def _for_llvm_mca(lines: list[str]) -> list[str]:
    """Calls timed as branches (llvm-mca 19 gives a call a made-up latency of 100 cycles, and
    the next instruction that reads lr waits for it); low-overhead loop instructions left out:
    they cost nothing and count as unmodelled."""
    return [_CALL_REGISTER.sub(r"bx\1", _CALL.sub(r"b\1", line)) for line in lines
            if not _LOW_OVERHEAD_LOOP.match(line)]


def _llvm_mca(source: str, model: CycleModel, iterations: int) -> dict[str, tuple[int, int]]:
    """Per region of source, by name: llvm-mca's total cycles and how many of its
    instructions it timed (it skips those it has no timing for or cannot parse)."""
    completed = subprocess.run(
        [LLVM_MCA, f"-mtriple={model.triple}", f"-mcpu={model.mcpu}",
         f"-iterations={iterations}", "-json", "-skip-unsupported-instructions=any",
         "-instruction-info=0", "-resource-pressure=0", "-"],  # the views cost 3/4 of the time
        input=source, capture_output=True, text=True)
    if "no assembly instructions found" in completed.stderr:
        return {}  # every piece dropped: none has an instruction llvm-mca can time
    try:
        regions = json.loads(completed.stdout)["CodeRegions"]
    except (ValueError, KeyError):
        raise McugenError(f"{LLVM_MCA} failed: {_first_line(completed.stderr)}") from None
    return {region["Name"]: (region["SummaryView"]["TotalCycles"], len(region["Instructions"]))
            for region in regions}


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line]
    return (errors or lines or ["no message"])[0]


class CostCache:
    """Piece costs on disk (SQLite, safe for concurrent runs), keyed by the model, LLVM's
    version, the method and the piece's bytes."""

    def __init__(self, cache_dir: Path, model: CycleModel):
        self.path = Path(cache_dir) / "cycles.sqlite"
        self.key = hashlib.sha256(
            f"{model.triple} {model.mcpu} {_llvm_version()} {METHOD}".encode()).hexdigest()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=60)
        connection.execute("CREATE TABLE IF NOT EXISTS cost (model TEXT, code BLOB, "
                           "cycles INTEGER, modelled INTEGER, PRIMARY KEY (model, code))")
        return connection

    def get(self, codes: list[bytes]) -> dict[bytes, PieceCost]:
        found: dict[bytes, PieceCost] = {}
        connection = self._connect()
        try:
            for code in codes:
                row = connection.execute("SELECT cycles, modelled FROM cost WHERE model = ? "
                                         "AND code = ?", (self.key, code)).fetchone()
                if row is not None:
                    found[code] = PieceCost(*row)
        finally:
            connection.close()
        return found

    def put(self, costs: dict[bytes, PieceCost]) -> None:
        connection = self._connect()
        try:
            with connection:
                connection.executemany(
                    "INSERT OR REPLACE INTO cost VALUES (?, ?, ?, ?)",
                    [(self.key, code, cost.cycles, cost.modelled) for code, cost in costs.items()])
        finally:
            connection.close()


_versions: dict[str, str] = {}


def _llvm_version() -> str:
    """llvm-mca's version line (a different LLVM may time the same code differently)."""
    if LLVM_MCA not in _versions:
        try:
            completed = subprocess.run([LLVM_MCA, "--version"], capture_output=True, text=True)
            _versions[LLVM_MCA] = next((line.strip() for line in completed.stdout.splitlines()
                                        if "version" in line), "unknown")
        except OSError:
            _versions[LLVM_MCA] = "missing"
    return _versions[LLVM_MCA]


def default_cache_dir() -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "mcugen"


def why_not_estimated(target: Target) -> str | None:
    """Why `mcugen run` on target gives no cycle estimate, or None when it gives one."""
    if cycle_model(target) is None:
        return (f"no LLVM machine model for {target.core} (the cores with one: "
                f"{', '.join(CYCLE_MODELS)})")
    return missing_tools()


def time_at_clock(cycles: float, target: Target) -> str | None:
    """E.g. "20.87 ms at stm32h743zi's 480 MHz", for a part (a core states no clock)."""
    if not target.clock_hz:
        return None
    return (f"{1000 * cycles / target.clock_hz:.2f} ms at {target.name}'s "
            f"{target.clock_hz / 1e6:g} MHz")


def format_estimate(estimate: CycleEstimate, macs: int, target: Target) -> str:
    """The lines `mcugen run` prints about cycles."""
    first = estimate.inferences[0]
    lines = [f"estimated cycles per inference: {first.cycles:,.0f} ({macs / first.cycles:.3f} "
             f"MACs per cycle, {first.instructions / first.cycles:.2f} instructions per cycle)"
             + (f", {time_at_clock(first.cycles, target)}" if target.clock_hz else ""),
             f"  ({estimate.describe()}: the pipeline alone, without {IGNORED}; see "
             f"mcugen/cycles.py)"]
    if first.unmodelled:
        lines[-1] += f"; {first.unmodelled:,} executed instructions had no timing"
    return "\n".join(lines)


def cycles_facts(estimate: CycleEstimate | None, why_not: str | None, target: Target) -> dict:
    """What the reports' "run" record says about cycles."""
    if estimate is None:
        return {"cycles": None, "cycles_not_estimated": why_not}
    cycles = estimate.inferences[0].cycles
    return {"cycles": cycles, "cycle_model": estimate.describe(),
            "cycles_ignore": IGNORED,
            "clock_hz": target.clock_hz,
            "milliseconds": 1000 * cycles / target.clock_hz if target.clock_hz else None}
