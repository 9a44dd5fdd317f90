"""A structured fuzzer of hostile-but-well-formed .tflite files, and its judge (issue 17).

The generator starts from small sound models, one per op mcugen compiles and one network
(tflite_writer.BASE_MODELS), and bends one to three of their fields to the edges: zero points
at and beyond their type's limits, scales 0/NaN/inf/denormal/huge, shapes 0/1/huge, strides,
dilations and filters 0/1/huge, depth multipliers, padding modes, activations, options of the
wrong type or none, missing and out-of-range operands, repeated or missing names, self-loops,
an output that is the input, types changed, constants cut short, long chains. Seeds are fixed,
so every run judges the same files.

The judge, for every file: `mcugen build --target host` (the build function, in-process)
must, within a time bound, either refuse it with one line (McugenError, a message without a
newline, no output folder), or produce C that compiles warning-free with gcc's strict flags and
runs under ASan and UBSan bit-exact with the oracle: TFLM, or TensorFlow Lite's reference
kernels when TFLM cannot load the file. Compiling is the slow part, so only the sound bases
and the first accepted mutant of a few bases are compiled (the rest are built, which checks
for internal errors); the oracle runs in a subprocess, since a hostile file can crash it.

Byte mutations of person_detect.tflite (in its structure, not its weights) are judged at the
import and compile level: one line or a compiled model, in bounded time.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import struct
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from conftest import PERSON_DETECT, REPO, standard_inputs
from hostc import run_sanitized
from mcugen.build import BuildOptions, build
from mcugen.compile import compile_graph
from mcugen.errors import McugenError
from mcugen.frontend.flatbuffer import root_table
from mcugen.frontend.tflite import load_tflite
from mcugen.targets import load_target
from tflite_writer import ACTIVATIONS, BASE_MODELS, OPTIONS, ModelBuilder

# CI's run; a longer hunt: MCUGEN_FUZZ_CASES=1000 MCUGEN_FUZZ_SEED=7 MCUGEN_FUZZ_COMPILED=1000
SEED = int(os.environ.get("MCUGEN_FUZZ_SEED", 17))
CASES = int(os.environ.get("MCUGEN_FUZZ_CASES", 240))  # hostile files from the generator
# Accepted hostile files compiled and run (besides the sound bases), each of another base
# model unless there are more to compile than base models.
MUTANTS_COMPILED = int(os.environ.get("MCUGEN_FUZZ_COMPILED", 8))
MUTATIONS = 300  # byte mutations of person_detect
SECONDS_PER_CASE = 20  # a build that takes longer has hung

INT_EDGES = [0, 1, -1, 2, 3, 60, 127, 128, -128, -129, 255, 256, 1000, 5000, 1 << 14,
             1 << 15, (1 << 16), 1 << 30, (1 << 31) - 1, -(1 << 31)]
ZERO_POINT_EDGES = [-129, -128, 127, 128, 255, -1 << 31, (1 << 40), -(1 << 63), 0]
SCALE_EDGES = [0.0, float("nan"), float("inf"), -float("inf"), -0.05, 1e-45, 1.2e-38,
               2.0 ** -64, 2.0 ** -40, 1e-9, 1.0, 2.0 ** 30, 2.0 ** 64, 3e38]
DIM_EDGES = [0, 1, 2, -1, 65536, (1 << 31) - 1, 3]


# ---------------------------------------------------------------------------------------------
# The generator.


def _pick(rng: np.random.Generator, values: list):
    return values[int(rng.integers(len(values)))]


def _activations(m: ModelBuilder) -> list[int]:
    return [i for i, t in enumerate(m.tensors) if t.data is None]


def _zero_point(m, rng):
    i = int(rng.integers(len(m.tensors)))
    t = m.tensors[i]
    value = _pick(rng, ZERO_POINT_EDGES)
    t.zero_points = (value,) * len(t.scales or (0.05,))
    if t.scales is None:
        t.scales = (0.05,)
    return f"tensor {i} zero point {value}"


def _scale(m, rng):
    i = int(rng.integers(len(m.tensors)))
    t = m.tensors[i]
    value = _pick(rng, SCALE_EDGES)
    count = len(t.scales or (1,))
    if count > 1 and rng.random() < 0.5:  # one channel only
        scales = list(t.scales)
        scales[int(rng.integers(count))] = value
        t.scales = tuple(scales)
    else:
        t.scales = (value,) * count
    t.zero_points = t.zero_points or (0,) * count
    return f"tensor {i} scale {value}"


def _dim(m, rng):
    i = int(rng.integers(len(m.tensors)))
    t = m.tensors[i]
    if not t.shape:
        return "no dims"
    axis = int(rng.integers(len(t.shape)))
    value = _pick(rng, DIM_EDGES)
    t.shape = t.shape[:axis] + (value,) + t.shape[axis + 1:]
    return f"tensor {i} dim {axis} = {value}"


def _rank(m, rng):
    i = int(rng.integers(len(m.tensors)))
    t = m.tensors[i]
    t.shape = t.shape[:-1] if rng.random() < 0.5 else t.shape + (1,)
    return f"tensor {i} rank {len(t.shape)}"


def _option(m, rng):
    op = _pick(rng, m.ops)
    if op.options_kind is None or not OPTIONS[op.options_kind][1]:
        return "no option fields"
    field = _pick(rng, sorted(OPTIONS[op.options_kind][1]))
    fmt = OPTIONS[op.options_kind][1][field][1]
    if fmt == "b":
        value = _pick(rng, [-1, 0, 1, 2, 3, 4, 5, 127, -128])
    elif fmt == "f":
        value = _pick(rng, SCALE_EDGES)
    elif fmt == "?":
        value = bool(rng.integers(2))
    else:
        value = _pick(rng, INT_EDGES)
    op.options = dict(op.options or {}, **{field: value})
    return f"{op.kind} {field} = {value}"


def _activation(m, rng):
    op = _pick(rng, m.ops)
    if op.options_kind is None or "activation" not in OPTIONS[op.options_kind][1]:
        return "no activation"
    value = _pick(rng, sorted(ACTIVATIONS.values()) + [5, 6, 100])
    op.options = dict(op.options or {}, activation=value)
    return f"{op.kind} activation {value}"


def _wrong_options(m, rng):
    op = _pick(rng, m.ops)
    kind = _pick(rng, sorted(OPTIONS))
    op.options_kind, op.options = kind, {}
    return f"{op.kind} options {kind}"


def _no_options(m, rng):
    op = _pick(rng, m.ops)
    op.options = None
    return f"{op.kind} without options"


def _operand(m, rng):
    op = _pick(rng, m.ops)
    choice = int(rng.integers(5))
    if choice == 0 and op.inputs:  # a missing operand
        inputs = list(op.inputs)
        inputs[int(rng.integers(len(inputs)))] = -1
        op.inputs = tuple(inputs)
    elif choice == 1:  # an index past the end
        op.inputs = op.inputs + (len(m.tensors) + int(rng.integers(1, 1 << 20)),)
    elif choice == 2 and op.inputs:  # one operand fewer
        op.inputs = op.inputs[:-1]
    elif choice == 3:  # another tensor
        inputs = list(op.inputs)
        if inputs:
            inputs[int(rng.integers(len(inputs)))] = int(rng.integers(len(m.tensors)))
        op.inputs = tuple(inputs)
    else:  # two outputs, or none
        op.outputs = op.outputs + op.outputs if rng.random() < 0.5 else ()
    return f"{op.kind} operands {op.inputs} -> {op.outputs}"


def _self_loop(m, rng):
    op = _pick(rng, m.ops)
    if op.inputs and rng.random() < 0.5:
        op.outputs = (op.inputs[0],)  # writes its own input (or the model's)
    else:
        m.ops.append(dataclasses.replace(op))  # a second op writes the same tensor
    return f"{op.kind} self-loop"


def _endpoints(m, rng):
    choice = int(rng.integers(4))
    if choice == 0:
        m.outputs = list(m.inputs)
    elif choice == 1:
        m.inputs = m.inputs + m.inputs
    elif choice == 2:
        m.outputs = [int(rng.integers(len(m.tensors)))]
    else:
        m.inputs = [int(rng.integers(len(m.tensors)))]
    return f"endpoints {m.inputs} -> {m.outputs}"


def _names(m, rng):
    name = _pick(rng, ["same", "", None, "a\nb", "input", "x" * 300])
    for i in rng.choice(len(m.tensors), size=min(len(m.tensors), 3), replace=False):
        m.tensors[int(i)].name = name
    return f"names {name!r}"


def _dtype(m, rng):
    i = int(rng.integers(len(m.tensors)))
    t = m.tensors[i]
    t.dtype = _pick(rng, ["int8", "uint8", "int16", "int32", "float32", "int64"])
    if t.data is not None and rng.random() < 0.7:  # keep the data's size consistent
        t.data = bytes(int(np.prod(t.shape, dtype=np.int64)) * np.dtype(t.dtype).itemsize)
    return f"tensor {i} {t.dtype}"


def _data(m, rng):
    constants = [t for t in m.tensors if t.data is not None]
    if not constants:
        return "no constants"
    t = _pick(rng, constants)
    t.data = t.data[:len(t.data) // 2] if rng.random() < 0.5 else t.data + b"\0" * 4
    return f"constant {t.name} of {len(t.data)} bytes"


def _per_channel(m, rng):
    i = int(rng.integers(len(m.tensors)))
    t = m.tensors[i]
    count = _pick(rng, [2, 3, 5])
    t.scales = tuple(float(s) for s in rng.uniform(0.01, 0.1, count))
    t.zero_points = (0,) * count
    t.axis = _pick(rng, [0, 1, 3, 7, -1])
    return f"tensor {i} {count} scales along axis {t.axis}"


def _custom(m, rng):
    op = _pick(rng, m.ops)
    op.kind, op.custom_name = "CUSTOM", _pick(rng, ["TFLite_Detection", "x\ny", ""])
    return "custom op"


def _chain(m, rng):
    """A long chain of RELUs after the output: many layers, one lookup table each."""
    count = int(_pick(rng, [40, 150]))
    last = m.outputs[0]
    scale = m.tensors[last].scales
    for k in range(count):
        y = m.tensor(m.tensors[last].shape, name="chain", scale=scale[0] if scale else 0.05,
                     zero_point=-3)
        m.op(_pick(rng, ["RELU", "RELU6"]), [last], [y])
        last = y
    m.outputs = [last]
    return f"chain of {count}"


MUTATORS = [_zero_point, _scale, _dim, _rank, _option, _option, _activation, _wrong_options,
            _no_options, _operand, _self_loop, _endpoints, _names, _dtype, _data,
            _per_channel, _custom, _chain]


@dataclasses.dataclass
class Case:
    label: str
    base: str
    data: bytes


def generate(count: int, seed: int) -> list[Case]:
    """count hostile files (and the sound bases first), the same for the same seed."""
    cases = []
    for name, make in BASE_MODELS.items():
        cases.append(Case(f"{name} (sound)", name, make(np.random.default_rng(seed)).bytes()))
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        base = sorted(BASE_MODELS)[index % len(BASE_MODELS)]
        m = BASE_MODELS[base](rng)
        changes = [_pick(rng, MUTATORS)(m, rng) for _ in range(int(rng.integers(1, 4)))]
        try:
            data = m.bytes()
        except (struct.error, OverflowError, ValueError):
            continue  # a value the schema's field cannot hold: not a flatbuffer anyone can write
        cases.append(Case(f"{base}: {'; '.join(changes)}", base, data))
    return cases


# ---------------------------------------------------------------------------------------------
# The judge.


class Hung(Exception):
    pass


@contextmanager
def time_bound(seconds: float):
    def expire(signum, frame):
        raise Hung(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def judge_build(case: Case, work: Path) -> tuple[str, object]:
    """("refused", message) or ("accepted", BuildResult); anything else fails the test."""
    model = work / "model.tflite"
    model.write_bytes(case.data)
    out = work / "out"
    if out.exists():
        shutil.rmtree(out)
    try:
        with time_bound(SECONDS_PER_CASE):
            result = build(BuildOptions(model=model, target="host", name="fz", out=out))
    except McugenError as error:
        message = str(error)
        assert message and "\n" not in message and "\r" not in message, \
            f"{case.label}: a refusal of more than one line: {message!r}"
        assert not out.exists(), \
            f"{case.label}: a refused build left files in {out}"
        return "refused", message
    except Hung:
        pytest.fail(f"{case.label}: the build did not end within {SECONDS_PER_CASE} s")
    except Exception as error:  # an internal error: what the fuzzer is here to find
        raise AssertionError(f"{case.label}: internal error {type(error).__name__}: "
                             f"{error}") from error
    return "accepted", result


ORACLE = r"""
import os, sys
import numpy as np
folder, first = sys.argv[1], int(sys.argv[2])
without_tflm = {int(i) for i in sys.argv[3].split(",") if i}  # TFLM crashed on these
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

