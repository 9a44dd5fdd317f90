"""The `mcugen` command as a user meets it: the README's main command, listings, and every kind
of bad input answered by one line on stderr, a non-zero exit and no output folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PERSON_DETECT, mobilenet_tflite
from mcugen.targets import load_target


def mcugen(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("MCUGEN_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "mcugen", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


STEP_LINE = re.compile(r"mcugen: .*\.\.\.( \d+\.\d s)?")  # a step, and the seconds it took


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("mcugen: error: ")]
    assert errors == lines[-1:], result.stderr  # progress lines may precede it
    assert all(STEP_LINE.fullmatch(line) for line in lines[:-1]), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in errors[0], errors[0]


@pytest.mark.tensorflow
@pytest.mark.qemu
def test_readme_main_command_builds_a_mobilenet_for_cortex_m7(tmp_path):
    result = mcugen("build", "--alpha", "0.25", "--res", "96", "--target", "cortex-m7",
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    name = "mobilenet_v1_a025_96"  # the default name says which model it is
    out = tmp_path / "build" / name
    assert (out / f"{name}.h").is_file() and (out / f"{name}.c").is_file()
    header = (out / f"{name}.h").read_text()
    for macro in ("INPUT_SIZE 27648", "OUTPUT_SIZE 2", "INPUT_SCALE", "INPUT_ZERO_POINT",
                  "OUTPUT_SCALE", "OUTPUT_ZERO_POINT", "ARENA_SIZE"):
        assert f"#define {name.upper()}_{macro}" in header
    assert f"typedef int8_t {name}_input_t;" in header
    assert f"typedef int8_t {name}_output_t;" in header
    assert f"int {name}_invoke(const {name}_input_t *input, {name}_output_t *output);" in header
    for step in ("building", "calibrating", "converting", "writing"):
        assert step in result.stderr
    assert "MACs" in result.stdout and "arena" in result.stdout
    # Quiet: only mcugen's own step lines (no TensorFlow, absl or oneDNN line), each with the
    # seconds it took.
    lines = result.stderr.splitlines()
    assert lines and all(re.fullmatch(r"mcugen: .*\.\.\. \d+\.\d s", line) for line in lines), \
        result.stderr
    assert {"report.md", "report.json", "report.html", f"{name}_io.c"} <= \
        {p.name for p in out.iterdir()}


# Models the other files convert (conftest.mobilenet_tflite), grayscale or not square.
GENERATION_RUNS = {
    "v2": dict(arch="v2", seed=2, alpha=0.5, height=48, width=40, channels=1, classes=3),
    "v3-small": dict(arch="v3-small", seed=2, alpha=0.35, height=56, width=48, channels=3,
                     classes=2),
    "v3-large": dict(arch="v3-large", seed=2, alpha=0.25, height=40, width=40, channels=1,
                     classes=3),
}


def generation_arguments(arch: str) -> list[str]:
    params = GENERATION_RUNS[arch]
    return ["run", "--arch", arch, "--alpha", str(params["alpha"]), "--res",
            f"{params['height']}x{params['width']}", "--channels", str(params["channels"]),
            "--classes", str(params["classes"]), "--seed", str(params["seed"]), "--target",
            "cortex-m7"]


@pytest.mark.parametrize("arch", GENERATION_RUNS)
def test_the_generation_options_describe_the_tested_models(arch):
    """`mcugen run --arch ...` for V2 and both V3s: the options the command line makes are
    those of the model test_mobilenet_generations converts and runs in QEMU on the Cortex-M7
    (bit-exact, its table showing the residual additions and the V3s' tables), the same
    conversion (cache.conversion_key)."""
    from mcugen import cache
    from mcugen.build import BuildOptions
    from mcugen.cli import build_options, make_parser

    parsed = build_options(make_parser().parse_args(generation_arguments(arch)))
    assert parsed.target == "cortex-m7"
    assert cache.conversion_key(parsed) == \
        cache.conversion_key(BuildOptions(**GENERATION_RUNS[arch]))


@pytest.mark.tensorflow
@pytest.mark.qemu
def test_run_builds_a_generation_from_the_command_line(tmp_path):
    """`mcugen run --arch v3-small ...` end to end in its own process: the Keras MobileNet its
    options describe, C, firmware, QEMU, and the check against the reference and TFLM. The
    conversion is the one the other tests make of the same model (the front end's bytes are
    deterministic, test_keras_frontend), put in the session's conversion cache, which the
    command inherits (conftest.fresh_conversion_cache): that the command takes it proves its
    options are the same (cache.conversion_key); the README's command converts through the
    command line. V2 and V3-Large on the Cortex-M7: their options above, their runs in
    test_mobilenet_generations (one run per model and core in the suite)."""
    from mcugen import cache
    from mcugen.build import BuildOptions

    params = GENERATION_RUNS["v3-small"]
    cache.store(cache.conversion_key(BuildOptions(**params)), mobilenet_tflite(**params))
    result = mcugen(*generation_arguments("v3-small"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(cached)" in result.stderr and "converting" not in result.stderr, result.stderr
    assert "verdict: bit-exact" in result.stdout and "TFLM" in result.stdout
    assert "ADD" in result.stdout  # the per-layer table shows the residual additions
    assert "HARD_SWISH (table)" in result.stdout and "MUL" in result.stdout


@pytest.mark.qemu
def test_targets_are_listed_grouped_by_core(tmp_path, mcugen_here):
    """Each core's line, then the core itself and its parts, indented under it."""
    from mcugen.targets import load_target, target_names

    result = mcugen_here("targets", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    group, seen = None, {}
    for line in result.stdout.splitlines()[1:-1]:
        if not line.startswith(" "):
            group = line.split(":")[0]
            continue
        seen[line.split()[0]] = group
    expected = {name: (load_target(name).core or "host") for name in target_names()}
    assert {name: core for name, core in seen.items()} == \
        {name: core for name, core in expected.items() if name != "host"}
    cores = [line.split(":")[0] for line in result.stdout.splitlines()[1:]
             if not line.startswith(" ")]
    assert cores[:6] == ["cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33",
                         "cortex-m55"]
    for part in ("stm32f746ng", "stm32h743zi", "stm32l4r5zi", "stm32u585ai", "nrf52840",
                 "nrf5340", "rp2040", "rp2350", "alif-e3"):
        assert part in seen
    assert re.search(r"nrf52840 +64 MHz +1,024 KB +256 KB", result.stdout)


@pytest.mark.qemu
def test_a_part_is_a_target(tmp_path, mcugen_here):
    """Also a model that fits: its summary says nothing of not fitting (the overflow's lines:
    test_model_too_big_for_the_target_is_refused_unless_asked)."""
    result = mcugen_here("build", "--model", str(PERSON_DETECT), "--target", "nrf52840",
                         "--out", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"target": "nrf52840"' in (tmp_path / "out" / "report.json").read_text()
    assert "measured with arm-none-eabi-gcc" in result.stdout
    assert "does not fit" not in result.stdout + result.stderr


@pytest.mark.tensorflow
@pytest.mark.qemu
def test_the_memory_check_uses_the_parts_largest_ram_region(tmp_path, mcugen_here):
    """A 192x192 alpha 0.5 V1 has a 299,552-byte arena layer by layer (its stride-2
    depthwise layers read their producers' channel-planar rows, with no ring of widened rows,
    and write over them) and 933 KB of weights: it
    fits the STM32H743's 512 KB AXI SRAM (its largest region, of 1 MB in all) as it is; on the
    nRF52840's one 256 KB region and the typical Cortex-M3 part's 128 KB its first layers run
    in row bands (issue 11), and the summary says why."""
    model = tmp_path / "a05_192.tflite"
    model.write_bytes(mobilenet_tflite(arch="v1", seed=1, alpha=0.5, height=192, width=192,
                                       channels=3, classes=2))
    fits = mcugen_here("build", "--model", str(model), "--target", "stm32h743zi", "--out",
                       "h7", cwd=tmp_path)
    assert fits.returncode == 0, fits.stderr
    assert "RAM 299,552 B (arena)" in fits.stdout and "schedule:" not in fits.stdout
    for target, ram in (("nrf52840", "262,144"), ("cortex-m3", "131,072")):
        banded = mcugen_here("build", "--model", str(model), "--target", target, "--out",
                             target, cwd=tmp_path)
        assert banded.returncode == 0, banded.stderr
        assert f"(layer by layer does not fit the target's {ram} B)" in banded.stdout
        assert re.search(r"arena [\d,]+ B layer by layer -> ", banded.stdout)
    # A budget below what row bands reach is refused in one line, with the smallest arena.
    assert_one_line_error(mcugen_here("build", "--model", str(model), "--target", "cortex-m3",
                                      "--max-ram", "8K", "--out", "tiny", cwd=tmp_path),
                          "no schedule fits an arena of 8,192 B: the smallest reachable is")
    assert not (tmp_path / "tiny").exists()


@pytest.mark.tensorflow
def test_verbose_lets_tensorflow_speak(tmp_path):
    """--verbose shows what the quiet default hides (on this machine TensorFlow always logs its
    oneDNN and CPU-feature lines at import), step times on lines of their own."""
    result = mcugen("build", "--alpha", "0.25", "--res", "32", "--verbose", "--out", "out",
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    others = [line for line in result.stderr.splitlines() if not line.startswith("mcugen: ")]
    assert others, result.stderr
    assert re.search(r"^mcugen: \(converting to int8: \d+\.\d s\)$", result.stderr, re.MULTILINE)


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`mcugen inspect model.tflite | head -1`: the reader leaves before mcugen has written; no
    "internal error: BrokenPipeError", no traceback, nothing on stderr."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("MCUGEN_DEBUG", None)
    process = subprocess.Popen([sys.executable, "-m", "mcugen", "inspect", str(PERSON_DETECT)],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()  # before the interpreter has even started: every write fails
    stderr = process.communicate(timeout=300)[1].decode()
    assert stderr == "" and process.returncode == 141
    shell = subprocess.run(f"{sys.executable} -m mcugen inspect {PERSON_DETECT} | head -1",
                           shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert shell.stderr == "" and shell.stdout.startswith(str(PERSON_DETECT))
    assert len(shell.stdout.splitlines()) == 1


@pytest.mark.tensorflow
def test_weights_for_another_alpha_say_which_layer_and_which_alpha(tmp_path):
    saved = tmp_path / "a05.weights.h5"
    _keras_mobilenet(alpha=0.5).save_weights(saved)
    result = mcugen("build", "--alpha", "0.25", "--res", "32", "--weights", str(saved),
                    "--out", "out", cwd=tmp_path)
    assert_one_line_error(result, "conv1", "3x3x3x16", "3x3x3x8", "α=0.5", "--alpha 0.5")
    error = result.stderr.strip().splitlines()[-1]
    assert "[[" not in error and "value=" not in error and len(error) < 400  # no tensor dump
    assert not (tmp_path / "out").exists()


@pytest.mark.tensorflow
def test_untrained_weights_are_called_degenerate_and_what_to_check(tmp_path):
    """Freshly initialised weights (batch norms at mean 0, variance 1) quantize activations
    to scales near 1e-8: mcugen says the model is degenerate, that TFLM refuses it too
    (checked here: TFLM's interpreter aborts on it), and what to check."""
    untrained = tmp_path / "untrained.weights.h5"
    _keras_mobilenet(alpha=0.25).save_weights(untrained)
    arguments = ["build", "--alpha", "0.25", "--res", "32", "--weights", str(untrained),
                 "--out", "out"]
    result = mcugen(*arguments, cwd=tmp_path)
    assert_one_line_error(result, "degenerate", "TFLM refuses", "trained", "batch norms",
                          "calibration")
    assert "multiplier" not in result.stderr
    # The very model mcugen refused, from its cache of converted models (the session's,
    # conftest.fresh_conversion_cache, which the command inherits): not converted again.
    from mcugen import cache
    from mcugen.cli import build_options, make_parser

    converted = cache.load(cache.conversion_key(build_options(make_parser().parse_args(
        arguments))))
    assert converted is not None
    model = tmp_path / "untrained.tflite"
    model.write_bytes(converted)
    tflm = subprocess.run([sys.executable, "-c", "import sys\nfrom tflite_micro import runtime\n"
                           "runtime.Interpreter.from_bytes(open(sys.argv[1], 'rb').read())",
                           str(model)], capture_output=True, text=True, timeout=300)
    assert tflm.returncode != 0


def _keras_mobilenet(alpha: float):
    """Keras' MobileNet V1 at 32x32, two classes, freshly initialised (seeded)."""
    from mcugen.frontend.keras import _build_model, _import_tensorflow

    _import_tensorflow()
    import keras

    return _build_model(keras, "v1", alpha, 32, 32, 3, 2, 0)


@pytest.mark.qemu
def test_run_out_keeps_the_folder_with_measured_instructions(tmp_path, mcugen_here):
    result = mcugen_here("run", "--model", str(PERSON_DETECT), "--target", "cortex-m7",
                         "--out", "kept", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    kept = tmp_path / "kept"
    assert (kept / "firmware" / "firmware.elf").is_file() and (kept / "person_detect.c").is_file()
    report = json.loads((kept / "report.json").read_text())
    counts = [layer["instructions"] for layer in report["layers"]]
    assert all(isinstance(n, int) and n > 0 for n in counts)
    assert report["run"]["bit_exact"] and report["run"]["instructions"] >= sum(counts)
    assert f"{counts[0]:,}" in (kept / "report.md").read_text()
    assert "instructions (QEMU)" in (kept / "report.html").read_text()
    assert f"{counts[0]:,}" in result.stdout  # the same figures as the printed table
    again = mcugen_here("run", "--model", str(PERSON_DETECT), "--target", "cortex-m7",
                        "--out", "kept", cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # mcugen's own folder: replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert_one_line_error(mcugen_here("run", "--model", str(PERSON_DETECT), "--target",
                                      "cortex-m7", "--out", "mine", cwd=tmp_path), "--force")


def test_inspect_prints_the_layer_table(tmp_path, mcugen_here):
    result = mcugen_here("inspect", str(PERSON_DETECT), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "DEPTHWISE_CONV_2D" in result.stdout and "7,157,888 MACs" in result.stdout
    assert not any(tmp_path.iterdir())


BAD_ARGUMENTS = {
    "alpha too big": (["--alpha", "2"], "alpha"),
    "alpha zero": (["--alpha", "0"], "alpha"),
    "resolution too small": (["--res", "16"], "32"),
    "resolution garbage": (["--res", "big"], "--res"),
    "channels": (["--channels", "2"], "channels"),
    "unknown target": (["--target", "cortex-m99"], "cortex-m7"),
    "unknown arch": (["--arch", "v9"], "arch"),
    "bad name": (["--name", "int"], "--name"),
    "missing model": (["--model", "no/such.tflite"], "such.tflite"),
    "unknown option": (["--colour"], "--colour"),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_bad_arguments_get_one_line_and_no_output(case, tmp_path, mcugen_here):
    arguments, word = BAD_ARGUMENTS[case]
    result = mcugen_here("build", *arguments, "--out", "out", cwd=tmp_path)
    assert_one_line_error(result, word)
    assert not (tmp_path / "out").exists() and not (tmp_path / "build").exists()


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, os.urandom(4096),
                                     PERSON_DETECT.read_bytes()[:1000]],
                         ids=["empty", "zeros", "random", "truncated"])
def test_malformed_model_files_are_refused(content, tmp_path, mcugen_here):
    (tmp_path / "bad.tflite").write_bytes(content)
    result = mcugen_here("build", "--model", "bad.tflite", "--out", "out", cwd=tmp_path)
    assert_one_line_error(result, "bad.tflite")
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "bad.tflite").read_bytes() == content  # the user's file is untouched


@pytest.mark.tensorflow
@pytest.mark.qemu
def test_model_too_big_for_the_target_is_refused_unless_asked(tmp_path, mcugen_here):
    big = tmp_path / "big.tflite"  # α 1.0: 3.2 MB of weights, more than a 1 MB Cortex-M7
    big.write_bytes(mobilenet_tflite(arch="v1", seed=1, alpha=1.0, height=64, width=64,
                                     channels=3, classes=5))
    result = mcugen_here("build", "--model", "big.tflite", "--target", "cortex-m7", "--out",
                         "out", cwd=tmp_path)
    assert_one_line_error(result, "flash", "--no-memory-check")
    assert not (tmp_path / "out").exists()
    result = mcugen_here("build", "--model", "big.tflite", "--target", "cortex-m7", "--out",
                         "out", "--no-memory-check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Issue 17, item 6: "flash 3,383,588 B" on a 1 MB part read like a success.
    assert re.search(r"flash 3,[\d,]+ B \(weights\) — 3\d\d % of cortex-m7's 1,048,576 B: "
                     r"does not fit, RAM", result.stdout), result.stdout
    assert re.search(r"^mcugen: warning: flash 3,[\d,]+ B — 3\d\d % of cortex-m7's 1,048,576 B: "
                     r"does not fit$", result.stderr, re.MULTILINE), result.stderr
    # A model that fits says nothing of it: test_a_part_is_a_target.


@pytest.mark.slow
def test_foreign_folder_is_kept_unless_forced_and_own_folder_is_replaced(tmp_path, mcugen_here):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    arguments = ["build", "--model", str(PERSON_DETECT), "--name", "pd", "--out", "mine"]
    assert_one_line_error(mcugen_here(*arguments, cwd=tmp_path), "--force")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]

    assert mcugen_here(*arguments, "--force", cwd=tmp_path).returncode == 0
    assert (mine / "notes.txt").read_text() == "keep me" and (mine / "pd.c").is_file()

    fresh = ["build", "--model", str(PERSON_DETECT), "--name", "pd", "--out", "ours"]
    assert mcugen_here(*fresh, cwd=tmp_path).returncode == 0
    (tmp_path / "ours" / "main.c").write_text("a file of the user's")
    assert mcugen_here(*fresh, cwd=tmp_path).returncode == 0  # a rebuild replaces mcugen's files...
    assert (tmp_path / "ours" / "main.c").read_text() == "a file of the user's"  # ...only
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


# ---------------------------------------------------------------------------------------------
# Issue 17: the user's first experience


@pytest.mark.tensorflow
def test_the_default_name_says_which_model_it_is(tmp_path, mcugen_here):
    """Item 10: every build without --name wrote build/model, so README's commands overwrote
    each other. The name now comes from the model: the file's stem, or the MobileNet's
    options."""
    from mcugen.build import default_name

    result = mcugen_here("build", "--model", str(PERSON_DETECT), "--target", "host",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "build" / "person_detect" / "person_detect.h").is_file()
    assert "-> build/person_detect" in result.stdout
    assert default_name(None) == "mobilenet_v1_a025_96"
    assert default_name(None, "v3-small", 0.5, 128, 96, 1) == "mobilenet_v3_small_a050_128x96_gray"
    assert default_name(None, "v2", 1.0, 224, 224, 3) == "mobilenet_v2_a100_224"
    for file, name in (("modèle v2.tflite", "modele_v2"), ("2024-net.tflite", "model_2024_net"),
                       ("int.tflite", "int_model"), ("Ω.tflite", "model")):
        assert default_name(Path(file)) == name


def readme_commands(command: str) -> list[list[str]]:
    """The README's example command lines of one mcugen command, as arguments."""
    import shlex

    lines = []
    for line in (Path(__file__).resolve().parents[1] / "README.md").read_text().splitlines():
        if line.startswith(f"mcugen {command} "):
            lines.append(shlex.split(line.split("#")[0])[1:])
    return lines


def test_readmes_build_commands_write_different_folders():
    from mcugen.cli import build_options, make_parser

    commands = readme_commands("build")
    assert len(commands) >= 3
    folders = [build_options(make_parser().parse_args(arguments)).out_dir
               for arguments in commands]
    assert len(set(folders)) == len(folders), folders


@pytest.mark.tensorflow
@pytest.mark.parametrize("command", ["build", "run", "report", "inspect", "targets"])
def test_help_shows_defaults_and_two_examples(command, tmp_path, mcugen_here):
    """Item 10: --help showed no defaults and no examples; the examples are real command
    lines (they parse)."""
    from mcugen.cli import make_parser

    result = mcugen_here(command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    help_text = result.stdout
    examples = [line.split("(")[0].split(">")[0].strip()
                for line in help_text.split("examples:")[1].splitlines()
                if line.startswith(f"  mcugen {command}")]
    assert len(examples) >= 2, help_text
    for example in examples:
        make_parser().parse_args(example.split()[1:])
    if command in ("build", "run"):
        assert re.search(r"--alpha ALPHA +width multiplier, 0 < A <= 1.5 \(default: 0.25\)",
                         help_text), help_text
        assert "(default: build/NAME)" in help_text or "temporary" in help_text


def test_main_help_opens_with_what_mcugen_does(tmp_path, mcugen_here):
    result = mcugen_here("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    description = result.stdout.split("\n\n")[1]
    assert description.startswith("mcugen compiles an int8-quantized MobileNet"), description
    assert "examples:" in result.stdout


def test_run_defaults_to_a_target_it_can_run(tmp_path, mcugen_here):
    """Item 8: run's --help said the default target was host, which run refuses."""
    from mcugen.cli import make_parser
    from mcugen.qemu import firmware_target

    target = make_parser().parse_args(["run"]).target
    firmware_target(target)  # one with a QEMU board
    assert f"(default: {target})" in mcugen_here("run", "--help", cwd=tmp_path).stdout.replace(
        "\n                        ", " ")


@pytest.mark.tensorflow
@pytest.mark.qemu
def test_run_prints_builds_lines_and_an_overflow_stands_out(tmp_path, mcugen_here):
    """Items 6 and 8: `run` takes --name and --no-memory-check, prints the flash and RAM lines
    `build` prints, says that the kept image is for the QEMU board and not for the part; a
    model bigger than the part's flash (3.2 MB of weights, the STM32F746's 1 MB) runs anyway
    with --no-memory-check, and its summary says it does not fit (on stderr too)."""
    big = tmp_path / "big.tflite"
    big.write_bytes(mobilenet_tflite(arch="v1", seed=1, alpha=1.0, height=64, width=64,
                                     channels=3, classes=5))
    import numpy as np

    np.save(tmp_path / "one.npy", np.full(64 * 64 * 3, 5, np.int8))  # one inference: faster
    result = mcugen_here("run", "--model", "big.tflite", "--target", "stm32f746ng", "--name",
                         "big", "--no-memory-check", "--inputs", "one.npy", "--out", "kept",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "verdict: bit-exact" in result.stdout and "NumPy reference and of TFLM" in result.stdout
    assert re.search(r"^big: \d+ layers, [\d,]+ MACs, flash 3,[\d,]+ B \(weights\) — 3\d\d % of "
                     r"stm32f746ng's 1,048,576 B: does not fit, RAM [\d,]+ B \(arena\) -> kept$",
                     result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^measured with arm-none-eabi-gcc: flash 3,[\d,]+ B .* does not fit",
                     result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^mcugen: warning: flash 3,[\d,]+ B — 3\d\d % of stm32f746ng's "
                     r"1,048,576 B: does not fit$", result.stderr, re.MULTILINE), result.stderr
    assert (tmp_path / "kept" / "big.c").is_file()
    assert (tmp_path / "kept" / "firmware" / "firmware.elf").is_file()
    assert f"a test image for QEMU's {load_target('cortex-m7').qemu_board} board" in result.stdout
    assert "not a firmware for the stm32f746ng" in result.stdout


@pytest.mark.qemu
def test_run_says_what_is_missing_when_tflm_is_not_installed(tmp_path):
    """Item 2: tflite-micro was only a test extra, and its ImportError was reported as "TFLM
    could not load this model". It is a dependency now; without it, run says what is missing
    and how to install it (here a tflite_micro that fails to import hides the real one)."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml")
                              .read_text())
    assert any(dependency.startswith("tflite-micro")
               for dependency in pyproject["project"]["dependencies"])
    hidden = tmp_path / "hide"
    (hidden / "tflite_micro").mkdir(parents=True)
    (hidden / "tflite_micro" / "__init__.py").write_text(
        "raise ImportError('no tflite_micro here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(hidden), str(Path(__file__).resolve().parents[1])])}
    result = subprocess.run([sys.executable, "-m", "mcugen", "run", "--model",
                             str(PERSON_DETECT), "--target", "cortex-m4"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "could not load this model" not in result.stdout
    assert "verdict: bit-exact" in result.stdout
    assert "tflite-micro is not installed" in result.stdout
    assert "pip install tflite-micro" in result.stdout


def test_progress_counts_the_seconds_on_a_terminal():
    """Item 5: converting, compiling a banded model and measuring printed nothing for up to a
    minute. On a terminal the step's line now counts the seconds; in a log it is one line."""
    import io
    import time

    from mcugen.cli import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        progress = Progress(stream, tick=0.1)
        progress("converting to int8")
        time.sleep(0.55)
        progress.finish()
    ticks = re.findall(r"\r\x1b\[Kmcugen: converting to int8\.\.\. \d s", terminal.getvalue())
    assert len(ticks) >= 3, repr(terminal.getvalue())
    assert re.fullmatch(r"mcugen: converting to int8\.\.\.(\r\x1b\[Kmcugen: converting to "
                        r"int8\.\.\. \d s)+\r\x1b\[Kmcugen: converting to int8\.\.\. 0\.\d s\n",
                        terminal.getvalue()), repr(terminal.getvalue())
    assert re.fullmatch(r"mcugen: converting to int8\.\.\. 0\.\d s\n", log.getvalue())


def test_progress_ticks_on_a_real_terminal(tmp_path):
    """The same through a pseudo-terminal, with the final moves slowed down (1.4 s in all)."""
    import pty

    main, secondary = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "MCUGEN_TEST_WRITE_DELAY": "0.12"}
    process = subprocess.Popen([sys.executable, "-m", "mcugen", "build", "--model",
                                str(PERSON_DETECT), "--out", "out"], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=secondary)
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert process.wait(timeout=120) == 0
    os.close(main)
    assert re.search(rb"\r\x1b\[Kmcugen: writing out\.\.\. 1 s", seen), seen
