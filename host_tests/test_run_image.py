"""`mcugen run --image FILE [--labels FILE]`: a photo decoded and resized with Pillow, turned into
the model's input type by one convention, run on the host and in QEMU, and its top five printed
beside the oracle's (TFLM, or TensorFlow Lite's reference kernels where TFLM cannot load the
model: mcugen/oracle.py), which must agree bit for bit."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import PERSON_DETECT, REPO, SHARED, mobilenet_tflite
from mcugen.build import BuildOptions
from mcugen.errors import McugenError
from mcugen.image import (InputTensor, dequantize, load_labels, load_picture, parse_input_range,
                          pixels_to_input, top_classes)
from mcugen.oracle import TFLITE_REFERENCE, TFLM, oracle_outputs, tflm_outputs
from mcugen.run import ImageRequest, format_summary, load_inputs, run

CAT = SHARED / "images" / "cat.bmp"
IMAGENET_LABELS = SHARED / "images" / "imagenet_labels.txt"
HOSTED_UINT8 = SHARED / "models" / "mobilenet_v1_0.25_128_quant.tflite"
# A Keras MobileNet from mcugen's front end, ImageNet-sized head, small and not square.
KERAS = dict(arch="v1", seed=3, alpha=0.25, height=64, width=80, channels=3, classes=1000)


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keras") / "mobilenet_1000.tflite"
    path.write_bytes(mobilenet_tflite(**KERAS))
    return path


@pytest.fixture(scope="module")
def person_labels(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("labels") / "person_labels.txt"
    path.write_text("no person\nperson\n")
    return path




@pytest.fixture
def mcugen_in_repo(mcugen_here):
    """The command line's code in this process (conftest.mcugen_here), run from the
    repository."""
    return lambda *args: mcugen_here(*args, cwd=REPO)


# --- the preprocessing convention ------------------------------------------------------------

PIXELS = np.array([0, 1, 127, 128, 254, 255], np.uint8).reshape(1, 2, 3)


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY", b"not an array at all"])
def test_unreadable_inputs_files_are_refused_in_one_line(content, tmp_path):
    """An empty --inputs file was an internal error (numpy raises EOFError for it)."""
    path = tmp_path / "inputs.npy"
    path.write_bytes(content)
    with pytest.raises(McugenError, match=r"^cannot read --inputs .*inputs\.npy: "):
        load_inputs(path, 27, "int8")


def test_integer_inputs_get_the_pixel_bytes():
    int8 = pixels_to_input(PIXELS, InputTensor((1, 1, 2, 3), "int8", 1 / 127.5, -1))
    assert int8.values.dtype == np.int8
    assert int8.values.tolist() == [-128, -127, -1, 0, 126, 127]
    uint8 = pixels_to_input(PIXELS, InputTensor((1, 1, 2, 3), "uint8", 1 / 128, 128))
    assert uint8.values.dtype == np.uint8 and uint8.values.tolist() == PIXELS.reshape(-1).tolist()
    assert "p - 128" in int8.description and "uint8 input p " in uint8.description


def test_float_inputs_get_mobilenets_preprocessing():
    values = pixels_to_input(PIXELS, InputTensor((1, 1, 2, 3), "float32")).values
    assert values.dtype == np.float32
    np.testing.assert_allclose(values, PIXELS.reshape(-1) / 127.5 - 1, atol=1e-6)
    assert values[0] == -1.0 and values[-1] == 1.0


def test_input_range_maps_pixels_and_quantizes_as_tflite_does():
    """0..255 onto -1..1 with scale 1/128, zero point 0: the ends saturate (1/scale = 128 >
    127), 128 maps to 0.00392 -> 0.502 -> 1 (half away from zero), 127 to -0.502 -> -1."""
    tensor = InputTensor((1, 1, 2, 3), "int8", 1 / 128, 0)
    values = pixels_to_input(PIXELS, tensor, (-1.0, 1.0)).values
    assert values.tolist() == [-128, -127, -1, 1, 127, 127]
    assert pixels_to_input(PIXELS, InputTensor((1, 1, 2, 3), "uint8", 1.0, 0),
                           (0.0, 255.0)).values.tolist() == PIXELS.reshape(-1).tolist()
    floats = pixels_to_input(PIXELS, InputTensor((1, 1, 2, 3), "float32"), (0.0, 1.0)).values
    np.testing.assert_allclose(floats, PIXELS.reshape(-1) / 255, atol=1e-6)
    assert parse_input_range("-1,1") == (-1.0, 1.0)
    for bad in ("1", "1,-1", "a,b", "0,inf"):
        with pytest.raises(McugenError, match="--input-range"):
            parse_input_range(bad)


def test_pictures_are_resized_with_pillows_bilinear_filter_and_converted(tmp_path):
    rgb = load_picture(CAT, InputTensor((1, 48, 64, 3), "int8", 0.01, 0))
    with Image.open(CAT) as image:
        expected = image.convert("RGB").resize((64, 48), Image.Resampling.BILINEAR)
    assert rgb.pixels.shape == (48, 64, 3)
    np.testing.assert_array_equal(rgb.pixels, np.asarray(expected))
    gray = load_picture(CAT, InputTensor((1, 32, 32, 1), "int8", 0.01, 0))
    assert gray.pixels.shape == (32, 32, 1) and rgb.original_size == (512, 341)
    # PNG and JPEG decode as well as BMP.
    for suffix in ("png", "jpg"):
        path = tmp_path / f"cat.{suffix}"
        expected.save(path)
        assert load_picture(path, InputTensor((1, 48, 64, 3), "int8", 0.01, 0)).pixels.shape \
            == (48, 64, 3)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a picture")
    with pytest.raises(McugenError, match="not an image Pillow can read"):
        load_picture(junk, InputTensor((1, 8, 8, 3), "int8", 0.01, 0))


def test_labels_with_a_background_line_more_or_less():
    with_background = load_labels(IMAGENET_LABELS, 1000)  # 1001 lines, "background" first
    assert with_background.names[0] == "tench, Tinca tinca" and "dropped" in with_background.note
    exact = load_labels(IMAGENET_LABELS, 1001)
    assert exact.names[0] == "background" and exact.note is None
    lines = IMAGENET_LABELS.read_text().splitlines()
    assert len(lines) == 1001
    with pytest.raises(McugenError, match="1001 lines but the model has 10 classes"):
        load_labels(IMAGENET_LABELS, 10)


def test_top_classes_are_dequantized_and_stable_on_ties():
    output = np.array([-128, 5, 100, 5, 100, -3], np.int8)
    labels = load_labels(None, 6)
    top = top_classes(output, labels, "int8", 0.5, -128, count=4)
    assert [r.index for r in top] == [2, 4, 1, 3]
    assert top[0].score == 0.5 * (100 + 128) and top[0].raw == 100
    assert dequantize(np.array([1.5], np.float32), "float32", None, None).tolist() == [1.5]


# --- the oracle --------------------------------------------------------------------------------


@pytest.mark.tensorflow
def test_the_oracle_falls_back_to_tflites_reference_kernels_for_a_uint8_model():
    """Google's hosted uint8 MobileNet: TFLM cannot load it; TensorFlow Lite's reference
    kernels run it, and on cat.bmp resized by Pillow's bilinear filter they name the cat
    (shared/models/README.md: "Egyptian cat")."""
    tensor = InputTensor((1, 128, 128, 3), "uint8", 1 / 128, 128)
    model_input = pixels_to_input(load_picture(CAT, tensor).pixels, tensor)
    oracle = oracle_outputs(HOSTED_UINT8.read_bytes(), model_input.values.reshape(1, -1))
    assert oracle.name == TFLITE_REFERENCE and oracle.outputs.dtype == np.uint8
    assert len(oracle.notes) == 1 and oracle.notes[0].startswith("TFLM cannot run this model")
    top = top_classes(oracle.outputs[0], load_labels(IMAGENET_LABELS, 1001), "uint8",
                      1 / 256, 0)
    assert top[0].label == "Egyptian cat"
    assert {r.label for r in top[:3]} == {"Egyptian cat", "tiger cat", "tabby, tabby cat"}


@pytest.mark.tensorflow
def test_a_missing_tflite_micro_is_not_the_models_fault(monkeypatch, keras_model, tmp_path):
    """Without tflite-micro the oracle says it is not installed and falls back to TensorFlow
    Lite's reference kernels; `mcugen run` says so (it used to say "TFLM could not load this
    model")."""
    monkeypatch.setitem(sys.modules, "tflite_micro", None)  # import tflite_micro fails
    with pytest.raises(McugenError, match="tflite-micro is not installed.*pip install"):
        tflm_outputs(keras_model.read_bytes(), np.zeros((1, 64 * 80 * 3), np.int8))
    summary = run(BuildOptions(model=keras_model, target="host"), None, tmp_path)
    assert summary.oracle.name == TFLITE_REFERENCE and summary.matches
    text = format_summary(summary)
    assert "tflite-micro is not installed" in text and "could not load" not in text
    assert "verdict: bit-exact" in text


