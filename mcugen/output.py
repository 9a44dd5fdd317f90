"""Writing an output folder: mcugen replaces or removes only the files it wrote itself.

Each output folder holds a manifest, `.mcugen-manifest.json`, naming every file mcugen wrote
into it with its SHA-256. Before anything is written or removed, each file of the new build is
checked against it:
- a file mcugen wrote and nobody changed since is replaced; one the new build no longer
  generates (an earlier --name) is removed;
- a file mcugen wrote that has been edited since is refused in one line, unless --force (then it
  is overwritten); one the new build no longer generates is left where it is, as the user's;
- a file mcugen did not write that has a generated file's name (the user's CMakeLists.txt) is
  refused in one line, even with --force: nothing of the user's is ever overwritten;
- every other file (the user's main.c, .git, object files) is never touched.
A folder that is not empty and has no manifest is the user's: mcugen adds its files to it only
with --force.

The new files are written into a staging folder inside the output folder, then moved into place
by renames, which the file system makes atomic per file, with SIGINT and SIGTERM held back
until the moves are done: Ctrl-C at any moment leaves the previous build or the new one, never
a mix. Before the moves a manifest naming both the old and the new contents is written, so that
even a kill nothing can hold back (SIGKILL, a power cut) leaves files that the next build
recognises as mcugen's own. Staging folders left by such a kill, and those of mcugen before
0.2, are removed by the next build into the folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import McugenError

MANIFEST = ".mcugen-manifest.json"
STAGING_PREFIX = ".mcugen-staging-"  # then the writer's process id: a live writer's is kept
LEGACY_MARKER = ".mcugen"  # mcugen before 0.2 marked its folders so, without naming its files

# A test hook: seconds to sleep between the moves of the files into place, so that tests can
# send a signal in the middle of them (see host_tests/test_output_folder.py).
DELAY_ENV = "MCUGEN_TEST_WRITE_DELAY"


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Plan:
    """What a build may do in an existing folder: the files it replaces and removes."""

    owned: dict[str, frozenset[str]]  # from the manifest: name -> the contents mcugen wrote
    remove: tuple[str, ...]  # mcugen's unchanged files that the new build does not write
    created: bool  # the folder does not exist yet


def check_output_folder(out_dir: Path, force: bool, names: Iterable[str]) -> Plan:
    """Refuse (before any slow step, and again just before writing) a build that would
    overwrite or remove something that is not mcugen's own, or that cannot be written."""
    try:
        return _check_output_folder(out_dir, force, names)
    except OSError as error:
        raise McugenError(f"cannot use {out_dir} as the output folder: "
                          f"{error.strerror or error}") from None


def _check_output_folder(out_dir: Path, force: bool, names: Iterable[str]) -> Plan:
    if any(len(os.fsencode(part)) > 255 for part in out_dir.parts):
        raise McugenError(f"output path {out_dir}: a name in it is longer than 255 bytes")
    if not out_dir.exists():
        if out_dir.is_symlink():
            raise McugenError(f"output path {out_dir} is a broken symbolic link")
        ancestor = out_dir.absolute().parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
            raise McugenError(f"cannot create {out_dir}: {ancestor} is not a folder you can "
                              f"write to")
        return Plan({}, (), created=True)
    if not out_dir.is_dir():
        raise McugenError(f"output path {out_dir} exists and is not a folder")
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise McugenError(f"cannot write into {out_dir}: permission denied")
    manifest = read_manifest(out_dir)
    if manifest is None and (out_dir / LEGACY_MARKER).is_file():
        raise McugenError(f"{out_dir} was written by an older mcugen, which kept no list of "
                          f"its files: delete the folder or choose another --out")
    owned = manifest or {}
    names = set(names)
    for name in sorted(names):
        _check_replaceable(out_dir, name, owned, force)
    if manifest is None and _user_entries(out_dir) and not force:
        raise McugenError(f"output folder {out_dir} is not empty and was not made by mcugen; "
                          f"choose another --out or pass --force (its files are kept)")
    remove = tuple(sorted(name for name in owned if name not in names
                          and _is_unchanged(out_dir / name, owned[name])))
    return Plan(owned, remove, created=False)


