"""The OpenVINO model handle: an IR (xml + weights) run by the OpenVINO CPU plugin, one compiled model per
thread count."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import openvino as ov

from ...model import ModelHandle, ThreadedRuntime, WeightStats

#: the operations whose runtime precision names what a model computes in
COMPUTE_OPS = ("Convolution", "FullyConnected", "MatMul", "GroupConvolution", "Deconvolution", "ScaledDotProductAttention")
RUNTIME_PRECISION = {"u8": "int8", "i8": "int8", "bf16": "bf16", "f16": "fp16", "f32": "fp32"}


class OpenVinoModel(ThreadedRuntime, ModelHandle):
    """`payload`: (IR xml bytes, IR weights bytes). `inference_precision` is the CPU plugin's hint (f32 unless
    `bf16` asked for bf16). `source` turns task inputs into arrays (and counts FLOPs on the float model)."""

    format = "openvino"
    runtime = "openvino"

    def __init__(self, ir: tuple[bytes, bytes], source: ModelHandle | None, *, precision: str = "fp32",
                 inference_precision: str = "f32", notes: tuple[str, ...] = (), example_input: Any = None):
        self.payload, self.source = ir, source
        self.precision, self.inference_precision, self.notes = precision, inference_precision, notes
        self.framework = source.framework if source is not None else "openvino"
        self.example_input = source.example_input if source is not None else example_input
        self.fused = True
        self._threads: int | None = None
        self._compiled: dict[int | None, Any] = {}
        self.engine = self._describe()

    def __getstate__(self) -> dict:
        """Compiled models do not pickle: a worker compiles its own."""
        return {**self.__dict__, "_compiled": {}}

    def model(self) -> Any:
        """A fresh ov.Model of the IR (NNCF may change the model it is given). Read from files, so the model
        owns its weights (a mapping that outlives the files); a model read from an in-memory tensor would read
        freed memory once that tensor is gone."""
        import os
        import tempfile

        xml, weights = self.payload
        with tempfile.TemporaryDirectory(prefix="wb-ov-") as tmp:
            path = os.path.join(tmp, "model.xml")
            with open(path, "wb") as f:
                f.write(xml)
            with open(os.path.join(tmp, "model.bin"), "wb") as f:
                f.write(weights)
            return ov.Core().read_model(path)

    def compiled(self) -> Any:
        if self._threads not in self._compiled:
            config = {"INFERENCE_PRECISION_HINT": self.inference_precision, "PERFORMANCE_HINT": "LATENCY",
                      "NUM_STREAMS": 1}
            if self._threads:
                config["INFERENCE_NUM_THREADS"] = self._threads
            self._compiled[self._threads] = ov.Core().compile_model(self.model(), "CPU", config)
        return self._compiled[self._threads]

    def runtime_precisions(self) -> Counter:
        """How many compute operations (convolutions, matrix products) the plugin runs in each precision."""
        ops = self.compiled().get_runtime_model().get_ops()
        found = Counter()
        for op in ops:
            info = op.get_rt_info()
            if "layerType" in info and info["layerType"].astype(str) in COMPUTE_OPS:
                found[RUNTIME_PRECISION.get(info["runtimePrecision"].astype(str), info["runtimePrecision"].astype(str))] += 1
        return found

    def _describe(self) -> str:
        ran = self.runtime_precisions()
        ran_text = ", ".join(f"{n} in {p}" for p, n in ran.most_common()) or "no convolution or matrix product"
        hint = "f32 forced" if self.inference_precision == "f32" else f"{self.inference_precision} asked"
        return f"openvino {ov.__version__.split('-')[0]} (CPU plugin, {hint}; compute ops ran: {ran_text})"

    def prepare(self, batch: Any) -> list[np.ndarray]:
        arrays = (self.source or super()).numpy_inputs(batch)
        if isinstance(arrays, dict):
            names = [next(iter(i.get_names()), "") for i in self.compiled().inputs]
            missing = [n for n in names if n not in arrays]
            if missing:
                from ...errors import ModelError

                raise ModelError(f"the OpenVINO model takes inputs {names}; the batch has {sorted(arrays)}")
            return [arrays[n] for n in names]
        return list(arrays) if isinstance(arrays, tuple) else [arrays]

    def predict(self, batch: Any) -> np.ndarray:
        request = self.compiled().create_infer_request()
        return np.asarray(request.infer(self.prepare(batch)).to_tuple()[0], dtype=np.float32)

    def runner(self, batch: Any) -> Callable[[], object]:
        request, feed = self.compiled().create_infer_request(), self.prepare(batch)
        return lambda: request.infer(feed)

    def serialize(self) -> bytes:
        """The IR's two files, xml then weights (what one ships)."""
        return self.payload[0] + self.payload[1]

    def op_types(self) -> frozenset[str]:
        return frozenset(op.get_type_name() for op in self.model().get_ops())

    def weight_stats(self) -> WeightStats:
        arrays = (op.get_data() for op in self.model().get_ops() if op.get_type_name() == "Constant")
        return WeightStats.from_arrays(  # shapes, scales and zero points (one value, or one per channel) left out
            a for a in arrays if a.ndim >= 2 and a.size > 1
            and (np.issubdtype(a.dtype, np.floating) or a.dtype in (np.int8, np.uint8)))


def serialize_ir(model: Any) -> tuple[bytes, bytes]:
    """An ov.Model → (xml, weights) bytes, the weights kept at their own precision."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="wb-ov-") as tmp:
        path = os.path.join(tmp, "model.xml")
        ov.save_model(model, path, compress_to_fp16=False)
        with open(path, "rb") as xml, open(os.path.join(tmp, "model.bin"), "rb") as weights:
            return xml.read(), weights.read()


def from_ov_model(model: Any, source: ModelHandle | None, notes: tuple[str, ...] = (), **kwargs: Any) -> OpenVinoModel:
    return OpenVinoModel(serialize_ir(model), source, notes=notes, **kwargs)
