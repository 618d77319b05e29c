"""torchao, imported without its start-up chatter about optional CUDA kernels a CPU build lacks."""

from __future__ import annotations

import logging
import warnings

for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torchao.quantization import Int8WeightOnlyConfig, quantize_  # noqa: E402

__all__ = ["Int8WeightOnlyConfig", "quantize_"]
