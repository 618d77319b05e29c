"""Sparsity recipes (configs only; framework handlers live in workbench.backends)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Recipe, check_range, register_recipe


@register_recipe
@dataclass(frozen=True)
class Prune(Recipe):
    """Global magnitude pruning of Conv/Linear weights to `sparsity`, made permanent (the zeros are stored).

    On dense kernels this changes size (gzip) and accuracy, not speed.
    """

    name = "prune"
    kind = "weights"
    frameworks = ("torch",)
    summary = "zero the smallest weights (global magnitude, unstructured)"
    positional = ("sparsity",)

    sparsity: float = 0.5

    def validate(self) -> None:
        check_range(self.name, "sparsity", self.sparsity, 0.0, 1.0, hi_open=True)
