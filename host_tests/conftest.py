"""Shared fixtures: test models converted once per run, the TFLM oracle, paths."""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

# TFLM's interpreter (reference kernels, double rounding): the oracle users trust. The one copy
# is mcugen's (mcugen/oracle.py, also used by `mcugen run`); it raises when TFLM cannot run a
# model, so a test that needs TFLM fails rather than skips.
from mcugen.oracle import tflm_outputs  # noqa: F401  (imported by the tests from here)

REPO = Path(__file__).resolve().parents[1]
FAST_TIER = os.environ.get("MCUGEN_FAST_TIER") == "1"
SHARED = REPO.parent / "shared"
PERSON_DETECT = SHARED / "models" / "person_detect.tflite"
CACHE = Path(os.environ.get("MCUGEN_TEST_CACHE", "/tmp/mcugen-test-cache"))


def _cache_key(params: dict) -> str:
    """Converted models are cached on disk between runs, keyed by the parameters and by the
    front end's own source, so a change to the converter path rebuilds them."""
    import tensorflow as tf

    frontend = (REPO / "mcugen" / "frontend" / "keras.py").read_bytes()
    text = repr(sorted(params.items())) + tf.__version__
    return hashlib.sha256(text.encode() + frontend).hexdigest()[:20]


_session_models: dict[tuple, bytes] = {}


# Tiers. A test that imports TensorFlow (every Keras conversion and TFLite's reference
# interpreter) is marked `tensorflow`; one that runs QEMU is marked `qemu`; one that needs
# neither but takes more than a few seconds (whole models under the sanitizers or several
# compilers) `slow`. The fast tier (`scripts/test --fast`) runs the others and makes a
# mislabelled test fail rather than slow the tier down: TensorFlow cannot be imported there
# and qemu-system-arm is a program that refuses.
TIER_MARKERS = {
    "tensorflow": "imports TensorFlow (Keras conversion, TFLite's interpreter): not in the fast tier",
    "qemu": "runs firmware in QEMU: not in the fast tier",
    "slow": "neither, but long (whole models under sanitizers or compilers): not in the fast tier",
}


def pytest_configure(config):
    for name, meaning in TIER_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")
    if FAST_TIER:
        sys.meta_path.insert(0, _RefuseTensorFlow())
        os.environ["PATH"] = f"{_refusing_qemu_dir()}{os.pathsep}{os.environ['PATH']}"


# The test files that take longest (`--durations=0`, summed per file), longest first. The
# whole suite gives each worker a file at a time (scripts/test: --dist loadfile
# --no-loadscope-reorder) in collection order: started first, a long file cannot be the last
# one left while the other workers idle. A file missing here only runs later. CPU seconds
# alone (issue 20, this stop's engineers): test_quantize_io 149, test_cli 142, test_row_bands
# 75, test_row_bands_host 67, then test_mobilenet_generations, test_early_checks,
# test_kernels, test_cmsis_nn.
LONGEST_FIRST = ("test_quantize_io.py", "test_cli.py", "test_row_bands.py",
                 "test_row_bands_host.py", "test_mobilenet_generations.py",
                 "test_early_checks.py", "test_kernels.py", "test_cmsis_nn.py",
                 "test_run_image.py", "test_keras_frontend.py", "test_caller_arena.py",
                 "test_real_world_models.py",
                 "test_selftest_profile.py", "test_host_models.py", "test_constant_folding.py",
                 "test_output_folder.py", "test_clang.py", "test_qemu_models.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: else unchanged
    if not FAST_TIER:
        return
    slow = [item for item in items if any(item.get_closest_marker(m) for m in TIER_MARKERS)]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item not in set(slow)]


class _RefuseTensorFlow:
    """A meta-path finder that makes `import tensorflow` fail in the fast tier."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
            raise ImportError(f"fast tier: {name} imported by a test not marked `tensorflow`")
        return None


def _refusing_qemu_dir() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="mcugen-fast-tier-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    program = directory / "qemu-system-arm"
    program.write_text("#!/bin/sh\necho 'fast tier: QEMU run by a test not marked qemu' >&2\n"
                       "exit 1\n")
    program.chmod(0o755)
    return directory


@pytest.fixture(scope="session", autouse=True)
def fresh_conversion_cache(tmp_path_factory):
    """mcugen's own cache of converted models (mcugen/cache.py) starts empty in each test
    session and is not the user's: the tests that watch TensorFlow convert see it convert,
    and the commands they run inherit this environment."""
    saved = os.environ.get("MCUGEN_CACHE_DIR")
    os.environ["MCUGEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("conversion-cache"))
    yield
    if saved is None:
        os.environ.pop("MCUGEN_CACHE_DIR", None)
    else:
        os.environ["MCUGEN_CACHE_DIR"] = saved


def mobilenet_tflite(**params) -> bytes:
    """An int8 MobileNet .tflite from mcugen's Keras front end, converted once per key."""
    key = tuple(sorted(params.items()))
    if key not in _session_models:
        path = CACHE / f"{_cache_key(params)}.tflite"
        CACHE.mkdir(parents=True, exist_ok=True)
        # pytest-xdist's workers wait for each other's conversion of one model (TensorFlow
        # takes seconds to tens of seconds) rather than each doing it.
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.is_file():
                from mcugen.frontend.keras import build_mobilenet_tflite

                data = build_mobilenet_tflite(**params)
                partial = path.with_suffix(f".{os.getpid()}.part")
                partial.write_bytes(data)
                partial.replace(path)
        _session_models[key] = path.read_bytes()
    return _session_models[key]


