"""torch handlers for the quantization recipes."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from ...errors import UnsupportedError
from ...recipes import ApplyContext, register_handler
from ...recipes.quantization import Int8Dynamic
from .handle import TorchModel

DYNAMIC_TARGETS = (nn.Linear, nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell, nn.RNNCell)
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.LSTM, nn.GRU, nn.Embedding)


def resolve_engine(requested: str, context: ApplyContext, recipe: str) -> str:
    """`auto` → the engine the device profile recommends; anything else must be supported by this torch."""
    if requested == "auto":
        from ...profiling.device import device

        profile = context.device or device(measure=False)
        engine = profile.recommended_quantized_engine
    else:
        engine = requested
    supported = supported_engines()
    if engine not in supported:
        raise UnsupportedError(recipe, f"quantized engine {engine!r} is not built into this torch "
                                       f"(available: {', '.join(supported)})")
    return engine


def supported_engines() -> list[str]:
    """The quantized engines built into this torch."""
    return [e for e in torch.backends.quantized.supported_engines if e != "none"]


@contextlib.contextmanager
def quantized_engine(engine: str) -> Iterator[None]:
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantized tensor creation.*")
            yield
    finally:
        torch.backends.quantized.engine = previous


def layer_census(module: nn.Module, kinds: tuple[type, ...]) -> dict[str, list[str]]:
    """Names of the layers of each type in `kinds` (for messages that name the model part)."""
    census: dict[str, list[str]] = {}
    for name, child in module.named_modules():
        if isinstance(child, kinds):
            census.setdefault(type(child).__name__, []).append(name)
    return census


@register_handler(Int8Dynamic, "torch")
def int8_dynamic(recipe: Int8Dynamic, handle: TorchModel, context: ApplyContext) -> TorchModel:
    spec = recipe.to_spec()
    targets = layer_census(handle.module, DYNAMIC_TARGETS)
    if not targets:
        found = layer_census(handle.module, WEIGHT_LAYERS)
        have = ", ".join(f"{len(v)} {k}" for k, v in found.items()) or "no weight layers"
        raise UnsupportedError(spec, f"it quantizes nn.Linear / LSTM / GRU layers and this model has none "
                                     f"({have}); use int8-static for convolutions")
    engine = resolve_engine(recipe.engine, context, spec)
    qconfig = (torch.ao.quantization.per_channel_dynamic_qconfig if recipe.per_channel
               else torch.ao.quantization.default_dynamic_qconfig)
    with quantized_engine(engine):
        quantized = torch.ao.quantization.quantize_dynamic(
            handle.module, {t: qconfig for t in DYNAMIC_TARGETS}, dtype=torch.qint8, inplace=False)
    notes = list(handle.notes)
    n_quantized = sum(len(v) for v in targets.values())
    others = layer_census(handle.module, tuple(t for t in WEIGHT_LAYERS if t not in DYNAMIC_TARGETS))
    if others:
        rest = ", ".join(f"{len(v)} {k}" for k, v in others.items())
        notes.append(f"{spec}: quantized {n_quantized} Linear/RNN layer(s); {rest} stay fp32 (int8-static covers them)")
    notes.append(f"{spec}: engine {engine}, activations quantized per batch with reduce_range (7-bit), "
                 f"weights per-{'channel' if recipe.per_channel else 'tensor'}")
    return handle.evolve(module=quantized, precision="int8", engine=engine,
                         lineage=handle.lineage + (spec,), notes=tuple(notes))
