"""Precision recipes: reduced-precision floating point (configs only; handlers live in the backends)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Recipe, check_choice, register_recipe


@register_recipe
@dataclass(frozen=True)
class Fp16(Recipe):
    """Weights and compute in float16. Fast on GPUs with tensor cores; emulated (slow) on most CPUs.
    On a Keras model: TFLite's float16 conversion (float16 weights, dequantized to float32 on CPUs)."""

    name = "fp16"
    kind = "precision"
    formats = ("torch", "keras")
    summary = "float16 weights and compute (TFLite float16 weights on Keras)"


@register_recipe
@dataclass(frozen=True)
class Bf16(Recipe):
    """Weights and compute in bfloat16 (fp32's range, 8 bits of mantissa). After `to-openvino`: the CPU plugin's
    bf16 inference precision, on CPUs with avx512_bf16 or AMX only. On a Keras model: Keras' mixed_bfloat16
    policy (fp32 weights, bf16 compute) in TensorFlow's graph (`bf16 + xla`: compiled by XLA), on CPUs with
    avx512_bf16 or AMX (or a GPU) only."""

    name = "bf16"
    kind = "precision"
    formats = ("torch", "openvino", "keras")
    summary = "bfloat16 weights and compute"


@register_recipe
@dataclass(frozen=True)
class Autocast(Recipe):
    """Mixed precision: weights stay fp32, ops that are safe in low precision run in `dtype`."""

    name = "autocast"
    kind = "precision"
    formats = ("torch",)
    summary = "fp32 weights, low-precision compute where safe (torch.autocast)"
    positional = ("dtype",)

    dtype: str = "bf16"

    def validate(self) -> None:
        check_choice(self.name, "dtype", self.dtype, ("bf16", "fp16"))


@register_recipe
@dataclass(frozen=True)
class Fp8(Recipe):
    """float8 (e4m3) weights and activations for nn.Linear layers, activations scaled per batch, on NVIDIA GPUs
    with fp8 tensor cores (sm89+: Ada, Hopper, Blackwell), through torchao. `granularity`: one scale per row
    (per token / output channel) or per tensor."""

    name = "fp8"
    kind = "precision"
    formats = ("torch",)
    summary = "float8 Linear layers on sm89+ GPUs (torchao; CUDA only)"

    granularity: str = "row"

    def validate(self) -> None:
        check_choice(self.name, "granularity", self.granularity, ("row", "tensor"))


@register_recipe
@dataclass(frozen=True)
class Tf32(Recipe):
    """TensorFloat-32 matmuls and convolutions on NVIDIA tensor cores (sm80+); fp32 weights."""

    name = "tf32"
    kind = "precision"
    formats = ("torch",)
    summary = "TF32 tensor-core math for fp32 models (CUDA sm80+ only)"
