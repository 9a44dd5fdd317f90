"""Flash and RAM measured from the compiled objects, not estimated.

The generated sources are compiled with the target's compiler and flags (warnings are errors);
section sizes come from the objects, and the worst-case stack of NAME_invoke from GCC's call
graph with stack usage (-fcallgraph-info=su): the deepest path from NAME_invoke, summing each
function's static frame.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import McugenError
from .targets import Target

STRICT = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections")


@dataclass(frozen=True)
class MeasuredSizes:
    compiler: str
    code_bytes: int  # flash: the kernels and NAME_invoke (.text and .rodata of NAME.o)
    weight_bytes: int  # flash: the constant tables (NAME_weights.o)
    arena_bytes: int  # RAM: the static arena
    other_ram_bytes: int  # RAM: any other static data
    stack_bytes: int  # RAM: worst-case stack of NAME_invoke

    @property
    def flash_bytes(self) -> int:
        return self.code_bytes + self.weight_bytes

    @property
    def ram_bytes(self) -> int:
        return self.arena_bytes + self.other_ram_bytes + self.stack_bytes

    def as_dict(self) -> dict:
        return asdict(self)


def measure(sources: dict[str, str], name: str, target: Target,
            arena_bytes: int) -> MeasuredSizes | None:
    """Sizes for a Cortex-M target when its compiler is installed; None otherwise."""
    if target.is_host or shutil.which(target.compiler) is None:
        return None
    size_tool = target.compiler.replace("gcc", "size")
    with tempfile.TemporaryDirectory(prefix="mcugen-measure-") as scratch:
        work = Path(scratch)
        for file, text in sources.items():
            (work / file).write_text(text)
        sections = {}
        for unit in (name, f"{name}_weights"):
            _compile(target, work, unit)
            sections[unit] = _section_sizes(size_tool, work / f"{unit}.o")
        stack = worst_case_stack((work / f"{name}.ci").read_text(), f"{name}_invoke")
    model, weights = sections[name], sections[f"{name}_weights"]
    static_ram = model["data"] + model["bss"] + weights["data"] + weights["bss"]
    return MeasuredSizes(
        compiler=target.compiler,
        code_bytes=model["text"] + model["rodata"],
        weight_bytes=weights["text"] + weights["rodata"],
        arena_bytes=arena_bytes, other_ram_bytes=static_ram - max(arena_bytes, 1),
        stack_bytes=stack)


def _compile(target: Target, work: Path, unit: str) -> None:
    command = [target.compiler, *target.cflags, *STRICT, "-fstack-usage",
               "-fcallgraph-info=su", "-c", f"{unit}.c", "-o", f"{unit}.o"]
    result = subprocess.run(command, cwd=work, capture_output=True, text=True)
    if result.returncode != 0:
        first = next((line for line in result.stderr.splitlines() if "error" in line),
                     result.stderr.strip()[:300])
        raise McugenError(f"the generated C does not compile with {target.compiler}: {first}")


def _section_sizes(size_tool: str, obj: Path) -> dict[str, int]:
    """Sum `size -A` sections into text, rodata, data and bss."""
    result = subprocess.run([size_tool, "-A", str(obj)], capture_output=True, text=True,
                            check=True)
    totals = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            continue
        kind = parts[0].lstrip(".").split(".")[0]
        if kind in totals:
            totals[kind] += int(parts[1])
    return totals


def worst_case_stack(callgraph: str, root: str) -> int:
    """The deepest stack from root in a GCC .ci call graph (VCG). Functions without a known
    frame (library calls such as memset) count as 0."""
    frames: dict[str, int] = {}
    titles: dict[str, str] = {}
    for title, label in re.findall(r'node:\s*\{\s*title:\s*"([^"]*)"\s*label:\s*"([^"]*)"',
                                   callgraph):
        parts = label.split("\\n")
        titles[title] = parts[0]
        match = re.search(r"(\d+) bytes", label)
        frames[title] = int(match.group(1)) if match else 0
    calls: dict[str, list[str]] = {}
    for source, target in re.findall(
            r'edge:\s*\{\s*sourcename:\s*"([^"]*)"\s*targetname:\s*"([^"]*)"', callgraph):
        calls.setdefault(source, []).append(target)
    roots = [t for t, n in titles.items() if n == root]
    if not roots:
        raise McugenError(f"{root} is missing from the call graph")

    def depth(node: str, seen: frozenset[str]) -> int:
        callees = [c for c in calls.get(node, []) if c not in seen]
        return frames.get(node, 0) + max((depth(c, seen | {c}) for c in callees), default=0)

    return depth(roots[0], frozenset(roots))