def tflm(model, inputs):
    from tflite_micro import runtime
    interpreter = runtime.Interpreter.from_bytes(model)
    shape = interpreter.get_input_details(0)["shape"]
    outputs = []
    for x in inputs:
        interpreter.set_input(x.reshape(shape).astype(np.int8), 0)
        interpreter.invoke()
        outputs.append(interpreter.get_output(0).reshape(-1).copy())
        interpreter.reset()
    return np.stack(outputs)

def reference_kernels(model, inputs):
    import tensorflow as tf
    interpreter = tf.lite.Interpreter(
        model_content=model,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    source, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for x in inputs:
        interpreter.set_tensor(source["index"], x.reshape(source["shape"]).astype(np.int8))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(sink["index"]).reshape(-1).copy())
    return np.stack(outputs)

index = first
while os.path.exists(os.path.join(folder, f"{index}.tflite")):
    base = os.path.join(folder, str(index))
    model = open(base + ".tflite", "rb").read()
    inputs = np.load(base + ".inputs.npy")
    try:
        if index in without_tflm:
            raise RuntimeError("TFLM crashed on this file")
        outputs, which = tflm(model, inputs), "TFLM"
    except Exception as error:
        try:
            outputs, which = reference_kernels(model, inputs), "TFLite reference kernels"
        except Exception as second:
            outputs, which = None, f"none: TFLM {error}; TFLite {second}"
    if outputs is not None:
        np.save(base + ".outputs.npy", outputs)
    open(base + ".oracle", "w").write(which)
    index += 1
