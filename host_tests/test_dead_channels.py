"""Exact dead-channel elimination (passes/dead_channels.py) and the constants of the constant
channels that stay (kernels/requantize.py).

Hand-built IR graphs with pruned filters in every position the pass treats differently, run
by the NumPy reference with and without the pass, by the generated C on the host and in QEMU;
and a Keras model with zeroed filters, converted by TensorFlow, checked against TFLM.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import ir_graphs as g
from conftest import CACHE, standard_inputs, tflm_outputs
from hostc import build_shared, run_sanitized
from mcugen import ir, quant
from mcugen.compile import compile_graph, prepare
from mcugen.kernels import lower_layers
from mcugen.kernels.requantize import (constant_channel_constants, dw_requantize,
                                       short_requantize)
from mcugen.passes.dead_channels import remove_dead_channels, summarize
from mcugen.qemu import build_firmware, run_firmware
from mcugen.reference import run_reference
from mcugen.report import count_macs
from mcugen.targets import load_target

P0, P1 = ir.Padding(), ir.Padding(1, 1, 1, 1)
RELU, NONE = ir.Activation.RELU, ir.Activation.NONE
HOST, M7, M55 = (load_target(n) for n in ("host", "cortex-m7", "cortex-m55"))
PRUNED_SCALE = 1e-9  # what TensorFlow's converter gives an all-zero filter (measured on VWW)


# ---------------------------------------------------------------------------------------------
# Hand-built chains


@dataclass
class Layer:
    """One layer of a chain. dead: output channel -> its bias; its filter is zeroed. pruned:
    those channels also get the tiny weight scale the converter gives a zero filter (then a
    zero multiplier, or a shift of -26: the constants that break the short requantization)."""

    kind: str  # "conv", "dw", "avgpool", "mean", "fc", "add_self"
    cout: int = 0
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: ir.Padding = P0
    activation: ir.Activation = RELU
    dead: dict[int, int] = field(default_factory=dict)
    pruned: bool = True
    multiplier: int = 1
    zero_point: int = -7


def chain(seed: int, h: int, w: int, cin: int, layers: list[Layer]) -> ir.Graph:
    rng = np.random.default_rng(seed)
    x = g._activation("x", (1, h, w, cin), g.IN_SCALE, -3)
    tensors, ops, current = {"x": x}, [], x
    for i, layer in enumerate(layers):
        name = f"t{i}"
        _, ih, iw, ic = current.shape if len(current.shape) == 4 else (1, 1, 1, current.shape[-1])
        if layer.kind in ("conv", "dw"):
            kh, kw = layer.kernel
            oh = g.conv_output_size(ih, kh, layer.stride[0], 1, layer.padding.top,
                                    layer.padding.bottom)
            ow = g.conv_output_size(iw, kw, layer.stride[1], 1, layer.padding.left,
                                    layer.padding.right)
            cout = layer.cout if layer.kind == "conv" else ic * layer.multiplier
            shape = (cout, kh, kw, ic) if layer.kind == "conv" else (1, kh, kw, cout)
            axis = 0 if layer.kind == "conv" else 3
            wt = g._weights(rng, f"w{i}", shape, cout, axis, True)
            wt, bias = _with_dead(wt, _bias(rng, cout), layer, axis, f"b{i}")
            depth = kh * kw * (ic if layer.kind == "conv" else 1)
            out = g._activation(name, (1, oh, ow, cout), _scale(current, wt, depth),
                                layer.zero_point)
            tensors.update({wt.name: wt, bias.name: bias})
            op = (ir.Conv2D(current.name, wt.name, bias.name, name, layer.stride, (1, 1),
                            layer.padding, layer.activation) if layer.kind == "conv" else
                  ir.DepthwiseConv2D(current.name, wt.name, bias.name, name, layer.stride,
                                     (1, 1), layer.padding, layer.multiplier,
                                     layer.activation))
        elif layer.kind == "fc":
            wt = g._weights(rng, f"w{i}", (layer.cout, ic), layer.cout, 0, True)
            wt, bias = _with_dead(wt, _bias(rng, layer.cout), layer, 0, f"b{i}")
            out = g._activation(name, (1, layer.cout), _scale(current, wt, ic), layer.zero_point)
            tensors.update({wt.name: wt, bias.name: bias})
            op = ir.FullyConnected(current.name, wt.name, bias.name, name, layer.activation)
        elif layer.kind == "avgpool":
            out = g._activation(name, (1, 1, 1, ic), current.scale, current.zero_point)
            op = ir.AveragePool2D(current.name, name, (ih, iw), (1, 1), P0, NONE)
        elif layer.kind == "mean":
            out = g._activation(name, (1, 1, 1, ic), current.scale * 0.7, layer.zero_point)
            op = ir.Mean(current.name, name, keep_dims=True)
        elif layer.kind == "add_self":  # the layer's input plus the one before it
            previous = tensors[ops[-1].input]
            out = g._activation(name, current.shape, current.scale * 1.5, layer.zero_point)
            op = ir.Add(current.name, previous.name, name, NONE)
        else:
            raise ValueError(layer.kind)
        tensors[name] = out
        ops.append(op)
        current = out
    return ir.Graph("chain", tensors, tuple(ops), ("x",), (current.name,))


def _with_dead(wt: ir.Tensor, bias: ir.Tensor, layer: Layer, axis: int, bias_name: str):
    data, scales, values = wt.data.copy(), list(wt.q.scale), bias.data.copy()
    for c, b in layer.dead.items():
        np.moveaxis(data, axis, 0)[c] = 0
        values[c] = b
        if layer.pruned:
            scales[c] = PRUNED_SCALE
    q = dataclasses.replace(wt.q, scale=tuple(scales))
    return (dataclasses.replace(wt, data=data, q=q),
            dataclasses.replace(bias, name=bias_name, data=values))


def _bias(rng: np.random.Generator, channels: int) -> ir.Tensor:
    """Small biases: after a ReLU the inputs span about half of int8, and a bias as large as
    the products would make every output the same."""
    return ir.Tensor("b", (channels,), "int32", None,
                     rng.integers(-1000, 1000, channels).astype(np.int32))


def _scale(x: ir.Tensor, wt: ir.Tensor, depth: int) -> float:
    """Outputs over most of int8 for inputs of about half its range (after a ReLU)."""
    live = [s for s in wt.q.scale if s != PRUNED_SCALE]
    return x.scale * float(np.mean(live)) * 40 * 74 * np.sqrt(depth) / 60.0


# The converter's pruned channels: a bias of -2^30 gives the output zero point under ReLU (so a
# padded reader sees the same value as its padding), +2^30 a constant above it.
LOW, HIGH = -(1 << 30), 1 << 30


def vww_like() -> ir.Graph:
    """Dead channels in every position: the first convolution (before a padded depthwise,
    equal to its zero point), pointwise feeding pointwise, pointwise feeding depthwise feeding
    pointwise, a constant above the zero point before padding (kept), before the pooling and
    the classifier, and the classifier's own output channel (the model's output: kept)."""
    return chain(1, 12, 10, 3, [
        Layer("conv", 8, (3, 3), (2, 2), ir.Padding(0, 1, 0, 1), dead={2: LOW}),
        Layer("dw", padding=P1),
        Layer("conv", 12, dead={0: LOW, 5: HIGH, 7: 2000}, pruned=False, zero_point=-20),
        Layer("conv", 16, dead={1: LOW, 3: LOW, 4: HIGH}, pruned=False),  # 4: above zp
        Layer("dw", padding=P1),
        Layer("conv", 16, dead={0: LOW, 9: HIGH}),
        Layer("avgpool"),
        Layer("fc", 5, dead={3: 5000}, pruned=False, activation=NONE),
    ])


def prepared_pair(graph: ir.Graph) -> tuple[ir.Graph, ir.Graph]:
    """The graph after every pass but dead channels (the CMSIS-NN build's), and after all."""
    return prepare(graph, "cmsis-nn"), prepare(graph)


def reference_rows(graph: ir.Graph, inputs: np.ndarray) -> np.ndarray:
    return np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                     for x in inputs])


