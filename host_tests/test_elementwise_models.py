"""The elementwise ops end to end: tiny Keras models that make TensorFlow's converter emit
TRANSPOSE, stand-alone RELU/RELU6, ADD and MUL (broadcast, constant, mismatched scales, fused
activation) and HARD_SWISH, converted to fully-int8 .tflite once per session, built with
`mcugen build`, compiled with strict flags, and compared bit for bit with the NumPy reference
and TFLM's interpreter."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import standard_inputs, tflm_outputs
from hostc import build_shared, run_sanitized, run_three_ways
from mcugen import ir
from mcugen.build import BuildOptions, BuildResult, build
from mcugen.compile import prepare
from mcugen.errors import McugenError
from mcugen.frontend.tflite import _unique_names, load_tflite
from mcugen.reference import run_reference


# ---------------------------------------------------------------------------------------------
# Conversion: as test_tflite_import's _convert(model, "int8"), with the calibration range as a
# parameter (uniform(-1, 1) by default, as there).


def _tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    return tf


def _convert_int8(model, calibration_range: float = 1.0) -> bytes:
    tf = _tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    shapes = [tuple(tensor.shape) for tensor in model.inputs]
    rng = np.random.default_rng(0)

    def representative_dataset():
        for _ in range(8):
            yield [rng.uniform(-calibration_range, calibration_range, shape).astype(np.float32)
                   for shape in shapes]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


# ---------------------------------------------------------------------------------------------
# The models. Each comment says what TF 2.21's converter makes of it (checked in the tests).


def _foreign_layout_model():
    """NCHW input -> Permute (TRANSPOSE; the converter moves the ReLU in front of it, as a
    stand-alone RELU on the model input) -> ZeroPadding2D (PAD, folded into the conv) -> conv
    with fused ReLU, a residual ADD whose output feeds both a stand-alone ReLU6 and a later
    ADD. Both ADD operands are non-negative and below 6, so the converter gives the RELU6 the
    same quantization in and out (see test_clipping_relu6_is_refused_or_bit_exact)."""
    keras = _tensorflow().keras
    layers = keras.layers
    keras.utils.set_random_seed(11)
    x = inputs = keras.Input((3, 16, 16), batch_size=1)
    x = layers.Permute((2, 3, 1))(x)  # (16, 16, 3)
    x = layers.ReLU()(x)
    x = layers.ZeroPadding2D(((1, 1), (1, 1)))(x)  # 18x18
    x = layers.Conv2D(8, 3, strides=2, padding="valid", activation="relu")(x)  # 8x8
    y = layers.Conv2D(8, 1, activation="relu")(x)
    s = layers.Add()([x, y])
    x = layers.ReLU(max_value=6.0)(s)
    x = layers.Conv2D(8, 1)(x)
    x = layers.Add()([x, s])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(10)(x)
    x = layers.Softmax()(x)
    return keras.Model(inputs, x)


def _residual_broadcast_model():
    """Residual ADD of two activations; squeeze-excite (MEAN keepdims -> 1x1 conv ReLU -> 1x1
    conv -> hard_sigmoid, which the converter turns into a ReLU6 conv and a MUL by the constant
    scalar 1/6 -> MUL [1,12,12,8] x [1,1,1,8]); hard_swish (HARD_SWISH); x * 0.5 + 1.0 (MUL and
    ADD with constant scalars); + a constant per-channel vector (ADD [1,12,12,8] + [8]); a
    constant per-channel scale (MUL by [8])."""
    keras = _tensorflow().keras
    layers = keras.layers
    keras.utils.set_random_seed(12)
    x = inputs = keras.Input((12, 12, 3), batch_size=1)
    x = layers.Conv2D(8, 3, padding="same")(x)
    a = layers.Conv2D(8, 1, activation="relu")(x)
    b = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.Add()([a, b])
    se = layers.GlobalAveragePooling2D(keepdims=True)(x)
    se = layers.Conv2D(4, 1, activation="relu")(se)
    se = layers.Conv2D(8, 1)(se)
    se = layers.Activation("hard_sigmoid")(se)
    x = layers.Multiply()([x, se])
    x = layers.Activation("hard_swish")(x)
    x = x * 0.5 + 1.0
    x = keras.ops.hard_swish(x)
    x = x + np.linspace(-1.0, 1.0, 8).astype(np.float32)
    x = layers.Conv2D(8, 1)(x)
    x = layers.Activation("hard_swish")(x)
    x = keras.ops.multiply(x, np.linspace(0.5, 2.0, 8).astype(np.float32))
    return keras.Model(inputs, x)  # the whole feature map is the output: no detail averaged


def _mismatched_scales_model():
    """Two ADDs whose operands' scales differ about 20-fold (a branch times 20, both as a MUL
    by the constant 20 and folded into a conv's weights), and a MUL of two full-size
    activations."""
    keras = _tensorflow().keras
    layers = keras.layers
    keras.utils.set_random_seed(13)
    x = inputs = keras.Input((10, 10, 4), batch_size=1)
    x = layers.Conv2D(8, 3, padding="same")(x)
    a = layers.Conv2D(8, 1)(x)
    b = layers.Lambda(lambda t: t * 20.0)(a)  # `a` is read twice: the MUL stays
    x = layers.Add()([a, b])
    c = layers.Conv2D(8, 1)(x)
    d = layers.Lambda(lambda t: t * 20.0)(layers.Conv2D(8, 1)(x))  # folded into the conv
    x = layers.Add()([layers.Add()([c, d]), layers.Conv2D(8, 1)(c)])
    p = layers.Conv2D(8, 1)(x)
    q = layers.Conv2D(8, 1)(x)
    x = layers.Multiply()([p, q])
    return keras.Model(inputs, x)


def _fused_activations_model():
    """Add then ReLU, Multiply then ReLU, Add then ReLU(6): the converter fuses each
    activation into the ADD or MUL."""
    keras = _tensorflow().keras
    layers = keras.layers
    keras.utils.set_random_seed(14)
    x = inputs = keras.Input((8, 8, 3), batch_size=1)
    x = layers.Conv2D(8, 3, padding="same")(x)
    y = layers.DepthwiseConv2D(3, padding="same")(x)
    s = layers.ReLU()(layers.Add()([x, y]))
    m = layers.ReLU()(layers.Multiply()([layers.Conv2D(8, 1)(s), x]))
    t = layers.ReLU(max_value=6.0)(layers.Add()([m, layers.Conv2D(8, 1)(s)]))
    return keras.Model(inputs, layers.Conv2D(6, 1)(t))


def _broadcast_shapes_model():
    """Broadcasts other than SE's: ADD [1,8,1,6] + [1,1,8,6] and MUL [1,1,8,6] x [1,8,1,6]
    (both operands broadcast), MUL [1,8,8,1] x [1,8,8,6] and ADD [1,8,8,1] + [1,8,8,6] (the
    full-size operand second), ADD of a full-size constant, MUL by a constant [8,1,6]."""
    keras = _tensorflow().keras
    layers = keras.layers
    keras.utils.set_random_seed(17)
    rng = np.random.default_rng(17)
    x = inputs = keras.Input((8, 8, 4), batch_size=1)
    x = layers.Conv2D(6, 1)(x)
    rows = layers.AveragePooling2D((1, 8))(x)  # [1, 8, 1, 6]
    columns = layers.AveragePooling2D((8, 1))(x)  # [1, 1, 8, 6]
    grid = layers.Add()([layers.Add()([rows, columns]), layers.Multiply()([columns, rows])])
    gate = layers.Conv2D(1, 1, activation="hard_sigmoid")(x)  # [1, 8, 8, 1]
    x = layers.Add()([layers.Conv2D(1, 1)(x), layers.Multiply()([gate, x])])
    x = layers.Add()([x, grid])
    x = layers.Activation("hard_swish")(x)
    x = x + rng.uniform(-1.0, 1.0, (1, 8, 8, 6)).astype(np.float32)
    x = layers.Activation("hard_swish")(x)
    x = x * rng.uniform(0.5, 2.0, (8, 1, 6)).astype(np.float32)
    return keras.Model(inputs, x)


def _transposes_model():
    """Permutations other than NCHW -> NHWC, in the middle of a model: H <-> W, and NHWC ->
    NCHW followed by a conv that treats C as H."""
    keras = _tensorflow().keras
    layers = keras.layers
    keras.utils.set_random_seed(18)
    x = inputs = keras.Input((4, 6, 10), batch_size=1)
    x = layers.Permute((2, 3, 1))(x)  # (6, 10, 4)
    x = layers.Conv2D(5, 3, padding="same", activation="relu")(x)
    x = layers.Permute((2, 1, 3))(x)  # (10, 6, 5)
    x = layers.Conv2D(4, (3, 1), strides=(2, 1))(x)  # (4, 6, 4)
    x = layers.Permute((3, 1, 2))(x)  # (4, 4, 6)
    x = layers.Conv2D(3, 1)(x)
    return keras.Model(inputs, x)


def _self_operands_model():
    """HARD_SWISH straight on the model input, MUL of a tensor by itself, ADD of a tensor to
    itself, ADD that reads the model input (a buffer the caller owns)."""
    keras = _tensorflow().keras
    layers = keras.layers
    keras.utils.set_random_seed(19)
    x = inputs = keras.Input((8, 8, 4), batch_size=1)
    h = layers.Activation("hard_swish")(x)
    y = layers.Multiply()([h, h])
    y = layers.Add()([layers.Add()([y, y]), inputs])
    return keras.Model(inputs, layers.Conv2D(4, 1)(y))


def _hard_swish_model():
    """input (16x16x1: one image holds all 256 int8 values) -> 1x1 conv to 6 channels ->
    HARD_SWISH -> 1x1 conv. The conv's output then spans its whole int8 range on the channel
    with the largest weight, so HARD_SWISH sees (nearly) every int8 input."""
    keras = _tensorflow().keras
    layers = keras.layers
    keras.utils.set_random_seed(15)
    x = inputs = keras.Input((16, 16, 1), batch_size=1)
    x = layers.Conv2D(6, 1, kernel_initializer=keras.initializers.RandomUniform(-2.0, 2.0),
                      bias_initializer=keras.initializers.RandomUniform(-0.5, 0.5))(x)
    x = layers.Activation("hard_swish")(x)
    x = layers.Conv2D(4, 1)(x)
    return keras.Model(inputs, x)


def _clipping_relu6_model():
    """A stand-alone ReLU6 on an activation that is negative in places: TF 2.21's converter
    gives its output the range [0, max] and so another scale and zero point than its input."""
    keras = _tensorflow().keras
    layers = keras.layers
    keras.utils.set_random_seed(16)
    x = inputs = keras.Input((8, 8, 3), batch_size=1)
    x = layers.Conv2D(8, 3, padding="same")(x)
    s = layers.Add()([x, layers.Conv2D(8, 1)(x)])
    x = layers.Conv2D(8, 1)(layers.ReLU(max_value=6.0)(s))
    x = layers.Add()([x, s])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(4)(x)
    return keras.Model(inputs, x)


HARD_SWISH_RANGES = (0.5, 3.0, 10.0, 60.0)

# name -> (Keras model builder, calibration range)
MODELS: dict[str, tuple[Callable, float]] = {
    "foreign_layout": (_foreign_layout_model, 1.0),
    "residual_broadcast": (_residual_broadcast_model, 1.0),
    "mismatched_scales": (_mismatched_scales_model, 1.0),
    "fused_activations": (_fused_activations_model, 1.0),
    "broadcast_shapes": (_broadcast_shapes_model, 1.0),
    "transposes": (_transposes_model, 1.0),
    "self_operands": (_self_operands_model, 1.0),
    **{f"hard_swish_r{r:g}": (_hard_swish_model, r) for r in HARD_SWISH_RANGES},
    "clipping_relu6": (_clipping_relu6_model, 1.0),
}
END_TO_END = [name for name in MODELS if name != "clipping_relu6"]


# ---------------------------------------------------------------------------------------------
# Session caches: each model converted once, built once.


@dataclass
class Built:
    tflite: bytes
    result: BuildResult

    @property
    def graph(self) -> ir.Graph:
        return self.result.compiled.graph


_tflite: dict[str, bytes] = {}
_built: dict[str, Built] = {}


def tflite_of(name: str) -> bytes:
    if name not in _tflite:
        builder, calibration_range = MODELS[name]
        _tflite[name] = _convert_int8(builder(), calibration_range)
    return _tflite[name]


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("elementwise_models")


def built(name: str, work: Path) -> Built:
    """`mcugen build --model NAME.tflite --target host`, once per session."""
    if name not in _built:
        path = work / f"{name}.tflite"
        path.write_bytes(tflite_of(name))
        result = build(BuildOptions(model=path, target="host", name="model",
                                    out=work / f"{name}_out"))
        _built[name] = Built(path.read_bytes(), result)
    return _built[name]


def imported(name: str) -> ir.Graph:
    return load_tflite(tflite_of(name), "m")


def every_int8_inputs(size: int, seed: int) -> np.ndarray:
    """Inputs that between them hold each int8 value many times: a few random permutations of
    all 256 values (tiled), and a ramp."""
    rng = np.random.default_rng(seed)
    values = np.arange(-128, 128)
    rows = [np.resize(rng.permutation(values), size) for _ in range(3)]
    rows.append(np.resize(values, size))
    return np.stack(rows).astype(np.int8)


def inputs_for(graph: ir.Graph, seed: int) -> np.ndarray:
    """conftest's standard inputs, more random ones, small noise near zero and every int8."""
    size = graph.input.size
    rng = np.random.default_rng(seed + 1000)
    small = rng.integers(-8, 9, (2, size))
    return np.concatenate([standard_inputs(size, seed, random_count=4), small.astype(np.int8),
                           every_int8_inputs(size, seed)])


