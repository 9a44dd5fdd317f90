"""Output folders at paths with spaces and non-ASCII characters (issue 17, item 9): `build`,
`run`, `inspect`, and the make fragment and CMakeLists.txt a build writes, used as a user's
Makefile and CMake project would use them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PERSON_DETECT
from test_cli import mcugen

FOLDER = "my modèls/person x"  # a space in two components, a non-ASCII letter

MAIN_C = """#include <stdio.h>
#include "pd.h"
static int8_t input[PD_INPUT_SIZE];
static int8_t output[PD_OUTPUT_SIZE];
int main(void) {
    const int status = pd_invoke(input, output);
    printf("status %d, output %d %d\\n", status, output[0], output[1]);
    return status;
}
"""


def built(tmp_path: Path) -> Path:
    result = mcugen("build", "--model", str(PERSON_DETECT), "--target", "host", "--name", "pd",
                    "--out", FOLDER, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"-> {FOLDER}" in result.stdout
    return tmp_path / FOLDER


def run_program(program: Path) -> str:
    completed = subprocess.run([str(program)], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def test_the_make_fragment_works_from_a_path_with_spaces(tmp_path):
    """The fragment finds its own folder although MAKEFILE_LIST splits its path at the spaces;
    a rule with its sources as prerequisites compiles and links, and a rebuild after a
    change to a generated file is seen (the prerequisites are right)."""
    built(tmp_path)
    (tmp_path / "main.c").write_text(MAIN_C)
    escaped = FOLDER.replace(" ", "\\ ")
    (tmp_path / "Makefile").write_text(
        f"include {escaped}/pd.mk\n"
        "app: main.c $(PD_SRCS)\n"
        "\t$(CC) -std=c99 -O1 $(PD_CFLAGS) -o $@ main.c $(PD_SRCS) -lm\n")
    make = subprocess.run(["make", "app"], cwd=tmp_path, capture_output=True, text=True)
    assert make.returncode == 0, make.stdout + make.stderr
    assert run_program(tmp_path / "app").startswith("status 0")
    # The same fragment included by absolute path, from another folder, and from its own.
    elsewhere = tmp_path / "else where"
    elsewhere.mkdir()
    absolute = str(tmp_path / FOLDER / "pd.mk").replace(" ", "\\ ")
    (elsewhere / "Makefile").write_text(
        f"include {absolute}\nshow:\n\t@printf '%s\\n' $(PD_SRCS)\n")  # a line per shell word
    shown = subprocess.run(["make", "-s", "show"], cwd=elsewhere, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [str(tmp_path / FOLDER / f"pd{part}.c")
                                         for part in ("", "_weights", "_io")]  # shell words
    (tmp_path / FOLDER / "GNUmakefile").write_text("include pd.mk\nshow:\n\t@echo $(PD_SRCS)\n")
    own = subprocess.run(["make", "-s", "show"], cwd=tmp_path / FOLDER, capture_output=True,
                         text=True)
    assert own.stdout.split() == ["./pd.c", "./pd_weights.c", "./pd_io.c"], own.stderr


def test_the_cmake_library_works_from_a_path_with_spaces(tmp_path):
    assert shutil.which("cmake"), "cmake is missing (Debian package: cmake)"
    built(tmp_path)
    (tmp_path / "main.c").write_text(MAIN_C)
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(app C)\n"
        f'add_subdirectory("{FOLDER}" model)\n'
        "add_executable(app main.c)\ntarget_link_libraries(app PRIVATE pd m)\n")
    for command in (["cmake", "-S", ".", "-B", "b w"], ["cmake", "--build", "b w"]):
        completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
        assert completed.returncode == 0, completed.stdout + completed.stderr
    assert run_program(tmp_path / "b w" / "app").startswith("status 0")


@pytest.mark.qemu
def test_run_and_inspect_take_a_path_with_spaces(tmp_path):
    """`mcugen run --out "my models/x"` built, then failed in make."""
    result = mcugen("run", "--model", str(PERSON_DETECT), "--target", "cortex-m4", "--name",
                    "pd", "--out", FOLDER, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "verdict: bit-exact" in result.stdout
    kept = tmp_path / FOLDER
    assert (kept / "firmware" / "firmware.elf").is_file() and (kept / "pd.c").is_file()
    inspected = mcugen("inspect", str(Path(FOLDER) / "pd.tflite"), cwd=tmp_path)
    assert inspected.returncode == 0, inspected.stderr
    assert "7,157,888 MACs" in inspected.stdout