def many_inputs(size: int) -> np.ndarray:
    return standard_inputs(size, seed=5, random_count=13)


def channels(graph: ir.Graph) -> list[int]:
    return [graph.tensor(op.output).shape[-1] for op in graph.ops]


def test_the_pass_removes_what_it_can_and_the_reference_is_unchanged():
    before, after = prepared_pair(vww_like())
    inputs = many_inputs(before.input.size)
    expected = reference_rows(before, inputs)
    assert len({row.tobytes() for row in expected}) >= 4
    np.testing.assert_array_equal(reference_rows(after, inputs), expected)
    # conv 8 -> 7 (channel 2 equals the zp the padded depthwise pads with), its depthwise too;
    # 12 -> 9 (0, 5 and 7 fold into the next pointwise, none is padded); 16 -> 14 (1 and 3
    # equal the zp; 4 is above it and the depthwise after it is padded: kept); 16 -> 14 (0 and
    # 9, through the pooling into the classifier's bias); the classifier keeps its 5 outputs.
    assert channels(before) == [8, 8, 12, 16, 16, 16, 16, 5]
    assert channels(after) == [7, 7, 9, 14, 14, 14, 14, 5]


def test_the_report_counts_the_channels_and_macs_removed():
    graph = vww_like()
    compiled = compile_graph(graph, name="model", target=HOST, source="chain")
    summary = compiled.report.dead_channels
    before = prepare(graph, "cmsis-nn")
    macs_before = sum(count_macs(op, before) for op in before.ops)
    assert summary["macs_before"] == macs_before
    assert summary["macs"] == macs_before - compiled.report.macs > 0
    assert summary["channels"] == 1 + 1 + 3 + 2 + 2 + 2  # of the weighted layers
    assert summary["layers"] == 6
    # Kept constant: the 16 -> 14 layer's channel 4 (before padding), its depthwise's channel
    # (constant from its input, not by its own constants: not counted) and the classifier's 3.
    assert summary["constant_kept"] == 2
    assert "channels removed" in compiled.report.to_markdown()
    assert "dead channels" in compiled.report.to_html()
    cmsis = compile_graph(graph, name="model", target=M7, source="chain", kernel_set="cmsis-nn")
    assert cmsis.report.dead_channels["channels"] == 0  # the baseline stays TFLM's work


