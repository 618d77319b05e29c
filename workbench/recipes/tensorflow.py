"""TensorFlow recipes: TFLite conversion (run in the LiteRT interpreter), XLA, and edge-target checks.

Configs only; the handlers live in workbench.backends.keras.

    tflite            float32 flatbuffer
    tflite-dynamic    int8 weights, float activations (dynamic-range quantization)
    tflite-fp16       float16 weights (dequantized to float32 on the CPU)
    tflite-int8       full integer: weights and activations int8, ranges from the task's data
    xla               the Keras model under tf.function(jit_compile=True)
    edgetpu           check: can the EdgeTPU compiler map every op (all int8, supported kinds)?
    tf-micro          check: does the model fit a microcontroller's flash and RAM?
    tfjs              export for TensorFlow.js (needs the tensorflowjs converter)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .base import Recipe, check_choice, check_range, register_recipe

#: precision of the flatbuffer each converter recipe writes
TFLITE_PRECISIONS = {"tflite": "fp32", "tflite-dynamic": "int8-dynamic", "tflite-fp16": "fp16-weights", "tflite-int8": "int8"}


@dataclass(frozen=True)
class _Tflite(Recipe):
    """Base of the converter recipes: `xnnpack` runs the interpreter with (true) or without (false) the
    XNNPACK delegate, so its effect can be measured."""

    kind = "runtime"
    frameworks = ("keras",)

    xnnpack: bool = True

    @property
    def precision(self) -> str:
        return TFLITE_PRECISIONS[self.name]


@register_recipe
@dataclass(frozen=True)
class Tflite(_Tflite):
    name = "tflite"
    summary = "convert to a float32 TFLite flatbuffer, run in the LiteRT interpreter (int8 after qat)"


@register_recipe
@dataclass(frozen=True)
class TfliteDynamic(_Tflite):
    name = "tflite-dynamic"
    summary = "TFLite dynamic-range quantization: int8 weights, float activations"


@register_recipe
@dataclass(frozen=True)
class TfliteFp16(_Tflite):
    name = "tflite-fp16"
    summary = "TFLite float16 weights (half the size; computed in float32 on CPUs)"


@register_recipe
@dataclass(frozen=True)
class TfliteInt8(_Tflite):
    """Full-integer TFLite: ranges from `calibration` samples of the task's training data (else its inputs).
    `io=int8` also makes the model's input and output int8 (what EdgeTPU and microcontrollers want)."""

    name = "tflite-int8"
    summary = "TFLite full integer int8, calibrated on task data (representative dataset)"

    calibration: int = 200
    io: str = "float"

    def validate(self) -> None:
        check_range(self.name, "calibration", self.calibration, 1, 100_000)
        check_choice(self.name, "io", self.io, ("float", "int8"))


@register_recipe
@dataclass(frozen=True)
class Xla(Recipe):
    """The Keras model compiled by XLA (`tf.function(jit_compile=True)`); the first call (compilation) is
    reported apart as first_call_ms."""

    name = "xla"
    kind = "runtime"
    frameworks = ("keras",)
    summary = "XLA compilation of the Keras model (jit_compile=True)"


class _Target(Recipe):
    kind = "target"
    frameworks = ("tflite",)

    def conflicts_with(self, earlier: Sequence[Recipe]) -> str | None:
        if not any(isinstance(r, _Tflite) for r in earlier):
            return f"{self.to_spec()} checks a TFLite model: put a converter before it, e.g. 'tflite-int8 + {self.to_spec()}'"
        if any(r.kind == "target" for r in earlier):
            return "a pipeline checks one target; run one pipeline per target"
        return super().conflicts_with(earlier)


@register_recipe
@dataclass(frozen=True)
class EdgeTpu(_Target):
    """EdgeTPU compatibility of a full-int8 TFLite model: every op int8 (uint8) and of a kind the EdgeTPU
    compiler maps; the offenders are listed. A check (the row is timed on this CPU), not an EdgeTPU run."""

    name = "edgetpu"
    summary = "check: all ops int8 and EdgeTPU-supported (lists the offenders)"


@register_recipe
@dataclass(frozen=True)
class TfMicro(_Target):
    """TensorFlow Lite for Microcontrollers fit: flatbuffer bytes against `flash_kb` and an arena estimate
    (the largest set of activation tensors alive at once, plus per-tensor overhead) against `ram_kb`."""

    name = "tf-micro"
    summary = "check: flatbuffer and tensor arena against a flash / RAM budget"

    flash_kb: int = 1024
    ram_kb: int = 256

    def validate(self) -> None:
        check_range(self.name, "flash_kb", self.flash_kb, 1, 1_000_000)
        check_range(self.name, "ram_kb", self.ram_kb, 1, 1_000_000)


@register_recipe
@dataclass(frozen=True)
class Tfjs(Recipe):
    """Export to TensorFlow.js (graph model) and report its size; `quantize` = none | uint8 | float16."""

    name = "tfjs"
    kind = "runtime"
    frameworks = ("keras",)
    summary = "export for TensorFlow.js (size; needs the tensorflowjs converter)"

    quantize: str = "none"

    def validate(self) -> None:
        check_choice(self.name, "quantize", self.quantize, ("none", "uint8", "float16"))
