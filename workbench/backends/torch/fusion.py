"""torch handlers for the graph, fusion and compilation recipes."""

from __future__ import annotations

import copy
import io
import warnings

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse as fx_fuse

from ...errors import UnsupportedError
from ...recipes import ApplyContext, register_handler
from ...recipes.fusion import ChannelsLast, Compile, FoldBatchNorm, Fuse, TorchScript
from .handle import TorchModel

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _count(module: nn.Module, kinds: tuple[type, ...]) -> int:
    return sum(isinstance(m, kinds) for m in module.modules())


def _require_eager(spec: str, handle: TorchModel) -> None:
    if handle.runtime != "eager":
        raise UnsupportedError(spec, f"it rewrites an eager model; this one already runs on {handle.runtime}")


@register_handler(FoldBatchNorm, "torch")
def fold_bn(recipe: FoldBatchNorm, handle: TorchModel, context: ApplyContext) -> TorchModel:
    spec = recipe.to_spec()
    before = _count(handle.payload, BATCHNORMS)
    if before == 0:
        raise UnsupportedError(spec, "the model has no BatchNorm layer to fold")
    try:
        folded = fx_fuse(handle.payload, inplace=False)
    except Exception as exc:
        raise UnsupportedError(spec, f"torch.fx cannot trace this model ({type(exc).__name__}: {exc}); "
                                     "folding needs a traceable forward") from None
    after = _count(folded, BATCHNORMS)
    if after == before:
        raise UnsupportedError(spec, f"none of the {before} BatchNorm layer(s) follows a Conv directly")
    notes = handle.notes
    if after:
        notes += (f"{spec}: folded {before - after} of {before} BatchNorm layers; {after} do not follow a Conv",)
    return handle.evolve(payload=folded.eval(), fused=True, notes=notes)


@register_handler(Fuse, "torch")
def fuse(recipe: Fuse, handle: TorchModel, context: ApplyContext) -> TorchModel:
    from torch.ao.nn import intrinsic
    from torch.ao.quantization.quantize_fx import fuse_fx

    spec = recipe.to_spec()
    _require_eager(spec, handle)
    if _count(handle.payload, BATCHNORMS) == 0:
        convs, linears = _count(handle.payload, CONVS), _count(handle.payload, (nn.Linear,))
        raise UnsupportedError(spec, f"there is no Conv-BatchNorm(-ReLU) block to fuse: the model has no BatchNorm "
                                     f"layer ({convs} Conv, {linears} Linear)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            fused = fuse_fx(copy.deepcopy(handle.payload).eval())
    except Exception as exc:
        raise UnsupportedError(spec, f"torch.fx cannot trace this model ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0][:200]})") from None
    n_fused = sum(isinstance(m, intrinsic._FusedModule) for m in fused.modules())
    remaining = _count(fused, BATCHNORMS)
    notes = handle.notes + (f"{spec}: {n_fused} fused block(s)"
                            + (f"; {remaining} BatchNorm layer(s) not after a Conv stay" if remaining else ""),)
    return handle.evolve(payload=fused, fused=True, notes=notes)


@register_handler(ChannelsLast, "torch")
def channels_last(recipe: ChannelsLast, handle: TorchModel, context: ApplyContext) -> TorchModel:
    spec = recipe.to_spec()
    _require_eager(spec, handle)
    if _count(handle.payload, (nn.Conv2d,)) == 0:
        raise UnsupportedError(spec, "channels-last changes the layout of 4-D conv activations; "
                                     "the model has no Conv2d layer")
    module = copy.deepcopy(handle.payload).to(memory_format=torch.channels_last)
    return handle.evolve(payload=module, channels_last=True)


@register_handler(TorchScript, "torch")
def torchscript(recipe: TorchScript, handle: TorchModel, context: ApplyContext) -> TorchModel:
    spec = recipe.to_spec()
    module = copy.deepcopy(handle.payload).eval()
    example = handle.prepare(handle.example_input)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if recipe.mode == "script":
                scripted = torch.jit.script(module)
            else:
                with torch.no_grad():
                    # strict=False: a forward returning a dict (Hugging Face outputs) traces as one
                    scripted = torch.jit.trace(module, example if isinstance(example, tuple) else (example,),
                                               strict=False)
        except Exception as exc:
            raise UnsupportedError(spec, f"torch.jit.{recipe.mode} failed ({type(exc).__name__}: "
                                         f"{str(exc).splitlines()[0][:200]})"
                                         + ("; try torchscript(mode=trace)" if recipe.mode == "script" else "")) from None
        if recipe.freeze:
            scripted = torch.jit.freeze(scripted.eval())
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)  # what ships: optimize_for_inference's prepacked ops do not save
        if recipe.freeze:
            scripted = torch.jit.optimize_for_inference(scripted)
    notes = handle.notes + (f"{spec}: first calls include the profiling executor's warm-up",)
    return handle.evolve(payload=scripted, runtime="torchscript", format="torchscript", fused=handle.fused or recipe.freeze, notes=notes,
                         artifact=buffer.getvalue(), stats_module=handle.payload)


@register_handler(Compile, "torch")
def compile_(recipe: Compile, handle: TorchModel, context: ApplyContext) -> TorchModel:
    spec = recipe.to_spec()
    _require_eager(spec, handle)
    compiled = torch.compile(copy.deepcopy(handle.payload), mode=None if recipe.mode == "default" else recipe.mode)
    notes = handle.notes + (f"{spec}: Inductor; first_call_ms is the compile time, not part of the latency",)
    return handle.evolve(payload=compiled, runtime="inductor", fused=True, notes=notes)