def test_generated_c_on_the_host_and_under_sanitizers(tmp_path):
    graph = vww_like()
    before = prepare(graph, "cmsis-nn")
    compiled = compile_graph(graph, name="model", target=HOST, source="chain")
    folder = _write(compiled, tmp_path / "model")
    inputs = many_inputs(graph.input.size)
    model = build_shared(folder, "model", graph.input.size, compiled.graph.output.size, tmp_path)
    expected = reference_rows(before, inputs)
    np.testing.assert_array_equal(np.stack([model(x) for x in inputs]), expected)
    np.testing.assert_array_equal(
        run_sanitized(folder, "model", graph.input.size, compiled.graph.output.size, inputs,
                      tmp_path), expected)


@pytest.mark.qemu
@pytest.mark.parametrize("target", [M7, M55], ids=lambda t: t.name)
def test_generated_c_in_qemu(target, tmp_path):
    graph = vww_like()
    compiled = compile_graph(graph, name="model", target=target, source="chain")
    elf = build_firmware(_write(compiled, tmp_path / "model"), target, tmp_path / "firmware")
    inputs = many_inputs(graph.input.size)
    result = run_firmware(elf, target, inputs, compiled.graph.output.size)
    np.testing.assert_array_equal(result.outputs,
                                  reference_rows(prepare(graph, "cmsis-nn"), inputs))


