"""Training recipes: how a training step is run (configs only; the loop lives in the torch backend).

They compose like inference recipes — `checkpoint + amp`, `grad-accum(4)`, `ddp(2)` — but name a different
thing (a way to train), so they have their own registry: `compile` here compiles the training step.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Recipe, check_choice, check_range, register_recipe


@register_recipe
@dataclass(frozen=True)
class Checkpoint(Recipe):
    """Activation checkpointing: keep only `segments` boundaries of a Sequential model's activations and
    recompute the rest in the backward pass (less memory, more compute)."""

    name = "checkpoint"
    kind = "training"
    formats = ("torch",)
    summary = "activation checkpointing (recompute activations in backward)"
    positional = ("segments",)

    segments: int = 4

    def validate(self) -> None:
        check_range(self.name, "segments", self.segments, 1, 1000)


@register_recipe
@dataclass(frozen=True)
class Amp(Recipe):
    """Automatic mixed precision: autocast (bf16 on CPU, fp16 with gradient scaling on CUDA, or as asked)."""

    name = "amp"
    kind = "training"
    formats = ("torch",)
    summary = "autocast mixed precision (bf16 on CPU, fp16 + GradScaler on CUDA)"

    dtype: str = "auto"

    def validate(self) -> None:
        check_choice(self.name, "dtype", self.dtype, ("auto", "bf16", "fp16"))


@register_recipe
@dataclass(frozen=True)
class TrainChannelsLast(Recipe):
    name = "channels-last"
    kind = "training"
    formats = ("torch",)
    summary = "NHWC memory format for the model and its batches"


@register_recipe
@dataclass(frozen=True)
class TrainCompile(Recipe):
    name = "compile"
    kind = "training"
    formats = ("torch",)
    summary = "torch.compile the model for training (compile time is the first step, apart)"


@register_recipe
@dataclass(frozen=True)
class GradAccum(Recipe):
    """The same effective batch in `steps` micro-batches: gradients accumulate, one optimizer step."""

    name = "grad-accum"
    kind = "training"
    formats = ("torch",)
    summary = "gradient accumulation over k micro-batches (same effective batch, less memory)"
    positional = ("steps",)

    steps: int = 2

    def validate(self) -> None:
        check_range(self.name, "steps", self.steps, 1, 1024)


@register_recipe
@dataclass(frozen=True)
class Ddp(Recipe):
    """DistributedDataParallel on this machine: `world_size` processes (gloo on CPU, nccl on GPUs), each
    with its share of every batch and of the cores."""

    name = "ddp"
    kind = "training"
    formats = ("torch",)
    summary = "DistributedDataParallel over world_size local processes"
    positional = ("world_size",)

    world_size: int = 2

    def validate(self) -> None:
        check_range(self.name, "world_size", self.world_size, 1, 64)
