"""Keras → TFLite (tflite, and int8-dynamic / int8-static / fp16 on Keras models), XLA, and TF.js export."""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..._native import quiet_native_stderr
from ...errors import DataError, UnsupportedError
from ...recipes import ApplyContext, register_handler
from ...recipes.export import ToOpenVino
from ...recipes.layers import excluded_layers
from ...recipes.precision import Fp16
from ...recipes.quantization import Int8Dynamic, Int8Static
from ...recipes.tensorflow import Tfjs, Tflite, Xla
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


def _converter(handle: KerasModel) -> tuple[Any, str | None]:
    """The TFLite converter for a Keras model, and a note when the model was changed to convert."""
    tf = _tf.tf()
    model, note = _unrolled(handle.payload, handle.flavor)
    if handle.flavor == "keras3":
        return tf.lite.TFLiteConverter.from_keras_model(model), note
    # tf_keras models: convert the traced function (what from_keras_model does inside)
    if model is not handle.payload:
        handle = handle.evolve(payload=model)
    shape = handle.input_shape() or (None,) + tuple(np.asarray(handle.example_input).shape[1:])
    return tf.lite.TFLiteConverter.from_concrete_functions([handle.concrete_function((None,) + tuple(shape[1:]))],
                                                           handle.payload), note


#: the longest sequence a recurrent layer is unrolled over for TFLite (longer ones convert as loops, or say why not)
MAX_UNROLL = 128


def _unrolled(model: Any, flavor: str) -> tuple[Any, str | None]:
    """A functional or sequential Keras 3 model whose recurrent layers (LSTM, GRU, SimpleRNN) run a loop is cloned
    with `unroll=True` (the same weights and outputs): TFLite's converter cannot lower the loop's TensorList ops
    with a dynamic batch (it needs the Flex delegate, which LiteRT does not ship), and lowers the unrolled steps
    to builtin ops. Subclassed models and sequences of unknown length or longer than MAX_UNROLL are returned
    as they are."""
    if flavor == "keras3":
        import keras
    else:
        import tf_keras as keras

    from .handle import is_graph_model

    loops = [layer for layer in getattr(model, "layers", ()) if isinstance(layer, keras.layers.RNN)
             and not layer.unroll]
    if not loops or not is_graph_model(model):
        return model, None
    try:
        steps = [layer.input.shape[1] for layer in loops]
    except Exception:  # a layer called on several inputs (initial_state) or shared: no one sequence length
        return model, None
    if any(n is None or n > MAX_UNROLL for n in steps):
        return model, None

    def clone(layer: Any) -> Any:
        if isinstance(layer, keras.layers.RNN) and not layer.unroll:
            return layer.__class__.from_config({**layer.get_config(), "unroll": True})
        return layer.__class__.from_config(layer.get_config())

    try:
        with _custom_objects(flavor):
            unrolled = keras.models.clone_model(model, clone_function=clone)
        unrolled.set_weights(model.get_weights())
    except Exception:  # a layer that cannot be rebuilt from its config: convert as it is (the converter says why)
        return model, None
    names = ", ".join(f"{type(layer).__name__} '{layer.name}'" for layer in loops)
    return unrolled, f"{names} unrolled over {max(steps)} steps for TFLite (unroll=True, same weights)"


def _custom_objects(flavor: str) -> Any:
    """Where TF-MOT's wrappers (QAT, pruning, clustering) can be rebuilt from their configs."""
    if flavor == "keras3":
        return contextlib.nullcontext()
    import tensorflow_model_optimization as tfmot

    return tfmot.quantization.keras.quantize_scope()


#: what each converting recipe makes of a Keras model: the flatbuffer's precision
CONVERTERS = {"tflite": "fp32", "int8-dynamic": "int8-dynamic", "fp16": "fp16-weights", "int8-static": "int8"}


