"""torchao, imported without its start-up chatter about optional CUDA kernels a CPU build lacks."""

from __future__ import annotations

import logging
import warnings

for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torchao.quantization import (  # noqa: E402
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        quantize_,
    )


def int4_weight_only_config(group_size: int):
    """torchao's int4 weight-only config for the CPU: the prototype one (Int4OpaqueTensor). The stable
    Int4WeightOnlyConfig has GPU packings only in torchao 0.18 (plain/preshuffled need mslk)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig

    return PrototypeInt4WeightOnlyConfig(group_size=group_size)


def fp8_config(granularity: str):
    """torchao's float8 dynamic-activation / float8-weight config, one scale per row or per tensor."""
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, PerTensor

    return Float8DynamicActivationFloat8WeightConfig(granularity=PerRow() if granularity == "row" else PerTensor())


__all__ = ["Int8DynamicActivationInt8WeightConfig", "Int8WeightOnlyConfig", "fp8_config", "int4_weight_only_config",
           "quantize_"]