def _check_replaceable(out_dir: Path, name: str, owned: dict[str, frozenset[str]],
                       force: bool) -> None:
    path = out_dir / name
    for parent in list(PurePosixPath(name).parents)[:-1]:  # a generated file's own folder
        folder = out_dir / parent
        if os.path.lexists(folder) and (folder.is_symlink() or not folder.is_dir()):
            raise McugenError(f"{folder} is not a file mcugen wrote and would be overwritten; "
                              f"move it away or choose another --out")
    if not os.path.lexists(path):
        return
    if name not in owned or path.is_symlink() or not path.is_file():
        raise McugenError(f"{path} is not a file mcugen wrote and would be overwritten; move "
                          f"it away or choose another --out")
    if not force and not _is_unchanged(path, owned[name]):
        raise McugenError(f"{path} was written by mcugen and has been edited since; move it "
                          f"away, or pass --force to overwrite it")


def _is_unchanged(path: Path, hashes: frozenset[str]) -> bool:
    try:
        return not path.is_symlink() and path.is_file() and file_hash(path.read_bytes()) in hashes
    except OSError:
        return False


def _user_entries(out_dir: Path) -> list[str]:
    """The folder's entries, less debris of mcugen's own interrupted builds."""
    return [entry.name for entry in out_dir.iterdir()
            if not entry.name.startswith(STAGING_PREFIX)]


def read_manifest(out_dir: Path) -> dict[str, frozenset[str]] | None:
    """The files mcugen wrote into out_dir (name -> SHA-256s), or None without a manifest."""
    path = out_dir / MANIFEST
    if not os.path.lexists(path):
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        owned = {name: frozenset([hashes] if isinstance(hashes, str) else hashes)
                 for name, hashes in files.items()}
        valid = all(_is_safe_name(name) and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)
                    for name, hashes in owned.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        valid = False
    if not valid or path.is_symlink():
        raise McugenError(f"{path} is not a manifest mcugen wrote (damaged?); mcugen cannot "
                          f"tell its files from yours there: choose another --out")
    return owned


def _is_safe_name(name: str) -> bool:
    """A name inside the folder: relative, no '..', no hidden trick."""
    path = PurePosixPath(name)
    return (isinstance(name, str) and bool(name) and not path.is_absolute()
            and all(part not in ("", ".", "..") for part in path.parts) and "\\" not in name
            and name != MANIFEST and not name.startswith(STAGING_PREFIX))


def _manifest_text(files: dict[str, list[str]]) -> str:
    from . import __version__

    entries = {name: hashes[0] if len(hashes) == 1 else hashes
               for name, hashes in sorted(files.items())}
    return json.dumps({"generator": f"mcugen {__version__}",
                       "about": "the files mcugen wrote here and their SHA-256; mcugen replaces "
                                "or removes only these, and only while unchanged",
                       "files": entries}, indent=1) + "\n"


def write_output_folder(out_dir: Path, files: dict[str, str | bytes], force: bool,
                        keep_others: bool = False) -> None:
    """Write files (name relative to out_dir -> content) into out_dir, as the module says.
    keep_others: mcugen's files that are not in files stay, and stay mcugen's."""
    for name in files:
        if not _is_safe_name(name):
            raise ValueError(f"not a file name inside the output folder: {name!r}")
    out_dir = out_dir.absolute()
    remove_debris(out_dir)
    plan = check_output_folder(out_dir, force, files)
    if keep_others:
        plan = dataclasses.replace(plan, remove=())
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise McugenError(f"cannot create {out_dir}: {error.strerror}") from None
    staging: Path | None = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out_dir))
        contents = {name: data.encode() if isinstance(data, str) else data
                    for name, data in files.items()}
        for name, data in contents.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
        hashes = {name: file_hash(data) for name, data in contents.items()}
        _commit(out_dir, staging, plan, hashes, keep_others)
    except OSError as error:
        raise McugenError(f"cannot write {out_dir}: {error.strerror}") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if plan.created:  # interrupted before anything was moved in: no empty folder left
            with contextlib.suppress(OSError):
                out_dir.rmdir()


