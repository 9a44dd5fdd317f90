"""report.html: self-contained (inline SVG, no script, no network), well-formed, every string from
the model file or the command line escaped, rendered generically from the Report, and a real
picture when a browser (Debian's chromium, headless) draws it."""

from __future__ import annotations

import dataclasses
import html.parser
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from conftest import PERSON_DETECT
from mcugen.build import BuildOptions, build
from mcugen.report import LayerStats

SVG = "{http://www.w3.org/2000/svg}"
XHTML = "{http://www.w3.org/1999/xhtml}"
HOSTILE = "<script>alert(\"x\")&'<b>.tflite"  # a legal file name (no slash)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """person_detect for an nRF52840, from a file whose name is markup."""
    work = tmp_path_factory.mktemp("html")
    model = work / HOSTILE
    model.write_bytes(PERSON_DETECT.read_bytes())
    return build(BuildOptions(model=model, target="nrf52840", out=work / "out"))


def test_the_page_is_well_formed_and_self_contained(built):
    text = (built.out_dir / "report.html").read_text()
    root = ET.fromstring(text)  # strict XML: every tag closed, no stray markup
    assert root.tag == f"{XHTML}html"
    svgs = list(root.iter(f"{SVG}svg"))
    assert len(svgs) >= 4  # per-layer bars, the memory plan, flash, RAM
    assert not list(root.iter(f"{XHTML}script")) and "<script" not in text.lower()
    for element in root.iter():
        for name, value in element.attrib.items():
            assert not value.lower().startswith(("http:", "https:", "//", "javascript:")), value
            assert not name.lower().startswith("on"), name
    parser = _TagCounter()
    parser.feed(text)  # and what a browser's HTML parser sees: the same elements
    assert parser.counts["svg"] == len(svgs) and parser.counts["script"] == 0


def test_it_draws_every_layer_buffer_and_memory(built):
    report = built.compiled.report
    root = ET.fromstring((built.out_dir / "report.html").read_text())
    titles = [t.text or "" for t in root.iter(f"{SVG}title")]
    # A MACs bar and a weights bar per layer, a rectangle per buffer of the memory plan.
    assert sum(t.startswith("layer ") for t in titles) == 2 * len(report.layers)
    assert sum(" at offset " in t for t in titles) == len(report.buffers) > 0
    assert any(t.startswith("constant tables") for t in titles)  # the flash breakdown
    assert any(t.startswith("arena") for t in titles)  # the RAM breakdown
    page = ET.tostring(root, encoding="unicode")
    assert "largest RAM region (RAM) of the target: 262,144 B" in page  # the part's own figure
    assert "instructions (QEMU)" not in page  # not measured: no empty column of bars


def test_strings_from_the_file_name_are_escaped(built):
    text = (built.out_dir / "report.html").read_text()
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(&#34;x&#34;)&amp;&#39;&lt;b&gt;.tflite" in text
    root = ET.fromstring(text)
    assert any(HOSTILE in "".join(cell.itertext()) for cell in root.iter(f"{XHTML}td"))


def test_new_fields_of_the_report_appear_without_a_change_to_the_page(built):
    """The layer table is generic: a field added to LayerStats later (the kernel variant, say)
    shows up as a column; instructions, once measured, add a column of bars."""
    report = built.compiled.report
    Variant = dataclasses.make_dataclass("Variant", [("variant", str, dataclasses.field(
        default="portable <v1>"))], bases=(LayerStats,), frozen=True)
    layers = [Variant(**{**dataclasses.asdict(layer), "instructions": 1000 + layer.index})
              for layer in report.layers]
    text = dataclasses.replace(report, layers=layers).to_html()
    root = ET.fromstring(text)
    headers = ["".join(th.itertext()) for th in root.iter(f"{XHTML}th")]
    assert "variant" in headers and "instructions" in headers
    assert "portable &lt;v1&gt;" in text and "instructions (QEMU)" in text


def test_a_report_without_buffers_or_layers_still_renders(built):
    empty = dataclasses.replace(built.compiled.report, layers=[], buffers=[], arena_bytes=0)
    ET.fromstring(empty.to_html())


@pytest.mark.tensorflow
def test_chromium_draws_a_real_picture(built, tmp_path):
    """Headless Debian chromium, no network, a fresh profile: the screenshot is not blank, and
    the bars' and the memory plan's colours are on it."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: apt-get install chromium (scripts/test does)"
    shot = tmp_path / "report.png"
    completed = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600",
         f"--screenshot={shot}", (built.out_dir / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.is_file(), completed.stderr[-2000:]
    pixels = read_png(shot)
    assert pixels.shape[0] == 1600 and pixels.shape[1] == 1200
    rgb = pixels[..., :3].reshape(-1, 3)
    not_white = np.any(rgb < 240, axis=1).mean()
    assert 0.03 < not_white < 0.9, not_white  # drawn, and not one flat colour either
    colours = {tuple(c) for c in rgb[::7]}
    assert (78, 121, 167) in colours  # the MACs bars (#4e79a7)
    assert (89, 161, 79) in colours  # the weights bars (#59a14f)


class _TagCounter(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {"svg": 0, "script": 0}

    def handle_starttag(self, tag, attrs) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1


def read_png(path: Path) -> np.ndarray:
    """The screenshot as [height, width, channels] uint8, decoded by TensorFlow (a dependency
    already; no image library is needed for this one test)."""
    import tensorflow as tf

    return tf.io.decode_png(path.read_bytes()).numpy()
