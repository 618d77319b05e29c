"""The torch model handle: an nn.Module (eager, FX graph or TorchScript) plus an example input."""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ..._native import quiet_native_stderr
from ...errors import ModelError
from ...model import ModelHandle, WeightStats

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_NOT_WEIGHTS = ("running_mean", "running_var", "num_batches_tracked", "scale", "zero_point")


class TorchModel(ModelHandle):
    """A torch model: `payload` is an nn.Module (eager, FX graph, compiled) or a TorchScript module (format
    torchscript). The handle owns a copy of the module, so the caller's model is never changed."""

    framework = "torch"
    format = "torch"

    def __init__(self, module: nn.Module, example_input: Any = None, *, copy_module: bool = True):
        if not isinstance(module, nn.Module):
            raise ModelError(f"TorchModel needs a torch.nn.Module, got {type(module).__name__}")
        self.payload = (copy.deepcopy(module) if copy_module else module).eval()
        if isinstance(self.payload, torch.jit.ScriptModule):  # code, not an eager module: its own handlers
            self.format, self.runtime = "torchscript", "torchscript"
        self.example_input = example_input
        self.input_dtype: torch.dtype | None = None   # cast floating inputs to this (fp16/bf16 models)
        self.autocast_dtype: torch.dtype | None = None  # run forward under torch.autocast (mixed precision)
        self.channels_last = False                      # feed 4-D inputs in NHWC memory format
        self.tf32 = False                               # allow TF32 tensor-core math (CUDA)
        self.cudnn_benchmark = False                    # let cuDNN autotune convolution algorithms (CUDA)
        self.artifact: bytes | None = None              # the file to ship, where `module` cannot be saved as is
        self.stats_module: nn.Module | None = None      # where weights are counted and saved from, where `module`
                                                        # hides them (frozen TorchScript, sparse-kernel tensors)
        self.flops_module: nn.Module | None = None      # the float graph FLOPs are counted on (int8 kernels are opaque)
        self.device = "cpu"
        self.source = None

    # -- running -------------------------------------------------------------------------------
    def prepare(self, batch: Any) -> Any:
        """NumPy arrays / tensors (or tuples and dicts of them) → tensors on the model's device and dtype."""
        if isinstance(batch, dict):
            return {k: self.prepare(v) for k, v in batch.items()}
        if isinstance(batch, (tuple, list)):
            return tuple(self.prepare(v) for v in batch)
        if isinstance(batch, np.ndarray):
            array = batch.astype(np.float32) if batch.dtype == np.float64 else batch
            tensor = torch.from_numpy(np.ascontiguousarray(array))
        elif isinstance(batch, torch.Tensor):
            tensor = batch
        else:
            raise ModelError(f"cannot feed a {type(batch).__name__} to a torch model: pass a NumPy array or a tensor")
        if self.input_dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(self.input_dtype)
        tensor = tensor.to(self.device)
        if self.channels_last and tensor.dim() == 4:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def _call(self, x: Any) -> Any:
        with (torch.autocast(self.device.split(":")[0], dtype=self.autocast_dtype) if self.autocast_dtype
              else contextlib.nullcontext()):
            if isinstance(x, dict):
                return self.payload(**x)
            if isinstance(x, tuple):
                return self.payload(*x)
            return self.payload(x)

    @property
    def eager_module(self) -> nn.Module:
        """The module before torch.compile wrapped it (what FLOP counting and state dicts see)."""
        return getattr(self.payload, "_orig_mod", self.payload)

    def export_example(self, context: Any = None) -> Any:
        """Inputs to trace an export with: a few samples, so that the batch axis stays dynamic."""
        task = getattr(context, "task", None)
        batch = task.sample(4) if task is not None else np.concatenate([np.asarray(self.example_input)] * 4)
        return self.prepare(batch)

    def dynamic_shapes(self, args: tuple, kwargs: dict) -> Any:
        """torch.export dynamic axes: the batch (axis 0) of every input."""
        batch = torch.export.Dim("batch", min=1, max=65536)
        if kwargs:
            return {k: {0: batch} for k in kwargs}
        return tuple({0: batch} for _ in args)

    def to_device(self, device: str) -> TorchModel:
        """A copy of this model on `device` ("cpu", "cuda", "cuda:1")."""
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"cannot move the model to {device}: CUDA is not available on this machine")
        return self.evolve(payload=copy.deepcopy(self.payload).to(device), device=device)

    def predict(self, batch: Any) -> np.ndarray:
        x = self.prepare(batch)
        with self.session(), torch.inference_mode():
            out = self._call(x)
        return to_numpy(out)

    def runner(self, batch: Any) -> Callable[[], object]:
        x = self.prepare(batch)
        module_call = self._call

        def run() -> object:
            with torch.inference_mode():
                return module_call(x)

        return run

    @contextlib.contextmanager
    def session(self, threads: int | None = None) -> Iterator[None]:
        previous_threads = torch.get_num_threads()
        previous_engine = torch.backends.quantized.engine
        previous_tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        previous_benchmark = torch.backends.cudnn.benchmark
        try:
            torch.backends.cudnn.benchmark = self.cudnn_benchmark
            if threads:
                torch.set_num_threads(threads)
            if self.engine and self.engine != previous_engine:
                torch.backends.quantized.engine = self.engine
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.tf32
            yield
        finally:
            torch.backends.cudnn.benchmark = previous_benchmark
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous_tf32
            torch.set_num_threads(previous_threads)
            if torch.backends.quantized.engine != previous_engine:
                torch.backends.quantized.engine = previous_engine

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def layer_trace(self, batch: Any) -> Any:
        from .layers import layer_trace

        return layer_trace(self, batch)

    def layer_times(self, batch: Any, threads: int | None = None, **kwargs: Any) -> Any:
        from .layers import layer_times

        return layer_times(self, batch, threads, **kwargs)

    # -- describing ------------------------------------------------------------------------------
    def serialize(self) -> bytes:
        if self.artifact is not None:
            return self.artifact
        buffer = io.BytesIO()
        if isinstance(self.payload, torch.jit.ScriptModule):
            torch.jit.save(self.payload, buffer)
        else:
            torch.save((self.stats_module or self.eager_module).state_dict(), buffer)
        return buffer.getvalue()

    def op_types(self) -> frozenset[str]:
        return frozenset(type(m).__name__ for m in (self.stats_module or self.eager_module).modules())

    def weight_stats(self) -> WeightStats:
        params = nonzero = prunable = prunable_nonzero = 0
        for name, value in _weight_tensors((self.stats_module or self.eager_module).state_dict()):
            n, nz = value.numel(), int(torch.count_nonzero(_stored(value)))
            params, nonzero = params + n, nonzero + nz
            if name.endswith("weight") and value.dim() >= 2:
                prunable, prunable_nonzero = prunable + n, prunable_nonzero + nz
        return WeightStats(params, nonzero, prunable, prunable_nonzero)

    def flops(self, batch: Any) -> int | None:
        from torch.utils.flop_counter import FlopCounterMode

        # the float graph takes the float inputs (a bf16 int4 model's inputs are cast for its own kernels)
        x = (self.evolve(input_dtype=None) if self.flops_module is not None else self).prepare(batch)
        module = self.flops_module or self.stats_module or self.eager_module
        try:
            with self.session(), torch.inference_mode(), FlopCounterMode(display=False) as counter:
                module(*x) if isinstance(x, tuple) else module(**x) if isinstance(x, dict) else module(x)
        except Exception:  # some runtimes (TorchScript, quantized kernels) are opaque to the counter
            return None
        total = int(counter.get_total_flops())
        return total or None

    def peak_memory(self, batch: Any) -> int | None:
        """Peak of live CPU allocations during one forward pass, from torch.profiler's memory events."""
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            self.predict(batch)
            return int(torch.cuda.max_memory_allocated() - base)
        x = self.prepare(batch)

        def forward() -> None:
            with torch.inference_mode():
                self._call(x)

        with self.session():
            return profiled_peak_bytes(forward)

    def fingerprint(self) -> str:
        """The weights (state dict) and the code: the source of every module class and the module tree."""
        return module_fingerprint(self.stats_module or self.eager_module, self.serialize())

    def evolve(self, **changes: Any) -> TorchModel:
        return super().evolve(**changes)  # type: ignore[return-value]


