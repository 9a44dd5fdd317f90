"""targets/: every file loads, the feature vocabulary holds, parts take everything but their own
figures from their core, and the core and board facts are written down nowhere else."""

from __future__ import annotations

import re

import pytest

from conftest import REPO
from mcugen.errors import McugenError
from mcugen.targets import ISA_FEATURES, RamRegion, contiguous_ram, load_target, target_names

CORES = ("cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")
PARTS = {"stm32f746ng": "cortex-m7", "stm32h743zi": "cortex-m7", "stm32l4r5zi": "cortex-m4",
         "stm32u585ai": "cortex-m33", "nrf52840": "cortex-m4", "nrf5340": "cortex-m33",
         "rp2040": "cortex-m0plus", "rp2350": "cortex-m33", "alif-e3": "cortex-m55",
         "stm32f405rg": "cortex-m4", "nrf51822": "cortex-m0plus"}
# Parts QEMU emulates as machines of their own: they run there (examples/parts), not on their
# core's board, and the nRF51822's Cortex-M0 takes the M0+'s kernels with its own -mcpu.
OWN_MACHINE = {"stm32f405rg": "netduinoplus2", "nrf51822": "microbit"}
ARCHES = {"cortex-m0plus": "armv6-m", "cortex-m3": "armv7-m", "cortex-m4": "armv7e-m",
          "cortex-m7": "armv7e-m", "cortex-m33": "armv8-m.main", "cortex-m55": "armv8.1-m.main"}


def test_every_target_loads_and_the_expected_ones_exist():
    names = target_names()
    assert set(CORES) | set(PARTS) | {"host"} <= set(names)
    for name in names:
        target = load_target(name)
        assert target.features <= ISA_FEATURES and target.flash_bytes > 0 and target.ram_bytes > 0


def test_feature_vocabulary():
    """The ISA features code branches on (issue 8's kernel selection depends on them)."""
    features = {name: load_target(name).features for name in (*CORES, "host")}
    assert features["cortex-m0plus"] == features["host"] == frozenset()
    assert features["cortex-m3"] == {"armv7m"}
    assert all("armv7m" in features[c] for c in CORES if c != "cortex-m0plus")
    assert {c for c in CORES if "dsp" in features[c]} == {"cortex-m4", "cortex-m7", "cortex-m33",
                                                          "cortex-m55"}
    assert {c for c in CORES if "mve" in features[c]} == {"cortex-m55"}
    assert all(("fpu" in features[c]) == ("-mfloat-abi=hard" in load_target(c).cpu_flags)
               for c in CORES)


@pytest.mark.parametrize("core", CORES)
def test_a_core_states_its_facts(core):
    target = load_target(core)
    assert target.kind == "core" and target.core == core and target.arch == ARCHES[core]
    assert target.cpu_flags[0] == f"-mcpu={core}" and "-mthumb" in target.cpu_flags
    assert any(flag.startswith("-mfloat-abi=") for flag in target.cpu_flags)
    assert target.opt_flags and target.cflags == target.cpu_flags + target.opt_flags
    board = target.qemu
    assert board is not None and target.qemu_board == board.machine
    assert (REPO / "examples" / "qemu" / "boards" / board.linker_script).is_file()
    assert board.trap_unaligned == (core == "cortex-m0plus")  # ARMv6-M only


@pytest.mark.parametrize("part", sorted(PARTS))
def test_a_part_takes_its_core_and_adds_its_own_figures(part):
    target, core = load_target(part), load_target(PARTS[part])
    assert target.kind == "part" and target.core == core.name
    assert target.features == core.features
    if part in OWN_MACHINE:
        assert target.qemu.machine == OWN_MACHINE[part] and target.qemu.uart
        assert (REPO / "examples" / "parts" / target.qemu.linker_script).is_file()
    else:
        assert target.qemu == core.qemu
    assert target.arch == core.arch and target.opt_flags == core.opt_flags
    assert target.clock_hz and target.ram_regions
    assert target.ram_bytes == max(sum(r.bytes for r in run)
                                   for run in contiguous_ram(target.ram_regions))
    text = (REPO / "targets" / f"{part}.toml").read_text()
    assert "cpu_flags" not in text and "-mcpu" not in text  # one place: the core's file
    assert re.search(r"^# Sources?:", text, re.MULTILINE)  # where the figures come from
    for key in ("clock_hz", "flash_bytes"):
        line = next(line for line in text.splitlines() if line.startswith(key))
        assert "#" in line, f"{part}: {key} has no source comment"


def test_a_part_with_another_fpu_says_so_and_only_that_changes():
    f7, m7 = load_target("stm32f746ng"), load_target("cortex-m7")
    assert "-mfpu=fpv5-sp-d16" in f7.cpu_flags and "-mfpu=fpv5-d16" in m7.cpu_flags
    assert [f for f in f7.cpu_flags if not f.startswith("-mfpu")] == \
        [f for f in m7.cpu_flags if not f.startswith("-mfpu")]


@pytest.mark.qemu
def test_largest_contiguous_region_merges_adjacent_regions():
    regions = (RamRegion("a", 0x2000_0000, 0x1_0000), RamRegion("c", 0x3000_0000, 0x1_8000),
               RamRegion("b", 0x2001_0000, 0x1_0000))
    runs = contiguous_ram(regions)
    assert [[r.name for r in run] for run in runs] == [["a", "b"], ["c"]]
    assert load_target("stm32f746ng").ram_bytes == 320 * 1024  # DTCM + SRAM1 + SRAM2
    assert load_target("stm32h743zi").ram_bytes == 512 * 1024  # AXI SRAM, not 1 MB in all
    assert load_target("stm32h743zi").largest_ram == "AXI SRAM"


def test_unknown_target_is_one_line_naming_the_known_ones():
    with pytest.raises(McugenError, match="known targets: .*nrf52840") as error:
        load_target("nrf99")
    assert "\n" not in str(error.value)


# Where core and board facts could hide: code and build files (documentation may name them).
CODE = ["mcugen/**/*.py", "benchmarks/*.py", "examples/qemu/Makefile", "examples/qemu/*.c",
        "examples/qemu/*.h", "examples/qemu/plugin/*.c", "examples/parts/Makefile",
        "examples/parts/*.[ch]", "host_tests/*.py", "templates/**/*.j2",
        ".ci/*", "scripts/*"]
# host_tests/test_cmsis_nn.py is being rewritten on main; its QEMU_BOARDS is left for that merge.
NOT_MINE = {"host_tests/test_cmsis_nn.py", "host_tests/test_targets.py"}
FACTS = re.compile(r"-mcpu=\w|-mfpu=\w|-mfloat-abi=\w|\bmps[23]-an\d{3}\b")


def test_core_and_board_facts_are_written_only_in_targets():
    """issue 8 item 7: compiler flags and QEMU machines live in targets/*.toml (and each board's
    linker script), nowhere else: the code reads them from there."""
    copies = []
    for pattern in CODE:
        for path in REPO.glob(pattern):
            relative = path.relative_to(REPO).as_posix()
            if not path.is_file() or relative in NOT_MINE or "__pycache__" in relative:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if FACTS.search(line):
                    copies.append(f"{relative}:{number}: {line.strip()}")
    assert copies == [], "\n".join(copies)


def test_the_check_itself_finds_a_copy(tmp_path):
    """The pattern above does match the kind of line it must keep out."""
    assert FACTS.search('BOARDS = {"cortex-m4": "mps2-an386"}')
    assert FACTS.search("CPU_FLAGS_x := -mcpu=cortex-m4 -mfpu=fpv4-sp-d16")
