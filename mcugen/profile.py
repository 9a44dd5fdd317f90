"""`mcugen report DIR --profile-log FILE`: the cycles per layer a --profile build measured on
the board, read back from what its firmware printed, into DIR's report.json, report.md and
report.html, beside the estimate and QEMU's instructions (when `mcugen run --out` made DIR).

The firmware prints, after an inference (examples/qemu/main.c), a header and one line per layer:

    mcugen-profile counter=DWT CYCCNT layers=30
    mcugen-profile 0 63879 DEPTHWISE_CONV_2D 1x96x96x1 -> 1x48x48x8
    ...

Anything before "mcugen-profile" on a line (a UART logger's timestamp) is ignored, and so is
every other line. Of several inferences, the last complete block counts (the first may include
a cold cache). A count of 0xFFFFFFFF means the counter overflowed (SysTick: a layer of 2^24
cycles or more) and is kept out of the totals.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import McugenError
from .report import BufferStats, LayerStats, Report

MARK = "mcugen-profile"
SATURATED = 0xFFFFFFFF
_HEADER = re.compile(MARK + r"\s+counter=(.+?)\s+layers=(\d+)\s*$")
_ROW = re.compile(MARK + r"\s+(\d+)\s+(\d+)\s+(.*?)\s*$")


@dataclass(frozen=True)
class ProfileLog:
    counter: str  # "DWT CYCCNT" or "SysTick"
    cycles: list[int | None]  # per layer; None: the counter overflowed
    names: list[str]  # as the firmware printed them (NAME_layer_names)
    blocks: int  # complete blocks in the log (the last one is `cycles`)


def parse_profile_log(text: str, layer_count: int) -> ProfileLog:
    """The last complete block of "mcugen-profile" lines for a model of layer_count layers."""
    blocks: list[tuple[str, dict[int, tuple[int, str]]]] = []
    for line in text.splitlines():
        at = line.find(MARK)
        if at < 0:
            continue
        line = line[at:]
        header = _HEADER.match(line)
        if header:
            if int(header.group(2)) != layer_count:
                raise McugenError(f"the profile log is of a model with {header.group(2)} layers; "
                                  f"this build has {layer_count} (another model's log?)")
            blocks.append((header.group(1), {}))
            continue
        row = _ROW.match(line)
        if row and blocks:
            blocks[-1][1][int(row.group(1))] = (int(row.group(2)), row.group(3))
    complete = [(counter, rows) for counter, rows in blocks
                if set(rows) == set(range(layer_count))]
    if not complete:
        raise McugenError(f"the profile log has no complete block of '{MARK}' lines (a header "
                          f"and {layer_count} layers): was the model built with --profile, "
                          f"and did the firmware print it (examples/qemu/main.c)?")
    counter, rows = complete[-1]
    if not any(cycles for cycles, _ in rows.values()):
        raise McugenError(f"every layer counted 0 cycles with {counter}: the counter did not "
                          f"run (QEMU does not model the DWT: build with "
                          f"-DMCUGEN_PROFILE_SYSTICK there)")
    return ProfileLog(counter, [None if rows[i][0] == SATURATED else rows[i][0]
                                for i in range(layer_count)],
                      [rows[i][1] for i in range(layer_count)], len(complete))


def load_report(folder: Path) -> Report:
    """The Report a build wrote into folder (report.json)."""
    path = Path(folder) / "report.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        layers = [LayerStats(**layer) for layer in data.pop("layers")]
        buffers = [BufferStats(**buffer) for buffer in data.pop("buffers", [])]
        return Report(layers=layers, buffers=buffers, **data)
    except FileNotFoundError:
        raise McugenError(f"{path}: no such file; give the folder of an mcugen build") from None
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise McugenError(f"{path} is not a report of this mcugen ({error})") from None


def with_profile(report: Report, log: ProfileLog, source: str) -> Report:
    """The report with the board's cycles per layer, and their total and time at the part's
    clock."""
    from .targets import load_target

    for layer, name in zip(report.layers, log.names):
        shape = "x".join(map(str, layer.output_shape))
        if not name.endswith(shape) and f"-> {shape}" not in name:
            raise McugenError(f"the profile log's layer {layer.index} is '{name}', this build's "
                              f"writes {shape}: another model's log?")
    try:
        clock_hz = load_target(report.target).clock_hz
    except McugenError:
        clock_hz = None
    counted = [c for c in log.cycles if c is not None]
    total = sum(counted)
    layers = [dataclasses.replace(layer, board_cycles=cycles)
              for layer, cycles in zip(report.layers, log.cycles)]
    profile = dict(counter=log.counter, log=source, blocks=log.blocks, cycles=total,
                   overflowed=[i for i, c in enumerate(log.cycles) if c is None],
                   clock_hz=clock_hz,
                   milliseconds=None if not clock_hz else 1000.0 * total / clock_hz)
    return dataclasses.replace(report, layers=layers, profile=profile)


def profile_line(profile: dict, macs: int) -> str:
    """One line: the board's cycles per inference, and the time at the part's clock."""
    total = profile["cycles"]
    text = (f"measured on the board ({profile['counter']}): {total:,} cycles per inference"
            + (f" ({macs / total:.3f} MACs per cycle)" if total else ""))
    if profile.get("milliseconds") is not None:
        text += f", {profile['milliseconds']:.2f} ms at {profile['clock_hz'] / 1e6:g} MHz"
    if profile.get("overflowed"):
        text += (f"; layers {', '.join(map(str, profile['overflowed']))} overflowed the counter "
                 f"and are left out")
    return text


def report_with_profile(folder: Path, log_path: Path, force: bool = False) -> str:
    """`mcugen report DIR --profile-log FILE`: rewrites DIR's reports; returns what to print."""
    from .output import update_output_files

    report = load_report(folder)
    try:
        text = Path(log_path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise McugenError(f"--profile-log {log_path}: no such file") from None
    except OSError as error:
        raise McugenError(f"cannot read --profile-log {log_path}: "
                          f"{error.strerror or error}") from None
    log = parse_profile_log(text, len(report.layers))
    report = with_profile(report, log, Path(log_path).name)
    update_output_files(Path(folder), report.files(), force)
    lines = [f"{'#':>3}  {'op':<18} {'cycles':>12}" + (
        f" {'instructions':>13}" if any(l.instructions for l in report.layers) else "")]
    for layer in report.layers:
        cycles = "overflow" if layer.board_cycles is None else f"{layer.board_cycles:,}"
        lines.append(f"{layer.index:>3}  {layer.op:<18} {cycles:>12}" + (
            f" {layer.instructions:>13,}" if layer.instructions else ""))
    lines.append(profile_line(report.profile, report.macs))
    lines.append(f"wrote {Path(folder) / 'report.json'}, report.md and report.html")
    return "\n".join(lines)