def module_fingerprint(module: nn.Module, weights: bytes) -> str:
    """sha256 over the weights' bytes, the module tree (repr, addresses left out), each module's plain
    settings (attributes such as `normalize=True` that are neither weights nor submodules) and each module
    class's code (its source, or its bytecode for classes defined in a notebook)."""
    import hashlib

    from ..._code import code_digest, without_addresses

    h = hashlib.sha256(weights)
    h.update(without_addresses(repr(module)).encode())
    for name, sub in module.named_modules():
        settings = {k: v for k, v in vars(sub).items() if not k.startswith("_") and k != "training"
                    and isinstance(v, (bool, int, float, str, type(None), tuple))}
        h.update(without_addresses(repr((name, sorted(settings.items())))).encode())
    for cls in sorted({type(m) for m in module.modules()}, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        h.update(code_digest(cls).encode())
    if isinstance(module, torch.fx.GraphModule):
        h.update(module.code.encode())
    return h.hexdigest()


def profiled_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak of live CPU allocations while `fn` runs, from torch.profiler's memory events (in time order)."""
    from torch.profiler import ProfilerActivity, profile

    with quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return int(peak)


def to_numpy(out: Any) -> np.ndarray:
    """A forward's output → float32 NumPy (the first tensor of a tuple; `logits` of a dict-like output)."""
    tensor = output_tensor(out)
    if tensor.is_quantized:
        tensor = tensor.dequantize()
    return tensor.detach().to("cpu", torch.float32).numpy()


def output_tensor(out: Any) -> torch.Tensor:
    """The tensor a forward's output stands for: itself, the first item of a tuple, `logits` of a dict-like
    output (what is scored, and what fine-tuning takes the loss of)."""
    if isinstance(out, torch.Tensor):
        tensor = out
    elif isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        tensor = out[0]
    elif hasattr(out, "get") and isinstance(out.get("logits"), torch.Tensor):
        tensor = out["logits"]
    else:
        raise ModelError(
            f"the model's forward returned {type(out).__name__}; the workbench compares tensors: "
            "make forward return a tensor (or a tuple whose first item is the output)"
        )
    return tensor


def _stored(value: torch.Tensor) -> torch.Tensor:
    """The values as stored: the integers of a quantized tensor (torch or torchao), else the tensor itself."""
    if value.is_quantized:
        return value.int_repr()
    qdata = getattr(value, "qdata", None)  # torchao's Int8Tensor and friends
    return qdata if isinstance(qdata, torch.Tensor) else value


def _weight_tensors(state: dict) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every weight/bias in a state dict, packed quantized weights unpacked."""
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            if name.rsplit(".", 1)[-1] in _NOT_WEIGHTS or not (value.is_floating_point() or value.is_quantized):
                continue
            yield name, value
        elif isinstance(value, (tuple, list)):  # e.g. quantized Linear's _packed_params: (weight, bias)
            tensors = [v for v in value if isinstance(v, torch.Tensor)]
            for i, t in enumerate(tensors):
                yield (f"{name}.weight" if i == 0 and t.dim() >= 2 else f"{name}.{i}"), t
