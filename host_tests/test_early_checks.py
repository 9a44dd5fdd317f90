"""Issue 17, item 4: a request no target can hold is refused before the slow work (TensorFlow,
compiling), with the right figures; a converted MobileNet is reused on a retry.

The shapes mcugen derives from Keras' rules (mcugen/estimate.py) are compared with the models
TensorFlow actually converts (the test cache's, shared with the other tests), the arena's lower
bound with the arenas the schedule search actually reaches, and the refusals are timed on the
command line with TensorFlow left unimported.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import PERSON_DETECT, mobilenet_tflite
from mcugen import cache, estimate
from mcugen.build import (REMOVABLE_BEFORE_CONVERSION, BuildOptions, check_after_import,
                          check_before_converting, check_shapes)
from mcugen.compile import compile_graph, prepare
from mcugen.errors import McugenError
from mcugen.frontend.tflite import load_tflite
from mcugen.kernels import lower_layers
from mcugen.kernels.variant import const_arrays
from mcugen.targets import load_target, qemu_targets

REPO = Path(__file__).resolve().parents[1]

# Converted by other tests too (the same parameters: one conversion per model in a run): every
# generation, square or not, RGB and grayscale, widths 0.25 to 1.0.
KERAS_CASES = {
    "v1_a0.25_96x96x3": dict(arch="v1", seed=1, alpha=0.25, height=96, width=96, channels=3,
                             classes=2),
    "v1_a0.5_72x56x3": dict(arch="v1", seed=1, alpha=0.5, height=72, width=56, channels=3,
                            classes=10),
    "v1_a1.0_64x64x3": dict(arch="v1", seed=1, alpha=1.0, height=64, width=64, channels=3,
                            classes=5),
    "v2_a0.35_96x96x3": dict(arch="v2", seed=1, alpha=0.35, height=96, width=96, channels=3,
                             classes=2),
    "v2_a0.5_48x40x1": dict(arch="v2", seed=2, alpha=0.5, height=48, width=40, channels=1,
                            classes=3),
    "v3-small_a0.5_64x64x1": dict(arch="v3-small", seed=2, alpha=0.5, height=64, width=64,
                                  channels=1, classes=5),
    "v3-small_a0.35_56x48x3": dict(arch="v3-small", seed=2, alpha=0.35, height=56, width=48,
                                   channels=3, classes=2),
    "v3-large_a0.35_64x64x3": dict(arch="v3-large", seed=2, alpha=0.35, height=64, width=64,
                                   channels=3, classes=6),
    "v3-large_a0.25_40x40x1": dict(arch="v3-large", seed=2, alpha=0.25, height=40, width=40,
                                   channels=1, classes=3),
}


def shapes_from_keras_rules(params: dict) -> estimate.Shapes:
    return estimate.keras_shapes(params["arch"], params["alpha"], params["height"],
                                 params["width"], params["channels"], params["classes"])


def converted_graph(case: str):
    return load_tflite(mobilenet_tflite(**KERAS_CASES[case]), "model")


def comparable(shapes: estimate.Shapes):
    """The layers with each layer's operands in one order (ADD's order is the converter's)."""
    layers = [dataclasses.replace(layer, inputs=tuple(sorted(layer.inputs)))
              for layer in shapes.layers]
    return shapes.input_shape, layers, shapes.outputs


# ---------------------------------------------------------------------------------------------
# The shapes and weights, against the converted models


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", KERAS_CASES)
def test_the_keras_rules_give_the_converted_models_layers(case):
    """Layer for layer: op, operands, output shape, kernel, stride, padding and weight bytes
    (exact), as the converted and prepared model has them."""
    graph = prepare(converted_graph(case))
    assert comparable(shapes_from_keras_rules(KERAS_CASES[case])) == \
        comparable(estimate.graph_shapes(graph))


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", ["v1_a0.5_72x56x3", "v2_a0.5_48x40x1",
                                  "v3-large_a0.25_40x40x1"])
