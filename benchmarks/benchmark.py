"""mcugen against CMSIS-NN, side by side in one run: for every model of the zoo and every
core with a QEMU board, both builds of the same model (``--kernels mcugen`` and
``--kernels cmsis-nn``) run in QEMU with exact instruction counts and a cycle estimate (LLVM's
machine model of the core, weighted by QEMU's execution counts: mcugen/cycles.py), and are
checked bit for bit against the NumPy reference and TFLM. Prints one table (instructions and
estimated cycles of each, their ratios, MACs per instruction and per cycle, code and RAM
measured from the cross compiler) and the geometric means of the ratios per core. Cores
without an LLVM model (M0+, M3) show "-" for cycles. Nothing here asserts a speed: it
measures and prints.

    python3 benchmarks/benchmark.py [--models a,b] [--cores cortex-m4,cortex-m7] [--jobs 2]

CMSIS-NN comes from $CMSIS_NN_DIR, else ../shared/third_party/CMSIS-NN.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from mcugen.build import BuildOptions  # noqa: E402
from mcugen.run import RunSummary, run  # noqa: E402
from mcugen.targets import qemu_targets  # noqa: E402
from zoo import MISSING, MODELS, model_file  # noqa: E402

KERNEL_SETS = ("mcugen", "cmsis-nn")


@dataclass(frozen=True)
class Measured:
    instructions: int
    macs: int
    code: int
    arena: int
    stack: int
    exact: bool
    cycles: float | None = None  # estimated; None on a core without an LLVM model


def measured(summary: RunSummary) -> Measured:
    sizes = summary.build.measured
    return Measured(instructions=summary.qemu.instructions[0],
                    macs=summary.build.compiled.report.macs,
                    code=sizes.code_bytes if sizes else 0,
                    arena=summary.build.compiled.plan.arena_size,
                    stack=sizes.stack_bytes if sizes else 0, exact=summary.matches,
                    cycles=summary.cycles.cycles[0] if summary.cycles else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--cores", default=",".join(qemu_targets()),
                        help="cores (or parts) with a QEMU board; default every core")
    parser.add_argument("--jobs", type=int, default=2, help="QEMU runs at once")
    args = parser.parse_args()
    models, cores = args.models.split(","), args.cores.split(",")
    for line in MISSING.values():  # a model the zoo lists only once its file is there
        print(line, file=sys.stderr)
    files = {name: model_file(name) for name in models}  # conversions first, one at a time
    cases = [(m, c, k) for m in models for c in cores for k in KERNEL_SETS]
    with tempfile.TemporaryDirectory(prefix="mcugen-bench-") as scratch:
        def one(case: tuple[str, str, str]) -> Measured:
            model, core, kernels = case
            # The QEMU boards have megabytes: a model larger than the core's typical part
            # still runs there (and is measured as it is).
            result = measured(run(BuildOptions(model=files[model], target=core,
                                               kernels=kernels, memory_check=False),
                                  None, Path(scratch) / "_".join(case)))
            cycles = "-" if result.cycles is None else f"{result.cycles:,.0f}"
            print(f"... {model} {core} {kernels}: {result.instructions:,} instructions, "
                  f"{cycles} estimated cycles", file=sys.stderr)
            return result

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = dict(zip(cases, pool.map(one, cases)))
    print_table(models, cores, results)


def ratio(ours: float | None, theirs: float | None) -> float | None:
    return None if ours is None or not theirs else ours / theirs


def figure(value: float | None, form: str) -> str:
    return "-" if value is None else format(value, form)


def print_table(models: list[str], cores: list[str], results: dict) -> None:
    print("| model | core | mcugen instr | CMSIS-NN instr | ratio | MACs/instr | "
          "mcugen est. cycles | CMSIS-NN est. cycles | ratio | MACs/cycle (ours / CMSIS-NN) | "
          "code B (ours / CMSIS-NN) | RAM B: arena + stack (ours / CMSIS-NN) | bit-exact |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for core in cores:
        for model in models:
            ours, theirs = results[model, core, "mcugen"], results[model, core, "cmsis-nn"]
            exact = "yes" if ours.exact and theirs.exact else "NO"
            per_cycle = [ratio(m.macs, m.cycles) for m in (ours, theirs)]
            print(f"| {model} | {core} | {ours.instructions:,} | {theirs.instructions:,} | "
                  f"{ours.instructions / theirs.instructions:.3f} | "
                  f"{ours.macs / ours.instructions:.3f} | {figure(ours.cycles, ',.0f')} | "
                  f"{figure(theirs.cycles, ',.0f')} | "
                  f"{figure(ratio(ours.cycles, theirs.cycles), '.3f')} | "
                  f"{figure(per_cycle[0], '.3f')} / {figure(per_cycle[1], '.3f')} | "
                  f"{ours.code:,} / {theirs.code:,} | "
                  f"{ours.arena + ours.stack:,} / {theirs.arena + theirs.stack:,} | {exact} |")
    print()
    print("| core | geometric mean of mcugen / CMSIS-NN: instructions | worst | "
          "estimated cycles | worst | models |")
    print("|---|---:|---:|---:|---:|---:|")
    for core in cores:
        pairs = [(results[m, core, "mcugen"], results[m, core, "cmsis-nn"]) for m in models]
        instructions = [ours.instructions / theirs.instructions for ours, theirs in pairs]
        cycles = [ratio(ours.cycles, theirs.cycles) for ours, theirs in pairs]
        cycles = None if None in cycles else cycles
        print(f"| {core} | {geometric_mean(instructions):.3f} | {max(instructions):.3f} | "
              f"{figure(cycles and geometric_mean(cycles), '.3f')} | "
              f"{figure(cycles and max(cycles), '.3f')} | {len(pairs)} |")


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values))


if __name__ == "__main__":
    main()
