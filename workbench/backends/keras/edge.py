"""Edge-target checks on a TFLite flatbuffer: EdgeTPU compatibility and TF Micro fit.

These read the model (ops, tensor types, shapes, sizes); they do not run on the target. A model that
fails a check becomes an `unsupported` row that names the offenders; one that passes is timed as usual
(on this CPU's interpreter) with the check's findings in its notes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ...errors import UnsupportedError
from ...recipes import ApplyContext, register_handler
from ...recipes.tensorflow import EdgeTpu, TfMicro
from .litert import LiteModel, builtin_code, constant_tensors, ints, op_names, parse, type_names

#: ops the EdgeTPU compiler maps (coral.ai/docs/edgetpu/models-intro, "Supported operations")
EDGETPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS", "FULLY_CONNECTED",
    "L2_NORMALIZATION", "LOGISTIC", "LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD",
    "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE", "STRIDED_SLICE",
    "SUB", "SUM", "SQUARED_DIFFERENCE", "TANH", "TRANSPOSE", "TRANSPOSE_CONV", "HARD_SWISH",
})
_INT8 = ("INT8", "UINT8", "INT32")  # int32: biases and shape operands of int8 ops


@dataclasses.dataclass(frozen=True)
class EdgeTpuReport:
    ops: int
    offenders: tuple[str, ...]
    on_cpu: tuple[str, ...]  # float boundary ops (quantize in / dequantize out) the compiler leaves on the CPU

    @property
    def compatible(self) -> bool:
        return not self.offenders


def edgetpu_report(model: bytes) -> EdgeTpuReport:
    """Which ops of a TFLite model keep it off the EdgeTPU: float ops, unsupported kinds, dynamic shapes,
    tensors with more than 3 non-unit inner dimensions."""
    tree, names, types = parse(model), op_names(), type_names()
    offenders, on_cpu, count = [], [], 0
    constant = {id(t) for t, _ in constant_tensors(tree)}
    for subgraph in tree.subgraphs or []:
        tensors = subgraph.tensors or []
        inputs, outputs = set(ints(subgraph.inputs)), set(ints(subgraph.outputs))
        for i, op in enumerate(subgraph.operators or []):
            count += 1
            name = names.get(builtin_code(tree, op), f"CUSTOM({tree.operatorCodes[op.opcodeIndex].customCode!r})")
            where = f"op {i} {name}"
            op_inputs = [t for t in ints(op.inputs) if t >= 0]  # -1: an optional input left out
            op_outputs = ints(op.outputs)
            if (name == "QUANTIZE" and set(op_inputs) & inputs) or (name == "DEQUANTIZE" and set(op_outputs) & outputs):
                on_cpu.append(where)
                continue
            if name not in EDGETPU_OPS:
                offenders.append(f"{where}: not an EdgeTPU op")
                continue
            float_tensors = [tensors[t].name.decode() if isinstance(tensors[t].name, bytes) else str(tensors[t].name)
                             for t in op_inputs + op_outputs if types.get(tensors[t].type) not in _INT8]
            if float_tensors:
                offenders.append(f"{where}: float tensor(s) {', '.join(float_tensors[:2])} (not int8)")
                continue
            for t in op_inputs + op_outputs:
                if id(tensors[t]) in constant:
                    continue  # weights may be 4-D (OHWI filters); the rules are about activations
                signature = tensors[t].shapeSignature
                if signature is not None and any(int(s) < 0 for s in list(signature)[1:]):
                    offenders.append(f"{where}: dynamic tensor size (EdgeTPU needs static shapes)")
                    break
                shape = ints(tensors[t].shape)
                if len([s for s in shape[:-3] if s > 1]) > 0:
                    offenders.append(f"{where}: a tensor of shape {shape} (only the 3 innermost dimensions may exceed 1)")
                    break
    return EdgeTpuReport(count, tuple(offenders), tuple(on_cpu))


@dataclasses.dataclass(frozen=True)
class MicroFit:
    flash_bytes: int        # the flatbuffer (weights + graph); the TFLM runtime's own code comes on top
    arena_bytes: int        # activation tensors alive at once (batch 1) + per-tensor bookkeeping
    flash_budget: int
    ram_budget: int

    @property
    def fits(self) -> bool:
        return self.flash_bytes <= self.flash_budget and self.arena_bytes <= self.ram_budget


#: TFLM keeps a TfLiteEvalTensor (and, while planning, a TfLiteTensor) per tensor: about this many bytes each
_TENSOR_OVERHEAD = 64


def micro_fit(model: bytes, flash_bytes: int, ram_bytes: int) -> MicroFit:
    """Flatbuffer size against `flash_bytes`; an arena estimate (the largest sum of activation tensors alive at
    any op, batch 1, as TFLM's greedy planner packs them, plus bookkeeping) against `ram_bytes`."""
    tree, types = parse(model), type_names()
    itemsize = {"FLOAT32": 4, "FLOAT16": 2, "INT8": 1, "UINT8": 1, "INT32": 4, "INT64": 8, "INT16": 2, "BOOL": 1}
    constant = {id(t) for t, _ in constant_tensors(tree)}
    peak, count = 0, 0
    for subgraph in tree.subgraphs or []:
        tensors = subgraph.tensors or []
        ops = subgraph.operators or []
        count += len(tensors)
        first: dict[int, int] = dict.fromkeys(ints(subgraph.inputs), 0)
        last: dict[int, int] = dict.fromkeys(ints(subgraph.outputs), len(ops))
        for i, op in enumerate(ops):
            for t in ints(op.outputs):
                first.setdefault(t, i)
            for t in ints(op.inputs):
                if t >= 0:
                    last[t] = max(last.get(t, i), i)
        sizes = {}
        for t in first:
            tensor = tensors[t]
            if id(tensor) in constant:
                continue
            shape = ints(tensor.shape)
            if shape:
                shape[0] = 1
            sizes[t] = int(np.prod(shape or [1])) * itemsize.get(types.get(tensor.type, ""), 4)
        for i in range(len(ops) + 1):
            live = sum(size for t, size in sizes.items() if first[t] <= i <= last.get(t, first[t]))
            peak = max(peak, live)
    return MicroFit(len(model), peak + _TENSOR_OVERHEAD * count, flash_bytes, ram_bytes)


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB"


@register_handler(EdgeTpu, "tflite")
def edgetpu(recipe: EdgeTpu, handle: LiteModel, context: ApplyContext) -> LiteModel:
    spec = recipe.to_spec()
    report = edgetpu_report(handle.payload)
    if not report.compatible:
        shown = "; ".join(report.offenders[:6]) + (f"; … {len(report.offenders) - 6} more" if len(report.offenders) > 6 else "")
        hint = " (convert with int8-static for int8 ops)" if handle.precision != "int8" else ""
        raise UnsupportedError(spec, f"{len(report.offenders)} of {report.ops} ops cannot run on the EdgeTPU{hint}: {shown}")
    note = f"{spec}: all {report.ops - len(report.on_cpu)} ops int8 and EdgeTPU-supported (compile with edgetpu_compiler)"
    if report.on_cpu:
        note += f"; float input/output conversion stays on the CPU ({', '.join(report.on_cpu)}; int8-static(io=int8) removes it)"
    return _checked(handle, spec, note)


@register_handler(TfMicro, "tflite")
def tf_micro(recipe: TfMicro, handle: LiteModel, context: ApplyContext) -> LiteModel:
    spec = recipe.to_spec()
    fit = micro_fit(handle.payload, recipe.flash_kb * 1024, recipe.ram_kb * 1024)
    summary = (f"flatbuffer {_kb(fit.flash_bytes)} of {recipe.flash_kb} KB flash, arena ≈ {_kb(fit.arena_bytes)} "
               f"of {recipe.ram_kb} KB RAM")
    if not fit.fits:
        raise UnsupportedError(spec, f"does not fit: {summary}")
    return _checked(handle, spec, f"{spec}: fits ({summary}; batch 1; the TFLM runtime's code comes on top)")


def _checked(handle: LiteModel, spec: str, note: str) -> Any:
    """The same flatbuffer (and interpreters), with the check in its notes."""
    return handle.evolve(notes=handle.notes + (note,))
