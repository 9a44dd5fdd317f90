"""The schedule search's trade-off (issue 20, item 4): report.json carries every candidate the
row-band search tried (its arena, planned or estimated, and the cost model's extra
instructions), the chosen one marked, and report.html draws them. A hand-built graph (no
TensorFlow): its widest tensors come first, so a budget below its layer-by-layer arena makes
the search run."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

import ir_graphs as g
from mcugen import row_bands
from mcugen.compile import compile_graph, prepare
from mcugen.kernels import lower_layers
from mcugen.planner import plan_memory
from mcugen.schedule import arena_buffers, layer_by_layer
from mcugen.targets import load_target

SVG = "{http://www.w3.org/2000/svg}"
HOST = load_target("host")


def compiled(max_ram: int | None):
    return compile_graph(g.layout_first(11, "transpose"), name="model", target=HOST,
                         source="layout_first", memory_check=False, max_ram=max_ram)


@pytest.fixture(scope="module")
def searched():
    whole = compiled(None).report.arena_bytes
    return compiled(whole - 1), whole - 1


def test_report_json_carries_every_candidate_the_search_tried(searched):
    result, budget = searched
    points = json.loads(result.report.to_json())["schedule"]["search"]
    assert len(points) >= 5
    chosen = [p for p in points if p["chosen"]]
    assert len(chosen) == 1
    chosen = chosen[0]
    assert chosen["description"] == result.schedule.describe()
    assert chosen["planned"] and chosen["arena_bytes"] <= budget
    assert result.report.arena_bytes <= chosen["arena_bytes"]
    # Layer by layer is a point of its own, at no extra cost, over the budget.
    whole = next(p for p in points if p["description"] == "layer by layer")
    assert whole["planned"] and whole["extra_instructions"] == 0
    assert whole["arena_bytes"] > budget
    # The search's promise, read off its points: nothing it planned that fits is cheaper.
    fitting = [p for p in points if p["planned"] and p["arena_bytes"] <= budget]
    assert min(p["extra_instructions"] for p in fitting) == chosen["extra_instructions"]
    # The points are the search's own figures: the cost model's cost of the chosen schedule.
    graph = prepare(g.layout_first(11, "transpose"))
    assert chosen["extra_instructions"] == row_bands.extra_cost(result.schedule, graph)
    # Each once: a candidate tried at several stages is one point.
    assert len({p["description"] for p in points}) == len(points)


def test_layer_by_layer_is_its_planned_arena_and_estimates_are_marked(searched):
    result, _ = searched
    graph = prepare(g.layout_first(11, "transpose"))
    layers = lower_layers(graph, HOST, "model", "mcugen")
    whole = plan_memory(arena_buffers(graph, layers, layer_by_layer(layers))).arena_size
    points = {p.description: p for p in result.schedule.search}
    assert points["layer by layer"].arena_bytes == whole
    assert any(not p.planned for p in points.values())


def test_report_html_draws_the_points_with_the_chosen_one_marked(searched):
    result, _ = searched
    points = result.report.schedule["search"]
    root = ET.fromstring(result.report.to_html())
    drawing = next(svg for svg in root.iter(f"{SVG}svg") if svg.get("class") == "trade-off")
    circles = list(drawing.iter(f"{SVG}circle"))
    assert len(circles) == len(points)
    titles = [c.find(f"{SVG}title").text for c in circles]
    for point, title in zip(points, titles):
        assert f"arena {point['arena_bytes']:,} B" in title
    marked = [c for c in circles if c.find(f"{SVG}title").text.endswith(", chosen")]
    assert len(marked) == 1
    assert all(float(marked[0].get("r")) > float(c.get("r")) for c in circles
               if c is not marked[0])
    assert any(t.text == "chosen" for t in drawing.iter(f"{SVG}text"))
    # Hollow (estimated) and filled (planned) points are told apart.
    fills = {c.get("fill") == "none" for c in circles}
    assert fills == {True, False}


def test_layer_by_layer_has_no_search_to_draw():
    result = compiled(None)
    assert result.report.schedule is None
    root = ET.fromstring(result.report.to_html())
    assert not [svg for svg in root.iter(f"{SVG}svg") if svg.get("class") == "trade-off"]
