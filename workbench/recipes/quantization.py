"""Quantization recipes (configs only; framework handlers live in workbench.backends)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Recipe, check_choice, check_range, register_recipe

TORCH_ENGINES = ("auto", "x86", "fbgemm", "qnnpack", "onednn")


@register_recipe
@dataclass(frozen=True)
class Int8Dynamic(Recipe):
    """Weights stored as int8; activations quantized on the fly per batch (Linear / LSTM / GRU layers).

    `engine="auto"` picks the quantized engine for this CPU (x86 on x86-64, qnnpack on Arm);
    `per_channel=True` keeps one scale per output channel (better fidelity, same size).
    """

    name = "int8-dynamic"
    kind = "precision"
    frameworks = ("torch",)
    summary = "int8 weights, activations quantized at run time (Linear/LSTM/GRU)"

    engine: str = "auto"
    per_channel: bool = False

    def validate(self) -> None:
        check_choice(self.name, "engine", self.engine, TORCH_ENGINES)


@register_recipe
@dataclass(frozen=True)
class Int8Static(Recipe):
    """Post-training static int8 (FX graph mode): weights and activations int8, ranges calibrated on
    `calibration` samples of the task's training data. Conv-BN-ReLU are fused first.
    """

    name = "int8-static"
    kind = "precision"
    frameworks = ("torch",)
    summary = "int8 weights and activations, calibrated on task data (FX graph mode)"

    engine: str = "auto"
    calibration: int = 256

    def validate(self) -> None:
        check_choice(self.name, "engine", self.engine, TORCH_ENGINES)
        check_range(self.name, "calibration", self.calibration, 1, 1_000_000)


@register_recipe
@dataclass(frozen=True)
class Int8WeightOnly(Recipe):
    """int8 weights dequantized on the fly (torchao); activations stay float. Helps memory-bound Linear layers."""

    name = "int8-weight-only"
    kind = "precision"
    frameworks = ("torch",)
    summary = "int8 Linear weights, float compute (torchao)"


@register_recipe
@dataclass(frozen=True)
class Qat(Recipe):
    """Quantization-aware training: fake-quantize, fine-tune `epochs` on the task's training data, convert to int8.

    Keras models go through TF-MOT (after prune / cluster: the sparsity- and cluster-preserving schemes); the
    result is a float model with fake-quant nodes, which becomes int8 when converted with `tflite`.
    """

    name = "qat"
    kind = "precision"
    frameworks = ("torch", "keras")
    summary = "quantization-aware fine-tuning, then int8 (needs training data)"

    epochs: int = 3
    lr: float = 1e-4
    engine: str = "auto"

    def validate(self) -> None:
        check_range(self.name, "epochs", self.epochs, 1, 1000)
        check_range(self.name, "lr", self.lr, 0.0, 1.0, lo_open=True)
        check_choice(self.name, "engine", self.engine, TORCH_ENGINES)