"""


def oracle_outputs(models: list[tuple[bytes, np.ndarray]], folder: Path
                   ) -> list[tuple[str, np.ndarray | None]]:
    """Each model's outputs from the oracle, run in subprocesses: a file may crash TFLM (a
    depthwise convolution whose bias is given as -1 does), and is then run again on TFLite's
    reference kernels alone."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, (model, inputs) in enumerate(models):
        (folder / f"{index}.tflite").write_bytes(model)
        np.save(folder / f"{index}.inputs.npy", inputs)
    results: list[tuple[str, np.ndarray | None]] = []
    crashed: list[int] = []
    while len(results) < len(models):
        subprocess.run([sys.executable, "-c", ORACLE, str(folder), str(len(results)),
                        ",".join(map(str, crashed))], capture_output=True, timeout=300, cwd=REPO)
        while len(results) < len(models) and (folder / f"{len(results)}.oracle").exists():
            base = folder / str(len(results))
            outputs = base.with_suffix(".outputs.npy")
            which = base.with_suffix(".oracle").read_text()
            if len(results) in crashed:
                which += " (TFLM crashed)"
            results.append((which, np.load(outputs) if outputs.exists() else None))
        if len(results) < len(models) and not (folder / f"{len(results)}.oracle").exists():
            if len(results) in crashed:  # the reference kernels crashed too
                results.append(("crashed", None))
            else:
                crashed.append(len(results))
    return results


