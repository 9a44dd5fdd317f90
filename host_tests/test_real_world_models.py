"""The quantized MobileNets people download (issue 16), end to end: Google's hosted uint8
MobileNet V1 (the TF1 converter: uint8 everywhere, weights with zero points) and TinyMaix's
Keras export (shape arithmetic folded at import) build for the host, Cortex-M7 and Cortex-M55
and are bit-exact with the oracle (TFLM, or TensorFlow Lite's reference kernels where TFLM cannot
load the model) on the host under ASan and UBSan and in QEMU; `mcugen run --image` names the
cat of ../shared/images as TensorFlow Lite does. MCUNet's float-I/O model and converter-made
uint8- and float-I/O models are in test_quantize_io.py.

The uint8 kernels' arithmetic (the weight offset's input sums, int16 or per-channel-offset
depthwise weights, uint8 average-pool and fully-connected rounding) is tested op by op on
hand-built graphs in test_kernels.py (the u8_ cases)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SHARED
from firmware_batch import compile_for, run_batch
from hostc import build_shared, run_sanitized
from mcugen.build import BuildOptions, build
from mcugen.compile import compile_graph
from mcugen.frontend.tflite import load_tflite
from mcugen.image import InputTensor, load_picture, pixels_to_input
from mcugen.oracle import TFLITE_REFERENCE, TFLM, oracle_outputs
from mcugen.reference import run_reference
from mcugen.run import default_inputs, input_tensor, run
from mcugen.targets import load_target

HOSTED_UINT8 = SHARED / "models" / "mobilenet_v1_0.25_128_quant.tflite"
TINYMAIX = SHARED / "models" / "tinymaix_mbnet96_0.25_q.tflite"
CAT = SHARED / "images" / "cat.bmp"
LABELS = SHARED / "images" / "imagenet_labels.txt"

MODELS = {"hosted_uint8": (HOSTED_UINT8, TFLITE_REFERENCE), "tinymaix": (TINYMAIX, TFLM)}


def typed_inputs(graph, seed: int = 0) -> np.ndarray:
    """Both extremes of the input type, its zero point, and random inputs."""
    x = graph.input
    low, high = (0, 255) if x.dtype == "uint8" else (-128, 127)
    rng = np.random.default_rng(seed)
    rows = [np.full(x.size, low), np.full(x.size, high), np.full(x.size, x.zero_point)] + \
        [rng.integers(low, high + 1, x.size) for _ in range(2)]
    return np.stack(rows).astype(x.dtype)


@pytest.fixture(scope="module", params=sorted(MODELS))
def host_build(request, tmp_path_factory):
    path, oracle = MODELS[request.param]
    work = tmp_path_factory.mktemp(request.param)
    result = build(BuildOptions(model=path, name="model", out=work / "model"))
    return request.param, result, oracle, work


def test_the_hosted_uint8_model_keeps_its_uint8_interface():
    """uint8 in, uint8 out (the typed API), int8 inside: the first and last ops are the
    uint8 <-> int8 shifts, and the layers in between take the uint8 model's kernels."""
    graph = load_tflite(HOSTED_UINT8.read_bytes(), "model")
    assert (graph.input.dtype, graph.output.dtype) == ("uint8", "uint8")
    assert graph.ops[0].OP == "QUANTIZE" and graph.ops[-1].OP == "QUANTIZE"
    assert all(t.dtype != "uint8" for name, t in graph.tensors.items()
               if name not in (graph.input.name, graph.output.name))
    compiled = compile_graph(graph, name="model", target=load_target("cortex-m7"),
                             source=str(HOSTED_UINT8))
    variants = {layer.op.OP: layer.variant.name for layer in compiled.layers}
    assert variants["CONV_2D"].endswith("_dsp") and variants["DEPTHWISE_CONV_2D"].endswith("_dsp")
    assert "typedef uint8_t model_input_t;" in compiled.sources["model.h"]


@pytest.mark.tensorflow
def test_real_world_models_are_bit_exact_on_the_host_under_sanitizers(host_build):
    name, result, oracle, work = host_build
    graph = result.compiled.graph
    inputs = typed_inputs(graph)
    expected = oracle_outputs(result.tflite, inputs)
    assert expected.name == oracle, expected.description
    c_model = build_shared(result.out_dir, "model", graph.input.size, graph.output.size, work,
                           input_dtype=graph.input.dtype, output_dtype=graph.output.dtype)
    outputs = np.stack([c_model(x) for x in inputs])
    np.testing.assert_array_equal(outputs, expected.outputs)
    assert len({row.tobytes() for row in outputs}) >= 2  # the outputs follow the input
    sanitized = run_sanitized(result.out_dir, "model", graph.input.size, graph.output.size,
                              inputs, work, output_dtype=graph.output.dtype)
    np.testing.assert_array_equal(sanitized, expected.outputs)