def standard_inputs(size: int, seed: int = 0, random_count: int = 3) -> np.ndarray:
    """The inputs every model is tried on: all -128, all 127, zeros, and random ones."""
    rng = np.random.default_rng(seed)
    fixed = [np.full(size, -128), np.full(size, 127), np.zeros(size)]
    noise = [rng.integers(-128, 128, size) for _ in range(random_count)]
    return np.stack(fixed + noise).astype(np.int8)


def float_edge_values(scale: float, size: int, seed: int = 0) -> np.ndarray:
    """size float32s for a QUANTIZE by ``scale``: exact ties x / scale == k + 0.5 (in float
    arithmetic, as the kernels divide) on both sides of zero, values that saturate (huge ones,
    infinities, around int32's limits), NaN, zeros of both signs, a subnormal, and random values
    around the range."""
    scale = np.float32(scale)
    ties = []
    for k in range(-140, 140):
        guess = np.float32((k + 0.5) * float(scale))
        for candidate in (guess, np.nextafter(guess, np.float32(np.inf)),
                          np.nextafter(guess, np.float32(-np.inf))):
            if np.float32(candidate) / scale == np.float32(k + 0.5):
                ties.append(candidate)
                break
    specials = np.array([np.inf, -np.inf, np.nan, 3e38, -3e38, 0.0, -0.0, 1e-45, -1e-45],
                        np.float32)
    rng = np.random.default_rng(seed)
    steps = np.concatenate([rng.uniform(-300, 300, 200), [-1e6, 1e6, -2e9, 2e9, 0.49, -0.49,
                                                          0.5, -0.5, 127.6, -128.6, 255.5,
                                                          # int32's edges, where TFLite wraps
                                                          2147483520.0, 2147483392.0,
                                                          -2147483520.0, -2147483648.0,
                                                          2147483648.0]])
    values = np.concatenate([specials, np.array(ties, np.float32),
                             (steps * float(scale)).astype(np.float32)])
    return rng.permutation(np.resize(values, max(size, values.size)))[:size].astype(np.float32)


def typed_inputs(graph, seed: int = 0, count: int = 4) -> np.ndarray:
    """count inputs for a graph of any input type, flattened: int8 as standard_inputs; uint8
    with both extremes and every value; float32 with float_edge_values for the scale of the
    QUANTIZE that reads it."""
    tensor = graph.input
    size = tensor.size
    if tensor.dtype == "int8":
        return standard_inputs(size, seed, random_count=max(count - 3, 1))
    rng = np.random.default_rng(seed)
    if tensor.dtype == "uint8":
        rows = [np.zeros(size), np.full(size, 255), np.resize(np.arange(256), size)]
        rows += [rng.integers(0, 256, size) for _ in range(max(count - 3, 1))]
        return np.stack(rows).astype(np.uint8)
    reader = graph.ops[graph.consumers(tensor.name)[0]]
    scale = graph.tensor(reader.output).scale
    return np.stack([float_edge_values(scale, size, seed + i) for i in range(count)])


@pytest.fixture(scope="session")
def person_detect() -> bytes:
    assert PERSON_DETECT.is_file(), f"missing {PERSON_DETECT} (shared/ beside the repo)"
    return PERSON_DETECT.read_bytes()


@pytest.fixture
def mcugen_here(capsys, monkeypatch):
    """The command line's own code (mcugen.cli.main) run in this process, for tests of what a
    command does rather than of how its program starts: no interpreter start, imports and
    template compiling per command (about a second of CPU each). Called as test_cli.mcugen is
    (cwd optional), answering a subprocess.CompletedProcess: what the command wrote on stdout
    and stderr, and its exit status (argparse's --help exits: its code, as the program's). The
    tests of the program itself (signals, a closed pipe, the quiet TensorFlow import of a fresh
    interpreter) keep a real process."""
    from mcugen.cli import main

    def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        monkeypatch.delenv("MCUGEN_DEBUG", raising=False)
        # argparse wraps --help to the terminal's width: a program on a pipe sees 80 columns
        # unless COLUMNS says otherwise, whatever this process's own stdout is.
        monkeypatch.setenv("COLUMNS", os.environ.get("COLUMNS", "80"))
        capsys.readouterr()
        try:
            status = main(list(args))
        except SystemExit as done:
            status = done.code or 0
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["mcugen", *args], status, out, err)

    return run
