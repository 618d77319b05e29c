"""Quantization recipes (configs only; framework handlers live in workbench.backends)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ParameterError
from .base import Recipe, check_choice, check_range, register_recipe

TORCH_ENGINES = ("auto", "x86", "fbgemm", "qnnpack", "onednn")


def check_auto_bool(recipe: str, param: str, value: object) -> None:
    if not (isinstance(value, bool) or value == "auto"):
        raise ParameterError(recipe, param, value, "true, false or auto")


@register_recipe
@dataclass(frozen=True)
class Int8Dynamic(Recipe):
    """Weights stored as int8; activations quantized on the fly per batch.

    torch: Linear / LSTM / GRU layers (`engine="auto"` picks the quantized engine for this CPU: x86 on x86-64,
    qnnpack on Arm). After `to-onnx`: ONNX Runtime's dynamic quantization (MatMul / Gemm / Conv weights;
    `reduce_range=auto` uses 7-bit weights on x86 CPUs without VNNI, where u8s8 products can saturate).
    Keras: TFLite's dynamic-range conversion, run in LiteRT. `per_channel` keeps one scale per output
    channel (better fidelity, same size); `auto` is per-tensor on torch and per-channel on ONNX Runtime.
    `exclude` keeps the layers it names in float: globs over layer names (torch module names, which the ONNX
    export keeps), e.g. `int8-dynamic(exclude="encoder.layer.5.*")`; a glob matching nothing is an error.
    """

    name = "int8-dynamic"
    kind = "precision"
    formats = ("torch", "onnx", "keras")
    format_params = {"engine": ("torch",), "per_channel": ("torch", "onnx"), "reduce_range": ("onnx",),
                     "exclude": ("torch", "onnx")}
    summary = "int8 weights, activations quantized at run time (torch; ONNX Runtime after to-onnx; TFLite on Keras)"

    engine: str = "auto"
    per_channel: bool | str = "auto"
    reduce_range: bool | str = "auto"
    exclude: tuple[str, ...] = ()  # layer-name globs kept in float (see recipes/layers.py)

    def validate(self) -> None:
        check_choice(self.name, "engine", self.engine, TORCH_ENGINES)
        check_auto_bool(self.name, "per_channel", self.per_channel)
        check_auto_bool(self.name, "reduce_range", self.reduce_range)


@register_recipe
@dataclass(frozen=True)
class Int8Static(Recipe):
    """Post-training static int8: weights and activations int8, ranges calibrated on `calibration` samples of
    the task's training data (else its inputs).

    torch: FX graph mode, Conv-BN-ReLU fused first. After `to-openvino`: NNCF post-training quantization (its
    transformer model type where the graph has attention). After `to-onnx`: ONNX Runtime's static quantization (QDQ,
    MinMax; `per_channel` weights, per-channel unless false). Keras: the full-integer TFLite conversion (the
    representative dataset), run in LiteRT; `io=int8` also makes the model's input and output int8.
    `exclude` keeps the layers it names (globs) in float, e.g. `int8-static(exclude=[0, 12])`; on Keras through
    TFLite's quantization debugger (selective quantization: the layers' ops denylisted).
    """

    name = "int8-static"
    kind = "precision"
    formats = ("torch", "onnx", "keras", "openvino")
    format_params = {"engine": ("torch",), "per_channel": ("onnx",), "io": ("keras",),
                     "exclude": ("torch", "onnx", "keras")}
    summary = "int8 weights and activations, calibrated on task data (torch FX; ONNX Runtime QDQ; TFLite full integer)"

    engine: str = "auto"
    calibration: int = 256
    per_channel: bool | str = "auto"
    io: str = "float"
    exclude: tuple[str, ...] = ()

    def validate(self) -> None:
        check_choice(self.name, "engine", self.engine, TORCH_ENGINES)
        check_range(self.name, "calibration", self.calibration, 1, 1_000_000)
        check_auto_bool(self.name, "per_channel", self.per_channel)
        check_choice(self.name, "io", self.io, ("float", "int8"))


@register_recipe
@dataclass(frozen=True)
class Int8WeightOnly(Recipe):
    """int8 weights dequantized on the fly (torchao); activations stay float. Helps memory-bound Linear layers.
    After `to-openvino`: NNCF weight compression (int8 asymmetric, per channel)."""

    name = "int8-weight-only"
    kind = "precision"
    formats = ("torch", "openvino")
    summary = "int8 Linear weights, float compute (torchao; NNCF weight compression after to-openvino)"


@register_recipe
@dataclass(frozen=True)
class Int4WeightOnly(Recipe):
    """int4 weights in groups of `group_size` along each row (one scale and zero point per group), torchao's
    CPU int4 kernel (packed weights, bf16 activations): the model runs in bf16. Linear layers whose shape the
    kernel cannot take (in_features not a multiple of the group, out_features not of 16) stay bf16."""

    name = "int4-weight-only"
    kind = "precision"
    formats = ("torch",)
    summary = "int4 Linear weights in groups, bf16 compute (torchao; CPU int4 kernel)"

    group_size: int = 64

    def validate(self) -> None:
        check_choice(self.name, "group_size", self.group_size, (32, 64, 128))


@register_recipe
@dataclass(frozen=True)
class Qat(Recipe):
    """Quantization-aware training: fake-quantize, fine-tune `epochs` on the task's training data, convert to int8.

    Keras models go through TF-MOT (after prune / cluster: the sparsity- and cluster-preserving schemes); the
    result is a float model with fake-quant nodes, which becomes int8 when converted with `tflite`.
    """

    name = "qat"
    kind = "precision"
    formats = ("torch", "keras")
    format_params = {"engine": ("torch",)}
    summary = "quantization-aware fine-tuning, then int8 (needs training data)"

    epochs: int = 3
    lr: float = 1e-4
    engine: str = "auto"

    def validate(self) -> None:
        check_range(self.name, "epochs", self.epochs, 1, 1000)
        check_range(self.name, "lr", self.lr, 0.0, 1.0, lo_open=True)
        check_choice(self.name, "engine", self.engine, TORCH_ENGINES)