# ---------------------------------------------------------------------------------------------
# Helpers on the imported graph.


def kinds(graph: ir.Graph) -> list[str]:
    return [op.OP for op in graph.ops]


def ops_of(graph: ir.Graph, kind: type) -> list:
    return [op for op in graph.ops if isinstance(op, kind)]


def constant(graph: ir.Graph, name: str) -> bool:
    return graph.tensor(name).is_constant


def shape(graph: ir.Graph, name: str) -> tuple[int, ...]:
    return graph.tensor(name).shape


# ---------------------------------------------------------------------------------------------
# 1. The converter really emits the ops each model is meant to test.


@pytest.mark.tensorflow
def test_foreign_layout_ops():
    graph = imported("foreign_layout")
    assert Counter(kinds(graph)) >= Counter(
        {"TRANSPOSE": 1, "RELU": 2, "PAD": 1, "ADD": 2, "CONV_2D": 3})
    (transpose,) = ops_of(graph, ir.Transpose)
    assert transpose.perm == (0, 2, 3, 1)
    assert shape(graph, transpose.input) == (1, 3, 16, 16)
    assert shape(graph, transpose.output) == (1, 16, 16, 3)
    relus = ops_of(graph, ir.Relu)
    assert sorted(op.activation.name for op in relus) == ["RELU", "RELU6"]
    # The RELU6 is stand-alone: its input is an ADD's output that another op reads too.
    (relu6,) = [op for op in relus if op.activation is ir.Activation.RELU6]
    assert len(graph.consumers(relu6.input)) == 2
    prepared = prepare(graph)
    assert "PAD" not in kinds(prepared) and "RELU" not in kinds(prepared)
    assert Counter(op.source for op in ops_of(prepared, ir.TableLookup)) == {"RELU": 2}
    assert "TRANSPOSE" in kinds(prepared)