def _write(compiled, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in compiled.sources.items():
        (folder / name).write_text(text)
    return folder


# ---------------------------------------------------------------------------------------------
# Where the pass must stop


def test_a_constant_before_padding_folds_only_when_it_is_the_zero_point():
    """A padded reader's border taps read the zero point, not the constant: the fold would
    change the border pixels. Through a padded 3x3 convolution and a padded depthwise alike."""
    producer = Layer("conv", 6, dead={1: LOW, 2: HIGH}, pruned=False)
    for reader in (Layer("conv", 6, (3, 3), padding=P1), Layer("dw", padding=P1)):
        graph = chain(2, 6, 6, 4, [producer, reader,
                                   Layer("conv", 3, activation=NONE)])
        before, after = prepared_pair(graph)
        assert channels(after)[0] == 5, reader.kind  # channel 1 (the zp) went, 2 stayed
        inputs = many_inputs(before.input.size)
        np.testing.assert_array_equal(reference_rows(after, inputs),
                                      reference_rows(before, inputs))
    # Without padding, the constant above the zero point folds too.
    graph = chain(2, 6, 6, 4, [producer, Layer("conv", 6, (3, 3)),
                               Layer("conv", 3, activation=NONE)])
    before, after = prepared_pair(graph)
    assert channels(after)[0] == 4
    inputs = many_inputs(before.input.size)
    np.testing.assert_array_equal(reference_rows(after, inputs), reference_rows(before, inputs))


def test_an_output_channel_of_the_model_is_never_removed_and_takes_the_short_form():
    """The last layer's pruned channels stay (the caller reads them), with constants that keep
    the whole layer on the short requantization, which the converter's (a zero multiplier and
    shift 0, a bias of 2^30) would break."""
    graph = chain(3, 5, 4, 8, [Layer("conv", 8, dead={2: LOW, 5: HIGH}, activation=NONE)])
    before, after = prepared_pair(graph)
    assert channels(after) == [8]
    inputs = many_inputs(before.input.size)
    np.testing.assert_array_equal(reference_rows(after, inputs), reference_rows(before, inputs))
    for target in (HOST, M7):
        ours = compile_graph(graph, name="model", target=target, source="out")
        theirs = lower_layers(before, target, "model", "mcugen")  # the converter's constants
        assert _short(ours.layers) is not None, target.name
        assert _short(theirs) is None, target.name


def _short(layers):
    params = layers[0].params
    return getattr(params, "short", None) or getattr(getattr(params, "matrix", None), "short",
                                                     None)


def test_elementwise_readers_and_an_int32_overflow_stop_the_fold():
    # ADD reads the dead channel: kept.
    graph = chain(4, 4, 4, 4, [Layer("conv", 6, dead={1: LOW}), Layer("conv", 6),
                               Layer("add_self")])
    _, after = prepared_pair(graph)
    assert channels(after)[0] == 6
    # A reader whose bias cannot take the contribution in int32: kept; the reference agrees.
    graph = chain(5, 4, 4, 4, [Layer("conv", 6, dead={1: 100000}, pruned=False,
                                     activation=NONE, zero_point=100),
                               Layer("conv", 3, activation=NONE)])
    reader = graph.ops[1]
    weights = graph.tensor(reader.filter).data.copy()
    weights[:, 0, 0, 1] = 127
    bias = graph.tensor(reader.bias).data.copy()
    bias[:] = quant.INT32_MAX - 1000
    tensors = dict(graph.tensors)
    tensors[reader.filter] = dataclasses.replace(tensors[reader.filter], data=weights)
    tensors[reader.bias] = dataclasses.replace(tensors[reader.bias], data=bias)
    graph = graph.replace(tensors=tensors)
    before, after = prepared_pair(graph)
    constant = run_reference(before, np.zeros(before.input.shape, np.int8), keep_all=True)
    value = int(constant["t0"][0, 0, 0, 1])
    assert (value - 100) * 127 > 1000  # the contribution would overflow the bias
    assert channels(after)[0] == 6
    # ... and a fold that fits is made.
    tensors[reader.bias] = dataclasses.replace(tensors[reader.bias], data=bias - (1 << 20))
    assert channels(prepared_pair(graph.replace(tensors=tensors))[1])[0] == 5


def test_a_depthwise_multiplier_and_a_mean_carry_the_chain():
    graph = chain(6, 6, 6, 3, [Layer("conv", 4, dead={0: LOW, 3: LOW}), Layer("dw", multiplier=2),
                               Layer("conv", 6, dead={5: LOW}), Layer("mean", zero_point=4),
                               Layer("fc", 4, activation=NONE)])
    before, after = prepared_pair(graph)
    assert channels(after) == [2, 4, 5, 5, 4]
    inputs = many_inputs(before.input.size)
    np.testing.assert_array_equal(reference_rows(after, inputs), reference_rows(before, inputs))


def test_the_pass_leaves_a_model_without_constant_channels_alone():
    graph = chain(7, 6, 6, 3, [Layer("conv", 8, (3, 3), padding=P1, activation=NONE),
                               Layer("dw", padding=P1, activation=NONE),
                               Layer("conv", 8, activation=NONE)])
    prepared = prepare(graph, "cmsis-nn")
    again = remove_dead_channels(prepared)
    assert again.ops == prepared.ops
    assert summarize(graph, again).channels == 0


# ---------------------------------------------------------------------------------------------
# The constants of a constant channel, on every edge value


def test_constant_channel_constants_give_the_constant_in_every_requantization():
    d = np.arange(-255, 256)
    for zp in (-128, -127, -1, 0, 1, 126, 127):
        for difference in d:
            bias, multiplier, shift = constant_channel_constants(int(difference))
            value = zp + int(difference)
            # TFLite's MBQM on the accumulator (the bias: zero weights).
            assert int(quant.multiply_by_quantized_multiplier(bias, multiplier, shift)) + zp \
                == value
            # The short sequence, with and without the sign correction (the DSP kernels
            # double the accumulator themselves: short_requantize takes it undoubled).
            for correction in (True, False):
                assert int(short_requantize(np.array([bias]), np.array([multiplier]),
                                            np.array([-shift]), zp, correction)[0]) == value
            # The portable depthwise's dw_requantize.
            assert int(dw_requantize(np.array([bias]), multiplier, shift, zp)[0]) == value
    with pytest.raises(ValueError):
        constant_channel_constants(256)


def test_the_short_form_models_agree_with_tflite_where_they_claim_to():
    """dw_requantize (the NumPy model of the C) against MBQM on accumulators around the
    rounding points, so that the test above tests the C's arithmetic."""
    acc = np.concatenate([np.arange(-5000, 5000), (1 << 29) - np.arange(100),
                          -(1 << 29) + np.arange(100)])
    for multiplier, shift in ((1 << 30, -1), (1518500250, -7), (2147483647, -1),
                              (1073741824, -20)):
        expected = quant.multiply_by_quantized_multiplier(acc, multiplier, shift) + 3
        np.testing.assert_array_equal(dw_requantize(acc, multiplier, shift, 3), expected)


# ---------------------------------------------------------------------------------------------
# A Keras model with zeroed filters, through TensorFlow's converter, against TFLM


def keras_model_with_dead_filters() -> bytes:
    """A small MobileNet-shaped Keras model whose filters are zeroed in every position (the
    converter then gives them the constants VWW's pruned filters have); converted once, cached
    by this recipe's source and TensorFlow's version."""
    import hashlib
    import inspect

    import tensorflow as tf

    recipe = inspect.getsource(keras_model_with_dead_filters) + tf.__version__
    cached = CACHE / f"dead_channels_{hashlib.sha256(recipe.encode()).hexdigest()[:16]}.tflite"
    if cached.is_file():
        return cached.read_bytes()

    keras = tf.keras
    keras.utils.set_random_seed(11)
    x = inputs = keras.Input((24, 24, 3), batch_size=1)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="first")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu", name="pw1")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu", name="pw2")(x)  # pointwise -> pointwise
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(24, 1, activation="relu", name="pw3")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, name="classifier")(x)
    model = keras.Model(inputs, outputs)
    dead = {"first": ([1], [-1.0]), "pw1": ([0, 5, 9], [-1.0, 0.5, -2.0]),
            "pw2": ([2, 3, 11], [-1.0, 0.7, -0.2]), "pw3": ([4, 20], [-1.0, 0.3]),
            "classifier": ([2], [0.4])}
    for name, (columns, biases) in dead.items():
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        kernel[..., columns] = 0.0
        bias[columns] = biases
        layer.set_weights([kernel, bias])
    data = np.random.default_rng(11).uniform(-1, 1, (32, 24, 24, 3)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[np.newaxis]] for x in data)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    tflite = converter.convert()
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".part")
    partial.write_bytes(tflite)
    partial.replace(cached)
    return tflite


