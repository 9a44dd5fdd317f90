"""Converted MobileNets, kept between runs, so that a retry (another target, --max-ram, a fixed
typo in --out) takes seconds instead of TensorFlow's half minute.

An entry is keyed by everything that can change the converted .tflite: every build option
that reaches the Keras front end (the calibration data and the weights file by the SHA-256 of
their content, not their path), TensorFlow's, Keras' and NumPy's versions, and the front end's
own source. The options that only concern later stages (target, name, output folder, memory
check, kernels, ...) are listed in NOT_FRONTEND; any other option, including one added later,
is part of the key, so that a new front-end option can never reuse a stale model.

Where: $MCUGEN_CACHE_DIR, else $XDG_CACHE_HOME/mcugen/converted, else
~/.cache/mcugen/converted. Entries are written atomically (a temporary file renamed over the
entry) and carry the SHA-256 of their content: a damaged entry is ignored and rebuilt. The
MAX_ENTRIES most recently used are kept. The cache is an optimisation: a folder that cannot be
written is not an error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import McugenError

MAX_ENTRIES = 20
SUFFIX = ".tflite"
MAGIC = b"mcugen converted model 1\n"  # then the content's SHA-256 (32 bytes), then the content
STALE_PART_SECONDS = 3600  # a temporary file this old is a killed writer's
# BuildOptions fields that do not reach the Keras front end.
NOT_FRONTEND = frozenset({"model", "target", "name", "out", "force", "memory_check", "kernels",
                          "verbose", "max_ram", "weights_section", "ram_regions",
                          "arena"})
# Distributions whose version changes what the converter writes (TensorFlow's has several
# names: tensorflow-cpu here, tensorflow on most machines).
TOOL_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-macos",
                      "tf-nightly", "tf-nightly-cpu", "keras", "tf-keras")
FRONTEND_SOURCES = ("frontend/keras.py",)
# How the front end names the files among its options, for the same message when one is missing.
FILE_OPTIONS = {"weights": "weights file", "calibration": "calibration path"}


def cache_dir() -> Path:
    override = os.environ.get("MCUGEN_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME")
    if not base or not os.path.isabs(base):  # the XDG spec ignores a relative path
        try:
            base = Path.home() / ".cache"
        except (RuntimeError, KeyError):  # no home folder at all (a bare container)
            base = Path(tempfile.gettempdir()) / f"mcugen-{getattr(os, 'getuid', lambda: 0)()}"
    return Path(base) / "mcugen" / "converted"


def conversion_key(options: Any) -> str:
    """The key of the model that `options` (a BuildOptions) converts."""
    recipe = {field.name: _key_value(getattr(options, field.name), FILE_OPTIONS.get(field.name))
              for field in dataclasses.fields(options) if field.name not in NOT_FRONTEND}
    recipe["tools"] = _tool_versions()
    recipe["frontend"] = _frontend_digest()
    text = json.dumps(recipe, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load(key: str) -> bytes | None:
    """The entry's model, or None when there is none or it is damaged."""
    path = cache_dir() / f"{key}{SUFFIX}"
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    header = len(MAGIC) + 32
    data = raw[header:]
    if raw[:len(MAGIC)] != MAGIC or raw[len(MAGIC):header] != hashlib.sha256(data).digest():
        return None
    try:
        os.utime(path)  # most recently used
    except OSError:
        pass
    return data


def store(key: str, data: bytes) -> None:
    """Write the entry atomically, then drop the least recently used beyond MAX_ENTRIES."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{key}.", suffix=".part", dir=folder)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(MAGIC + hashlib.sha256(data).digest() + data)
            os.replace(temporary, folder / f"{key}{SUFFIX}")
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        prune(folder)
    except OSError:
        pass  # a cache that cannot be written costs time, never the build


def prune(folder: Path, keep: int = MAX_ENTRIES) -> None:
    entries = sorted(folder.glob(f"*{SUFFIX}"), key=_modified, reverse=True)
    for entry in entries[keep:]:
        entry.unlink(missing_ok=True)
    for part in folder.glob(".*.part"):
        if time.time() - _modified(part) > STALE_PART_SECONDS:
            part.unlink(missing_ok=True)


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _key_value(value: Any, what: str | None) -> Any:
    """An option's value as the key holds it: a file or folder by its content."""
    if isinstance(value, Path):
        return {"sha256": content_digest(value, what or "file")}
    if isinstance(value, float):
        return repr(value)
    return value


def content_digest(path: Path, what: str) -> str:
    """SHA-256 of a file, or of a folder's files (names and contents, not recursive: the
    calibration images are the folder's own files)."""
    digest = hashlib.sha256()
    try:
        if path.is_dir():
            for child in sorted(path.iterdir()):
                if child.is_file():
                    digest.update(child.name.encode() + b"\0")
                    digest.update(hashlib.sha256(child.read_bytes()).digest())
        else:
            digest.update(path.read_bytes())
    except FileNotFoundError:
        raise McugenError(f"{what} {path} does not exist") from None
    except OSError as error:
        raise McugenError(f"{what} {path}: cannot read it ({error.strerror})") from None
    return digest.hexdigest()


def _tool_versions() -> dict[str, str]:
    from importlib import metadata

    import numpy

    versions = {"numpy": numpy.__version__}
    for name in TOOL_DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    if not any(name.startswith(("tensorflow", "tf-nightly")) for name in versions):
        versions["tensorflow"] = _package_stamp("tensorflow")  # installed some other way
    return versions


def _package_stamp(package: str) -> str:
    """Where a package is installed and when, without importing it (TensorFlow takes
    seconds to import)."""
    from importlib.util import find_spec

    spec = find_spec(package)
    if spec is None or spec.origin is None:
        return "absent"
    return f"{spec.origin} {_modified(Path(spec.origin))}"


def _frontend_digest() -> str:
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for source in FRONTEND_SOURCES:
        digest.update((package / source).read_bytes())
    return digest.hexdigest()