@pytest.mark.tensorflow
def test_residual_broadcast_ops():
    graph = imported("residual_broadcast")
    adds, muls = ops_of(graph, ir.Add), ops_of(graph, ir.Mul)
    full = (1, 12, 12, 8)

    def operand_kinds(ops):
        return sorted((shape(graph, op.input), shape(graph, op.input2),
                       constant(graph, op.input2)) for op in ops)

    # activation + activation; + scalar constant; + per-channel constant.
    assert operand_kinds(adds) == sorted([(full, full, False), (full, (), True),
                                          (full, (8,), True)])
    # 1/6 of the hard sigmoid; SE's broadcast; * 0.5; * per-channel constant.
    assert operand_kinds(muls) == sorted([((1, 1, 1, 8), (), True), (full, (1, 1, 1, 8), False),
                                          (full, (), True), (full, (8,), True)])
    assert Counter(kinds(graph))["HARD_SWISH"] == 3
    prepared = prepare(graph)
    assert Counter(op.source for op in ops_of(prepared, ir.TableLookup)) == {
        "HARD_SWISH": 3, "MUL": 2, "ADD": 1}
    assert Counter(kinds(prepared))["ADD"] == 2 and Counter(kinds(prepared))["MUL"] == 2


@pytest.mark.tensorflow
def test_mismatched_scales_ops():
    graph = imported("mismatched_scales")
    ratios = sorted(max(s1, s2) / min(s1, s2) for s1, s2 in
                    ((graph.tensor(op.input).scale, graph.tensor(op.input2).scale)
                     for op in ops_of(graph, ir.Add)))
    assert len(ratios) == 3
    assert sum(ratio > 10 for ratio in ratios) >= 2, ratios
    full_muls = [op for op in ops_of(graph, ir.Mul)
                 if not constant(graph, op.input2)]
    assert len(full_muls) == 1
    assert shape(graph, full_muls[0].input) == shape(graph, full_muls[0].input2) == (1, 10, 10, 8)
    # The `* 20` on a tensor read twice stays a MUL by a constant scalar: a lookup table.
    scalar_muls = [op for op in ops_of(graph, ir.Mul) if constant(graph, op.input2)]
    assert len(scalar_muls) == 1 and shape(graph, scalar_muls[0].input2) == ()
    assert [op.source for op in ops_of(prepare(graph), ir.TableLookup)] == ["MUL"]