def test_the_weight_bytes_are_the_reports_and_a_lower_bound_of_every_cores_tables(case):
    """Exact against the compiled report's weights; the constant tables in flash (what the
    memory check compares) are at least that on every core, with either kernel set."""
    estimated = shapes_from_keras_rules(KERAS_CASES[case]).weight_bytes
    graph = converted_graph(case)
    report = compile_graph(graph, name="model", target=load_target("host"), source=case,
                           memory_check=False).report
    assert report.weight_bytes == estimated
    assert report.const_bytes >= estimated
    for kernels in ("mcugen", "cmsis-nn"):
        prepared = prepare(graph, kernels)
        for target in [load_target("host"), *qemu_targets().values()]:
            tables = sum(a.nbytes for layer in lower_layers(prepared, target, "model", kernels)
                         for a in const_arrays(layer.params))
            assert tables >= estimated, (target.name, kernels)


def test_keras_channel_rounding():
    """Keras' _make_divisible/_depth: nearest multiple of 8, at least 8, at most 10 % down."""
    assert [estimate.make_divisible(v) for v in (5.6, 11.2, 12, 20, 36, 58.67, 1280 * 1.4)] == \
        [8, 16, 16, 24, 40, 56, 1792]


# ---------------------------------------------------------------------------------------------
# The arena's lower bound, against what the schedule search reaches


def smallest_reachable(graph, target: str) -> int:
    """The smallest arena the schedule search reaches, as its error message names it."""
    with pytest.raises(McugenError, match="smallest reachable") as error:
        compile_graph(graph, name="model", target=load_target(target), source="test",
                      memory_check=False, max_ram=256)
    return int(re.search(r"smallest reachable is ([\d,]+) B", str(error.value))
               .group(1).replace(",", ""))


@pytest.mark.tensorflow
@pytest.mark.parametrize("case, target", [
    ("v1_a0.25_96x96x3", "cortex-m7"), ("v1_a0.5_72x56x3", "cortex-m0plus"),
    ("v1_a1.0_64x64x3", "cortex-m7"), ("v2_a0.5_48x40x1", "cortex-m4"),
    ("v2_a0.35_96x96x3", "cortex-m7"), ("v3-small_a0.5_64x64x1", "cortex-m55"),
    ("v3-large_a0.25_40x40x1", "cortex-m7"), ("person_detect", "cortex-m7"),
    ("person_detect", "cortex-m0plus")])
def test_the_arena_bound_is_below_every_arena_mcugen_reaches(case, target):
    graph = load_tflite(PERSON_DETECT.read_bytes(), "model") if case == "person_detect" \
        else converted_graph(case)
    bound = estimate.arena_lower_bound(estimate.graph_shapes(prepare(graph)))
    if case != "person_detect":
        assert bound == estimate.arena_lower_bound(shapes_from_keras_rules(KERAS_CASES[case]))
    whole = compile_graph(graph, name="model", target=load_target(target), source=case,
                          memory_check=False).plan.arena_size
    assert 0 < bound <= smallest_reachable(graph, target) <= whole


@pytest.mark.tensorflow
def test_the_input_and_output_are_not_in_the_arena_but_a_whole_tensor_is():
    """A layer that cannot run in bands (MEAN) holds its whole input; the model's input and
    output are the caller's. V1 α 0.25 at 96: MEAN reads 3x3x256."""
    shapes = shapes_from_keras_rules(KERAS_CASES["v1_a0.25_96x96x3"])
    mean = next(i for i, layer in enumerate(shapes.layers) if layer.op == "MEAN")
    assert shapes.layers[mean - 1].shape == (1, 3, 3, 256)
    assert estimate.arena_lower_bound(shapes) >= 3 * 3 * 256
    assert shapes.in_arena(estimate.MODEL_INPUT) == 0
    assert shapes.in_arena(len(shapes.layers) - 1) == 0


def _bound_calls(count: int) -> int:
    """The Python calls arena_lower_bound makes on a chain of `count` layers (its work, counted
    rather than timed: the same on any machine and load)."""
    layers = tuple(estimate.Layer("CONV_2D", (i - 1,), (1, 8, 8, 16), 0, estimate.Window(3, 1, 1))
                   for i in range(count))
    shapes = estimate.Shapes((1, 8, 8, 16), layers, frozenset({len(layers) - 1}))
    calls = 0

    def count_call(frame, event, arg):
        nonlocal calls
        calls += event == "call"

    sys.setprofile(count_call)
    try:
        bound = estimate.arena_lower_bound(shapes)
    finally:
        sys.setprofile(None)
    assert bound == 8 * 8 * 16
    return calls