# --- mcugen run --image ------------------------------------------------------------------------


@pytest.mark.qemu
@pytest.mark.parametrize("target", ["host", "cortex-m7"])
def test_person_detect_classifies_the_photo_as_the_oracle_does(target, person_labels, tmp_path):
    """One channel: the photo in grayscale, int8 input p - 128; the top classes on the target
    equal TFLM's on the same input bytes, which are Pillow's pixels minus 128."""
    summary = run(BuildOptions(model=PERSON_DETECT, target=target), None, tmp_path,
                  image=ImageRequest(CAT, person_labels))
    with Image.open(CAT) as image:
        pixels = np.asarray(image.convert("L").resize((96, 96), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(summary.inputs[0], (pixels.astype(np.int16) - 128)
                                  .astype(np.int8).reshape(-1))
    assert summary.oracle.name == TFLM and summary.matches
    np.testing.assert_array_equal(summary.device.outputs,
                                  tflm_outputs(PERSON_DETECT.read_bytes(), summary.inputs))
    top = summary.image.top
    assert top == summary.image.oracle_top and {r.label for r in top} == {"person", "no person"}
    text = format_summary(summary)
    assert "verdict: bit-exact" in text and "grayscale" in text
    rows = [line for line in text.splitlines() if line[:4].strip() in {"1", "2"}]
    assert len(rows) == 2 and all(line.count(r.label) == 2 for line, r in zip(rows, top))
    assert ("instructions per inference" in text) == (target != "host")


@pytest.mark.tensorflow
@pytest.mark.qemu
@pytest.mark.parametrize("target", ["host", "cortex-m7"])
def test_a_keras_mobilenet_names_the_photo_as_the_oracle_does(target, keras_model, tmp_path):
    """RGB, not square, 1000 classes with the 1001-line ImageNet file (its background line
    dropped, and said so)."""
    summary = run(BuildOptions(model=keras_model, target=target), None, tmp_path,
                  image=ImageRequest(CAT, IMAGENET_LABELS))
    assert summary.inputs.shape == (1, 64 * 80 * 3) and summary.matches
    assert summary.oracle.name == TFLM
    np.testing.assert_array_equal(summary.device.outputs, summary.oracle.outputs)
    assert summary.image.top == summary.image.oracle_top and len(summary.image.top) == 5
    labels = IMAGENET_LABELS.read_text().splitlines()
    assert all(r.label == labels[r.index + 1] for r in summary.image.top)
    assert "background" in summary.image.labels.note


def test_a_wrong_answer_gives_a_mismatch_verdict(person_labels, tmp_path):
    """The verdict is not vacuous: outputs that differ from the oracle's by one are called a
    mismatch, with the count."""
    import dataclasses

    from mcugen.run import verdict

    summary = run(BuildOptions(model=PERSON_DETECT, target="host"), None, tmp_path,
                  image=ImageRequest(CAT, person_labels))
    outputs = summary.device.outputs.copy()
    outputs[0, 0] += 1
    wrong = dataclasses.replace(summary, device=dataclasses.replace(summary.device,
                                                                    outputs=outputs))
    assert not wrong.matches
    assert verdict(wrong).startswith("verdict: MISMATCH: 1 of the 2 output values differ")


@pytest.mark.tensorflow
def test_the_command_line_prints_the_top_five_and_the_verdict(keras_model, mcugen_in_repo):
    result = mcugen_in_repo("run", "--model", str(keras_model), "--target", "host", "--image",
                            str(CAT), "--labels", str(IMAGENET_LABELS), "--input-range=-1,1")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert any(line.startswith("image: ") and "mapped onto -1..1" in line for line in lines)
    ranks = [line for line in lines if line[:4].strip() in {"1", "2", "3", "4", "5"}]
    assert len(ranks) == 5
    assert any(line.startswith("verdict: bit-exact") and "TFLM" in line for line in lines)


@pytest.mark.parametrize("args, message", [
    (["--image", "/nonexistent/cat.png"], "--image /nonexistent/cat.png: no such file"),
    (["--labels", str(IMAGENET_LABELS)], "--labels and --input-range go with --image"),
    (["--image", str(CAT), "--input-range", "1,0"], "--input-range '1,0'"),
    (["--image", str(CAT), "--labels", str(IMAGENET_LABELS)],
     "1001 lines but the model has 2 classes"),
])
def test_bad_image_options_are_one_line(args, message, mcugen_in_repo):
    result = mcugen_in_repo("run", "--model", str(PERSON_DETECT), "--target", "host", *args)
    assert result.returncode == 1 and result.stdout == ""
    error = result.stderr.strip().splitlines()
    assert error[-1].startswith("mcugen: error: ") and message in error[-1], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.tensorflow
@pytest.mark.qemu
def test_run_takes_no_memory_check(tmp_path, mcugen_in_repo):
    """α 1.0: 3.2 MB of weights, more than a typical Cortex-M7's 1 MB of flash, but the QEMU
    board holds them: `run` refuses it as `build` does. That it runs the same model with
    --no-memory-check, bit-exact, test_cli's test_run_prints_builds_lines_and_an_overflow_
    stands_out checks (one run of this model in the suite: it is the slowest to build)."""
    big = tmp_path / "big.tflite"
    big.write_bytes(mobilenet_tflite(arch="v1", seed=1, alpha=1.0, height=64, width=64,
                                     channels=3, classes=5))
    refused = mcugen_in_repo("run", "--model", str(big), "--target", "cortex-m7", "--image",
                             str(CAT))
    assert refused.returncode == 1 and "--no-memory-check" in refused.stderr.splitlines()[-1]
