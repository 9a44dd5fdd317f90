"""The oracle every output of mcugen is checked against: TFLM's interpreter (the reference
kernels users trust on a microcontroller) where it can load the model, otherwise TensorFlow
Lite's interpreter with its reference kernels (OpResolverType.BUILTIN_REF: no optimized
kernels, whose rounding may differ). TFLM dropped uint8 kernels, so Google's hosted uint8
MobileNets only run on the second; TensorFlow 2.21's interpreter refuses some old files that
TFLM runs (person_detect.tflite). One module, used by `mcugen run` and by the tests.

Inputs and outputs are [N, size] arrays of the model's own input and output types (int8,
uint8 or float32); each input is reshaped to the model's input shape here.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .errors import McugenError

TFLM = "TFLM"
TFLITE_REFERENCE = "TensorFlow Lite (reference kernels)"
MESSAGE_LIMIT = 160  # characters of an interpreter's complaint quoted in a note


class OracleError(McugenError):
    """The oracle could not run the model; the message says why (not the model's fault when
    the interpreter is missing)."""


@dataclass(frozen=True)
class OracleRun:
    name: str | None  # TFLM, TFLITE_REFERENCE, or None when neither could run the model
    outputs: np.ndarray | None  # [N, output_size], the model's output type
    notes: tuple[str, ...] = ()  # why an interpreter was passed over

    @property
    def description(self) -> str:
        """Which oracle ran, and why the first choice did not, for one line of output."""
        if self.name is None:
            return "no oracle (" + "; ".join(self.notes) + ")"
        return self.name + (f" ({'; '.join(self.notes)})" if self.notes else "")


def _tflm_runtime():
    try:
        from tflite_micro import runtime
    except ImportError as error:
        raise OracleError(f"tflite-micro is not installed ({error}); "
                          f"pip install tflite-micro") from None
    return runtime


def tflm_outputs(model: bytes, inputs: np.ndarray) -> np.ndarray:
    """TFLM's interpreter on every input. Raises OracleError when tflite-micro is not installed
    or when TFLM cannot load or run the model, saying which."""
    runtime = _tflm_runtime()
    with _native_output_kept() as native:
        try:
            interpreter = runtime.Interpreter.from_bytes(model)
            details = interpreter.get_input_details(0)
            outputs = []
            for x in inputs:
                interpreter.set_input(np.asarray(x).reshape(details["shape"])
                                      .astype(details["dtype"]), 0)
                interpreter.invoke()
                outputs.append(interpreter.get_output(0).reshape(-1).copy())
                interpreter.reset()
        except Exception as error:  # TFLM raises RuntimeError and others: the model's limits
            failure = error
        else:
            return np.stack(outputs)
    raise OracleError(f"TFLM cannot run this model: {_first_line(failure, native)}")


def _tensorflow():
    try:
        import tensorflow as tf
    except ImportError as error:
        raise OracleError(f"TensorFlow is not installed ({error}); "
                          f"pip install tensorflow-cpu") from None
    return tf


def _reference_interpreter(tf, model: bytes, **options):
    """TensorFlow Lite's interpreter with its reference kernels (BUILTIN_REF), whose integer
    arithmetic is TFLM's; its optimized kernels may round otherwise."""
    return tf.lite.Interpreter(
        model_content=model, **options,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)


def tflite_reference_outputs(model: bytes, inputs: np.ndarray) -> np.ndarray:
    """TensorFlow Lite's interpreter with its reference kernels (BUILTIN_REF) on every input.
    Raises OracleError when TensorFlow is missing or refuses the model."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # its C++ INFO and WARNING lines
    with _native_output_kept() as native:
        tf = _tensorflow()
        try:
            interpreter = _reference_interpreter(tf, model)
            interpreter.allocate_tensors()
            source = interpreter.get_input_details()[0]
            target = interpreter.get_output_details()[0]
            outputs = []
            for x in inputs:
                interpreter.set_tensor(source["index"], np.asarray(x).reshape(source["shape"])
                                       .astype(source["dtype"]))
                interpreter.invoke()
                outputs.append(interpreter.get_tensor(target["index"]).reshape(-1).copy())
        except Exception as error:  # ValueError and RuntimeError from the interpreter
            failure = error
        else:
            return np.stack(outputs)
    raise OracleError(f"TensorFlow Lite cannot run this model: {_first_line(failure, native)}")


def oracle_outputs(model: bytes, inputs: np.ndarray) -> OracleRun:
    """TFLM where it can load the model, otherwise TensorFlow Lite's reference kernels; says
    which ran and why TFLM did not."""
    notes = []
    for name, interpreter in ((TFLM, tflm_outputs), (TFLITE_REFERENCE, tflite_reference_outputs)):
        try:
            return OracleRun(name, interpreter(model, inputs), tuple(notes))
        except OracleError as error:
            notes.append(str(error))
    return OracleRun(None, None, tuple(notes))


@dataclass(frozen=True)
class OracleTensors:
    """Every tensor the oracle computed, per input: name (mcugen's name for it, from
    frontend.tflite.tensor_names) -> value in the model's own type and shape."""

    name: str | None  # TFLM, TFLITE_REFERENCE, or None when neither could run the model
    tensors: list[dict[str, np.ndarray]] | None
    notes: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        return OracleRun(self.name, None, self.notes).description


