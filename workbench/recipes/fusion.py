"""Graph / fusion recipes (configs only; framework handlers live in workbench.backends)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Recipe, register_recipe


@register_recipe
@dataclass(frozen=True)
class FoldBatchNorm(Recipe):
    """Fold each BatchNorm into the convolution before it (inference only; exact up to rounding)."""

    name = "fold-bn"
    kind = "graph"
    frameworks = ("torch",)
    summary = "fold BatchNorm into the preceding convolution"
