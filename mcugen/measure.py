"""Flash and RAM measured from the compiled and linked code, not estimated.

The generated sources are compiled with the target's compiler and flags (warnings are errors)
and linked as a firmware links them: from NAME_invoke, unused sections dropped
(--gc-sections), with the C library's memcpy/memset and, for a model that calls CMSIS-NN, the
library's integer kernels compiled with the same flags. Code is what the linked image keeps
besides the weight tables; the worst-case stack of NAME_invoke comes from GCC's call graphs
with stack usage (-fcallgraph-info=su) of every unit: the deepest path, summing each
function's static frame.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import McugenError
from .targets import Target

STRICT = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections")
ANALYSIS = ("-fstack-usage", "-fcallgraph-info=su")


@dataclass(frozen=True)
class MeasuredSizes:
    compiler: str
    code_bytes: int  # flash: every function the linked model keeps (kernels, NAME_invoke,
    #                  the library's kernels it calls, memcpy/memset) and their constants
    weight_bytes: int  # flash: the constant tables (NAME_weights.c)
    arena_bytes: int  # RAM: the static arena
    other_ram_bytes: int  # RAM: any other static data
    stack_bytes: int  # RAM: worst-case stack of NAME_invoke
    # With --selftest: NAME_selftest.o's flash (code, vectors, checksums) and RAM.
    selftest: dict | None = None

    @property
    def flash_bytes(self) -> int:
        return self.code_bytes + self.weight_bytes

    @property
    def ram_bytes(self) -> int:
        return self.arena_bytes + self.other_ram_bytes + self.stack_bytes

    def as_dict(self) -> dict:
        return asdict(self)


def measure(sources: dict[str, str], name: str, target: Target, arena_bytes: int,
            library: Path | None = None, weights_section: str | None = None,
            caller_arena: bool = False) -> MeasuredSizes | None:
    """Sizes for a Cortex-M target when its compiler is installed; None otherwise. library:
    a CMSIS-NN checkout, for a model that calls it. caller_arena (--arena caller): the arena
    is the caller's, not static data of the model, and the entry is NAME_invoke_arena."""
    if target.is_host or shutil.which(target.compiler) is None:
        return None
    size_tool = target.compiler.replace("gcc", "size")
    include = () if library is None else ("-I", str(library / "Include"))
    with tempfile.TemporaryDirectory(prefix="mcugen-measure-") as scratch:
        work = Path(scratch)
        for file, text in sources.items():
            (work / file).write_text(text)
        units = [name, f"{name}_weights"]
        selftest_unit = f"{name}_selftest"
        if f"{selftest_unit}.c" in sources:  # NAME_invoke calls its per-layer hook
            units.append(selftest_unit)
        for unit in units:
            _compile(target, work / f"{unit}.c", work / f"{unit}.o", (*STRICT, *include),
                     generated=True)
        objects = [work / f"{unit}.o" for unit in units]
        graphs = [(work / f"{name}.ci").read_text()]
        if library is not None:
            library_objects = compiled_library(target, library)
            objects += library_objects
            graphs += [obj.with_suffix(".ci").read_text() for obj in library_objects]
        entry = f"{name}_invoke_arena" if caller_arena else f"{name}_invoke"
        elf = _link(target, entry, objects, work / f"{name}.elf")
        image = _section_sizes(size_tool, elf, weights_section)
        weights = _section_sizes(size_tool, work / f"{name}_weights.o", weights_section)
        selftest = None
        if selftest_unit in units:
            sizes = _section_sizes(size_tool, work / f"{selftest_unit}.o")
            selftest = dict(flash_bytes=sizes["text"] + sizes["rodata"] + sizes["data"],
                            ram_bytes=sizes["data"] + sizes["bss"])
    weight_bytes = weights["text"] + weights["rodata"]
    static_ram = image["data"] + image["bss"]
    static_arena = 0 if caller_arena else arena_bytes
    return MeasuredSizes(
        compiler=target.compiler, code_bytes=image["text"] + image["rodata"] - weight_bytes,
        weight_bytes=weight_bytes, arena_bytes=arena_bytes,
        other_ram_bytes=static_ram - static_arena,
        stack_bytes=worst_case_stack("\n".join(graphs), entry), selftest=selftest)