_qemu_runs: dict[str, dict[str, tuple]] = {}


@pytest.fixture(scope="module")
def qemu_work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("qemu")


def qemu_runs(core: str, work: Path) -> dict[str, tuple]:
    """The MODELS compiled for the core (firmware_batch.compile_for, each under its own C
    name) and run in one firmware (firmware_batch.py: the firmware's own files compiled and
    QEMU started once per core, not once per model) on `mcugen run`'s inputs: per model, the
    compiled model, its run, the NumPy reference's outputs and the oracle's run
    (oracle_outputs: the one `mcugen run` picks). Once per core and file."""
    if core not in _qemu_runs:
        target = load_target(core)
        models, inputs = {}, {}
        for name in sorted(MODELS):
            models[name] = compile_for(MODELS[name][0].read_bytes(), name, target)
            inputs[name] = default_inputs(input_tensor(models[name].graph), seed=0)  # run's
        runs = run_batch(models, inputs, target, work / f"fw_{core}")
        _qemu_runs[core] = {}
        for name, compiled in models.items():
            graph = compiled.graph
            reference = np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                                  for x in inputs[name]])
            oracle = oracle_outputs(MODELS[name][0].read_bytes(), inputs[name])
            _qemu_runs[core][name] = (compiled, runs[name], reference, oracle)
    return _qemu_runs[core]


@pytest.mark.qemu
@pytest.mark.parametrize("core", ["cortex-m7", "cortex-m55"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_real_world_models_are_bit_exact_in_qemu(name, core, qemu_work):
    compiled, device, reference, oracle = qemu_runs(core, qemu_work)[name]
    assert oracle.name == MODELS[name][1], oracle.description
    np.testing.assert_array_equal(device.outputs, reference)
    np.testing.assert_array_equal(device.outputs, oracle.outputs)
    names = {layer.variant.name for layer in compiled.layers}
    fast = "_mve" if core == "cortex-m55" else "_dsp"
    assert any(n.startswith("dw_conv") and n.endswith(fast) for n in names), names
    assert any(n.startswith("pw_conv") and n.endswith(fast) for n in names), names


@pytest.mark.tensorflow
def test_the_hosted_uint8_model_runs_in_row_bands_within_a_budget(tmp_path):
    """Issue 16 item 4: a uint8 model in the existing features: --max-ram's row bands."""
    whole = build(BuildOptions(model=HOSTED_UINT8, name="model", out=tmp_path / "whole"))
    summary = run(BuildOptions(model=HOSTED_UINT8, target="host", name="model",
                               max_ram=whole.compiled.report.arena_bytes // 2), None, tmp_path)
    assert summary.build.compiled.report.arena_bytes <= whole.compiled.report.arena_bytes // 2
    assert summary.build.compiled.schedule.banded
    assert summary.matches_reference and summary.matches_oracle


@pytest.mark.qemu
def test_mcugen_run_names_the_cat_as_tensorflow_lite_does(mcugen_here):
    """The issue's command: the hosted uint8 MobileNet on a Cortex-M7 in QEMU classifies
    ../shared/images/cat.bmp; its top class is the one TensorFlow Lite's reference kernels give
    for the same input bytes (computed here independently of mcugen's run)."""
    result = mcugen_here("run", "--image", str(CAT), "--labels", str(LABELS), "--model",
                         str(HOSTED_UINT8), "--target", "cortex-m7", cwd=REPO)
    assert result.returncode == 0, result.stderr
    tensor = InputTensor((1, 128, 128, 3), "uint8", 1 / 128, 128)
    pixels = pixels_to_input(load_picture(CAT, tensor).pixels, tensor).values.reshape(1, -1)
    scores = oracle_outputs(HOSTED_UINT8.read_bytes(), pixels)
    assert scores.name == TFLITE_REFERENCE
    best = int(np.argmax(scores.outputs[0]))
    label = LABELS.read_text().splitlines()[best]
    first = re.search(r"^\s+1\s+(\d+) (.+?)\s+[\d.]+\s+\|\s+(\d+) (.+?)\s+[\d.]+$",
                      result.stdout, re.MULTILINE)
    assert first is not None, result.stdout
    assert (int(first.group(1)), first.group(2)) == (best, label)  # mcugen on the M7
    assert (int(first.group(3)), first.group(4)) == (best, label)  # the oracle beside it
    assert "cat" in label
    assert "verdict: bit-exact" in result.stdout
