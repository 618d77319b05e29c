"""Sparsity recipes (configs only; framework handlers live in workbench.backends)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ParameterError
from .base import Recipe, check_choice, check_range, register_recipe

PATTERNS = ("unstructured", "channel", "2:4")
#: how sparsity grows while fine-tuning: TF-MOT's PolynomialDecay (0 -> target over the first 70% of the
#: steps) or ConstantSparsity (the target from step 0, i.e. one-shot). auto: polynomial for Keras (TF-MOT's
#: default); for torch, unstructured sparsity above 50% grows in three stages with fine-tuning between them
#: (polynomial), anything else is one-shot
SCHEDULES = ("auto", "constant", "polynomial")
CLUSTER_INITS = ("kmeans++", "linear", "density", "random")
#: fine-tuning epochs when prune(finetune=-1), the default: removing whole channels needs longer recovery
AUTO_FINETUNE = {"unstructured": 3, "2:4": 3, "channel": 10}


@register_recipe
@dataclass(frozen=True)
class Prune(Recipe):
    """Magnitude pruning of Conv/Linear weights, made permanent.

    pattern=unstructured   the smallest weights anywhere (global); zeros stored densely: size (gzip) and
                           accuracy change, not speed
    pattern=channel        whole output channels removed: the layers really shrink (fewer FLOPs and bytes)
    pattern=2:4            2 of every 4 consecutive weights (50%): what NVIDIA sparse tensor cores run
    schedule               auto | constant | polynomial (see SCHEDULES); Keras models are pruned by TF-MOT
    finetune=N             epochs of fine-tuning on the task's training data with the mask fixed (as TF-MOT
                           recovers accuracy); 0 skips it, and it is skipped when the task has no training data.
                           The default, -1, picks the epochs by pattern and sparsity (see finetune_epochs).
    exclude                layer-name globs left dense (torch), e.g. prune(0.5, exclude=[0, 12])
    """

    name = "prune"
    kind = "weights"
    formats = ("torch", "keras")
    format_params = {"exclude": ("torch",)}
    summary = "magnitude pruning (unstructured / channel / 2:4), then fine-tuning"
    positional = ("sparsity",)

    sparsity: float = 0.5
    pattern: str = "unstructured"
    finetune: int = -1
    schedule: str = "auto"
    exclude: tuple[str, ...] = ()

    def validate(self) -> None:
        check_range(self.name, "sparsity", self.sparsity, 0.0, 1.0, hi_open=True)
        check_choice(self.name, "pattern", self.pattern, PATTERNS)
        check_choice(self.name, "schedule", self.schedule, SCHEDULES)
        check_range(self.name, "finetune", self.finetune, -1, 1000)
        if self.pattern == "2:4" and self.sparsity != 0.5:
            raise ParameterError(self.name, "sparsity", self.sparsity, "0.5 with pattern=2:4 (2 of every 4 weights)")

    @property
    def finetune_epochs(self) -> int:
        """The epochs asked for; by default AUTO_FINETUNE[pattern], plus 2 per 10 points of sparsity above 50%."""
        if self.finetune >= 0:
            return self.finetune
        return AUTO_FINETUNE[self.pattern] + max(0, round(20 * (self.sparsity - 0.5)))


@register_recipe
@dataclass(frozen=True)
class SparseKernels(Recipe):
    """Run 2:4-pruned Linear weights on semi-structured sparse kernels (CUDA sm80+, fp16/bf16)."""

    name = "sparse-kernels"
    kind = "runtime"
    formats = ("torch",)
    summary = "2:4 semi-structured sparse kernels for Linear layers (CUDA sm80+)"

    def conflicts_with(self, earlier: Sequence[Recipe]) -> str | None:
        if not any(isinstance(r, Prune) and r.pattern == "2:4" for r in earlier):
            return "sparse-kernels needs 2:4-pruned weights first, e.g. 'prune(pattern=2:4) + fp16 + sparse-kernels'"
        return super().conflicts_with(earlier)


@register_recipe
@dataclass(frozen=True)
class Cluster(Recipe):
    """Weight clustering (TF-MOT): each layer's weights share `clusters` values, fine-tuned, then stripped.
    The file stays float32 but compresses well (gzip); after prune(...) the zeros are kept (sparsity-preserving).

    init      centroid initialisation: kmeans++ | linear | density | random
    finetune  epochs of fine-tuning with the centroids trainable (-1: 3 epochs; 0 skips)
    """

    name = "cluster"
    kind = "weights"
    formats = ("keras",)
    summary = "weight clustering into N shared values per layer (TF-MOT), then fine-tuning"
    positional = ("clusters",)

    clusters: int = 16
    init: str = "kmeans++"
    finetune: int = -1

    def validate(self) -> None:
        check_range(self.name, "clusters", self.clusters, 2, 256)
        check_choice(self.name, "init", self.init, CLUSTER_INITS)
        check_range(self.name, "finetune", self.finetune, -1, 1000)

    @property
    def finetune_epochs(self) -> int:
        return 3 if self.finetune < 0 else self.finetune

    def conflicts_with(self, earlier: Sequence[Recipe]) -> str | None:
        if any(isinstance(r, Cluster) for r in earlier):
            return "cluster appears twice; give it once"
        return super().conflicts_with(earlier)
