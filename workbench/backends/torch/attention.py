"""nn.MultiheadAttention with its projections as separate nn.Linear modules, so that dynamic int8 quantization
(which swaps Linear modules) reaches them.

nn.MultiheadAttention keeps Q, K and V in one packed `in_proj_weight` read as a tensor, and its output projection
is a `NonDynamicallyQuantizableLinear` for the same reason. torch's own `torch.ao.nn.quantizable.MultiheadAttention`
splits them but computes batch-first outputs wrongly (heads not transposed back: a max error of 0.68 against the
float module, torch 2.13) and refuses causal masks, so the workbench has its own: the same weights, the same
arguments and results as nn.MultiheadAttention, the attention itself in float (scaled_dot_product_attention).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class SplitAttention(nn.Module):
    """An eval-mode nn.MultiheadAttention with `q_proj`, `k_proj`, `v_proj` and `out_proj` as nn.Linear."""

    def __init__(self, attention: nn.MultiheadAttention):
        super().__init__()
        if attention.bias_k is not None or attention.add_zero_attn:
            raise ValueError("add_bias_kv / add_zero_attn are not supported")
        e, kdim, vdim = attention.embed_dim, attention.kdim, attention.vdim
        self.embed_dim, self.num_heads, self.batch_first = e, attention.num_heads, attention.batch_first
        self.head_dim = e // attention.num_heads
        bias = attention.in_proj_bias is not None
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(e, e, bias), nn.Linear(kdim, e, bias), nn.Linear(vdim, e, bias)
        with torch.no_grad():
            if attention._qkv_same_embed_dim:
                weights = attention.in_proj_weight.chunk(3)
            else:
                weights = attention.q_proj_weight, attention.k_proj_weight, attention.v_proj_weight
            biases = attention.in_proj_bias.chunk(3) if bias else (None, None, None)
            for proj, w, b in zip((self.q_proj, self.k_proj, self.v_proj), weights, biases):
                proj.weight.copy_(w)
                if b is not None:
                    proj.bias.copy_(b)
        self.out_proj = nn.Linear(e, e, attention.out_proj.bias is not None)
        self.out_proj.load_state_dict(attention.out_proj.state_dict())
        # TransformerEncoderLayer reads these to choose its fused float fast path; None keeps it on the slow path,
        # which calls this module
        self.in_proj_bias = None
        self._qkv_same_embed_dim = attention._qkv_same_embed_dim
        self.eval()

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        batched = query.dim() == 3
        if not batched:  # (L, E): one sequence
            query, key, value = (x.unsqueeze(0) for x in (query, key, value))
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
        elif not self.batch_first:  # (L, N, E) → (N, L, E)
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))
        n, length, _ = query.shape
        source = key.shape[1]
        q, k, v = (self._heads(proj(x)) for proj, x in ((self.q_proj, query), (self.k_proj, key), (self.v_proj, value)))
        # `is_causal` is a hint about attn_mask, as in nn.MultiheadAttention: the mask decides (without one, the
        # float module's inference fast path ignores the hint, and its outputs are what int8 is compared with)
        mask = self._mask(attn_mask, key_padding_mask, n, length, source, q.dtype)
        weights = None
        if need_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
            attention = torch.softmax(scores if mask is None else scores + mask, dim=-1)
            out = attention @ v
            weights = attention.mean(1) if average_attn_weights else attention
            if not batched:
                weights = weights.squeeze(0)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = self.out_proj(out.transpose(1, 2).reshape(n, length, self.embed_dim))
        if not batched:
            return out.squeeze(0), weights
        return (out if self.batch_first else out.transpose(0, 1)), weights

    def _heads(self, x: Tensor) -> Tensor:
        n, length, _ = x.shape
        return x.view(n, length, self.num_heads, self.head_dim).transpose(1, 2)

    @staticmethod
    def _additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
        """A boolean mask (True: not allowed) as an additive float mask; a float mask as it is."""
        if mask.dtype == torch.bool:
            return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
        return mask.to(dtype)

    def _mask(self, attn_mask: Tensor | None, key_padding_mask: Tensor | None, n: int, length: int,
              source: int, dtype: torch.dtype) -> Tensor | None:
        mask = None
        if attn_mask is not None:
            mask = self._additive(attn_mask, dtype)
            if mask.dim() == 3:  # (N * heads, L, S)
                mask = mask.view(n, self.num_heads, length, source)
        if key_padding_mask is not None:
            padding = self._additive(key_padding_mask, dtype).view(n, 1, 1, source)
            mask = padding if mask is None else mask + padding
        return mask


def split_attention(module: nn.Module, names: list[str]) -> None:
    """Replace each named nn.MultiheadAttention of `module` (in place) by its SplitAttention."""
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name)
        setattr(parent, attr, SplitAttention(getattr(parent, attr)))
