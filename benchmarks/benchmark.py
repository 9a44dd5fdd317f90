"""Benchmark table: per model, target (a core, or a part run on its core's QEMU board) and
kernel set, the instructions per inference counted exactly in QEMU, MACs per instruction
(convolution and fully connected MACs only), flash (code, weights) and RAM (arena, stack)
measured from the compiled objects, and the time of one inference of the host build.

    python3 benchmarks/benchmark.py [--models a025_96,person_detect] [--targets cortex-m7,...]

CMSIS-NN rows appear when CMSIS_NN_DIR points at a CMSIS-NN checkout. Nothing here asserts a
speed: it measures and prints.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mcugen.build import BuildOptions, build  # noqa: E402
from mcugen.run import run  # noqa: E402
from mcugen.targets import qemu_targets  # noqa: E402

SHARED_MODEL = REPO.parent / "shared" / "models" / "person_detect.tflite"
KERAS_MODELS = {
    "v1_a0.25_96x96x3": dict(arch="v1", alpha=0.25, height=96, width=96, channels=3, classes=2),
    "v2_a0.35_96x96x3": dict(arch="v2", alpha=0.35, height=96, width=96, channels=3, classes=2),
    "v3-small_a0.35_96x96x3": dict(arch="v3-small", alpha=0.35, height=96, width=96, channels=3,
                                   classes=2),
    "v3-large_a0.35_96x96x3": dict(arch="v3-large", alpha=0.35, height=96, width=96, channels=3,
                                   classes=2),
}
CORES = sorted(qemu_targets())  # every core that runs in QEMU, as targets/ says


def model_file(name: str, work: Path) -> Path:
    if name == "person_detect":
        return SHARED_MODEL
    from mcugen.frontend.keras import build_mobilenet_tflite

    path = work / f"{name}.tflite"
    path.write_bytes(build_mobilenet_tflite(seed=1, **KERAS_MODELS[name]))
    return path


def host_seconds_per_inference(model: Path, kernels: str, work: Path) -> float:
    """Median wall time of the host build (gcc -O2) over repeated inferences."""
    result = build(BuildOptions(model=model, target="host", kernels=kernels,
                                out=work / f"host_{kernels}"))
    graph = result.compiled.graph
    harness = work / "bench.c"
    harness.write_text(HOST_HARNESS)
    exe = work / f"bench_{kernels}"
    extra = cmsis_sources() if kernels == "cmsis-nn" else []
    includes = [f"-I{Path(os.environ['CMSIS_NN_DIR']) / 'Include'}"] if extra else []
    subprocess.run(["gcc", "-std=c99", "-D_POSIX_C_SOURCE=199309L", "-O2",
                    f"-I{result.out_dir}", *includes,
                    str(harness), *map(str, sorted(result.out_dir.glob("*.c"))), *extra,
                    "-o", str(exe)], check=True)
    output = subprocess.run([str(exe), str(graph.input.size), str(graph.output.size)],
                            capture_output=True, text=True, check=True).stdout
    return float(output)


def cmsis_sources() -> list[str]:
    root = Path(os.environ["CMSIS_NN_DIR"]) / "Source"
    return sorted(str(p) for p in root.glob("*/*.c")
                  if not p.name.endswith(("_f16.c", "_f32.c", "_flt.c")))


HOST_HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "model.h"
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
int main(void) {
    static int8_t in[MODEL_INPUT_SIZE], out[MODEL_OUTPUT_SIZE];
    double times[21];
    for (int i = 0; i < MODEL_INPUT_SIZE; ++i) in[i] = (int8_t)(i * 37);
    for (int r = 0; r < 21; ++r) { double t = now(); model_invoke(in, out); times[r] = now() - t; }
    qsort(times, 21, sizeof times[0], cmp);
    printf("%.9f\n", times[10]);
    return 0;
}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join([*KERAS_MODELS, "person_detect"]))
    parser.add_argument("--targets", "--boards", dest="targets", default=",".join(CORES),
                        help="cores or parts that run in QEMU (default: every core)")
    args = parser.parse_args()
    kernel_sets = ["mcugen"] + (["cmsis-nn"] if os.environ.get("CMSIS_NN_DIR") else [])
    rows = []
    with tempfile.TemporaryDirectory(prefix="mcugen-bench-") as scratch:
        work = Path(scratch)
        for model_name in args.models.split(","):
            model = model_file(model_name, work)
            for kernels in kernel_sets:
                host = host_seconds_per_inference(model, kernels, work / model_name)
                for target in args.targets.split(","):
                    run_dir = work / f"{model_name}_{target}_{kernels}"
                    summary = run(BuildOptions(model=model, target=target, kernels=kernels),
                                  None, run_dir)
                    sizes = summary.build.measured
                    instructions = summary.qemu.instructions[0]
                    macs = summary.build.compiled.report.macs
                    code, weights, stack = ((sizes.code_bytes, sizes.weight_bytes,
                                             sizes.stack_bytes) if sizes else (0, 0, 0))
                    rows.append((model_name, target, kernels, instructions, macs / instructions,
                                 code, weights, summary.build.compiled.plan.arena_size,
                                 stack, host * 1e3,
                                 "yes" if summary.matches else "NO"))
                    print(f"... {model_name} {target} {kernels}: {instructions:,}",
                          file=sys.stderr)
    header = ("model", "target", "kernels", "instructions", "MACs/instr", "code B", "weights B",
              "arena B", "stack B", "host ms", "bit-exact")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:,} | {r[4]:.3f} | {r[5]:,} | {r[6]:,} | "
              f"{r[7]:,} | {r[8]:,} | {r[9]:.2f} | {r[10]} |")


if __name__ == "__main__":
    main()