@pytest.fixture(scope="module")
def judged(tmp_path_factory) -> dict:
    """Every generated file built and judged; the sound bases and some accepted mutants
    compiled and run, with the oracle's outputs for them."""
    work = tmp_path_factory.mktemp("fuzz")
    verdicts, to_compile = [], []
    mutants: list[str] = []  # the base model of each accepted mutant compiled
    for case in generate(CASES, SEED):
        verdict, detail = judge_build(case, work)
        verdicts.append((case, verdict, detail))
        if verdict != "accepted":
            continue
        sound = case.label.endswith("(sound)")
        # Every sound base, and accepted mutants up to the cap (of distinct bases, unless the
        # cap is larger than their number).
        fresh = case.base not in mutants or MUTANTS_COMPILED > len(BASE_MODELS)
        if sound or (len(mutants) < MUTANTS_COMPILED and fresh):
            if not sound:
                mutants.append(case.base)
            folder = work / f"accepted{len(to_compile)}"
            detail.out_dir.rename(folder)
            to_compile.append((case, detail, folder))
    runs = []
    for index, (case, result, folder) in enumerate(to_compile):
        graph = result.compiled.graph
        inputs = standard_inputs(graph.input.size, seed=index, random_count=2)
        scratch = work / f"run{index}"
        scratch.mkdir()
        runs.append((case, inputs, run_sanitized(folder, "fz", graph.input.size,
                                                 graph.output.size, inputs, scratch,
                                                 optimized=True)))
    oracles = oracle_outputs([(case.data, inputs) for case, inputs, _ in runs], work / "oracle")
    return {"verdicts": verdicts, "runs": runs, "oracles": oracles}


