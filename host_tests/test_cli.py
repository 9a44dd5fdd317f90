"""The `mcugen` command as a user meets it: the README's main command, listings, and every kind
of bad input answered by one line on stderr, a non-zero exit and no output folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PERSON_DETECT, mobilenet_tflite


def mcugen(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("MCUGEN_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "mcugen", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("mcugen: error: ")]
    assert errors == lines[-1:], result.stderr  # progress lines may precede it
    assert all(line.endswith("...") for line in lines[:-1]), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in errors[0], errors[0]


def test_readme_main_command_builds_a_mobilenet_for_cortex_m7(tmp_path):
    result = mcugen("build", "--alpha", "0.25", "--res", "96", "--target", "cortex-m7",
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "build" / "model"
    assert (out / "model.h").is_file() and (out / "model.c").is_file()
    header = (out / "model.h").read_text()
    for macro in ("INPUT_SIZE 27648", "OUTPUT_SIZE 2", "INPUT_SCALE", "INPUT_ZERO_POINT",
                  "OUTPUT_SCALE", "OUTPUT_ZERO_POINT", "ARENA_SIZE"):
        assert f"#define MODEL_{macro}" in header
    assert "int model_invoke(const int8_t *input, int8_t *output);" in header
    for step in ("building", "calibrating", "converting", "writing"):
        assert step in result.stderr
    assert "MACs" in result.stdout and "arena" in result.stdout


@pytest.mark.parametrize("arch", ["v2", "v3-small", "v3-large"])
def test_run_builds_every_generation_from_the_command_line(arch, tmp_path):
    """`mcugen run --arch ...`: Keras build, int8 conversion, C, firmware, QEMU, and the check
    against the reference and TFLM, for V2 and both V3s (grayscale, not square)."""
    result = mcugen("run", "--arch", arch, "--alpha", "0.35", "--res", "40x32", "--channels",
                    "1", "--classes", "3", "--target", "cortex-m7", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "bit-exact with" in result.stdout
    assert "ADD" in result.stdout  # the per-layer table shows the residual additions
    if arch != "v2":
        assert "HARD_SWISH (table)" in result.stdout and "MUL" in result.stdout


def test_targets_are_listed(tmp_path):
    result = mcugen("targets", cwd=tmp_path)
    assert result.returncode == 0
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == ["cortex-m4", "cortex-m55", "cortex-m7", "cortex-m85", "host"]


def test_inspect_prints_the_layer_table(tmp_path):
    result = mcugen("inspect", str(PERSON_DETECT), cwd=tmp_path)
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
def test_bad_arguments_get_one_line_and_no_output(case, tmp_path):
    arguments, word = BAD_ARGUMENTS[case]
    result = mcugen("build", *arguments, "--out", "out", cwd=tmp_path)
    assert_one_line_error(result, word)
    assert not (tmp_path / "out").exists() and not (tmp_path / "build").exists()


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, os.urandom(4096),
                                     PERSON_DETECT.read_bytes()[:1000]],
                         ids=["empty", "zeros", "random", "truncated"])
def test_malformed_model_files_are_refused(content, tmp_path):
    (tmp_path / "bad.tflite").write_bytes(content)
    result = mcugen("build", "--model", "bad.tflite", "--out", "out", cwd=tmp_path)
    assert_one_line_error(result, "bad.tflite")
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "bad.tflite").read_bytes() == content  # the user's file is untouched


def test_model_too_big_for_the_target_is_refused_unless_asked(tmp_path):
    big = tmp_path / "big.tflite"  # α 1.0: 3.2 MB of weights, more than a 1 MB Cortex-M7
    big.write_bytes(mobilenet_tflite(arch="v1", seed=1, alpha=1.0, height=64, width=64,
                                     channels=3, classes=5))
    result = mcugen("build", "--model", "big.tflite", "--target", "cortex-m7", "--out", "out",
                    cwd=tmp_path)
    assert_one_line_error(result, "flash", "--no-memory-check")
    assert not (tmp_path / "out").exists()
    result = mcugen("build", "--model", "big.tflite", "--target", "cortex-m7", "--out", "out",
                    "--no-memory-check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_foreign_folder_is_kept_unless_forced_and_own_folder_is_replaced(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    arguments = ["build", "--model", str(PERSON_DETECT), "--name", "pd", "--out", "mine"]
    assert_one_line_error(mcugen(*arguments, cwd=tmp_path), "--force")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]

    assert mcugen(*arguments, "--force", cwd=tmp_path).returncode == 0
    assert (mine / "notes.txt").read_text() == "keep me" and (mine / "pd.c").is_file()

    fresh = ["build", "--model", str(PERSON_DETECT), "--name", "pd", "--out", "ours"]
    assert mcugen(*fresh, cwd=tmp_path).returncode == 0
    (tmp_path / "ours" / "stale.c").write_text("a file an older build left")
    assert mcugen(*fresh, cwd=tmp_path).returncode == 0
    assert not (tmp_path / "ours" / "stale.c").exists()  # a rebuild replaces mcugen's folder
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
