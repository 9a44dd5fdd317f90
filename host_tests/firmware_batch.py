"""Many small generated models in one QEMU firmware: each compiled under its own name (its
symbols and files apart), linked together with one main that runs them in turn. A firmware
per model spent most of its time compiling and linking the firmware's own files (eight
compiler runs for a one-op model) and starting QEMU; here that happens once per batch, while
each model's C is compiled with the same flags and runs on the same board as in
mcugen.qemu.build_firmware's firmware.

The batch's input.bin holds fixed-size records (the largest model input, its union aligned
for any element type): model after model, each model's inputs in order. main.c reads a
record, calls the model's NAME_invoke between the invoke markers and writes a record of the
largest output's size, so that mcugen.qemu.run_firmware (unchanged: N records in, N out, N
pairs of markers) runs it; the records are split per model afterwards. Before each model,
main prints its name: a fault names the model that was running (run_firmware's error gives
the console's last line)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcugen.compile import CompiledModel, compile_graph
from mcugen.frontend.tflite import load_tflite
from mcugen.qemu import build_firmware, run_firmware


@dataclass
class BatchRun:
    """One model's share of a batch's run."""

    outputs: np.ndarray  # [N, output size] of the model's output type
    instructions: list[int]  # per inference
    layer_instructions: list[list[int]]


def _nbytes(tensor) -> int:
    return tensor.size * np.dtype(tensor.dtype).itemsize


def _main_source(models: dict[str, CompiledModel], counts: dict[str, int],
                 record_in: int, record_out: int) -> str:
    includes = "".join(f'#include "{name}/{name}.h"\n' for name in models)
    runs = []
    for name in models:
        runs.append(
            f'    sh_print("model {name}\\n");\n'
            f"    for (int n = 0; n < {counts[name]}; n++) {{\n"
            f"        if (sh_read(input_file, input.bytes, sizeof input.bytes) != 0) {{\n"
            f'            return fail_io("cannot read input.bin\\n");\n'
            f"        }}\n"
            f"        MCUGEN_INVOKE_BEGIN();\n"
            f"        const int result = {name}_invoke(({name}_input_t *)input.bytes,\n"
            f"                                          ({name}_output_t *)output.bytes);\n"
            f"        MCUGEN_INVOKE_END();\n"
            f"        if (result != 0) {{\n"
            f'            sh_print("model {name}: {name}_invoke failed\\n");\n'
            f"            return 1;\n"
            f"        }}\n"
            f"        if (sh_write(output_file, output.bytes, sizeof output.bytes) != 0) {{\n"
            f'            return fail_io("cannot write output.bin\\n");\n'
            f"        }}\n"
            f"    }}\n")
    return f"""/* A batch of models run in turn (host_tests/firmware_batch.py). */
#include <stdint.h>

#include "mcugen_hooks.h"
#include "semihosting.h"
{includes}
/* Records of the largest input and output, aligned for every element type. */
static union {{
    uint8_t bytes[{record_in}];
    float element;
    uint64_t alignment;
}} input;
static union {{
    uint8_t bytes[{record_out}];
    float element;
    uint64_t alignment;
}} output;

static int fail_io(const char *message)
{{
    sh_print(message);
    return 3;
}}

int main(void)
{{
    const int input_file = sh_open("input.bin", SH_MODE_READ_BINARY);
    const int output_file = sh_open("output.bin", SH_MODE_WRITE_BINARY);
    if (input_file < 0 || output_file < 0) {{
        return fail_io("cannot open input.bin or output.bin\\n");
    }}
{"".join(runs)}    sh_close(input_file);
    sh_close(output_file);
    return 0;
}}
"""


def compile_for(data: bytes, name: str, target, max_ram: int | None = None) -> CompiledModel:
    """The .tflite compiled for the target (a Target) as mcugen.build compiles it (the
    target's RAM as the budget when there is no max_ram, no memory check), without build's
    measurement: that cross-compiles the model once more than its batch does."""
    return compile_graph(load_tflite(data, name), name=name, target=target, source="test",
                         memory_check=False, max_ram=max_ram,
                         fit_ram=None if target.is_host else target.ram_bytes)


def run_batch(models: dict[str, CompiledModel], inputs: dict[str, np.ndarray], target,
              work: Path, timeout: float = 600.0, cmsis_nn_dir: Path | None = None,
              extra_cflags: tuple[str, ...] = ()) -> dict[str, BatchRun]:
    """Each model (compiled with `name` equal to its key, a C identifier) on its inputs
    ([N, input size] of its input type) in one firmware on target's QEMU board (a target or
    a QEMU machine, as build_firmware takes it); cmsis_nn_dir: CMSIS-NN, compiled into the
    firmware once for all the models; extra_cflags: build_firmware's."""
    for name, compiled in models.items():
        assert compiled.view.name == name, (name, compiled.view.name)
    counts = {name: len(inputs[name]) for name in models}
    record_in = max(_nbytes(c.graph.input) for c in models.values())
    record_out = max(_nbytes(c.graph.output) for c in models.values())
    sources = work / "models"
    for name, compiled in models.items():
        folder = sources / name
        folder.mkdir(parents=True, exist_ok=True)
        for file, text in compiled.sources.items():
            if file.endswith((".c", ".h")):
                (folder / file).write_text(text)
    main = work / "batch_main.c"
    main.write_text(_main_source(models, counts, record_in, record_out))
    records = []
    for name, compiled in models.items():
        data = np.ascontiguousarray(inputs[name], dtype=compiled.graph.input.dtype)
        assert data.shape == (counts[name], compiled.graph.input.size), (name, data.shape)
        raw = data.view(np.uint8).reshape(counts[name], -1)
        records.append(np.pad(raw, ((0, 0), (0, record_in - raw.shape[1]))))
    elf = build_firmware(sources, target, work / "firmware", main=main,
                         cmsis_nn_dir=cmsis_nn_dir, extra_cflags=list(extra_cflags))
    result = run_firmware(elf, target, np.concatenate(records), record_out, timeout=timeout,
                          output_dtype="uint8")
    runs, start = {}, 0
    for name, compiled in models.items():
        end = start + counts[name]
        output = compiled.graph.output
        raw = np.ascontiguousarray(result.outputs[start:end, :_nbytes(output)])
        runs[name] = BatchRun(raw.view(output.dtype).reshape(counts[name], output.size),
                              result.instructions[start:end],
                              result.layer_instructions[start:end])
        start = end
    return runs
