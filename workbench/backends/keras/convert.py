"""Keras → TFLite (the four converter recipes), XLA, and TF.js export."""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..._native import quiet_native_stderr
from ..._optional import version_of
from ...errors import DataError, UnsupportedError
from ...recipes import ApplyContext, register_handler
from ...recipes.tensorflow import Tfjs, Tflite, TfliteDynamic, TfliteFp16, TfliteInt8, Xla, _Tflite
from . import _tf
from .handle import KerasModel
from .litert import LiteModel


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\s+", " ", str(exc)).strip()
    return text[:300] + ("…" if len(text) > 300 else "")


def representative(spec: str, handle: KerasModel, context: ApplyContext, n: int):
    """The representative dataset for full-integer conversion: `n` samples of the task, one per step, checked
    against the model's input shape first (a wrong shape would otherwise fail deep inside the converter)."""
    if context.task is None:
        raise UnsupportedError(spec, "full-integer conversion needs a representative dataset: run it in a study "
                                     "with a task (its training data, else its inputs, calibrate the ranges)")
    data = np.asarray(context.task.calibration(n), dtype=np.float32)
    expected = handle.input_shape()
    if expected is not None and (data.ndim != len(expected) or any(
            e is not None and e != d for e, d in zip(expected[1:], data.shape[1:]))):
        raise DataError(f"{spec}: the representative dataset has samples of shape {tuple(data.shape[1:])} but the "
                        f"model takes {tuple(expected[1:])}: give the task inputs shaped like the model's input")
    return lambda: ([data[i:i + 1]] for i in range(len(data)))


def _converter(handle: KerasModel) -> Any:
    tf = _tf.tf()
    if handle.flavor == "keras3" and not handle.subclassed:
        return tf.lite.TFLiteConverter.from_keras_model(handle.model)
    # tf_keras models and subclassed models: convert the traced function (what from_keras_model does inside)
    shape = handle.input_shape() or (None,) + tuple(np.asarray(handle.example_input).shape[1:])
    return tf.lite.TFLiteConverter.from_concrete_functions([handle.concrete_function((None,) + tuple(shape[1:]))],
                                                           handle.model)


def convert(recipe: _Tflite, handle: KerasModel, context: ApplyContext) -> LiteModel:
    spec = recipe.to_spec()
    tf = _tf.tf()
    if handle.runtime != "tensorflow":
        raise UnsupportedError(spec, f"it converts a Keras model; this one already runs as {handle.runtime}")
    qat = handle.precision == "int8-simulated"
    if qat and recipe.name in ("tflite-dynamic", "tflite-fp16"):
        raise UnsupportedError(spec, "a QAT model converts to int8 (its fake-quant ranges are learned): use "
                                     "'qat + tflite' or 'qat + tflite-int8'")
    converter = _converter(handle)
    precision = recipe.precision
    if recipe.name != "tflite" or qat:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if recipe.name == "tflite-fp16":
        converter.target_spec.supported_types = [tf.float16]
    if recipe.name == "tflite-int8":
        converter.representative_dataset = representative(spec, handle, context, recipe.calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if recipe.io == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    if qat:
        precision = "int8"
    try:
        with _quiet():
            model = converter.convert()
    except Exception as exc:
        raise UnsupportedError(spec, f"the TFLite converter failed ({type(exc).__name__}: {_first_line(exc)})") from None
    notes = list(handle.notes)
    if qat:
        notes.append(f"{spec}: the QAT model's learned ranges give int8 kernels")
    if recipe.name == "tflite-fp16":
        notes.append(f"{spec}: float16 weights are dequantized to float32 at load on CPUs (GPU delegates run fp16)")
    notes.append(f"{spec}: accuracy and latency measured in the LiteRT interpreter")
    return LiteModel(model, handle, precision=precision, xnnpack=recipe.xnnpack,
                     lineage=handle.lineage + (spec,), notes=tuple(notes))


for _cls in (Tflite, TfliteDynamic, TfliteFp16, TfliteInt8):
    register_handler(_cls, "keras")(convert)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The converter prints its saved-model artifacts on stdout and MLIR statistics on file descriptor 2."""
    with contextlib.redirect_stdout(io.StringIO()), quiet_native_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Statistics for quantized inputs were expected" (QAT models)
        yield


@register_handler(Xla, "keras")
def xla(recipe: Xla, handle: KerasModel, context: ApplyContext) -> KerasModel:
    spec = recipe.to_spec()
    if handle.runtime != "tensorflow":
        raise UnsupportedError(spec, f"it compiles a Keras model; this one already runs as {handle.runtime}")
    new = handle.evolve(runtime="xla", jit_compile=True, lineage=handle.lineage + (spec,),
                        notes=handle.notes + (f"{spec}: first call (XLA compilation) reported as first_call_ms; "
                                              "each new batch shape compiles again",))
    try:
        with quiet_native_stderr():  # TF logs the failing graph's traceback on stderr as well
            new.predict(handle.example_input if handle.example_input is not None else context.task.sample(1))
    except Exception as exc:
        raise UnsupportedError(spec, f"XLA cannot compile this model ({type(exc).__name__}: {_first_line(exc)})") from None
    return new


@register_handler(Tfjs, "keras")
def tfjs(recipe: Tfjs, handle: KerasModel, context: ApplyContext) -> Any:
    """A TF.js model runs in JavaScript, which a Python study cannot time: where the converter works, the
    row says how big the export is; where it does not, why."""
    spec = recipe.to_spec()
    if version_of("tensorflowjs") is None:
        raise UnsupportedError(spec, "the TF.js converter is not installed, and does not install here: beside "
                                     f"TensorFlow {version_of('tensorflow')} pip only resolves tensorflowjs 3.18.0 "
                                     "(2022), which downgrades packaging to 20.9 and fails on import with NumPy 2 "
                                     "(np.object)")
    try:
        import tempfile
        from pathlib import Path

        from tensorflowjs.converters import save_keras_model  # type: ignore[import-not-found]

        with tempfile.TemporaryDirectory() as tmp, _quiet():
            options = {"quantization_dtype_map": {recipe.quantize: "*"}} if recipe.quantize != "none" else {}
            save_keras_model(handle.model, tmp, **options)
            files = list(Path(tmp).iterdir())
            size = sum(f.stat().st_size for f in files)
    except Exception as exc:
        raise UnsupportedError(spec, f"the TF.js converter failed ({type(exc).__name__}: {_first_line(exc)})") from None
    raise UnsupportedError(spec, f"exported {size / 1024:.1f} KB in {len(files)} files (model.json + weight "
                                 "shards); it runs in a JavaScript runtime, which this study cannot time")
