"""The TFLite model handle: flatbuffer bytes run by the LiteRT interpreter (`ai_edge_litert`).

One interpreter per (threads, input shape): the batch is set with resize_tensor_input before tensors are
allocated, so the XNNPACK delegate (on unless `xnnpack=False`) plans for that shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any

import numpy as np

from ..._native import quiet_native_stderr
from ..._optional import version_of
from ...errors import DataError
from ...model import ModelHandle, ThreadedRuntime, WeightStats
from ...profiling.device import available_cores
from . import _tf


def parse(model: bytes) -> Any:
    """The flatbuffer as LiteRT's schema objects (ModelT)."""
    from ai_edge_litert import schema_py_generated as schema

    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))


_NUMPY = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT8": np.int8, "UINT8": np.uint8, "INT32": np.int32,
          "INT64": np.int64, "INT16": np.int16}


def type_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


def op_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def builtin_code(tree: Any, op: Any) -> int:
    """An operator's builtin code: the larger of `builtinCode` and the int8 `deprecatedBuiltinCode`, which files
    written before the schema widened the field fill alone (key of `op_names()`)."""
    code = tree.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def ints(values: Any) -> list[int]:
    """A schema field of indices or dimensions (a NumPy array, or None where the file leaves it out) as ints."""
    return [] if values is None else [int(v) for v in values]


def constant_tensors(tree: Any) -> Iterator[tuple[Any, np.ndarray]]:
    """(tensor, values) of every tensor that holds data in the file (weights, biases, scales, shapes)."""
    names = type_names()
    for subgraph in tree.subgraphs or []:
        for tensor in subgraph.tensors or []:
            buffer = tree.buffers[tensor.buffer] if tensor.buffer < len(tree.buffers) else None
            data = getattr(buffer, "data", None)
            if data is None or len(data) == 0:
                continue
            dtype = _NUMPY.get(names.get(tensor.type, ""))
            if dtype is None:
                continue
            values = np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=dtype)
            shape = ints(tensor.shape)
            if int(np.prod(shape)) == values.size:
                values = values.reshape(shape)
            yield tensor, values


