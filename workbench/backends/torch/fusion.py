"""torch handlers for the graph / fusion recipes."""

from __future__ import annotations

from torch import nn
from torch.fx.experimental.optimization import fuse as fx_fuse

from ...errors import UnsupportedError
from ...recipes import ApplyContext, register_handler
from ...recipes.fusion import FoldBatchNorm
from .handle import TorchModel

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _count(module: nn.Module, kinds: tuple[type, ...]) -> int:
    return sum(isinstance(m, kinds) for m in module.modules())


@register_handler(FoldBatchNorm, "torch")
def fold_bn(recipe: FoldBatchNorm, handle: TorchModel, context: ApplyContext) -> TorchModel:
    spec = recipe.to_spec()
    before = _count(handle.module, BATCHNORMS)
    if before == 0:
        raise UnsupportedError(spec, "the model has no BatchNorm layer to fold")
    try:
        folded = fx_fuse(handle.module, inplace=False)
    except Exception as exc:
        raise UnsupportedError(spec, f"torch.fx cannot trace this model ({type(exc).__name__}: {exc}); "
                                     "folding needs a traceable forward") from None
    after = _count(folded, BATCHNORMS)
    if after == before:
        raise UnsupportedError(spec, f"none of the {before} BatchNorm layer(s) follows a Conv directly")
    notes = handle.notes
    if after:
        notes += (f"{spec}: folded {before - after} of {before} BatchNorm layers; {after} do not follow a Conv",)
    return handle.evolve(module=folded.eval(), fused=True, lineage=handle.lineage + (spec,), notes=notes)