def test_the_bound_stays_linear_on_a_long_chain():
    """A hostile file's 10,000 layers: the per-layer bound in one sweep (no quadratic pass):
    twice the layers, about twice the work."""
    small, large = _bound_calls(5_000), _bound_calls(10_000)
    assert large < 2.2 * small, (small, large)


def test_a_window_reads_its_rows_cut_at_the_edges():
    same3 = estimate.Window(3, 1, 1)
    assert same3.most_read(10, 10) == 3 and same3.most_read(1, 1) == 1
    assert estimate.Window(3, 2, 0).most_read(48, 24) == 3
    assert estimate.Window(5, 2, 1).most_read(8, 4) == 5
    assert estimate.Window(1, 1, 0).most_read(7, 7) == 1


# ---------------------------------------------------------------------------------------------
# Refusals before the slow work, on the command line


WATCH = """
import sys
from mcugen.cli import main
status = main(sys.argv[1:])
print(f"\\nWATCH {status} {'tensorflow' in sys.modules}")
"""


def mcugen_watched(*args: str, cwd: Path, cache_dir: Path | None = None):
    """Run mcugen's command line in a fresh interpreter: its exit status, its stderr, and
    whether TensorFlow was imported (a check refused before the conversion never imports it;
    tests never assert timings, which a busy machine stretches)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MCUGEN_DEBUG", None)
    if cache_dir is not None:
        env["MCUGEN_CACHE_DIR"] = str(cache_dir)
    result = subprocess.run([sys.executable, "-c", WATCH, *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=900)
    status, imported = re.search(r"WATCH (\d+) (True|False)", result.stdout).groups()
    return int(status), result.stderr, imported == "True"


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mcugen: error: "), stderr
    return lines[0]


@pytest.mark.tensorflow
@pytest.mark.qemu
def test_flash_no_target_holds_is_refused_before_tensorflow(tmp_path):
    """The issue's case: α 1.0 at 224 on a Cortex-M7 said so after 50-70 s of TensorFlow."""
    expected = estimate.keras_shapes("v1", 1.0, 224, 224, 3, 2).weight_bytes
    status, stderr, imported = mcugen_watched(
        "build", "--alpha", "1.0", "--res", "224", "--target", "cortex-m7", "--out", "out",
        cwd=tmp_path)
    error = one_error_line(stderr)
    assert status == 1 and not imported, stderr
    assert f"at least {expected:,} bytes of flash" in error and "1,048,576" in error
    assert "--no-memory-check" in error
    assert not (tmp_path / "out").exists()


@pytest.mark.tensorflow
def test_the_issues_budget_is_refused_before_tensorflow(tmp_path):
    """`--alpha 1.0 --res 224 --max-ram 160K` failed after 51 s. Its layers form a chain: the
    bound follows every way of cutting it into segments (168,448 B in row bands; the search
    reaches 207,360 B on a Cortex-M7, measured once: the conversion is too slow for this
    suite), and of running its first layers in column tiles (tiles.py), whose join holds
    14x14x256 twice: 100,352 B. A budget below that is refused before TensorFlow."""
    bound = estimate.arena_lower_bound(estimate.keras_shapes("v1", 1.0, 224, 224, 3, 2))
    assert bound == 100_352
    status, stderr, imported = mcugen_watched(
        "build", "--alpha", "1.0", "--res", "224", "--max-ram", "96K", "--target", "host",
        "--out", "out", cwd=tmp_path)
    error = one_error_line(stderr)
    assert status == 1 and not imported, stderr
    assert "no schedule fits an arena of 98,304 B: the smallest reachable is 100,352 B or " \
           "more" in error


@pytest.mark.tensorflow
@pytest.mark.qemu
def test_a_ram_budget_below_the_bound_is_refused_before_tensorflow(tmp_path):
    """Before conversion, by more than what dead-channel removal might take (a margin)."""
    bound = estimate.arena_lower_bound(estimate.keras_shapes("v2", 0.35, 96, 96, 3, 2))
    budget = int(bound * (1 - REMOVABLE_BEFORE_CONVERSION)) - 1
    status, stderr, imported = mcugen_watched(
        "build", "--arch", "v2", "--alpha", "0.35", "--res", "96", "--max-ram",
        str(budget), "--target", "cortex-m7", "--out", "out", cwd=tmp_path)
    error = one_error_line(stderr)
    assert status == 1 and not imported, stderr
    assert f"no schedule fits an arena of {budget:,} B: the smallest reachable is " \
           f"{bound:,} B or more" in error and "--max-ram" in error