def update_output_files(out_dir: Path, files: dict[str, str | bytes], force: bool) -> None:
    """Replace some of the files of an existing build folder (the reports), keeping its other
    files and the manifest's record of them; checked as write_output_folder checks."""
    if read_manifest(out_dir) is None:
        raise McugenError(f"{out_dir} is not a folder mcugen wrote (no {MANIFEST})")
    write_output_folder(out_dir, files, force, keep_others=True)


def _commit(out_dir: Path, staging: Path, plan: Plan, hashes: dict[str, str],
            keep_others: bool = False) -> None:
    """Move the staged files into place; the manifest says at every moment which files are
    mcugen's (first the old and new contents both, then the new only)."""
    delay = float(os.environ.get(DELAY_ENV) or 0)
    transitional = {**{name: sorted(plan.owned[name]) for name in plan.remove},
                    **{name: sorted(plan.owned.get(name, frozenset()) | {digest})
                       for name, digest in hashes.items()}}
    with hold_signals():
        _write_manifest(out_dir, staging, transitional)
        for name in sorted(hashes):
            target = out_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, target)
            if delay:
                time.sleep(delay)
        for name in plan.remove:
            with contextlib.suppress(FileNotFoundError):
                (out_dir / name).unlink()
            _remove_empty_parents(out_dir, name)
        # An edited file of an earlier build that this one does not write is left where it is,
        # the user's now: the manifest no longer names it.
        kept = {name: sorted(digests) for name, digests in plan.owned.items()
                if name not in hashes} if keep_others else {}
        _write_manifest(out_dir, staging, {**kept, **{name: [digest]
                                                      for name, digest in hashes.items()}})


def _write_manifest(out_dir: Path, staging: Path, files: dict[str, list[str]]) -> None:
    partial = staging / MANIFEST
    partial.write_text(_manifest_text(files), encoding="utf-8")
    os.replace(partial, out_dir / MANIFEST)


def _remove_empty_parents(out_dir: Path, name: str) -> None:
    for parent in list(PurePosixPath(name).parents)[:-1]:
        try:
            (out_dir / parent).rmdir()  # only if empty: a user's file in it keeps it
        except OSError:
            return


@contextlib.contextmanager
def hold_signals() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done, then act as they would have. (Python
    runs signal handlers in the main thread only: a handler that just takes note holds them
    back whichever thread the system delivers them to, which masking the signals would not.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {number: signal.signal(number, lambda number, frame: received.append(number))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        if received:
            signal.raise_signal(received[0])


def remove_debris(out_dir: Path) -> None:
    """Staging folders of interrupted builds: mcugen's (inside the folder, of a process that is
    gone) and those of mcugen before 0.2 (beside it, holding its marker)."""
    if out_dir.is_dir() and not out_dir.is_symlink():
        for entry in out_dir.iterdir():
            match = re.fullmatch(re.escape(STAGING_PREFIX) + r"(\d+)-\w+", entry.name)
            if match and entry.is_dir() and not entry.is_symlink() \
                    and not _process_alive(int(match.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
    parent = out_dir.parent
    legacy = re.compile(re.escape(f".{out_dir.name}.") + r"(old\.)?[a-z0-9_]{8}")
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            if legacy.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink() and (
                    (entry / LEGACY_MARKER).is_file()
                    or (entry / "previous" / LEGACY_MARKER).is_file()):
                shutil.rmtree(entry, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, someone else's
        return True
    return True