def tflm_tensors(model: bytes, inputs: np.ndarray) -> list[dict[str, np.ndarray]]:
    """TFLM's interpreter keeping every tensor (kPreserveAllTensors), on every input."""
    from .frontend.tflite import tensor_names

    names = tensor_names(model)
    runtime = _tflm_runtime()
    with _native_output_kept() as native:
        try:
            interpreter = runtime.Interpreter.from_bytes(
                model, intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
            details = interpreter.get_input_details(0)
            results = []
            for x in inputs:
                interpreter.set_input(np.asarray(x).reshape(details["shape"])
                                      .astype(details["dtype"]), 0)
                interpreter.invoke()
                results.append({name: np.array(interpreter.GetTensor(index, 0)["tensor_data"])
                                for index, name in enumerate(names)})
                interpreter.reset()
        except Exception as error:  # TFLM raises RuntimeError and others: the model's limits
            failure = error
        else:
            return results
    raise OracleError(f"TFLM cannot run this model: {_first_line(failure, native)}")


def tflite_reference_tensors(model: bytes, inputs: np.ndarray) -> list[dict[str, np.ndarray]]:
    """TensorFlow Lite's reference kernels keeping every tensor
    (experimental_preserve_all_tensors), on every input."""
    from .frontend.tflite import tensor_names

    names = tensor_names(model)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _native_output_kept() as native:
        tf = _tensorflow()
        try:
            interpreter = _reference_interpreter(tf, model,
                                                 experimental_preserve_all_tensors=True)
            interpreter.allocate_tensors()
            source = interpreter.get_input_details()[0]
            indices = [d["index"] for d in interpreter.get_tensor_details()
                       if d["index"] < len(names)]
            results = []
            for x in inputs:
                interpreter.set_tensor(source["index"], np.asarray(x).reshape(source["shape"])
                                       .astype(source["dtype"]))
                interpreter.invoke()
                values = {}
                for index in indices:
                    try:
                        values[names[index]] = interpreter.get_tensor(index).copy()
                    except ValueError:  # a tensor without data (an unused one)
                        continue
                results.append(values)
        except Exception as error:  # ValueError and RuntimeError from the interpreter
            failure = error
        else:
            return results
    raise OracleError(f"TensorFlow Lite cannot run this model: {_first_line(failure, native)}")


def oracle_tensors(model: bytes, inputs: np.ndarray) -> OracleTensors:
    """Every tensor, from TFLM where it can load the model, otherwise from TensorFlow Lite's
    reference kernels (as oracle_outputs chooses)."""
    notes = []
    for name, interpreter in ((TFLM, tflm_tensors), (TFLITE_REFERENCE, tflite_reference_tensors)):
        try:
            return OracleTensors(name, interpreter(model, inputs), tuple(notes))
        except OracleError as error:
            notes.append(str(error))
    return OracleTensors(None, None, tuple(notes))


@contextlib.contextmanager
def _native_output_kept() -> Iterator[list[str]]:
    """What the interpreters' C++ code prints on file descriptor 2 (and Python warnings) is
    kept out of mcugen's output; the list receives it, to explain a failure."""
    kept: list[str] = []
    with tempfile.TemporaryFile() as log, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            yield kept
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            kept.append(log.read().decode(errors="replace"))


def _first_line(error: Exception, native: list[str]) -> str:
    """The error's first line, and the interpreter's own first line of complaint if any."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    printed = [line.strip() for line in "".join(native).splitlines() if line.strip()]
    text = f"{text} ({printed[0]})" if printed else text
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT - 3] + "..."