class LiteModel(ThreadedRuntime, ModelHandle):
    """A TFLite flatbuffer run by the LiteRT interpreter on the CPU; `source` is the Keras handle it was
    converted from (FLOPs are counted there: the interpreter's kernels are opaque), None for a .tflite file."""

    format = "tflite"
    runtime = "litert"

    def __init__(self, model: bytes, source: ModelHandle | None, *, precision: str, xnnpack: bool = True,
                 sparse: bool = False, notes: tuple[str, ...] = (), example_input: Any = None):
        self.payload, self.source, self.precision, self.xnnpack = model, source, precision, xnnpack
        self.sparse = sparse  # weights stored sparse (DENSIFY ops): see sparse_check
        self.notes = notes
        self.framework = source.framework if source is not None else "tflite"
        self.example_input = source.example_input if source is not None else example_input
        self.fused = True  # the converter folds BatchNorm and fuses activations
        self._threads: int | None = None
        self._interpreters: dict[tuple, Any] = {}

    @classmethod
    def from_file(cls, model: bytes, example_input: Any = None) -> LiteModel:
        """A .tflite file as given: its precision read from its tensors (int8 if any constant is int8, fp16 if
        weights are float16), no Keras source (no FLOP count, no per-layer names)."""
        try:
            constants = list(constant_tensors(parse(model)))
        except Exception as exc:
            raise DataError(f"not a readable TFLite flatbuffer ({type(exc).__name__}: {exc})") from None
        dtypes = {values.dtype for _, values in constants if values.size > 1}
        precision = "int8" if dtypes & {np.dtype(np.int8), np.dtype(np.uint8)} else \
            "fp16" if np.dtype(np.float16) in dtypes else "fp32"
        lite = cls(model, None, precision=precision, example_input=example_input,
                   sparse=any(tensor.sparsity is not None for tensor, _ in constants),
                   notes=("a .tflite file as given: FLOPs are not counted (no source graph)",))
        if lite.sparse_check is not None:
            lite.notes += (lite.sparse_check.summary(),)
        return lite

    def __getstate__(self) -> dict:
        """Interpreters do not pickle: a worker makes its own (the flatbuffer is what travels)."""
        state = {**self.__dict__, "_interpreters": {}}
        state.pop("io", None)  # the cached_property's interpreter details
        return state

    @property
    def engine(self) -> str:  # type: ignore[override]
        # the thread count is the row's `threads`: each interpreter is made inside session(threads)
        engine = f"LiteRT {version_of('ai-edge-litert')} interpreter, XNNPACK {'on' if self.xnnpack else 'off'}"
        if self.sparse_check is None:
            return engine
        if not self.sparse_check.sparse_weights:
            return engine + ", no weight stored sparse"
        if not self.xnnpack:
            return engine + ", sparse weights densified at load"
        return engine + f", sparse weights (XNNPACK sparse path {self.sparse_check.verdict})"

    @cached_property
    def sparse_check(self) -> Any:
        """What the file and this CPU say about XNNPACK's sparse path (a `sparse.SparseCheck`); None for a
        flatbuffer with no sparse weights."""
        if not self.sparse:
            return None
        from ...profiling.device import device
        from .sparse import check

        return check(self.payload, device(measure=False))

    @cached_property
    def io(self) -> tuple[dict, dict]:
        interpreter = self._new_interpreter()
        return interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def _new_interpreter(self, shape: tuple | None = None) -> Any:
        lite = _tf.litert()
        resolver = (lite.OpResolverType.AUTO if self.xnnpack
                    else lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        with quiet_native_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            interpreter = lite.Interpreter(model_content=self.payload, num_threads=self._threads or available_cores(),
                                           experimental_op_resolver_type=resolver)
        if shape is not None:
            index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(index, list(shape), strict=False)
        with quiet_native_stderr():
            interpreter.allocate_tensors()
        return interpreter

    def _interpreter(self, shape: tuple) -> Any:
        key = (self._threads, shape)
        if key not in self._interpreters:
            self._interpreters[key] = self._new_interpreter(shape)
        return self._interpreters[key]

    def prepare(self, batch: Any) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float32)
        detail = self.io[0]
        if np.dtype(detail["dtype"]) in (np.int8, np.uint8):  # int8 input: quantize with the model's own scale
            scale, zero = detail["quantization"]
            info = np.iinfo(detail["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])
        return np.ascontiguousarray(x)

    def _loaded(self, batch: Any) -> Any:
        """The interpreter for this batch's shape, with the batch set as its input."""
        x = self.prepare(batch)
        interpreter = self._interpreter(x.shape)
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        return interpreter

    def predict(self, batch: Any) -> np.ndarray:
        interpreter = self._loaded(batch)
        interpreter.invoke()
        detail = interpreter.get_output_details()[0]
        out = interpreter.get_tensor(detail["index"])
        if np.dtype(detail["dtype"]) in (np.int8, np.uint8):
            scale, zero = detail["quantization"]
            return ((out.astype(np.float32) - zero) * scale).astype(np.float32)
        return np.asarray(out, dtype=np.float32)

    def runner(self, batch: Any) -> Callable[[], object]:
        return self._loaded(batch).invoke

    def serialize(self) -> bytes:
        return self.payload

    def layer_trace(self, batch: Any) -> Any:
        from .layers import lite_trace

        return lite_trace(self, batch)

    def layer_times(self, batch: Any, threads: int | None = None, **kwargs: Any) -> Any:
        from .layers import lite_times

        return lite_times(self, batch, threads, **kwargs)

    def weight_stats(self) -> WeightStats:
        """Float and int8 constant tensors of more than one value (int32 biases and shapes left out); a weight
        stored sparse counts as its dense shape, the values it leaves out as zeros."""
        def dense(tensor: Any, values: np.ndarray) -> np.ndarray:
            shape = ints(tensor.shape)
            missing = int(np.prod(shape)) - values.size if tensor.sparsity is not None else 0
            if missing <= 0:
                return values
            return np.concatenate([values.ravel(), np.zeros(missing, values.dtype)]).reshape(shape)

        return WeightStats.from_arrays(
            dense(tensor, values) for tensor, values in constant_tensors(parse(self.payload))
            if values.size > 1 and values.dtype in (np.float32, np.float16, np.int8, np.uint8))
