"""Snapshots of the generated C: a refactor of the compiler proves that it changes nothing
the user gets, and a change that does shows up here as a diff to read and accept.

Each snapshot holds every generated file of one build (the weight tables as a digest), in
host_tests/snapshots/<case>/. After a deliberate change, update them with

    MCUGEN_UPDATE_SNAPSHOTS=1 python3 -m pytest host_tests/test_snapshots.py

and commit the new files with the change that made them.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from pathlib import Path

import pytest

import test_kernels
from conftest import PERSON_DETECT
from mcugen.compile import compile_graph
from mcugen.frontend.tflite import load_tflite
from mcugen.targets import load_target

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("MCUGEN_UPDATE_SNAPSHOTS") == "1"

# Models on targets that select different variants: portable C, DSP, Helium, CMSIS-NN's MVE
# path.
PERSON_DETECT_CASES = {"person_detect_host": ("host", "mcugen"),
                       "person_detect_cortex-m7": ("cortex-m7", "mcugen"),
                       "person_detect_cortex-m55": ("cortex-m55", "mcugen"),
                       "person_detect_cortex-m55_cmsis-nn": ("cortex-m55", "cmsis-nn")}
KERNEL_CASES = ("dw_3x3_s2_m8_c1", "conv_3x3_s2_same_3_8", "add_pixel", "fc_3x11_17",
                "pw_11_17")


def snapshot_files(sources: dict[str, str]) -> dict[str, str]:
    """What a snapshot keeps: the sources, with the weight tables as a digest."""
    files = {}
    for name, text in sources.items():
        if name.endswith("_weights.c"):
            digest = hashlib.sha256(text.encode()).hexdigest()
            files[name + ".sha256"] = f"{digest}\n"
        else:
            files[name] = text
    return files


def generated(case: str) -> dict[str, str]:
    if case in PERSON_DETECT_CASES:
        target, kernels = PERSON_DETECT_CASES[case]
        graph = load_tflite(PERSON_DETECT.read_bytes(), "person_detect")
        compiled = compile_graph(graph, name="person_detect", target=load_target(target),
                                 source="person_detect.tflite", kernel_set=kernels)
    else:
        kernel_case, target = case.rsplit("@", 1)
        compiled = compile_graph(test_kernels.CASES[kernel_case](), name="model",
                                 target=load_target(target), source=kernel_case)
    return snapshot_files(compiled.sources)


CASES = [*PERSON_DETECT_CASES,
         *(f"{case}@{target}" for case in KERNEL_CASES
           for target in ("host", "cortex-m7", "cortex-m55"))]


@pytest.mark.parametrize("case", CASES)
def test_generated_sources_match_their_snapshot(case):
    folder = SNAPSHOTS / case.replace("@", "_")
    files = generated(case)
    if UPDATE:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for name, text in files.items():
            (folder / name).write_text(text)
    assert folder.is_dir(), f"no snapshot for {case}: run with MCUGEN_UPDATE_SNAPSHOTS=1"
    stored = {path.name: path.read_text() for path in folder.iterdir()}
    assert sorted(stored) == sorted(files), f"{case}: the generated files changed"
    for name, text in files.items():
        if stored[name] != text:
            diff = "".join(list(difflib.unified_diff(
                stored[name].splitlines(True), text.splitlines(True), f"snapshot/{name}",
                f"generated/{name}"))[:60])
            pytest.fail(f"{case}: {name} differs from its snapshot (if deliberate, update with "
                        f"MCUGEN_UPDATE_SNAPSHOTS=1):\n{diff}")
