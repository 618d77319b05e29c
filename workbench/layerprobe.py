"""What a backend reports about a model's layers, for the per-layer view (`workbench/layers.py`).

Each handle format that supports the view implements `layer_trace(batch)` (every layer's output on `batch`) and
`layer_times(batch, repeats)` (each layer's time and the kernel that ran) in its backend; this module holds the
framework-free shapes they return.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import numpy as np

#: pseudo-layers time is attributed to when no layer of the model owns it
QDQ = "(quantize/dequantize)"
OUTSIDE = "(outside layers)"


@dataclasses.dataclass
class LayerTrace:
    """A model's layers on one batch, in the order they finished: name → op type, output (float32)."""

    order: list[str]
    ops: dict[str, str]
    outputs: dict[str, np.ndarray]
    weighted: set[str] = dataclasses.field(default_factory=set)  # layers with a weight matrix or kernel
    leaves: set[str] = dataclasses.field(default_factory=set)    # layers with no sub-layers


@dataclasses.dataclass(frozen=True)
class LayerTime:
    """One layer's share of a forward pass: median milliseconds over the repeats, the kernel that took most of
    it, and the precision it ran in (int8 when that kernel is an integer one)."""

    layer: str
    ms: float
    kernel: str = ""
    precision: str = ""


@dataclasses.dataclass(frozen=True)
class LayerTimes:
    layers: list[LayerTime]
    total_ms: float       # the median plain (uninstrumented) forward, timed interleaved with the instrumented runs
    method: str           # how the times were taken, for the reader
    repeats: int


def rounds(repeats: int, min_seconds: float, cap: int) -> Iterator[int]:
    """Round numbers until at least `repeats` rounds have run and `min_seconds` have passed (`cap` rounds at most)."""
    began, n = time.perf_counter(), 0
    while n < repeats or (time.perf_counter() - began < min_seconds and n < cap):
        yield n
        n += 1


INT8_KERNEL_MARKS = ("integer", "qlinear", "quantized", "qgemm", "dynamicquantize", "int8", "qint8")


def kernel_precision(kernel: str, fallback: str = "fp32") -> str:
    """int8 for integer kernels (ConvInteger, QLinearConv, quantized::linear_dynamic, ...), else `fallback`."""
    low = kernel.lower()
    return "int8" if any(mark in low for mark in INT8_KERNEL_MARKS) else fallback
