"""torch handlers for the floating-point precision recipes."""

from __future__ import annotations

import copy

import torch

from ...errors import UnsupportedError
from ...recipes import ApplyContext, register_handler
from ...recipes.precision import Autocast, Bf16, Fp16, Tf32
from .handle import DTYPES, TorchModel


def _cast(precision: str, recipe, handle: TorchModel) -> TorchModel:
    spec = recipe.to_spec()
    if handle.precision != "fp32":
        raise UnsupportedError(spec, f"the model is already {handle.precision}")
    dtype = DTYPES[precision]
    module = copy.deepcopy(handle.payload).to(dtype)
    return handle.evolve(payload=module, precision=precision, input_dtype=dtype)


@register_handler(Fp16, "torch")
def fp16(recipe: Fp16, handle: TorchModel, context: ApplyContext) -> TorchModel:
    return _cast("fp16", recipe, handle)


@register_handler(Bf16, "torch")
def bf16(recipe: Bf16, handle: TorchModel, context: ApplyContext) -> TorchModel:
    return _cast("bf16", recipe, handle)


@register_handler(Autocast, "torch")
def autocast(recipe: Autocast, handle: TorchModel, context: ApplyContext) -> TorchModel:
    spec = recipe.to_spec()
    device_type = handle.device.split(":")[0]
    dtype = DTYPES[recipe.dtype]
    if not torch.amp.is_autocast_available(device_type):
        raise UnsupportedError(spec, f"torch.autocast is not available on {device_type}")
    notes = handle.notes + (f"{spec}: weights stay fp32; matmuls and convolutions run in {recipe.dtype}",)
    new = handle.evolve(autocast_dtype=dtype, precision=f"amp-{recipe.dtype}", notes=notes)
    sample = context.sample_input(handle)
    if sample is not None:
        try:  # oneDNN has no bf16 LSTM on a CPU without avx512_bf16 / AMX: it says so only when it runs
            new.predict(sample)
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower():
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise UnsupportedError(spec, f"torch.autocast({recipe.dtype}) cannot run this model on {device_type}: "
                                         f"{first}") from None
    return new


@register_handler(Tf32, "torch")
def tf32(recipe: Tf32, handle: TorchModel, context: ApplyContext) -> TorchModel:
    spec = recipe.to_spec()
    if not handle.device.startswith("cuda"):
        raise UnsupportedError(spec, "TF32 is a mode of NVIDIA tensor cores (sm80+); this model runs on the CPU. "
                                     "Run the study with target='cuda' on a GPU machine")
    major, _ = torch.cuda.get_device_capability(handle.device)
    if major < 8:
        raise UnsupportedError(spec, f"TF32 needs compute capability 8.0+; {torch.cuda.get_device_name(handle.device)} "
                                     f"is sm{major}x")
    return handle.evolve(tf32=True, precision="tf32")