@pytest.mark.tensorflow
def test_within_the_margin_the_exact_check_after_conversion_decides(tmp_path):
    """Just below the bound: not refused before conversion, refused after import (where the
    graph is the one mcugen compiles), by the same bound, before compiling."""
    params = KERAS_CASES["v2_a0.35_96x96x3"]
    bound = estimate.arena_lower_bound(shapes_from_keras_rules(params))
    options = BuildOptions(arch="v2", alpha=0.35, max_ram=bound - 1, target="cortex-m7")
    check_before_converting(options)
    with pytest.raises(McugenError, match=f"smallest reachable is {bound:,} B or more"):
        check_after_import(converted_graph("v2_a0.35_96x96x3"), options)
    with pytest.raises(McugenError, match="smallest reachable"):
        check_before_converting(dataclasses.replace(options, kernels="cmsis-nn"))


@pytest.mark.tensorflow
@pytest.mark.qemu
def test_an_arena_no_ram_holds_is_refused_before_tensorflow(tmp_path):
    """At 1024x1024 the last feature map alone (32x32x256) is more than a Cortex-M4's RAM."""
    bound = estimate.arena_lower_bound(estimate.keras_shapes("v1", 0.25, 1024, 1024, 3, 2))
    assert bound >= 32 * 32 * 256
    status, stderr, imported = mcugen_watched(
        "build", "--alpha", "0.25", "--res", "1024", "--target", "cortex-m4", "--out", "out",
        cwd=tmp_path)
    error = one_error_line(stderr)
    assert status == 1 and not imported, stderr
    assert f"arena of at least {bound:,} bytes" in error and "196,608" in error
    assert "--no-memory-check" in error


def test_no_memory_check_and_trained_weights_skip_the_flash_refusal(tmp_path):
    """--no-memory-check builds anything (the summary says by how much it does not fit);
    trained weights may be pruned, so their model is checked after import."""
    big = dict(alpha=1.0, height=224, width=224, target="cortex-m7")
    with pytest.raises(McugenError, match="flash"):
        check_before_converting(BuildOptions(**big))
    check_before_converting(BuildOptions(**big, memory_check=False))
    check_before_converting(BuildOptions(**big, weights=tmp_path / "trained.weights.h5"))
    with pytest.raises(McugenError, match="flash"):
        check_before_converting(BuildOptions(**big, weights=tmp_path / "w.h5",
                                             kernels="cmsis-nn"))


def test_the_arena_is_checked_against_the_largest_region_or_all_of_them():
    """A part's arena is one array in its largest RAM region; with --ram-regions it may use
    them all (STM32H743: 512 KB of AXI SRAM, about 1 MB in all); a core has no regions to
    split over, which compiling explains."""
    feature_map = estimate.Layer("CONV_2D", (estimate.MODEL_INPUT,), (1, 100, 100, 60), 0,
                                 estimate.Window(1, 1, 0))
    shapes = estimate.Shapes((1, 100, 100, 3), (feature_map, estimate.Layer(
        "MEAN", (0,), (1, 60))), frozenset({1}))
    assert estimate.arena_lower_bound(shapes) == 600_000
    part = load_target("stm32h743zi")
    assert part.ram_bytes < 600_000 <= sum(r.bytes for r in part.arena_regions)
    with pytest.raises(McugenError, match="largest RAM region"):
        check_shapes(shapes, BuildOptions(target=part.name), part)
    check_shapes(shapes, BuildOptions(target=part.name, ram_regions=True), part)
    core = load_target("cortex-m0plus")
    check_shapes(shapes, BuildOptions(target=core.name, ram_regions=True), core)
    with pytest.raises(McugenError, match="cortex-m0plus has"):
        check_shapes(shapes, BuildOptions(target=core.name), core)


