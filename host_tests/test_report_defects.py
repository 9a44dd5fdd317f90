"""The report defects of issue 17, item 11: no Python `None` in the HTML layer table, banded
step ranges summarised in a few words, the memory plan's axis naming what it counts, unique
buffer labels past Z, over-limit figures that stand out, and the target and mcugen version in
the header of the reports and of NAME.h."""

from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET

import pytest

from conftest import PERSON_DETECT
from mcugen import __version__
from mcugen.build import BuildOptions, build
from mcugen.planner import Buffer, Plan, buffer_label, format_plan

XHTML = "{http://www.w3.org/1999/xhtml}"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def layer_by_layer(tmp_path_factory):
    return build(BuildOptions(model=PERSON_DETECT, target="cortex-m7",
                              out=tmp_path_factory.mktemp("lbl") / "out"))


@pytest.fixture(scope="module")
def banded(tmp_path_factory):
    """person_detect at --max-ram 20K: its first layers in row bands, over a hundred steps."""
    return build(BuildOptions(model=PERSON_DETECT, target="cortex-m7", max_ram=20 * 1024,
                              out=tmp_path_factory.mktemp("banded") / "out"))


def table_cells(html: str) -> list[str]:
    """The cells of the layer table (the one with a "steps" column)."""
    root = ET.fromstring(html)
    table = next(t for t in root.iter(f"{XHTML}table")
                 if "steps" in ["".join(th.itertext()) for th in t.iter(f"{XHTML}th")])
    return ["".join(td.itertext()) for td in table.iter(f"{XHTML}td")]


def test_the_html_layer_table_never_prints_none(layer_by_layer):
    """A layer computed whole in one step had steps [None], printed as "None"."""
    cells = table_cells((layer_by_layer.out_dir / "report.html").read_text())
    assert cells and not any("None" in cell for cell in cells)
    assert "whole" in cells


@pytest.mark.slow
def test_banded_steps_are_summarised_in_a_few_words(banded):
    """Each banded layer had all its step ranges in one cell ("[0, 1]x[1, 2]x..."): the table
    grew to thousands of pixels."""
    report = banded.compiled.report
    assert report.schedule is not None and len(report.step_layers) > 100
    cells = table_cells((banded.out_dir / "report.html").read_text())
    assert max(len(cell) for cell in cells) < 80
    first = report.layers[0]
    rows = first.output_shape[1]
    assert any(re.fullmatch(rf"{len(first.steps)} steps, rows 0-{rows} in bands of \d+", cell)
               for cell in cells)
    assert not any("[" in cell or "None" in cell for cell in cells)


def test_the_memory_plan_axis_says_what_it_counts(layer_by_layer, banded):
    def axis_titles(result) -> list[str]:
        root = ET.fromstring((result.out_dir / "report.html").read_text())
        return [t.text or "" for t in root.iter(f"{SVG}text")]

    assert "layer" in axis_titles(layer_by_layer)
    steps = len(banded.compiled.report.step_layers)
    assert f"step ({steps:,} steps for 30 layers: a banded layer runs in several)" \
        in axis_titles(banded)
    titles = [t.text or "" for t in ET.fromstring((banded.out_dir / "report.html").read_text())
              .iter(f"{SVG}title")]
    assert any(re.search(r"steps \d+ to \d+$", t) for t in titles)
    assert "One row per step" in (banded.out_dir / "report.md").read_text()


def test_buffer_labels_go_on_past_z():
    assert [buffer_label(i) for i in (0, 25, 26, 27, 51, 52, 701, 702)] == \
        ["A", "Z", "AA", "AB", "AZ", "BA", "ZZ", "AAA"]
    buffers = [Buffer(f"t{i}", 64, i, i + 1) for i in range(30)]
    plan = Plan({b.id: (i % 2) * 64 for i, b in enumerate(buffers)}, 128)
    text = format_plan(buffers, plan, width=16)
    legend = [line.split(" = ")[0].strip() for line in text.splitlines() if " = " in line]
    assert len(set(legend)) == 30 and legend[26:] == ["AA", "AB", "AC", "AD"]
    assert "|AAAAAAAA" in text or "AAAAAAAA|" in text  # buffer 26, spelled across its bytes
    assert "|ABABABAB" in text or "ABABABAB|" in text


def over_limit(result):
    """The report of a build made with --no-memory-check that is three times a 1 MB part."""
    return dataclasses.replace(result.compiled.report, measured=None, const_bytes=3_383_588)


def test_over_the_limit_stands_out_in_markdown(layer_by_layer):
    text = over_limit(layer_by_layer).to_markdown()
    assert "| flash | constant tables | 3,383,588 B | 1,048,576 B (flash) | " \
           "**323 % used: OVER THE LIMIT by 2,335,012 B** |" in text
    assert "**Over the limit**" in text
    within = layer_by_layer.compiled.report.to_markdown()
    assert "OVER THE LIMIT" not in within and "Over the limit" not in within
    assert re.search(r"\| RAM \| arena \+ other static data \+ stack \(measured\) \| [\d,]+ B \| "
                     r"327,680 B \(RAM\) \| \d+ % used \|", within)


def test_over_the_limit_stands_out_in_html(layer_by_layer):
    root = ET.fromstring(over_limit(layer_by_layer).to_html())
    alerts = [p for p in root.iter(f"{XHTML}p") if p.get("class") == "over"]
    assert len(alerts) == 1 and "OVER THE LIMIT by 2,335,012 B" in "".join(alerts[0].itertext())
    captions = {"".join(c.itertext()).split(":")[0]: c for c in root.iter(f"{XHTML}figcaption")}
    assert captions["flash"].get("class") == "over" and captions["RAM"].get("class") is None
    assert "323% used: OVER THE LIMIT" in "".join(captions["flash"].itertext())
    within = ET.fromstring(layer_by_layer.compiled.report.to_html())
    assert not [p for p in within.iter(f"{XHTML}p") if p.get("class") == "over"]


def test_the_headers_name_the_target_and_the_mcugen_version(layer_by_layer):
    out = layer_by_layer.out_dir
    header = (out / "model.h").read_text().splitlines()
    assert header[0].startswith(f"/* model.h: generated by mcugen {__version__} from ")
    assert header[1].startswith(" * For target cortex-m7 (Arm Cortex-M7")
    assert f"for target `cortex-m7` by mcugen {__version__}." in (out / "report.md").read_text()
    assert json.loads((out / "report.json").read_text())["mcugen_version"] == __version__
    root = ET.fromstring((out / "report.html").read_text())
    assert "".join(next(root.iter(f"{XHTML}h1")).itertext()) == \
        "model: mcugen report for cortex-m7"
    facts = {"".join(tr.find(f"{XHTML}th").itertext()): "".join(tr.find(f"{XHTML}td").itertext())
             for tr in root.iter(f"{XHTML}tr") if tr.find(f"{XHTML}th") is not None
             and tr.find(f"{XHTML}td") is not None}
    assert facts["made by"] == f"mcugen {__version__}" and facts["target"] == "cortex-m7"
