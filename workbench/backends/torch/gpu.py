"""torch handlers for what only an NVIDIA GPU runs: int8 on CUDA and fp8 through torchao, cuDNN autotuning.

On the CPU each is an `unsupported` row that says what it needs; `tests/test_gpu.py` runs them where a GPU is
lent (marked `gpu`, skipped with the reason elsewhere)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ...errors import UnsupportedError
from ...recipes import ApplyContext, register_handler
from ...recipes.fusion import CudnnBenchmark
from ...recipes.precision import Fp8
from .handle import TorchModel
from .quantize import _float_graph

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _torchao_linears(spec: str, handle: TorchModel, what: str, config: Any, precision: str, detail: str,
                     **changes: Any) -> TorchModel:
    """The fp32 model's nn.Linear layers quantized by torchao's `config`; `detail` says how, in the notes."""
    if handle.precision != "fp32":
        raise UnsupportedError(spec, f"it quantizes an fp32 model; this one is {handle.precision}")
    names = [name for name, m in handle.payload.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise UnsupportedError(spec, f"{what} quantizes nn.Linear layers and this model has none")
    from .torchao_quiet import quantize_

    module = copy.deepcopy(handle.payload)
    quantize_(module, config)
    notes = handle.notes + (f"{spec}: torchao {detail} for {len(names)} Linear layer(s) on {_gpu_name(handle)}; "
                            "other layers stay fp32",)
    return handle.evolve(payload=module, precision=precision, notes=notes, changed_layers=tuple(names),
                         flops_module=_float_graph(handle), **changes)


def _gpu_name(handle: TorchModel) -> str:
    major, minor = torch.cuda.get_device_capability(handle.device)
    return f"{torch.cuda.get_device_name(handle.device)} (sm{major}{minor})"


def int8_dynamic_cuda(spec: str, handle: TorchModel) -> TorchModel:
    """int8-dynamic on a CUDA model: torchao's int8 per-token activations × int8 per-channel weights
    (torch._int_mm on the tensor cores, sm80+), for the Linear layers."""
    major, _ = torch.cuda.get_device_capability(handle.device)
    if major < 8:
        raise UnsupportedError(spec, f"int8 tensor-core matmuls need sm80+; this GPU is {_gpu_name(handle)}")
    from .torchao_quiet import Int8DynamicActivationInt8WeightConfig

    return _torchao_linears(spec, handle, "int8-dynamic on CUDA (torchao)", Int8DynamicActivationInt8WeightConfig(),
                            "int8", "int8 dynamic activations (per token) × int8 weights (per channel)",
                            engine="torchao")


@register_handler(Fp8, "torch")
def fp8(recipe: Fp8, handle: TorchModel, context: ApplyContext) -> TorchModel:
    spec = recipe.to_spec()
    if not handle.device.startswith("cuda"):
        raise UnsupportedError(spec, "fp8 matmuls run on NVIDIA tensor cores of sm89+ (Ada, Hopper, Blackwell); this "
                                     "model runs on the CPU. Run the study with target='cuda' on such a GPU")
    if torch.cuda.get_device_capability(handle.device) < (8, 9):
        raise UnsupportedError(spec, f"fp8 tensor cores need sm89+ (Ada, Hopper, Blackwell); this GPU is "
                                     f"{_gpu_name(handle)}: use int8-dynamic or fp16 on it")
    from .torchao_quiet import fp8_config

    return _torchao_linears(spec, handle, "fp8", fp8_config(recipe.granularity), "fp8",
                            f"float8 e4m3 weights and activations (scaled per {recipe.granularity}, activations per "
                            "batch)")


@register_handler(CudnnBenchmark, "torch")
def cudnn_benchmark(recipe: CudnnBenchmark, handle: TorchModel, context: ApplyContext) -> TorchModel:
    spec = recipe.to_spec()
    if not handle.device.startswith("cuda"):
        raise UnsupportedError(spec, "cuDNN autotuning picks CUDA convolution algorithms; this model runs on the CPU "
                                     "(oneDNN picks its own). Run the study with target='cuda' on a GPU")
    if not any(isinstance(m, CONVOLUTIONS) for m in handle.payload.modules()):
        raise UnsupportedError(spec, "cuDNN autotuning chooses convolution algorithms and this model has no "
                                     "convolution")
    notes = handle.notes + (f"{spec}: cuDNN times its convolution algorithms at each new input shape and keeps the "
                            "fastest: that first call is first_call_ms, the latency is the calls after it",)
    return handle.evolve(cudnn_benchmark=True, notes=notes)