@pytest.mark.tensorflow
@pytest.mark.qemu
def test_a_tflite_too_big_is_refused_right_after_import(tmp_path):
    """--model: refused before the compiling step, with the model's weights."""
    big = tmp_path / "big.tflite"
    big.write_bytes(mobilenet_tflite(**KERAS_CASES["v1_a1.0_64x64x3"]))
    expected = shapes_from_keras_rules(KERAS_CASES["v1_a1.0_64x64x3"]).weight_bytes
    status, stderr, imported = mcugen_watched(
        "build", "--model", str(big), "--target", "cortex-m7", "--out", "out", cwd=tmp_path)
    error = one_error_line(stderr)
    assert status == 1 and not imported
    assert f"at least {expected:,} bytes of flash" in error


def test_after_import_a_refusal_counts_the_channels_mcugen_removes():
    """A pruned model (test_dead_channels' VWW-like chain): its arena bound without the
    removal is over the budget, with it under: mcugen's kernels go on, CMSIS-NN's (which
    keep every channel) are refused."""
    from test_dead_channels import vww_like

    graph = vww_like()
    kept = estimate.arena_lower_bound(estimate.graph_shapes(prepare(graph, "cmsis-nn")))
    removed = estimate.arena_lower_bound(estimate.graph_shapes(prepare(graph)))
    assert removed < kept
    budget = (removed + kept) // 2
    check_after_import(graph, BuildOptions(model=Path("pruned.tflite"), max_ram=budget))
    with pytest.raises(McugenError, match=f"smallest reachable is {kept:,} B or more"):
        check_after_import(graph, BuildOptions(model=Path("pruned.tflite"), max_ram=budget,
                                               kernels="cmsis-nn"))
    assert removed <= smallest_reachable(prepare(graph), "host")


# ---------------------------------------------------------------------------------------------
# The cache of converted models


TINY = ("--alpha", "0.25", "--res", "32", "--target", "host")


@pytest.mark.tensorflow
def test_a_retry_reuses_the_conversion_and_a_damaged_entry_is_rebuilt(tmp_path, monkeypatch):
    """The conversions (the first, and the one after the damage) run the command line's
    options in this process, where TensorFlow is imported once for the whole file; the retry
    runs on the command line, in a fresh interpreter that must not even import TensorFlow."""
    from mcugen.build import build
    from mcugen.cli import build_options, make_parser

    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("MCUGEN_CACHE_DIR", str(cache_dir))

    def converted_here(out: str) -> list[str]:
        steps: list[str] = []
        build(build_options(make_parser().parse_args(["build", *TINY, "--out",
                                                      str(tmp_path / out)])), steps.append)
        return steps

    first = converted_here("first")
    assert "converting to int8" in first, first
    entries = list(cache_dir.glob("*.tflite"))
    assert len(entries) == 1

    again = mcugen_watched("build", *TINY, "--out", "again", cwd=tmp_path, cache_dir=cache_dir)
    assert again[0] == 0 and not again[2], again[1]  # TensorFlow not even imported
    assert re.search(r"^mcugen: building MobileNet v1 α=0.25 32×32×3 \(cached\)\.\.\. ",
                     again[1], re.MULTILINE) and "converting" not in again[1]
    model = "mobilenet_v1_a025_32.tflite"
    assert (tmp_path / "again" / model).read_bytes() == (tmp_path / "first" / model).read_bytes()

    entries[0].write_bytes(entries[0].read_bytes()[:-100])  # damaged (a full disk, a crash)
    rebuilt = converted_here("rebuilt")
    assert "converting to int8" in rebuilt, rebuilt
    assert (tmp_path / "rebuilt" / model).read_bytes() == \
        (tmp_path / "first" / model).read_bytes()
    assert _entry_is_whole(entries[0])  # written again, whole


def _entry_is_whole(path: Path) -> bool:
    import hashlib

    raw = path.read_bytes()
    header = len(cache.MAGIC) + 32
    return raw.startswith(cache.MAGIC) and \
        raw[len(cache.MAGIC):header] == hashlib.sha256(raw[header:]).digest()


@pytest.fixture
def frontend_files(tmp_path):
    calibration = tmp_path / "calibration.npy"
    np.save(calibration, np.zeros((2, 32, 32, 3), np.uint8))
    weights = tmp_path / "trained.weights.h5"
    weights.write_bytes(b"weights, version 1")
    return calibration, weights


