"""The ONNX Runtime model handle: ONNX bytes + one InferenceSession per thread count."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort

from ...model import ModelHandle, ThreadedRuntime, WeightStats

LEVELS = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


class OrtModel(ThreadedRuntime, ModelHandle):
    """`payload` (ONNX bytes) run by ONNX Runtime on the CPU. `source` is the handle it was exported from, if
    any (it turns task inputs into arrays and counts FLOPs: ONNX Runtime's kernels are opaque to torch's
    counter); an ONNX model given as such takes the task's arrays as they are, by input position or name."""

    format = "onnx"
    runtime = "onnxruntime"

    def __init__(self, model: bytes, source: ModelHandle | None = None, *, level: str = "all",
                 precision: str = "fp32", notes: tuple[str, ...] = (), fused: bool = True,
                 example_input: Any = None, layer_map: Any = None):
        self.payload, self.source, self.level = model, source, level
        self.precision, self.notes, self.fused = precision, notes, fused
        self.framework = source.framework if source is not None else "onnx"
        self.example_input = source.example_input if source is not None else example_input
        self.engine = f"onnxruntime {ort.__version__} (CPU, graph level {level})"
        self._threads: int | None = None
        self._sessions: dict[int | None, ort.InferenceSession] = {}
        self._layer_map = layer_map

    @property
    def layer_map(self) -> Any:
        """Node and tensor names → the torch modules they came from (see layers.py); taken from the graph before
        quantization, whose nodes carry the exporter's scopes."""
        if self._layer_map is None:
            from .layers import layer_map

            self._layer_map = layer_map(self.payload)
        return self._layer_map

    def layer_trace(self, batch: Any) -> Any:
        from .layers import layer_trace

        return layer_trace(self, batch)

    def layer_times(self, batch: Any, threads: int | None = None, **kwargs: Any) -> Any:
        from .layers import layer_times

        return layer_times(self, batch, threads, **kwargs)

    def __getstate__(self) -> dict:
        """ONNX Runtime sessions do not pickle: a worker makes its own."""
        return {**self.__dict__, "_sessions": {}}

    def _session(self) -> ort.InferenceSession:
        if self._threads not in self._sessions:
            options = ort.SessionOptions()
            options.graph_optimization_level = LEVELS[self.level]
            if self._threads:
                options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            self._sessions[self._threads] = ort.InferenceSession(self.payload, options,
                                                                 providers=["CPUExecutionProvider"])
        return self._sessions[self._threads]

    def prepare(self, batch: Any) -> dict[str, np.ndarray]:
        arrays = (self.source or super()).numpy_inputs(batch)
        names = [i.name for i in self._session().get_inputs()]
        if isinstance(arrays, dict):
            return {k: v for k, v in arrays.items() if k in names}
        arrays = arrays if isinstance(arrays, tuple) else (arrays,)
        return dict(zip(names, arrays))

    def predict(self, batch: Any) -> np.ndarray:
        return np.asarray(self._session().run(None, self.prepare(batch))[0], dtype=np.float32)

    def runner(self, batch: Any) -> Callable[[], object]:
        session, feed = self._session(), self.prepare(batch)
        return lambda: session.run(None, feed)

    def serialize(self) -> bytes:
        return self.payload

    def op_types(self) -> frozenset[str]:
        import onnx

        graph = onnx.load_from_string(self.payload).graph
        return frozenset(node.op_type for node in graph.node)

    def weight_stats(self) -> WeightStats:
        import onnx
        from onnx import numpy_helper

        arrays = (numpy_helper.to_array(init) for init in onnx.load_from_string(self.payload).graph.initializer)
        return WeightStats.from_arrays(  # scales, zero points and shapes left out
            a for a in arrays if a.size > 1 and (np.issubdtype(a.dtype, np.floating) or a.dtype in (np.int8, np.uint8)))
