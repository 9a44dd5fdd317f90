"""Where the model's memory goes: --weights-section (every constant table in a linker section of
the user's naming) and --ram-regions (the arena split over a part's RAM regions, small buffers
first in the fastest, one array and section per region), cross-compiled and run in QEMU."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import PERSON_DETECT, mobilenet_tflite
from mcugen.build import BuildOptions
from mcugen.cli import main as mcugen_main
from mcugen.compile import prepare
from mcugen.errors import McugenError
from mcugen.frontend.tflite import load_tflite
from mcugen.kernels import lower_layers
from mcugen.planner import Plan, find_overlap_violations, plan_memory, plan_regions
from mcugen.run import run
from mcugen.schedule import arena_buffers, layer_by_layer
from mcugen.targets import load_target

V2 = dict(arch="v2", seed=1, alpha=0.35, height=96, width=96, channels=3, classes=2)


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("placement_models")
    v2 = folder / "v2.tflite"
    v2.write_bytes(mobilenet_tflite(**V2))
    return {"person_detect": PERSON_DETECT, "v2": v2}


def sections_of(obj: Path) -> dict[str, int]:
    text = subprocess.run(["arm-none-eabi-readelf", "-S", "-W", str(obj)], check=True,
                          capture_output=True, text=True).stdout
    return {name: int(size, 16) for name, size in re.findall(
        r"\]\s+(\S+)\s+\S+\s+[0-9a-f]{8}\s+[0-9a-f]{6}\s+([0-9a-f]{6})", text)}


def cross_compile(source: Path, obj: Path, target: str) -> None:
    core = load_target(target)
    subprocess.run([core.compiler, *core.cflags, "-c", str(source), "-o", str(obj)], check=True)


# ---------------------------------------------------------------------------------------------
# Where the weights go


@pytest.mark.tensorflow
@pytest.mark.qemu
def test_weights_section_puts_every_table_there_and_the_firmware_still_runs(models, tmp_path):
    """--weights-section .extflash: the cross-compiled weights object has every constant table
    in that section (nothing left in .rodata), the measured flash still counts them, and the
    firmware (its linker script places the section after the others) runs bit-exact."""
    summary = run(BuildOptions(model=models["person_detect"], target="cortex-m7",
                               weights_section=".extflash"), None, tmp_path)
    assert summary.matches
    out = summary.build.out_dir
    assert 'section(".extflash")' in (out / "model_weights.h").read_text()
    obj = tmp_path / "weights.o"
    cross_compile(out / "model_weights.c", obj, "cortex-m7")
    sizes = sections_of(obj)
    assert sizes[".extflash"] >= summary.build.compiled.report.const_bytes
    assert sizes.get(".rodata", 0) == 0
    assert summary.build.measured.weight_bytes == sizes[".extflash"]


@pytest.mark.tensorflow
@pytest.mark.parametrize("name", ["bad name", "9x", "a;b"])
def test_a_bad_weights_section_is_one_line(name, models, tmp_path, capsys):
    assert mcugen_main(["build", "--model", str(models["person_detect"]), "--weights-section",
                        name, "--out", str(tmp_path / "out")]) == 1
    assert "--weights-section" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# RAM regions


def v2_buffers():
    graph = prepare(load_tflite(mobilenet_tflite(**V2), "model"))
    layers = lower_layers(graph, load_target("cortex-m7"), "model")
    return arena_buffers(graph, layers, layer_by_layer(layers))


@pytest.mark.tensorflow
def test_plan_regions_fills_the_fast_region_first_and_never_collides():
    buffers = v2_buffers()
    plan = plan_regions(buffers, [("FAST", 40_000), ("SLOW", 300_000)])
    assert set(plan.region_of) == {b.id for b in buffers}
    for index, (name, capacity) in enumerate([("FAST", 40_000), ("SLOW", 300_000)]):
        inside = [b for b in buffers if plan.region_of[b.id] == index]
        size = plan.regions[index][1]
        assert size <= capacity and inside
        assert max(plan.offsets[b.id] + b.size for b in inside) <= size
        assert find_overlap_violations(inside, Plan(plan.offsets, size)) == []
    fast = [b.size for b in buffers if plan.region_of[b.id] == 0]
    slow = [b.size for b in buffers if plan.region_of[b.id] == 1]
    assert np.median(fast) < np.median(slow)  # the small buffers are in the fast region
    assert plan.arena_size == sum(size for _, size in plan.regions)
    assert plan.arena_size >= plan_memory(buffers).arena_size  # no free lunch


@pytest.mark.tensorflow
def test_plan_regions_says_which_region_overflows():
    with pytest.raises(McugenError, match=r"SLOW would need [\d,]+ B of its 50,000"):
        plan_regions(v2_buffers(), [("FAST", 20_000), ("SLOW", 50_000)])


@pytest.mark.tensorflow
@pytest.mark.qemu
def test_the_arena_split_over_a_parts_regions_runs_bit_exact(models, tmp_path):
    """V2 on the STM32F746: 110,656 B layer by layer, more than its 64 KB DTCM: the small
    buffers go to DTCM, the others to SRAM1, each in its own array and .bss.* section."""
    summary = run(BuildOptions(model=models["v2"], target="stm32f746ng", ram_regions=True),
                  None, tmp_path)
    assert summary.matches
    report = summary.build.compiled.report
    used = {r["name"]: r["arena_bytes"] for r in report.regions}
    assert used["DTCM"] > 0 and used["SRAM1"] > 0 and "ITCM" not in used
    assert all(r["arena_bytes"] <= r["region_bytes"] for r in report.regions)
    out = summary.build.out_dir
    header = (out / "model.h").read_text()
    assert f"#define MODEL_ARENA_DTCM_SIZE {used['DTCM']}" in header
    obj = tmp_path / "model.o"
    cross_compile(out / "model.c", obj, "stm32f746ng")
    sizes = sections_of(obj)
    assert sizes[".bss.model_arena_dtcm"] == used["DTCM"]
    assert sizes[".bss.model_arena_sram1"] == used["SRAM1"]
    assert {b.region for b in report.buffers} == {"DTCM", "SRAM1"}


@pytest.mark.tensorflow
def test_ram_regions_need_a_part_with_several(models, tmp_path, capsys):
    assert mcugen_main(["build", "--model", str(models["person_detect"]), "--target",
                        "cortex-m7", "--ram-regions", "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--ram-regions: cortex-m7 lists no RAM regions" in error
    assert not (tmp_path / "out").exists()
