"""torch handlers for the sparsity recipes."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ...errors import UnsupportedError
from ...recipes import ApplyContext, register_handler
from ...recipes.layers import excluded_layers
from ...recipes.sparsity import Prune, SparseKernels
from .handle import TorchModel
from .training import finetune

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: Adam learning rate of the recovery fine-tuning (cosine-decayed); removing channels needs a harder push
FINETUNE_LR = {"unstructured": 1e-3, "2:4": 1e-3, "channel": 2e-3}


def _targets(module: nn.Module, recipe: Prune | None = None) -> list[tuple[nn.Module, str]]:
    """The Conv/Linear weights to prune (and an nn.MultiheadAttention's packed Q/K/V projection, which is one):
    all of them, less the layers `recipe.exclude` names."""
    named = [(name, m, "weight") for name, m in module.named_modules()
             if isinstance(m, PRUNABLE) and isinstance(getattr(m, "weight", None), nn.Parameter)]
    for name, m in module.named_modules():
        if isinstance(m, nn.MultiheadAttention):
            weights = ("in_proj_weight",) if m._qkv_same_embed_dim else ("q_proj_weight", "k_proj_weight",
                                                                           "v_proj_weight")
            named += [(name, m, w) for w in weights if isinstance(getattr(m, w, None), nn.Parameter)]
    if recipe is not None and recipe.exclude:
        skip = excluded_layers(recipe.to_spec(), recipe.exclude, [name for name, _, _ in named])
        named = [(name, m, w) for name, m, w in named if name not in skip]
    return [(m, w) for _, m, w in named]


def _refresh_read_weights(module: nn.Module) -> list:
    """nn.MultiheadAttention reads its `out_proj.weight` as a tensor without calling out_proj, so torch's pruning
    hook on out_proj (which recomputes weight = weight_orig * mask) never runs: run it before the attention does.
    Returns the hook handles to remove."""
    def refresh(attention: nn.MultiheadAttention, args: tuple) -> None:
        for hook in attention.out_proj._forward_pre_hooks.values():
            if isinstance(hook, torch_prune.BasePruningMethod):
                hook(attention.out_proj, args)

    return [m.register_forward_pre_hook(refresh) for m in module.modules() if isinstance(m, nn.MultiheadAttention)]


def two_four_mask(weight: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest-magnitude weights of every 4 consecutive ones along the input dimension."""
    rows = weight.detach().reshape(weight.shape[0], -1)
    groups = rows.abs().reshape(rows.shape[0], -1, 4)
    keep = groups.topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(weight.shape)


def _output_layers(module: nn.Module, handle: TorchModel) -> list[nn.Module]:
    """The layers whose outputs are the model's outputs: channel pruning must leave their width alone."""
    with torch.inference_mode():
        width = handle.predict(handle.example_input).shape[-1]
    return [m for m in module.modules()
            if (isinstance(m, nn.Linear) and m.out_features == width)
            or (isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and m.out_channels == width)]


def _prune_channels(recipe: Prune, handle: TorchModel, module: nn.Module, spec: str) -> str:
    import torch_pruning as tp

    example = handle.prepare(handle.example_input)
    try:
        kept = [m for m in module.modules() if isinstance(m, (*PRUNABLE, nn.MultiheadAttention))
                and not any(m is t for t, _ in _targets(module, recipe))]
        pruner = tp.pruner.BasePruner(module, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                      pruning_ratio=recipe.sparsity, ignored_layers=_output_layers(module, handle) + kept)
        pruner.step()
    except Exception as exc:
        raise UnsupportedError(spec, f"the channel dependencies of this model cannot be traced "
                                     f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    return ""


#: stages of a gradual (polynomial) schedule: sparsity s * (1 - (1 - k / n)^3) after stage k
POLY_STAGES = 3


def _prune_gradually(recipe: Prune, module: nn.Module, targets: list, context: ApplyContext, epochs: int) -> None:
    """Global magnitude pruning grown to the target in POLY_STAGES steps, fine-tuning between them (the masks
    stay on the layers: each step prunes among the weights still alive)."""
    done = 0.0
    for k in range(1, POLY_STAGES + 1):
        target = recipe.sparsity * (1 - (1 - k / POLY_STAGES) ** 3)
        torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured,
                                        amount=(target - done) / (1 - done))
        done = target
        if k < POLY_STAGES:
            finetune(module, context.task, epochs // POLY_STAGES, FINETUNE_LR[recipe.pattern], context.seed + k,
                     keep_zeros=True)


@register_handler(Prune, "torch")
def prune(recipe: Prune, handle: TorchModel, context: ApplyContext) -> TorchModel:
    spec = recipe.to_spec()
    if handle.precision != "fp32":
        raise UnsupportedError(spec, f"it prunes float32 weights; this model is {handle.precision}")
    if recipe.schedule == "polynomial" and recipe.pattern != "unstructured":
        raise UnsupportedError(spec, f"a polynomial schedule grows unstructured sparsity; pattern={recipe.pattern} is "
                                     "pruned at once: use schedule=constant or auto")
    module = copy.deepcopy(handle.payload)
    targets = _targets(module, recipe)
    if not targets:
        if recipe.exclude and _targets(module):
            raise UnsupportedError(spec, "exclude= leaves no Conv/Linear layer to prune")
        raise UnsupportedError(spec, "the model has no float Conv/Linear weights to prune "
                                     "(put prune before any quantization or compilation step)")
    changed = tuple(name for name, m in module.named_modules() if any(m is t for t, _ in targets))
    refreshers = _refresh_read_weights(module)
    notes = list(handle.notes)
    epochs = recipe.finetune_epochs
    gradual = recipe.pattern == "unstructured" and epochs >= POLY_STAGES and context.task is not None and (
        recipe.schedule == "polynomial" or (recipe.schedule == "auto" and recipe.sparsity > 0.5))
    if gradual:  # TF-MOT's polynomial decay, in stages: prune a little, recover, prune more
        _prune_gradually(recipe, module, targets, context, epochs)
        notes.append(f"{spec}: sparsity grown in {POLY_STAGES} stages (polynomial schedule), "
                     f"{epochs // POLY_STAGES} epoch(s) of fine-tuning after each but the last")
        epochs -= (POLY_STAGES - 1) * (epochs // POLY_STAGES)
    if recipe.pattern == "unstructured":
        if not gradual:
            torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured,
                                            amount=recipe.sparsity)
        notes.append(f"{spec}: zeros stored densely; dense kernels run at the same speed")
    elif recipe.pattern == "2:4":
        skipped = []
        for layer, name in targets:
            fan_in = getattr(layer, name)[0].numel()
            if fan_in % 4:
                skipped.append(f"{type(layer).__name__}(fan-in {fan_in})")
                continue
            torch_prune.custom_from_mask(layer, name, two_four_mask(getattr(layer, name)))
        targets = [(m, n) for m, n in targets if torch_prune.is_pruned(m) and hasattr(m, f"{n}_mask")]
        if not targets:
            raise UnsupportedError(spec, f"no layer has a fan-in divisible by 4 ({', '.join(skipped)})")
        if skipped:
            notes.append(f"{spec}: left dense (fan-in not divisible by 4): {', '.join(skipped)}")
        notes.append(f"{spec}: 2:4 pattern; only NVIDIA sparse tensor cores (sm80+, via sparse-kernels) run it faster")
    else:  # channel
        base_params = sum(p.numel() for p in module.parameters())
        _prune_channels(recipe, handle, module, spec)
        new_params = sum(p.numel() for p in module.parameters())
        notes.append(f"{spec}: layers shrunk, {base_params:,} -> {new_params:,} parameters "
                     f"({1 - new_params / base_params:.0%} fewer)")
    skipped_note = finetune(module, context.task, epochs, FINETUNE_LR[recipe.pattern], context.seed,
                            keep_zeros=recipe.pattern != "channel")
    if epochs:
        notes.append(f"{spec}: {skipped_note}" if skipped_note else
                     f"{spec}: fine-tuned {recipe.finetune_epochs} epoch(s) on the task's training data, "
                     "sparsity pattern fixed")
    for layer, name in targets:
        if torch_prune.is_pruned(layer) and hasattr(layer, f"{name}_mask"):
            torch_prune.remove(layer, name)  # make the zeros permanent: plain weights, no masks or hooks
    for hook in refreshers:
        hook.remove()
    if recipe.exclude:
        notes.append(f"{spec}: {len(changed)} layer(s) pruned; left dense by exclude=: "
                     f"{', '.join(n for n, m in handle.payload.named_modules() if isinstance(m, PRUNABLE) and n not in changed)}")
    return handle.evolve(payload=module.eval(), notes=tuple(notes), changed_layers=changed)


@register_handler(SparseKernels, "torch")
def sparse_kernels(recipe: SparseKernels, handle: TorchModel, context: ApplyContext) -> TorchModel:
    spec = recipe.to_spec()
    if not handle.device.startswith("cuda") or torch.cuda.get_device_capability(handle.device)[0] < 8:
        raise UnsupportedError(spec, "2:4 semi-structured sparse kernels need an NVIDIA GPU with compute "
                                     "capability 8.0+ (sparse tensor cores); this model runs on "
                                     f"{handle.device}. On the CPU, 2:4 pruning changes size and accuracy, not speed")
    if handle.precision not in ("fp16", "bf16"):
        raise UnsupportedError(spec, f"the sparse kernels take fp16 or bf16 weights; this model is {handle.precision}: "
                                     "add fp16 or bf16 before sparse-kernels")
    from torch.sparse import to_sparse_semi_structured

    module = copy.deepcopy(handle.payload)
    converted, skipped = 0, []
    for name, layer in module.named_modules():
        if isinstance(layer, nn.Linear):
            w = layer.weight
            if w.shape[0] % 64 or w.shape[1] % 64:
                skipped.append(f"{name} {tuple(w.shape)}")
                continue
            layer.weight = nn.Parameter(to_sparse_semi_structured(w.detach()), requires_grad=False)
            converted += 1
    if not converted:
        raise UnsupportedError(spec, "no Linear layer has both dimensions divisible by 64, which the sparse "
                                     f"kernels need ({', '.join(skipped) or 'no Linear layers'})")
    notes = handle.notes + (f"{spec}: {converted} Linear layer(s) on semi-structured sparse kernels"
                            + (f"; dense: {', '.join(skipped)}" if skipped else ""),)
    notes += (f"{spec}: size is the dense fp16 file with its zeros (the kernels' compressed form is not saved)",)
    return handle.evolve(payload=module, runtime="sparse-kernels", stats_module=handle.payload, notes=notes)