@pytest.mark.slow
def test_every_hostile_file_is_refused_in_one_line_or_built(judged):
    verdicts = judged["verdicts"]
    refused = [v for v in verdicts if v[1] == "refused"]
    accepted = [v for v in verdicts if v[1] == "accepted"]
    # The generator must reach both sides, or it tests nothing.
    assert len(verdicts) >= CASES * 0.9
    assert len(refused) >= len(verdicts) // 3 and len(accepted) >= len(BASE_MODELS), \
        (len(refused), len(accepted))
    # Every sound base model is accepted.
    sound = [v for v in verdicts if v[0].label.endswith("(sound)")]
    assert all(v[1] == "accepted" for v in sound), [(v[0].label, v[2]) for v in sound
                                                    if v[1] != "accepted"]


def test_a_sample_of_refusals_is_one_line_and_exit_1_from_the_command_line(judged, tmp_path):
    refused = [case for case, verdict, _ in judged["verdicts"] if verdict == "refused"]
    for index, case in enumerate(refused[::len(refused) // 3][:3]):
        model = tmp_path / f"refused{index}.tflite"
        model.write_bytes(case.data)
        result = subprocess.run([sys.executable, "-m", "mcugen", "build", "--model", str(model),
                                 "--target", "host", "--out", str(tmp_path / "out")],
                                capture_output=True, text=True, timeout=120, cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        assert result.returncode == 1, (case.label, result.stderr)
        assert result.stderr.startswith("mcugen: error: ") and \
            result.stderr.count("\n") == 1, (case.label, result.stderr)
        assert not (tmp_path / "out").exists()


def test_accepted_files_compile_and_match_the_oracle_under_sanitizers(judged):
    runs, oracles = judged["runs"], judged["oracles"]
    assert len(runs) >= len(BASE_MODELS)  # at least the sound ones of every base
    for (case, inputs, c_outputs), (which, expected) in zip(runs, oracles):
        assert expected is not None, f"{case.label}: mcugen accepted a file no oracle runs " \
                                     f"({which})"
        np.testing.assert_array_equal(c_outputs, expected.reshape(c_outputs.shape),
                                      err_msg=f"{case.label} (oracle: {which})")


# ---------------------------------------------------------------------------------------------
# Byte mutations of a real model.


def structure_positions(data: bytes) -> np.ndarray:
    """Byte positions outside the constant data (weights and biases): changing those tests
    the importer, changing weights only changes the numbers."""
    inside = np.zeros(len(data), dtype=bool)
    model = root_table(data, b"TFL3")
    for buffer in model.tables(4):
        vector = buffer._vector(0, 1)
        if vector is not None:
            first, length = vector
            inside[first:first + length] = True
    return np.flatnonzero(~inside)


@pytest.mark.slow
def test_byte_mutations_of_person_detect_are_refused_in_one_line_or_compile():
    original = PERSON_DETECT.read_bytes()
    positions = structure_positions(original)
    rng = np.random.default_rng(SEED)
    target = load_target("host")
    outcomes = {"refused": 0, "compiled": 0, "imported": 0}
    for index in range(MUTATIONS):
        data = bytearray(original)
        for _ in range(int(rng.integers(1, 4))):
            position = int(_pick(rng, list(positions)) if rng.random() < 0.9
                           else rng.integers(len(data)))
            data[position] = _pick(rng, [0, 0xFF, 0x7F, 0x80, 1, int(rng.integers(256))])
        label = f"mutation {index}"
        try:
            with time_bound(SECONDS_PER_CASE):
                graph = load_tflite(bytes(data), "pd")
                outcomes["imported"] += 1
                if outcomes["compiled"] < 10:  # the rest only imported, to stay fast
                    compile_graph(graph, name="pd", target=target, source=label,
                                  memory_check=False)
                    outcomes["compiled"] += 1
        except McugenError as error:
            assert "\n" not in str(error), f"{label}: {error!r}"
            outcomes["refused"] += 1
        except Hung:
            pytest.fail(f"{label}: took more than {SECONDS_PER_CASE} s")
        except Exception as error:
            raise AssertionError(f"{label}: internal error {type(error).__name__}: "
                                 f"{error}") from error
    assert outcomes["refused"] >= MUTATIONS // 10 and outcomes["imported"] >= 10, outcomes
