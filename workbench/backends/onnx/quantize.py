"""ONNX Runtime recipes on ONNX models: int8-dynamic and int8-static (its quantization tools, with ISA-aware
defaults), and to-onnx(level=) on a model that is ONNX already (the graph optimization level)."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from ...errors import UnsupportedError
from ...recipes import ApplyContext, register_handler
from ...recipes.export import ToOnnx, ToOpenVino
from ...recipes.layers import excluded_layers
from ...recipes.quantization import Int8Dynamic, Int8Static
from .handle import OrtModel
from .layers import nodes_in


def source_names(layers: list[str], source: object) -> dict[str, str]:
    """ONNX layer → the name a user knows it by: the torch exporter puts a Conv that BatchNorm was folded into
    in the BatchNorm's scope, so such a layer is named after the weight layer before it in the torch model."""
    modules = dict(source.payload.named_modules()) if hasattr(getattr(source, "payload", None), "named_modules") else {}
    order = list(modules)

    def weighted(name: str) -> bool:
        return any(p.dim() >= 2 for p in modules[name].parameters(recurse=False))

    names = {}
    for layer in layers:
        module = modules.get(layer)
        if module is not None and type(module).__name__.startswith("BatchNorm") and not any(True for _ in module.children()):
            before = [n for n in order[:order.index(layer)] if n and weighted(n)]
            names[layer] = before[-1] if before else layer
        else:
            names[layer] = layer
    return names


def _exclusion(recipe: Int8Dynamic | Int8Static, handle: OrtModel) -> tuple[list[str], tuple[str, ...], tuple[str, ...]]:
    """(nodes_to_exclude, the layers quantized, a note) for the recipe's exclude= globs over layer names. Dynamic
    quantization changes only ops with a weight (MatMul of two activations stays float)."""
    mapping = handle.layer_map
    dynamic = isinstance(recipe, Int8Dynamic)
    known = source_names([layer for layer in mapping.order if layer in mapping.quantizable
                          and (not dynamic or layer in mapping.weighted)], handle.source)
    candidates = list(dict.fromkeys(known.values()))
    if not recipe.exclude:
        return [], tuple(candidates), ()
    skip = excluded_layers(recipe.to_spec(), recipe.exclude, candidates)
    nodes = nodes_in({layer for layer, name in known.items() if name in skip}, mapping)
    kept = tuple(name for name in candidates if name not in skip)
    return nodes, kept, (f"{recipe.to_spec()}: kept in fp32 by exclude=: {', '.join(c for c in candidates if c in skip)}",)


def _quantized(handle: OrtModel, run, spec: str, notes: tuple[str, ...], changed: tuple[str, ...] = ()) -> OrtModel:
    with tempfile.TemporaryDirectory(prefix="wb-ort-") as tmp:
        src, dst = os.path.join(tmp, "in.onnx"), os.path.join(tmp, "out.onnx")
        Path(src).write_bytes(handle.payload)
        logging.disable(logging.WARNING)  # the quantizer logs advice to the root logger
        try:
            run(src, dst)
        except Exception as exc:
            raise UnsupportedError(spec, f"ONNX Runtime could not quantize this graph ({type(exc).__name__}: "
                                         f"{str(exc).splitlines()[0][:200]})") from None
        finally:
            logging.disable(logging.NOTSET)
        model = Path(dst).read_bytes()
    new = OrtModel(model, handle.source, level=handle.level, precision="int8" if changed else handle.precision,
                   notes=handle.notes + notes, layer_map=handle.layer_map)
    return new.evolve(changed_layers=changed)


@register_handler(Int8Dynamic, "onnx")
def ort_int8_dynamic(recipe: Int8Dynamic, handle: OrtModel, context: ApplyContext) -> OrtModel:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ...profiling.device import device

    spec = recipe.to_spec()
    profile = context.device or device(measure=False)
    reduce_range = profile.int8_reduce_range if recipe.reduce_range == "auto" else recipe.reduce_range
    why = ("7-bit weights (reduce_range): this x86 CPU has no VNNI, where u8s8 products can saturate"
           if reduce_range else "8-bit weights (u8s8; VNNI present)" if profile.has_vnni else "8-bit weights (u8s8)")
    per_channel = recipe.per_channel is not False  # auto: per channel (per tensor loses much more fidelity)
    excluded, changed, note = _exclusion(recipe, handle)

    def run(src: str, dst: str) -> None:
        quantize_dynamic(src, dst, per_channel=per_channel, reduce_range=reduce_range,
                         weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})

    return _quantized(handle, run, spec, (f"{spec}: ONNX Runtime dynamic int8, {why}, "
                                          f"per-{'channel' if per_channel else 'tensor'}",) + note, changed)


@register_handler(Int8Static, "onnx")
def ort_int8_static(recipe: Int8Static, handle: OrtModel, context: ApplyContext) -> OrtModel:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from ...profiling.device import device

    spec = recipe.to_spec()
    if context.task is None:
        raise UnsupportedError(spec, "it calibrates on data: run it in a Study, whose task supplies the samples")
    samples = context.task.calibration(recipe.calibration)
    feeds = [handle.prepare(samples[i:i + 16]) for i in range(0, len(samples), 16)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    profile = context.device or device(measure=False)
    excluded, changed, note = _exclusion(recipe, handle)
    if recipe.exclude and not changed:  # every layer kept: nothing in between is quantized either
        excluded = [node for node in handle.layer_map.scopes]

    def run(src: str, dst: str) -> None:
        quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=recipe.per_channel is not False,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                        reduce_range=profile.int8_reduce_range, calibrate_method=CalibrationMethod.MinMax)

    return _quantized(handle, run, spec, (f"{spec}: ONNX Runtime static int8, QDQ, MinMax over {len(samples)} sample(s) of "
                                          f"{context.task.calibration_source}, "
                                          f"{'7-bit weights (no VNNI)' if profile.int8_reduce_range else '8-bit'}",) + note,
                      changed)




@register_handler(ToOnnx, "onnx")
def graph_level(recipe: ToOnnx, handle: OrtModel, context: ApplyContext) -> OrtModel:
    """A model that is ONNX already: `to-onnx(level=...)` sets ONNX Runtime's graph optimization level."""
    import onnx

    opset = next((o.version for o in onnx.load_from_string(handle.payload).opset_import if o.domain in ("", "ai.onnx")),
                 None)
    notes = (*handle.notes, f"already ONNX (opset {opset}, kept as given): graph optimization level {recipe.level}")
    return OrtModel(handle.payload, handle.source, level=recipe.level, precision=handle.precision, notes=notes,
                    fused=recipe.level != "disable", example_input=handle.example_input)


@register_handler(ToOpenVino, "onnx")
def onnx_to_openvino(recipe: ToOpenVino, handle: OrtModel, context: ApplyContext):
    """An ONNX model (a file, or a torch model after to-onnx) read by OpenVINO's ONNX front end."""
    from ..._optional import require

    require("openvino", "openvino", "the to-openvino recipe")
    import openvino as ov

    from ..openvino import from_ov_model

    spec = recipe.to_spec()
    if handle.precision != "fp32":
        raise UnsupportedError(spec, "it converts an fp32 ONNX model (quantize after it: to-openvino + int8-static)")
    with tempfile.TemporaryDirectory(prefix="wb-ov-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        Path(path).write_bytes(handle.payload)
        try:
            model = ov.convert_model(path)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise UnsupportedError(spec, f"OpenVINO could not read the ONNX graph ({type(exc).__name__}: {first})") from None
    return from_ov_model(model, handle.source or handle, handle.notes)