@pytest.mark.tensorflow
def test_fused_activations_ops():
    graph = imported("fused_activations")
    assert [(op.OP, op.activation.name) for op in graph.ops if isinstance(op, (ir.Add, ir.Mul))] \
        == [("ADD", "RELU"), ("MUL", "RELU"), ("ADD", "RELU6")]
    assert "RELU" not in kinds(graph)
    prepared = prepare(graph)
    for op in prepared.ops:
        if isinstance(op, (ir.Add, ir.Mul)):
            assert not constant(prepared, op.input2)
            # The fused activation clamps at the output's zero.
            assert op.act_min == max(-128, prepared.tensor(op.output).zero_point)


@pytest.mark.tensorflow
def test_broadcast_shapes_ops():
    graph = imported("broadcast_shapes")
    pairs = Counter((op.OP, tuple(sorted((shape(graph, op.input), shape(graph, op.input2)))),
                     constant(graph, op.input2))
                    for op in graph.ops if isinstance(op, (ir.Add, ir.Mul)))
    row, column, full, one = (1, 8, 1, 6), (1, 1, 8, 6), (1, 8, 8, 6), (1, 8, 8, 1)
    assert pairs >= Counter({("ADD", (column, row), False): 1, ("MUL", (column, row), False): 1,
                             ("MUL", (one, full), False): 1, ("ADD", (one, full), False): 1,
                             ("ADD", (full, full), True): 1, ("MUL", (full, (8, 1, 6)), True): 1})


