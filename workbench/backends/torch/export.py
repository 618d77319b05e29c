"""torch → ONNX export (the dynamo exporter, or the TorchScript one; dynamic batch axis), run in ONNX Runtime."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings

import torch

from ..._optional import require
from ...errors import UnsupportedError
from ...recipes import ApplyContext, register_handler
from ...recipes.export import ToOnnx, ToOpenVino
from .handle import TorchModel


@register_handler(ToOnnx, "torch")
def to_onnx(recipe: ToOnnx, handle: TorchModel, context: ApplyContext):
    require("onnxruntime", "onnx", "the to-onnx recipe")
    from ..onnx import OrtModel

    spec = recipe.to_spec()
    if handle.runtime != "eager" or handle.device != "cpu":
        raise UnsupportedError(spec, "it exports an eager CPU model")
    if handle.precision in ("bf16", "fp16"):
        raise UnsupportedError(spec, f"ONNX Runtime's CPU execution provider has no {handle.precision} convolutions "
                                     f"or matrix products to run a {handle.precision} graph with: export the fp32 model "
                                     f"({handle.precision} is a torch precision here)")
    example = handle.export_example(context)
    args, kwargs = (example, {}) if not isinstance(example, dict) else ((), example)
    args = args if isinstance(args, tuple) else (args,)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    try:
        exporter_log.setLevel(logging.ERROR)  # it logs every torchvision op it skips
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if recipe.exporter == "torchscript":
                model = _torchscript_export(handle, args, kwargs, recipe.opset)
            else:
                program = torch.onnx.export(handle.payload, args, kwargs=kwargs or None, dynamo=True,
                                            dynamic_shapes=handle.dynamic_shapes(args, kwargs),
                                            opset_version=recipe.opset)
                model = program.model_proto.SerializeToString()
    except Exception as exc:
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines()[0][:300]
        raise UnsupportedError(spec, f"the ONNX export failed ({type(exc).__name__}: {first})") from None
    finally:
        exporter_log.setLevel(level)
    notes = handle.notes
    if recipe.exporter == "torchscript":
        notes += (f"{spec}: torch's TorchScript exporter (deprecated by torch; opset {recipe.opset}), module paths "
                  "from its node names",)
    return OrtModel(model, handle, level=recipe.level, precision=handle.precision, notes=notes)


def _torchscript_export(handle: TorchModel, args: tuple, kwargs: dict, opset: int) -> bytes:
    """torch.onnx.export(dynamo=False): keyword inputs passed by position in the forward's order, every axis the
    dynamo export would make dynamic made dynamic here by name."""
    import inspect

    if kwargs:
        order = [p for p in inspect.signature(handle.payload.forward).parameters if p in kwargs]
        names, inputs = order, tuple(kwargs[n] for n in order)
        shapes = handle.dynamic_shapes((), kwargs)
        axes = {n: {axis: dim.__name__ for axis, dim in shapes[n].items()} for n in names}
    else:
        names, inputs = [f"input_{i}" for i in range(len(args))], args
        axes = {n: {0: "batch"} for n in names}
    buffer = io.BytesIO()
    torch.onnx.export(handle.payload, inputs, buffer, input_names=names, dynamic_axes=axes, opset_version=opset,
                      dynamo=False)
    import onnx

    model = onnx.load_from_string(buffer.getvalue())
    for output in model.graph.output:  # the batch of every output follows the inputs' (ORT warns otherwise)
        dims = output.type.tensor_type.shape.dim
        if len(dims):
            dims[0].dim_param = "batch"
    return model.SerializeToString()


@register_handler(ToOpenVino, "torch")
def to_openvino(recipe: ToOpenVino, handle: TorchModel, context: ApplyContext):
    require("openvino", "openvino", "the to-openvino recipe")
    import openvino as ov

    from ..openvino import from_ov_model

    spec = recipe.to_spec()
    if handle.runtime != "eager" or handle.device != "cpu" or handle.precision != "fp32":
        raise UnsupportedError(spec, "it converts an eager fp32 CPU model (put precision recipes after it: "
                                     "to-openvino + int8-static, + int8-weight-only or + bf16)")
    example = handle.export_example(context)
    example = example if isinstance(example, (dict, tuple)) else (example,)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = ov.convert_model(handle.payload, example_input=example)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise UnsupportedError(spec, f"OpenVINO could not convert the model ({type(exc).__name__}: {first})") from None
    return from_ov_model(model, handle, handle.notes)
