"""The Keras model handle: a Keras 3 (`keras`, what `tf.keras` is in TF 2.16+) or tf_keras (Keras 2) model.

The handle owns a copy (clone + weights) of the model, so recipes never change the caller's. It runs the
model as a `tf.function` graph (`runtime="tensorflow"`), or compiled by XLA (`runtime="xla"`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ...errors import ModelError
from ...model import ModelHandle, WeightStats
from . import _tf

#: variables that are state, not weights (BatchNorm statistics, TF-MOT and fake-quant bookkeeping)
_NOT_WEIGHTS = ("moving_mean", "moving_variance", "mask", "threshold", "pruning_step", "optimizer_step",
                "_min", "_max", "min_var", "max_var", "pulling_indices", "ori_weights")


def flavor_of(model: Any) -> str | None:
    """'keras3' or 'tf_keras' for a model object (judged by its class hierarchy), else None."""
    for cls in type(model).__mro__:
        module = cls.__module__
        if cls.__name__ in ("Model", "Functional", "Sequential"):
            if module.startswith("keras.") or module == "keras":
                return "keras3"
            if module.startswith("tf_keras"):
                return "tf_keras"
    return None


def is_graph_model(model: Any) -> bool:
    """Sequential or functional (a layer graph that can be cloned, bridged and pruned); False for subclasses."""
    names = {c.__name__ for c in type(model).__mro__[:2]}
    return bool(names & {"Sequential", "Functional"}) or bool(getattr(model, "_is_graph_network", False)
                                                               and type(model).__name__ in ("Model", "Functional"))


def clone(model: Any, flavor: str) -> Any:
    """A copy of a functional or sequential model with the same weights (None where it cannot be cloned)."""
    lib = _tf.keras3() if flavor == "keras3" else _tf.tf_keras()
    try:
        copy = lib.models.clone_model(model)
        copy.set_weights(model.get_weights())
    except Exception:
        return None
    return copy


class KerasModel(ModelHandle):
    """A Keras model (Keras 3 or tf_keras). `example_input` is a batch of inputs (channels-last images...)."""

    framework = "keras"
    format = "keras"
    runtime = "tensorflow"
    #: Keras' mixed-precision policy the layers were rebuilt under (`bf16`: mixed_bfloat16), else None
    dtype_policy: str | None = None

    def __init__(self, model: Any, example_input: Any = None, *, copy_model: bool = True):
        self.flavor = flavor_of(model)
        if self.flavor is None:
            raise ModelError(f"KerasModel needs a Keras model (keras.Model or tf_keras.Model), got {type(model).__name__}")
        _tf.tf()
        self.example_input = example_input
        if not model.built and example_input is not None:
            model(np.asarray(example_input), training=False)
        copied = clone(model, self.flavor) if copy_model else None
        self.payload = copied if copied is not None else model
        self.subclassed = not is_graph_model(self.payload)
        self.jit_compile = False
        self._fn: Callable | None = None

    # -- running -------------------------------------------------------------------------------
    @property
    def engine(self) -> str:  # type: ignore[override]
        tf = _tf.tf()
        threads = tf.config.threading.get_intra_op_parallelism_threads() or "all cores"
        lib = "Keras 3" if self.flavor == "keras3" else "tf_keras"
        policy = f", {self.dtype_policy} policy" if self.dtype_policy else ""
        xla = " + XLA" if self.jit_compile else ""
        return f"TensorFlow {tf.__version__} {lib}{xla}{policy} (intra-op threads {threads})"

    def function(self) -> Callable:
        """The model's inference call as a tf.function (XLA-compiled where `jit_compile`), built once."""
        if self._fn is None:
            self._fn = inference_function(self.payload, jit_compile=self.jit_compile)
        return self._fn

    def concrete_function(self, batch_shape: tuple) -> Any:
        """The plain (non-XLA) inference graph for inputs of `batch_shape` (None: any batch size)."""
        tf = _tf.tf()
        return inference_function(self.payload).get_concrete_function(tf.TensorSpec(batch_shape, tf.float32))

    def prepare(self, batch: Any):
        tf = _tf.tf()
        if isinstance(batch, np.ndarray) and batch.dtype == np.float64:
            batch = batch.astype(np.float32)
        return tf.convert_to_tensor(batch)

    def predict(self, batch: Any) -> np.ndarray:
        out = self.function()(self.prepare(batch))
        if isinstance(out, (list, tuple)):
            out = out[0]
        return np.asarray(out, dtype=np.float32)

    def runner(self, batch: Any) -> Callable[[], object]:
        fn, x = self.function(), self.prepare(batch)
        return lambda: fn(x)

    def numpy_inputs(self, batch: Any) -> np.ndarray:
        return np.asarray(batch, dtype=np.float32)

    @contextlib.contextmanager
    def session(self, threads: int | None = None) -> Iterator[None]:
        yield  # TensorFlow's thread pools are per process (see _tf._pin_threads); `engine` records them

    def layer_trace(self, batch: Any) -> Any:
        from .layers import keras_trace

        return keras_trace(self, batch)

    def layer_times(self, batch: Any, threads: int | None = None, **kwargs: Any) -> Any:
        from .layers import keras_times

        return keras_times(self, batch, threads, **kwargs)

    def __getstate__(self) -> dict:
        """The traced tf.function does not pickle: a worker traces its own."""
        return {**self.__dict__, "_fn": None}

    def evolve(self, **changes: Any) -> KerasModel:
        new = super().evolve(**changes)
        new._fn = None  # type: ignore[attr-defined]
        return new  # type: ignore[return-value]

    # -- what it is ----------------------------------------------------------------------------
    def serialize(self) -> bytes:
        """Keras 3: the `.keras` archive; tf_keras: HDF5 without the optimizer (TF-MOT's convention)."""
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "HDF5 is a legacy format": it is TF-MOT's format, on purpose
            name, options = ("model.keras", {}) if self.flavor == "keras3" else ("model.h5", {"include_optimizer": False})
            path = os.path.join(tmp, name)
            try:
                self.payload.save(path, **options)
            except Exception:  # a subclassed model without get_config: its weights are what ships
                path = os.path.join(tmp, "model.weights.h5")
                self.payload.save_weights(path)
            with open(path, "rb") as f:
                return f.read()

    def fingerprint(self) -> str:
        """The architecture (its config, layer names replaced by their position so that Keras's name counters
        do not matter), the code of every class that is not Keras's own (the model's, custom layers'), and
        every variable's values in order — not the `.keras` archive, which embeds the time it was saved."""
        import hashlib
        import json

        from ..._code import code_digest, without_addresses

        layers = self.layers()
        alias = {layer.name: f"layer{i}" for i, layer in enumerate(layers)}
        alias[self.payload.name] = "model"

        def plain(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            if isinstance(value, str):
                return alias.get(value, value)
            return value

        def default(value: Any) -> str:  # callables and objects in a custom config: what they are, not where
            return code_digest(value) if callable(value) else without_addresses(repr(value))

        h = hashlib.sha256(self.flavor.encode())
        try:
            h.update(json.dumps(plain(self.payload.get_config()), sort_keys=True, default=default).encode())
        except Exception as exc:  # a subclassed model without get_config: its code and weights below decide
            h.update(type(exc).__name__.encode())
        for cls in sorted({type(x) for x in [self.payload, *layers]}, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
            own = cls.__module__.startswith(("keras", "tf_keras", "tensorflow"))
            h.update((f"{cls.__module__}.{cls.__qualname__}" if own else code_digest(cls)).encode())
        for i, var in enumerate(self.payload.weights):
            array = np.ascontiguousarray(np.asarray(var))
            h.update(f"{i}{array.dtype}{array.shape}".encode())
            h.update(array.tobytes())
        return h.hexdigest()

    def layers(self) -> list[Any]:
        """Every layer of the model, nested ones too, in a stable order."""
        try:
            return list(self.payload._flatten_layers(include_self=False, recursive=True))
        except (AttributeError, TypeError):
            return list(self.payload.layers)

    def weights(self) -> list[tuple[str, np.ndarray]]:
        """(name, array) of every float weight (BatchNorm statistics and TF-MOT bookkeeping excluded)."""
        out = []
        for var in self.payload.weights:
            name = getattr(var, "path", None) or var.name
            leaf = name.rsplit("/", 1)[-1].split(":")[0]
            array = np.asarray(var)
            if array.ndim == 0 or not np.issubdtype(array.dtype, np.floating):
                continue
            if any(leaf == s or leaf.endswith(s) for s in _NOT_WEIGHTS):
                continue
            out.append((name, array))
        return out

    def weight_stats(self) -> WeightStats:
        return WeightStats.from_arrays(array for _, array in self.weights())

    def op_types(self) -> frozenset[str]:
        layers, seen = list(self.payload.layers), set()
        while layers:  # nested models and wrappers hold layers of their own
            layer = layers.pop()
            seen.add(type(layer).__name__)
            layers += list(getattr(layer, "layers", ()))
        return frozenset(seen)

    def flops(self, batch: Any) -> int | None:
        """Floating-point operations of one forward pass, counted by TensorFlow's profiler on the frozen graph."""
        tf = _tf.tf()
        try:
            from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

            frozen = convert_variables_to_constants_v2(self.concrete_function(np.asarray(batch).shape))
            options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
            options["output"] = "none"
            info = tf.compat.v1.profiler.profile(graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                                 options=options)
            return int(info.total_float_ops) or None
        except Exception:
            return None

    def input_shape(self) -> tuple | None:
        shape = getattr(self.payload, "input_shape", None)
        if isinstance(shape, list):
            return None
        return tuple(shape) if shape is not None else None


def inference_function(model: Any, jit_compile: bool = False) -> Any:
    tf = _tf.tf()
    return tf.function(lambda x: model(x, training=False), jit_compile=jit_compile, reduce_retracing=True)
