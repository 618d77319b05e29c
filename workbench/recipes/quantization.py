"""Quantization recipes (configs only; framework handlers live in workbench.backends)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Recipe, check_choice, register_recipe

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
