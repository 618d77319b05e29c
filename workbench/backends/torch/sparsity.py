"""torch handlers for the sparsity recipes."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils import prune as torch_prune

from ...errors import UnsupportedError
from ...recipes import ApplyContext, register_handler
from ...recipes.sparsity import Prune
from .handle import TorchModel

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@register_handler(Prune, "torch")
def prune(recipe: Prune, handle: TorchModel, context: ApplyContext) -> TorchModel:
    spec = recipe.to_spec()
    module = copy.deepcopy(handle.module)
    targets = [(m, "weight") for m in module.modules()
               if isinstance(m, PRUNABLE) and isinstance(getattr(m, "weight", None), nn.Parameter)]
    if not targets:
        raise UnsupportedError(spec, "the model has no float Conv/Linear weights to prune "
                                     "(put prune before any quantization or compilation step)")
    torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=recipe.sparsity)
    for layer, name in targets:
        torch_prune.remove(layer, name)  # make the zeros permanent: plain weights, no masks or hooks
    notes = handle.notes + (f"{spec}: zeros stored densely; dense kernels run at the same speed",)
    return handle.evolve(module=module, lineage=handle.lineage + (spec,), notes=notes)
