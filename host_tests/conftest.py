"""Shared fixtures: test models converted once per run, the TFLM oracle, paths."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

# TFLM's interpreter (reference kernels, double rounding): the oracle users trust. The one copy
# is mcugen's (mcugen/oracle.py, also used by `mcugen run`); it raises when TFLM cannot run a
# model, so a test that needs TFLM fails rather than skips.
from mcugen.oracle import tflm_outputs  # noqa: F401  (imported by the tests from here)

REPO = Path(__file__).resolve().parents[1]
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
        if not path.is_file():
            from mcugen.frontend.keras import build_mobilenet_tflite

            data = build_mobilenet_tflite(**params)
            CACHE.mkdir(parents=True, exist_ok=True)
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


@pytest.fixture(scope="session")
def person_detect() -> bytes:
    assert PERSON_DETECT.is_file(), f"missing {PERSON_DETECT} (shared/ beside the repo)"
    return PERSON_DETECT.read_bytes()
