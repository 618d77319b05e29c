"""Short fine-tuning on a task's training data (recovery after pruning, quantization-aware training)."""

from __future__ import annotations

import torch
from torch import nn

from ...tasks import Task, training_data
from .handle import output_tensor


def finetune(module: nn.Module, task: Task | None, epochs: int, lr: float, seed: int = 0,
             *, keep_zeros: bool = False, batch_size: int = 64) -> str | None:
    """Train `module` in place for `epochs` on the task's training data (cross-entropy on its labels).

    keep_zeros: weights that are exactly zero stay zero (pruning-preserving fine-tuning).
    Returns a note when no fine-tuning could happen, else None.
    """
    data = training_data(task)
    if epochs <= 0:
        return None
    if data is None:
        return "not fine-tuned: the task has no labelled training data"
    x, y = (torch.from_numpy(a) for a in data)
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        return "not fine-tuned: the model has no trainable parameters"
    device = params[0].device
    masks = {p: p.detach() != 0 for p in params if p.dim() >= 2} if keep_zeros else {}
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(params, lr=lr)
    steps = epochs * -(-len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)  # settle at a low learning rate
    loss_fn = nn.CrossEntropyLoss()
    module.train()
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for i in range(0, len(order), batch_size):
                idx = order[i:i + batch_size]
                optimizer.zero_grad()
                loss_fn(output_tensor(module(x[idx].to(device))), y[idx].to(device)).backward()
                optimizer.step()
                schedule.step()
                if masks:
                    with torch.no_grad():
                        for p, mask in masks.items():
                            p.mul_(mask)
    module.eval()
    return None
