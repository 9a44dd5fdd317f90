"""mcugen against CMSIS-NN, side by side in one run: for every model of the zoo and every
core with a QEMU board, both builds of the same model (``--kernels mcugen`` and
``--kernels cmsis-nn``) run in QEMU with exact instruction counts, and are checked bit for bit
against the NumPy reference and TFLM. Prints one table (instructions of each, their ratio,
MACs per instruction, code and RAM measured from the cross compiler) and the geometric mean
of the ratio per core. Nothing here asserts a speed: it measures and prints.

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


def measured(summary: RunSummary) -> Measured:
    sizes = summary.build.measured
    return Measured(instructions=summary.qemu.instructions[0],
                    macs=summary.build.compiled.report.macs,
                    code=sizes.code_bytes if sizes else 0,
                    arena=summary.build.compiled.plan.arena_size,
                    stack=sizes.stack_bytes if sizes else 0, exact=summary.matches)


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
            print(f"... {model} {core} {kernels}: {result.instructions:,}", file=sys.stderr)
            return result

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = dict(zip(cases, pool.map(one, cases)))
    print_table(models, cores, results)


def print_table(models: list[str], cores: list[str], results: dict) -> None:
    print("| model | core | mcugen instr | CMSIS-NN instr | ratio | MACs/instr | "
          "code B (ours / CMSIS-NN) | RAM B: arena + stack (ours / CMSIS-NN) | bit-exact |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for core in cores:
        for model in models:
            ours, theirs = results[model, core, "mcugen"], results[model, core, "cmsis-nn"]
            exact = "yes" if ours.exact and theirs.exact else "NO"
            print(f"| {model} | {core} | {ours.instructions:,} | {theirs.instructions:,} | "
                  f"{ours.instructions / theirs.instructions:.3f} | "
                  f"{ours.macs / ours.instructions:.3f} | {ours.code:,} / {theirs.code:,} | "
                  f"{ours.arena + ours.stack:,} / {theirs.arena + theirs.stack:,} | {exact} |")
    print()
    print("| core | geometric mean of mcugen / CMSIS-NN | worst | models |")
    print("|---|---:|---:|---:|")
    for core in cores:
        ratios = [results[m, core, "mcugen"].instructions
                  / results[m, core, "cmsis-nn"].instructions for m in models]
        mean = math.exp(sum(map(math.log, ratios)) / len(ratios))
        print(f"| {core} | {mean:.3f} | {max(ratios):.3f} | {len(ratios)} |")


if __name__ == "__main__":
    main()