def test_the_key_holds_every_option_that_reaches_the_front_end(frontend_files, tmp_path):
    calibration, weights = frontend_files
    base = BuildOptions(calibration=calibration, weights=weights)
    key = cache.conversion_key(base)
    changed = {"arch": "v2", "alpha": 0.5, "height": 64, "width": 64, "channels": 1,
               "classes": 3, "seed": 1}
    frontend = [f.name for f in dataclasses.fields(BuildOptions)
                if f.name not in cache.NOT_FRONTEND | {"calibration", "weights"}]
    for name in frontend:  # an option added later (--io) is in the key without being listed
        value = changed.get(name, _another_value(getattr(base, name)))
        assert cache.conversion_key(dataclasses.replace(base, **{name: value})) != key, name
    later_stages = {"target": "cortex-m7", "name": "other", "out": tmp_path / "x",
                    "force": True, "memory_check": False, "kernels": "cmsis-nn",
                    "verbose": True, "max_ram": 20000, "weights_section": ".extflash",
                    "ram_regions": True, "arena": "caller", "model": None}
    assert set(later_stages) == cache.NOT_FRONTEND
    for name, value in later_stages.items():
        assert cache.conversion_key(dataclasses.replace(base, **{name: value})) == key, name
    # Files by content: a copy elsewhere is the same model, an edited file another one.
    copy = tmp_path / "copy.weights.h5"
    copy.write_bytes(weights.read_bytes())
    assert cache.conversion_key(dataclasses.replace(base, weights=copy)) == key
    weights.write_bytes(b"weights, version 2")
    assert cache.conversion_key(base) != key
    np.save(calibration, np.ones((2, 32, 32, 3), np.uint8))
    assert cache.conversion_key(dataclasses.replace(base, weights=copy)) != key
    assert cache.conversion_key(dataclasses.replace(base, calibration=None)) != \
        cache.conversion_key(dataclasses.replace(base, calibration=tmp_path))


def _another_value(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    return f"{value}-other"


@pytest.mark.tensorflow
def test_the_key_holds_tensorflows_version_and_the_front_ends_source():
    recipe_tools = cache._tool_versions()
    assert any(name.startswith(("tensorflow", "tf-nightly")) for name in recipe_tools)
    import tensorflow as tf

    assert tf.__version__.split("-")[0] in recipe_tools.values()
    source = (REPO / "mcugen" / "frontend" / "keras.py").read_bytes()
    import hashlib

    assert cache._frontend_digest() == hashlib.sha256(source).hexdigest()


def test_a_missing_weights_file_is_one_line_before_anything(tmp_path):
    with pytest.raises(McugenError, match="weights file .*missing.h5 does not exist"):
        cache.conversion_key(BuildOptions(weights=tmp_path / "missing.h5"))


def test_the_cache_keeps_the_most_recently_used(monkeypatch, tmp_path):
    monkeypatch.setenv("MCUGEN_CACHE_DIR", str(tmp_path))
    keys = [f"{n:032x}" for n in range(cache.MAX_ENTRIES)]
    for age, key in enumerate(keys):
        cache.store(key, key.encode())
        os.utime(tmp_path / f"{key}.tflite", (1e9 + age, 1e9 + age))
    assert cache.load(keys[0]) == keys[0].encode()  # used again: now the most recent
    newer = [f"{n:032x}" for n in range(100, 103)]
    for key in newer:
        cache.store(key, b"newer")
    kept = {p.stem for p in tmp_path.glob("*.tflite")}
    assert kept == {keys[0], *keys[4:], *newer}  # the three least recently used went
    assert not list(tmp_path.glob(".*.part"))


def test_where_the_cache_lives(monkeypatch, tmp_path):
    monkeypatch.delenv("MCUGEN_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "mcugen" / "converted"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # as the XDG spec says
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "mcugen" / "converted"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "mcugen" / "converted"
    monkeypatch.setenv("MCUGEN_CACHE_DIR", str(tmp_path / "mine"))
    assert cache.cache_dir() == tmp_path / "mine"


def test_a_cache_that_cannot_be_written_is_no_error(monkeypatch, tmp_path):
    blocked = tmp_path / "a file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("MCUGEN_CACHE_DIR", str(blocked / "cache"))
    cache.store("0" * 32, b"model")
    assert cache.load("0" * 32) is None