@pytest.mark.tensorflow
def test_self_operands_ops():
    graph = imported("self_operands")
    hard_swish, mul, add, add_input, _ = graph.ops
    assert (hard_swish.OP, hard_swish.input) == ("HARD_SWISH", graph.input.name)
    assert (mul.OP, mul.input) == ("MUL", mul.input2)
    assert (add.OP, add.input) == ("ADD", add.input2)
    assert add_input.OP == "ADD" and graph.input.name in (add_input.input, add_input.input2)


@pytest.mark.tensorflow
def test_transposes_ops():
    graph = imported("transposes")
    assert [op.perm for op in ops_of(graph, ir.Transpose)] == [(0, 2, 3, 1), (0, 2, 1, 3),
                                                                (0, 3, 1, 2)]
    assert [op.OP for op in prepare(graph).ops].count("TRANSPOSE") == 3


@pytest.mark.tensorflow
@pytest.mark.parametrize("r", HARD_SWISH_RANGES)
def test_hard_swish_ops(r):
    graph = imported(f"hard_swish_r{r:g}")
    assert kinds(graph) == ["CONV_2D", "HARD_SWISH", "CONV_2D"]
    assert [op.OP for op in prepare(graph).ops] == ["CONV_2D", "LOOKUP", "CONV_2D"]


@pytest.mark.tensorflow
def test_hard_swish_models_differ_in_scale():
    """The calibration ranges give the HARD_SWISH input scales that span two decades."""
    scales = [imported(f"hard_swish_r{r:g}").tensor(
        ops_of(imported(f"hard_swish_r{r:g}"), ir.HardSwish)[0].input).scale
        for r in HARD_SWISH_RANGES]
    assert scales == sorted(scales)
    assert scales[-1] / scales[0] > 50


# ---------------------------------------------------------------------------------------------
# 2. Bit-exact: generated C == NumPy reference == TFLM.


