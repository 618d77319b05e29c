"""ONNX export, run in ONNX Runtime (config only; the handler lives in workbench.backends.torch.export).

ONNX Runtime's quantization is `int8-dynamic` / `int8-static` after `to-onnx` (handlers in workbench.backends.onnx)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Recipe, check_choice, check_range, register_recipe

ORT_LEVELS = ("disable", "basic", "extended", "all")
EXPORTERS = ("dynamo", "torchscript")


@register_recipe
@dataclass(frozen=True)
class ToOnnx(Recipe):
    """Export a torch model to ONNX (dynamic batch axis, and sequence axis for text) and run it in ONNX Runtime.
    `level` is ORT's graph optimization level — the fusion knob. `exporter`: torch's dynamo exporter (its
    default, the per-layer view's module scopes) or its TorchScript one (`torchscript`: deprecated by torch, but
    its transformer graphs run faster in ONNX Runtime today; module paths are read from its node names). On a
    model that is ONNX already (a .onnx file) it only sets the level."""

    name = "to-onnx"
    kind = "runtime"
    formats = ("torch", "onnx")
    produces = "onnx"  # int8-dynamic / int8-static after it are ONNX Runtime's own quantization
    summary = "export to ONNX and run in ONNX Runtime (graph optimization level = fusion)"

    level: str = "all"
    opset: int = 20
    exporter: str = "dynamo"
    format_params = {"exporter": ("torch",)}

    def validate(self) -> None:
        check_choice(self.name, "level", self.level, ORT_LEVELS)
        check_range(self.name, "opset", self.opset, 13, 23)
        check_choice(self.name, "exporter", self.exporter, EXPORTERS)


@register_recipe
@dataclass(frozen=True)
class ToOpenVino(Recipe):
    """Convert a torch, ONNX or Keras model with `openvino.convert_model` and run it in OpenVINO's CPU plugin with
    the study's thread count. The plugin runs bf16 by default on CPUs with avx512_bf16 or AMX: this runtime forces
    f32 (the row's engine says so); `bf16` after it asks for bf16. `int8-static` after it is NNCF post-training
    quantization, `int8-weight-only` NNCF weight compression."""

    name = "to-openvino"
    kind = "runtime"
    formats = ("torch", "onnx", "keras")
    produces = "openvino"
    summary = "convert to OpenVINO IR and run in its CPU plugin (f32; bf16 / NNCF int8 after it)"