@register_handler(Tflite, "keras")
@register_handler(Int8Dynamic, "keras")
@register_handler(Int8Static, "keras")
@register_handler(Fp16, "keras")
def convert(recipe: Tflite | Int8Dynamic | Int8Static | Fp16, handle: KerasModel, context: ApplyContext) -> LiteModel:
    """Keras → TFLite: tflite (float32; int8 after qat), int8-dynamic (dynamic range), fp16 (float16 weights),
    int8-static (full integer from a representative dataset), run in the LiteRT interpreter."""
    spec = recipe.to_spec()
    tf = _tf.tf()
    if handle.runtime != "tensorflow":
        raise UnsupportedError(spec, f"it converts a Keras model; this one already runs as {handle.runtime}")
    if handle.dtype_policy:
        raise UnsupportedError(spec, f"TFLite has no {handle.precision} kernels (its converter cannot translate a "
                                     f"{handle.dtype_policy} model): convert the fp32 model, e.g. 'tflite' or 'fp16'")
    qat = handle.precision == "int8-simulated"
    if qat and recipe.name in ("int8-dynamic", "fp16"):
        raise UnsupportedError(spec, "a QAT model converts to int8 (its fake-quant ranges are learned): use "
                                     "'qat + tflite' or 'qat + int8-static'")
    converter, converted_note = _converter(handle)
    precision = CONVERTERS[recipe.name]
    if recipe.name != "tflite" or qat:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if recipe.name == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    sparse = isinstance(recipe, Tflite) and recipe.sparse
    if sparse:  # weights at least 30% zero are stored sparse, each behind a DENSIFY op
        converter.optimizations = [*converter.optimizations, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if isinstance(recipe, Int8Static):
        converter.representative_dataset = representative(spec, handle, context, recipe.calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if recipe.io == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    if qat:
        precision = "int8"
    denied: list[str] = []
    kept: list[str] = []
    if isinstance(recipe, Int8Static) and recipe.exclude:
        denied, kept = _denylist(recipe, handle, spec)
    try:
        with _quiet():
            if denied:  # selective quantization: TFLite's quantization debugger leaves the denylisted ops float
                options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=denied,
                                                                        fully_quantize=recipe.io == "int8")
                debugger = tf.lite.experimental.QuantizationDebugger(
                    converter=converter, debug_dataset=converter.representative_dataset, debug_options=options)
                model = debugger.get_nondebug_quantized_model()
            else:
                model = converter.convert()
    except Exception as exc:
        raise UnsupportedError(spec, f"the TFLite converter failed ({type(exc).__name__}: {_first_line(exc)})") from None
    notes = list(handle.notes)
    if converted_note:
        notes.append(f"{spec}: {converted_note}")
    if denied:
        notes.append(f"{spec}: kept in float by exclude=: {', '.join(kept)} ({len(denied)} TFLite op(s) denylisted)")
    if qat:
        notes.append(f"{spec}: the QAT model's learned ranges give int8 kernels")
    if recipe.name == "fp16":
        notes.append(f"{spec}: float16 weights are dequantized to float32 at load on CPUs (GPU delegates run fp16)")
    if recipe.name != "tflite":
        notes.append(f"{spec}: on a Keras model this is TFLite's converter")
    notes.append(f"{spec}: accuracy and latency measured in the LiteRT interpreter")
    xnnpack = recipe.xnnpack if isinstance(recipe, Tflite) else True
    lite = LiteModel(model, handle, precision=precision, xnnpack=xnnpack, sparse=sparse, notes=tuple(notes))
    if sparse:
        lite = lite.evolve(notes=lite.notes + _sparse_notes(spec, lite))
    if recipe.name in ("int8-static", "int8-dynamic") and not handle.subclassed:  # subclassed: no layer graph
        names = _op_names(lite)
        skipped = set(kept) if denied else set()
        lite = lite.evolve(changed_layers=tuple(dict.fromkeys(n for n in names.values() if n not in skipped)))
    return lite


def _op_names(lite: LiteModel) -> dict[str, str]:
    """Output tensor name of every op → the weight layer a user names it by (the Conv2D of a fused
    Conv-BN-ReLU; the layer itself where there is no weight layer before it)."""
    from .layers import QDQ, WEIGHTED, _keras_layers, op_layers
    from .litert import parse

    layers = _keras_layers(lite.source)
    order = [layer.name for layer in layers]
    weighted = [layer.name for layer in layers if any(w in type(layer).__name__ for w in WEIGHTED)]
    tensors = parse(lite.payload).subgraphs[0].tensors
    names = {}
    for _, _, layer, tensor in op_layers(lite):
        if not layer or layer == QDQ:
            continue
        before = [w for w in weighted if order.index(w) <= order.index(layer)]
        names[(tensors[tensor].name or b"").decode(errors="replace")] = before[-1] if before else layer
    return names


def _denylist(recipe: Int8Static, handle: KerasModel, spec: str) -> tuple[list[str], list[str]]:
    """The TFLite node names (op output tensors) of the layers `exclude=` names, and those layers."""
    if handle.subclassed:
        raise UnsupportedError(spec, "exclude= names layers of a functional or Sequential Keras model; this one is "
                                     "subclassed (no layer graph to match the converter's ops to)")
    with _quiet():
        float_model = _converter(handle)[0].convert()
    names = _op_names(LiteModel(float_model, handle, precision="fp32"))
    skip = excluded_layers(spec, recipe.exclude, list(dict.fromkeys(names.values())))
    return [node for node, layer in names.items() if layer in skip], [n for n in dict.fromkeys(names.values()) if n in skip]


def _sparse_notes(spec: str, lite: LiteModel) -> tuple[str, ...]:
    checked = lite.sparse_check
    if not checked.sparse_weights:
        return (f"{spec}: {checked.summary()}",)
    return (f"{spec}: {checked.sparse_weights} weight tensor(s) stored sparse ({len(lite.payload) / 1024:.0f} KB file)",
            f"{spec}: {checked.summary()}" + ("" if lite.xnnpack else
                                               "; with XNNPACK off the builtin kernels densify them at load"))


@register_handler(Tflite, "tflite")
def interpreter_options(recipe: Tflite, handle: LiteModel, context: ApplyContext) -> LiteModel:
    """`tflite` on a model that is already a flatbuffer: only how the interpreter runs it (XNNPACK on or off)."""
    if recipe.sparse and not handle.sparse:
        raise UnsupportedError(recipe.to_spec(), "weights are stored sparse when a Keras model is converted; this "
                                                 "model is already a flatbuffer with dense weights: put sparse=true "
                                                 "on the conversion, e.g. 'prune(0.8) + tflite(sparse=true)'")
    return handle.evolve(xnnpack=recipe.xnnpack, _interpreters={})


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
    new = handle.evolve(runtime="xla", jit_compile=True,
                        notes=handle.notes + (f"{spec}: first call (XLA compilation) reported as first_call_ms; "
                                              "each new batch shape compiles again",))
    try:
        with quiet_native_stderr():  # TF logs the failing graph's traceback on stderr as well
            new.predict(context.sample_input(handle))
    except Exception as exc:
        raise UnsupportedError(spec, f"XLA cannot compile this model ({type(exc).__name__}: {_first_line(exc)})") from None
    return new


def _saved_model(handle: KerasModel, path: str) -> None:
    """The model as a SavedModel with a serving signature (what OpenVINO's and TF.js's converters read)."""
    with _quiet():
        if hasattr(handle.payload, "export"):  # Keras 3
            handle.payload.export(path)
        else:
            _tf.tf().saved_model.save(handle.payload, path)


@register_handler(Tfjs, "keras")
def tfjs(recipe: Tfjs, handle: KerasModel, context: ApplyContext) -> Any:
    """SavedModel → TF.js graph model in the isolated converter environment, loaded by TF.js in Node.js (a
    model TF.js cannot load, such as one with an op it lacks, is an unsupported row naming it)."""
    import os
    import tempfile

    from ...errors import ModelError
    from ..tfjs import TfjsModel, tools

    spec = recipe.to_spec()
    if handle.runtime != "tensorflow" or handle.precision != "fp32":
        raise UnsupportedError(spec, "it converts a float Keras model run by TensorFlow (put tfjs(quantize=...) "
                                     "on the conversion for smaller weights)")
    reason = tools.missing()
    if reason:
        raise UnsupportedError(spec, reason)
    with tempfile.TemporaryDirectory(prefix="wb-tfjs-") as tmp:
        path = os.path.join(tmp, "saved_model")
        try:
            _saved_model(handle, path)
        except Exception as exc:
            raise UnsupportedError(spec, f"the model could not be saved as a SavedModel ({type(exc).__name__}: "
                                         f"{_first_line(exc)})") from None
        files = tools.convert(path, spec, recipe.quantize)
    stored = {"none": "float32", "uint8": "uint8 (affine, per tensor)", "float16": "float16"}[recipe.quantize]
    notes = handle.notes + (f"{spec}: weights stored {stored}" + ("" if recipe.quantize == "none" else
                                                                  ", dequantized to float32 when TF.js loads them"),)
    model = TfjsModel(files, handle, backend=recipe.backend, quantize=recipe.quantize, notes=notes)
    sample = context.sample_input(handle)
    try:
        model.node()
        if sample is not None:  # a kernel TF.js lacks shows only when the graph runs
            model.predict(sample)
    except ModelError as exc:
        model.stop()
        raise UnsupportedError(spec, f"TF.js could not run the converted model ({exc})") from None
    return model.evolve(notes=model.notes + (model.timing_note(),))


@register_handler(ToOpenVino, "keras")
def keras_to_openvino(recipe: ToOpenVino, handle: KerasModel, context: ApplyContext) -> Any:
    """A Keras model exported as a SavedModel (OpenVINO's TensorFlow front end cannot trace a Keras 3 object
    directly), then converted."""
    import os
    import tempfile

    from ..._optional import require

    require("openvino", "openvino", "the to-openvino recipe")
    import openvino as ov

    from ..openvino import from_ov_model

    spec = recipe.to_spec()
    if handle.runtime != "tensorflow" or handle.precision != "fp32":
        raise UnsupportedError(spec, "it converts a float Keras model run by TensorFlow")
    with tempfile.TemporaryDirectory(prefix="wb-ov-") as tmp:
        path = os.path.join(tmp, "saved_model")
        try:
            _saved_model(handle, path)
            with _quiet():
                model = ov.convert_model(path)
        except Exception as exc:
            raise UnsupportedError(spec, f"OpenVINO could not convert the model ({type(exc).__name__}: "
                                         f"{_first_line(exc)})") from None
    return from_ov_model(model, handle, handle.notes)