@pytest.mark.tensorflow
@pytest.mark.parametrize("name", END_TO_END)
def test_c_is_bit_exact_with_reference_and_tflm(name, work):
    model = built(name, work)
    graph = model.graph
    inputs = inputs_for(graph, seed=len(name))
    outputs = run_three_ways(model.result.out_dir, graph, model.tflite, inputs, work)
    outputs.assert_bit_exact(min_distinct=len(inputs) // 2)


def _tflm_tensors(tflite: bytes, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor TFLM computed for input x, by the importer's (unique) tensor name."""
    from tflite_micro import runtime

    tf = _tensorflow()
    details = sorted(tf.lite.Interpreter(model_content=tflite).get_tensor_details(),
                     key=lambda d: d["index"])
    assert [d["index"] for d in details] == list(range(len(details)))
    names = dict(enumerate(_unique_names([d["name"] for d in details])))
    interpreter = runtime.Interpreter.from_bytes(
        tflite, intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    interpreter.set_input(x, 0)
    interpreter.invoke()
    return {name: np.asarray(interpreter.GetTensor(index, 0)["tensor_data"])
            for index, name in names.items()}


@pytest.mark.tensorflow
@pytest.mark.parametrize("r", HARD_SWISH_RANGES)
def test_hard_swish_every_input_matches_tflm(r, work):
    """HARD_SWISH's table against TFLM's kernel on (nearly) all 256 int8 inputs of the op, for
    input scales from about 0.004 to 0.5: compared at the op's own output, not only after the
    next conv."""
    name = f"hard_swish_r{r:g}"
    graph = built(name, work).graph
    tflite = tflite_of(name)
    (lookup,) = ops_of(graph, ir.TableLookup)
    seen_inputs: set[int] = set()
    for x in every_int8_inputs(graph.input.size, seed=int(r * 10)):
        x = x.reshape(graph.input.shape)
        ours = run_reference(graph, x, keep_all=True)
        theirs = _tflm_tensors(tflite, x)
        for tensor in (lookup.input, lookup.output):
            np.testing.assert_array_equal(ours[tensor].reshape(-1), theirs[tensor].reshape(-1),
                                          err_msg=tensor)
        # The table is the op: applied by hand to TFLM's input of the op, it gives TFLM's
        # output of the op.
        by_hand = np.array(lookup.table)[theirs[lookup.input].astype(int) + 128]
        np.testing.assert_array_equal(by_hand, theirs[lookup.output])
        seen_inputs |= set(theirs[lookup.input].reshape(-1).tolist())
    assert len(seen_inputs) >= 250, len(seen_inputs)


# ---------------------------------------------------------------------------------------------
# 3. Sanitizers.


@pytest.mark.tensorflow
@pytest.mark.parametrize("name", ["foreign_layout", "residual_broadcast", "broadcast_shapes"])
def test_clean_under_address_and_undefined_behaviour_sanitizers(name, work):
    model = built(name, work)
    graph = model.graph
    inputs = inputs_for(graph, seed=3)[[0, 1, 2, 3, -1]]
    sanitized = work / f"{name}_sanitized"
    sanitized.mkdir(exist_ok=True)
    outputs = run_sanitized(model.result.out_dir, "model", graph.input.size,
                            graph.output.size, inputs, sanitized)
    np.testing.assert_array_equal(outputs, tflm_outputs(model.tflite, inputs))


# ---------------------------------------------------------------------------------------------
# 4. A RELU6 whose output quantization differs from its input's.


@pytest.mark.tensorflow
def test_clipping_relu6_is_refused_or_bit_exact(work):
    """TFLM's int8 RELU6 clamps the raw input bytes between the input's zero and six and
    ignores the output's quantization; TF 2.21's converter gives a RELU6 on a partly negative
    input another output scale. mcugen may refuse such a model (naming the op) but must never
    compile it into something that differs from TFLM."""
    graph = imported("clipping_relu6")
    (relu6,) = [op for op in ops_of(graph, ir.Relu) if op.activation is ir.Activation.RELU6]
    x_q, y_q = graph.tensor(relu6.input).q, graph.tensor(relu6.output).q
    assert x_q != y_q  # the case under test (else the converter changed)
    try:
        model = built("clipping_relu6", work)
    except McugenError as error:
        assert "RELU" in str(error), error
        return
    graph = model.graph
    c_model = build_shared(model.result.out_dir, "model", graph.input.size, graph.output.size,
                           work)
    inputs = inputs_for(graph, seed=5)
    np.testing.assert_array_equal(np.stack([c_model(x) for x in inputs]),
                                  tflm_outputs(model.tflite, inputs))
