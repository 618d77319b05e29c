"""Keras 3 → tf_keras (Keras 2) bridge: TF-MOT only accepts tf_keras models.

A sequential or functional Keras 3 model is rebuilt layer by layer as tf_keras layers from each layer's
config (initializers dropped: the weights are copied), then its weights are set and the outputs compared.
What cannot be bridged is named: subclassed models (no layer graph), layers tf_keras does not have,
options it does not understand, layers used more than once.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from ...errors import UnsupportedError
from . import _tf
from .handle import KerasModel, clone

#: config keys Keras 3 writes that tf_keras layers do not take, harmless when they hold these values
_DROPPABLE = {"quantization_config": (None,), "lora_rank": (None,), "lora_alpha": (None,), "seed": (None,)}


class BridgeError(Exception):
    """Why a model cannot be rebuilt as tf_keras."""


def to_tf_keras(handle: KerasModel, example: np.ndarray | None = None) -> tuple[Any, str | None]:
    """(a tf_keras copy of the handle's model, a note on the bridge or None). Raises BridgeError."""
    if handle.flavor == "tf_keras":
        copy = clone(handle.payload, "tf_keras")
        if copy is None:
            raise BridgeError("a subclassed tf_keras model cannot be cloned; TF-MOT needs a sequential or "
                              "functional model")
        return copy, None
    if handle.subclassed:
        raise BridgeError(f"{type(handle.payload).__name__} is a subclassed Keras 3 model (its layers are wired in "
                          "Python code, not a layer graph); TF-MOT needs a sequential or functional model: "
                          "rebuild it with keras.Sequential or the functional API")
    tfk = _tf.tf_keras()
    model = handle.payload
    tensors: dict[int, Any] = {}
    inputs = []
    for tensor in model.inputs:
        new = tfk.Input(shape=tuple(tensor.shape[1:]), dtype=str(tensor.dtype), name=_name(tensor))
        tensors[id(tensor)] = new
        inputs.append(new)
    problems = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        nodes = list(layer._inbound_nodes)
        if len(nodes) != 1:
            problems.append(f"{layer.name} ({type(layer).__name__}) is used {len(nodes)} times (shared layer)")
            continue
        try:
            new_layer = _rebuild(layer, tfk)
        except BridgeError as exc:
            problems.append(str(exc))
            continue
        node = nodes[0]
        args = [tensors.get(id(t)) for t in node.input_tensors]
        if any(a is None for a in args):
            problems.append(f"{layer.name}: its inputs could not be traced")
            continue
        out = new_layer(args[0] if len(args) == 1 else args)
        new_layer.set_weights(layer.get_weights())
        outs = node.output_tensors
        for old, produced in zip(outs, out if isinstance(out, (list, tuple)) else [out]):
            tensors[id(old)] = produced
    if problems:
        raise BridgeError("these layers cannot be rebuilt as tf_keras layers: " + "; ".join(problems))
    outputs = [tensors[id(t)] for t in model.outputs]
    bridged = tfk.Model(inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0],
                        name=f"{model.name}_tf_keras")
    if example is not None:
        a = handle.predict(example)
        b = np.asarray(bridged(np.asarray(example, dtype=np.float32), training=False))
        err = float(np.abs(a - b).max())
        if not np.allclose(a, b, atol=1e-4, rtol=1e-3):
            raise BridgeError(f"the tf_keras rebuild computes something else (max abs difference {err:.3g})")
    return bridged, f"Keras 3 model rebuilt as tf_keras for TF-MOT ({len(model.layers)} layers, outputs checked)"


def _name(tensor: Any) -> str | None:
    name = getattr(tensor, "name", None)
    return name.split(":")[0].replace("/", "_") if name else None


def _rebuild(layer: Any, tfk: Any) -> Any:
    cls_name = type(layer).__name__
    target = getattr(tfk.layers, cls_name, None)
    if target is None or not type(layer).__module__.startswith("keras."):
        raise BridgeError(f"{layer.name} ({cls_name}) has no tf_keras counterpart (custom or Keras-3-only layer)")
    config = dict(layer.get_config())
    config.pop("dtype", None)
    accepted = set(inspect.signature(target.__init__).parameters) | {"name", "trainable", "dtype"}
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(target.__init__).parameters.values())
    for key in list(config):
        value = config[key]
        if key.endswith("_initializer"):
            config.pop(key)  # the weights are copied
        elif key not in accepted and key in _DROPPABLE and value in _DROPPABLE[key]:
            config.pop(key)
        elif key not in accepted and not takes_kwargs:
            raise BridgeError(f"{layer.name} ({cls_name}) sets {key}={value!r}, which tf_keras does not have")
        elif isinstance(value, dict) and "class_name" in value:
            config[key] = {"class_name": value["class_name"], "config": value.get("config", {})}
    try:
        return target.from_config(config)
    except Exception as exc:
        why = " ".join(str(exc).split())
        raise BridgeError(f"{layer.name} ({cls_name}): tf_keras rejects its config "
                          f"({why[:200] + '…' if len(why) > 200 else why})") from None


def bridged_or_unsupported(spec: str, handle: KerasModel, example: np.ndarray | None) -> tuple[Any, list[str]]:
    """The tf_keras model TF-MOT works on, and notes; an unbridgeable model is an unsupported trial."""
    try:
        model, note = to_tf_keras(handle, example)
    except BridgeError as exc:
        raise UnsupportedError(spec, f"TF-MOT works on tf_keras models and this one cannot be bridged: {exc}") from None
    return model, [note] if note else []
