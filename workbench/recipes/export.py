"""ONNX export and ONNX Runtime recipes (configs only; handlers live in workbench.backends.onnx)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .base import Recipe, check_choice, check_range, register_recipe

ORT_LEVELS = ("disable", "basic", "extended", "all")


@register_recipe
@dataclass(frozen=True)
class ToOnnx(Recipe):
    """Export a torch model to ONNX (the dynamo exporter, dynamic batch axis) and run it in ONNX Runtime.
    `level` is ORT's graph optimization level — the fusion knob."""

    name = "to-onnx"
    kind = "runtime"
    frameworks = ("torch",)
    summary = "export to ONNX and run in ONNX Runtime (graph optimization level = fusion)"

    level: str = "all"
    opset: int = 20

    def validate(self) -> None:
        check_choice(self.name, "level", self.level, ORT_LEVELS)
        check_range(self.name, "opset", self.opset, 13, 23)


class _AfterOnnx(Recipe):
    def conflicts_with(self, earlier: Sequence[Recipe]) -> str | None:
        if not any(isinstance(r, ToOnnx) for r in earlier):
            return f"{self.to_spec()} quantizes an ONNX model: put to-onnx before it, e.g. 'to-onnx + {self.to_spec()}'"
        if any(r.kind == "precision" for r in earlier):
            return f"{self.to_spec()} takes a float model; the pipeline already sets the precision before it"
        return None


@register_recipe
@dataclass(frozen=True)
class OrtInt8Dynamic(_AfterOnnx):
    """ONNX Runtime dynamic int8 (MatMul/Gemm/Conv weights int8, activations quantized per batch).
    `reduce_range=auto`: 7-bit weights on x86 CPUs without VNNI, where u8s8 products can saturate."""

    name = "ort-int8-dynamic"
    kind = "precision"
    frameworks = ("onnx",)
    summary = "ONNX Runtime dynamic int8 (ISA-aware reduce_range)"

    per_channel: bool = True
    reduce_range: str = "auto"

    def validate(self) -> None:
        check_choice(self.name, "reduce_range", self.reduce_range, ("auto", "true", "false"))


@register_recipe
@dataclass(frozen=True)
class OrtInt8Static(_AfterOnnx):
    """ONNX Runtime static int8 (QDQ), activation ranges calibrated on the task's data (MinMax)."""

    name = "ort-int8-static"
    kind = "precision"
    frameworks = ("onnx",)
    summary = "ONNX Runtime static int8, calibrated on task data (QDQ)"

    calibration: int = 128
    per_channel: bool = True

    def validate(self) -> None:
        check_range(self.name, "calibration", self.calibration, 1, 100_000)