@pytest.fixture(scope="session")
def keras_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dead_channels") / "dead.tflite"
    path.write_bytes(keras_model_with_dead_filters())
    return path


@pytest.mark.tensorflow
def test_keras_model_on_the_host_matches_tflm(keras_file, tmp_path):
    from mcugen.frontend.tflite import load_tflite

    graph = load_tflite(keras_file.read_bytes(), "model")
    compiled = compile_graph(graph, name="model", target=HOST, source="keras")
    summary = compiled.report.dead_channels
    assert summary["channels"] >= 8 and summary["macs"] > 0
    model = build_shared(_write(compiled, tmp_path / "model"), "model", graph.input.size,
                         graph.output.size, tmp_path)
    inputs = many_inputs(graph.input.size)
    expected = tflm_outputs(keras_file.read_bytes(), inputs)
    assert len({row.tobytes() for row in expected}) >= 4
    np.testing.assert_array_equal(reference_rows(compiled.graph, inputs), expected)
    np.testing.assert_array_equal(np.stack([model(x) for x in inputs]), expected)


@pytest.mark.tensorflow
@pytest.mark.qemu
@pytest.mark.parametrize("target", ["cortex-m7", "cortex-m55"])
def test_keras_model_in_qemu_matches_tflm(target, keras_file, tmp_path):
    from mcugen.build import BuildOptions
    from mcugen.run import run

    summary = run(BuildOptions(model=keras_file, target=target), None, tmp_path)
    assert summary.tflm_outputs is not None
    np.testing.assert_array_equal(summary.qemu.outputs, summary.tflm_outputs)
    assert summary.matches
    assert summary.build.compiled.report.dead_channels["macs"] > 0