def _compile(target: Target, source: Path, obj: Path, flags: tuple[str, ...],
             generated: bool) -> None:
    command = [target.compiler, *target.cflags, *flags, *ANALYSIS, "-c", str(source),
               "-o", str(obj)]
    result = subprocess.run(command, cwd=obj.parent, capture_output=True, text=True)
    if result.returncode != 0:
        first = next((line for line in result.stderr.splitlines() if "error" in line),
                     result.stderr.strip()[:300])
        what = "the generated C" if generated else f"{source.name}"
        raise McugenError(f"{what} does not compile with {target.compiler}: {first}")


def _link(target: Target, entry: str, objects: list[Path], elf: Path) -> Path:
    command = [target.compiler, *target.cflags, "-nostartfiles", "-nostdlib",
               "-Wl,--gc-sections", f"-Wl,-e,{entry}", *map(str, objects),
               "-Wl,--start-group", "-lc", "-lgcc", "-Wl,--end-group", "-o", str(elf)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise McugenError(f"linking the model for {target.name} failed: "
                          f"{result.stderr.strip().splitlines()[-1:]}")
    return elf


def library_sources(library: Path) -> list[Path]:
    """CMSIS-NN's integer kernels (a firmware leaves out the float ones)."""
    return sorted(p for p in (library / "Source").glob("*/*.c")
                  if not p.name.endswith(("_f16.c", "_f32.c", "_flt.c")))


def compiled_library(target: Target, library: Path) -> list[Path]:
    """CMSIS-NN compiled with the target's flags, once per flags and checkout (cached)."""
    sources = library_sources(library)
    if not sources:
        raise McugenError(f"{library} holds no CMSIS-NN sources")
    digest = hashlib.sha256()
    for part in (*target.cflags, target.compiler, str(library.resolve())):
        digest.update(part.encode())
    for source in sources:
        digest.update(source.read_bytes())
    folder = _cache_dir() / "cmsis-nn" / digest.hexdigest()[:16]
    objects = [folder / f"{s.parent.name}_{s.stem}.o" for s in sources]
    if all(obj.is_file() and obj.with_suffix(".ci").is_file() for obj in objects):
        return objects
    partial = Path(tempfile.mkdtemp(prefix="partial-", dir=_ensure(folder.parent)))
    flags = ("-std=c99", "-ffunction-sections", "-fdata-sections", "-I",
             str(library / "Include"))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(lambda s, o: _compile(target, s, partial / o.name, flags, False),
                      sources, objects))
    if folder.is_dir():
        shutil.rmtree(partial)  # another process finished first
    else:
        partial.rename(folder)
    return objects


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _cache_dir() -> Path:
    home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(home) / "mcugen"


def _section_sizes(size_tool: str, file: Path, weights_section: str | None = None
                   ) -> dict[str, int]:
    """Sum `size -A` sections into text, rodata, data and bss (the user's weights section
    counts as rodata)."""
    result = subprocess.run([size_tool, "-A", str(file)], capture_output=True, text=True,
                            check=True)
    totals = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            continue
        kind = "rodata" if parts[0] == weights_section else parts[0].lstrip(".").split(".")[0]
        if kind in totals:
            totals[kind] += int(parts[1])
    return totals


def worst_case_stack(callgraph: str, root: str) -> int:
    """The deepest stack from root in GCC .ci call graphs (VCG), several units concatenated:
    a function is one node by name, with the frame of the unit that defines it. Functions
    without a known frame (library calls such as memset) count as 0."""
    frames: dict[str, int] = {}
    for title, label in re.findall(r'node:\s*\{\s*title:\s*"([^"]*)"\s*label:\s*"([^"]*)"',
                                   callgraph):
        match = re.search(r"(\d+) bytes", label)
        frames[title] = max(frames.get(title, 0), int(match.group(1)) if match else 0)
    calls: dict[str, set[str]] = {}
    for source, target in re.findall(
            r'edge:\s*\{\s*sourcename:\s*"([^"]*)"\s*targetname:\s*"([^"]*)"', callgraph):
        calls.setdefault(source, set()).add(target)
    if root not in frames:
        raise McugenError(f"{root} is missing from the call graph")

    def depth(node: str, seen: frozenset[str]) -> int:
        callees = [c for c in calls.get(node, ()) if c not in seen]
        return frames.get(node, 0) + max((depth(c, seen | {c}) for c in callees), default=0)

    return depth(root, frozenset({root}))
