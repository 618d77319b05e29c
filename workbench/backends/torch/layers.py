"""Per-layer probes for torch models: forward hooks on every named module.

`layer_trace`: each module's output on a batch (the first tensor of what it returns, dequantized).
`layer_times`: each module's exclusive time (its own, less its sub-modules'), timed by hooks around every
module's forward over repeated runs, and the kernel that ran, from one torch.profiler run with a
`record_function` range per module (the op under the range with the most self time).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..._native import quiet_native_stderr
from ...errors import UnsupportedError
from ...layerprobe import LayerTime, LayerTimes, LayerTrace, kernel_precision, rounds
from .handle import TorchModel
from .quantize import PASS_THROUGH

DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}


def _layers(handle: TorchModel) -> list[tuple[str, nn.Module]]:
    if handle.format != "torch" or hasattr(handle.payload, "_orig_mod"):
        raise UnsupportedError("per-layer view", f"{handle.spec} runs as one compiled graph ({handle.runtime}); "
                                                 "view the model before compile / TorchScript / export")
    return [(name, m) for name, m in handle.payload.named_modules() if name and not isinstance(m, PASS_THROUGH)]


def _first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return next((o for o in out if isinstance(o, torch.Tensor)), None)
    if hasattr(out, "values") and callable(out.values):
        return next((o for o in out.values() if isinstance(o, torch.Tensor)), None)
    return None


def _has_weights(module: nn.Module) -> bool:
    if any(p.dim() >= 2 for p in module.parameters(recurse=False)):
        return True
    kind = type(module).__name__
    return "quantized" in type(module).__module__ and ("Conv" in kind or "Linear" in kind or "Embedding" in kind)


@contextlib.contextmanager
def _hooks(layers: list[tuple[str, nn.Module]], pre, post) -> Iterator[None]:
    handles = []
    try:
        for name, module in layers:
            handles.append(module.register_forward_pre_hook(lambda m, i, name=name: pre(name)))
            handles.append(module.register_forward_hook(lambda m, i, o, name=name: post(name, o)))
        yield
    finally:
        for h in handles:
            h.remove()


def layer_trace(handle: TorchModel, batch: Any) -> LayerTrace:
    layers = _layers(handle)
    order: list[str] = []
    outputs: dict = {}

    def post(name: str, out: Any) -> None:
        tensor = _first_tensor(out)
        if tensor is not None and name not in outputs:
            tensor = tensor.dequantize() if tensor.is_quantized else tensor
            if tensor.is_floating_point():
                outputs[name] = tensor.detach().to("cpu", torch.float32).numpy().copy()
                order.append(name)

    x = handle.prepare(batch)
    with _hooks(layers, lambda name: None, post), handle.session(), torch.inference_mode():
        handle._call(x)
    return LayerTrace(order=order, ops={n: type(m).__name__ for n, m in layers}, outputs=outputs,
                      weighted={n for n, m in layers if _has_weights(m)},
                      leaves={n for n, m in layers if not any(True for _ in m.children())})


def layer_times(handle: TorchModel, batch: Any, threads: int | None = None, *, repeats: int = 10,
                min_seconds: float = 0.3) -> LayerTimes:
    layers = _layers(handle)
    own: dict[str, float] = {}
    stack: list[list[float]] = []
    active = [True]

    def pre(name: str) -> None:
        if active[0]:
            stack.append([time.perf_counter(), 0.0])

    def post(name: str, out: Any) -> None:
        if not active[0]:
            return
        handle.synchronize()
        start, children = stack.pop()
        spent = time.perf_counter() - start
        own[name] = own.get(name, 0.0) + spent - children
        if stack:
            stack[-1][1] += spent

    x = handle.prepare(batch)
    runs: list[dict[str, float]] = []
    totals: list[float] = []
    with handle.session(threads), torch.inference_mode(), _hooks(layers, pre, post):
        for _ in range(3):
            handle._call(x)
        for _ in rounds(repeats, min_seconds, 500):
            active[0] = False  # the plain forward, interleaved: what the layers' times add up to
            start = time.perf_counter()
            handle._call(x)
            handle.synchronize()
            totals.append(time.perf_counter() - start)
            active[0] = True
            own.clear()
            handle._call(x)
            runs.append(dict(own))
        kernels = _kernels(handle, x, layers)
    names = list(dict.fromkeys(n for run in runs for n in run))
    fallback = DTYPES.get(handle.input_dtype, "fp32") if handle.input_dtype is not None else "fp32"
    result = []
    for name in names:
        ms = statistics.median(run.get(name, 0.0) for run in runs) * 1000
        kernel = kernels.get(name, "")
        module = dict(layers)[name]
        dtype = next((DTYPES.get(p.dtype) for p in module.parameters(recurse=False) if p.is_floating_point()), None)
        result.append(LayerTime(name, ms, kernel, kernel_precision(kernel, dtype or fallback)))
    return LayerTimes(result, statistics.median(totals) * 1000,
                      "forward hooks around every module (own time, sub-modules subtracted), runs interleaved with plain "
                      "ones; kernels from torch.profiler",
                      len(runs))


def _kernels(handle: TorchModel, x: Any, layers: list[tuple[str, nn.Module]]) -> dict[str, str]:
    """The op with the most self CPU time under each module's record_function range, in one profiled run."""
    from torch.profiler import ProfilerActivity, profile, record_function

    ranges: list[Any] = []

    def pre(name: str) -> None:
        ranges.append(record_function(f"layer::{name}"))
        ranges[-1].__enter__()

    def post(name: str, out: Any) -> None:
        ranges.pop().__exit__(None, None, None)

    with quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof, _hooks(layers, pre, post):
        handle._call(x)
    kernels: dict[str, str] = {}
    for event in prof.events():
        if not event.name.startswith("layer::"):
            continue
        best, best_time, todo = "", -1.0, list(event.cpu_children)
        while todo:
            child = todo.pop()
            if child.name.startswith("layer::"):
                continue
            if child.self_cpu_time_total > best_time:
                best, best_time = child.name, child.self_cpu_time_total
            todo.extend(child.cpu_children)
        kernels.setdefault(event.name[len("layer::"):], best)
    return kernels