@pytest.mark.tensorflow
def test_inspect_says_what_was_removed(keras_file, capsys):
    from mcugen.cli import main

    assert main(["inspect", str(keras_file)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("dead channels: ") and "MACs" in line


# ---------------------------------------------------------------------------------------------
# The benchmark zoo's VWW model: never downloaded, listed only when present


def _zoo(monkeypatch, **env):
    """benchmarks/zoo.py imported afresh under env (it decides its listing at import)."""
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sys.modules.pop("zoo", None)
    return importlib.import_module("zoo")


@pytest.mark.tensorflow
def test_the_zoo_lists_vww_only_when_its_file_is_there(monkeypatch, tmp_path):
    monkeypatch.delenv("MCUGEN_VWW_MODEL", raising=False)
    zoo = _zoo(monkeypatch, XDG_CACHE_HOME=str(tmp_path))
    assert "vww_96_int8" not in zoo.MODELS
    line = zoo.MISSING["vww_96_int8"]
    assert str(tmp_path / "mcugen" / "zoo" / "vww_96_int8.tflite") in line
    assert "mlcommons/tiny" in line and "\n" not in line
    with pytest.raises(SystemExit, match="not in the zoo until"):
        zoo.model_file("vww_96_int8")
    # A file that is not MLPerf Tiny's is refused, by its MD5, in one line.
    other = tmp_path / "other.tflite"
    other.write_bytes(b"TFL3 not the model")
    zoo = _zoo(monkeypatch, MCUGEN_VWW_MODEL=str(other))
    assert "vww_96_int8" in zoo.MODELS and not zoo.MISSING
    with pytest.raises(SystemExit, match="is not MLPerf Tiny's vww_96_int8.tflite"):
        zoo.model_file("vww_96_int8")
    __import__("sys").modules.pop("zoo")  # the next importer sees the real environment
