"""The OpenVINO backend: importing it imports openvino and registers the recipes that run on OpenVINO models
(NNCF int8, bf16). `to-openvino` itself is registered by each source framework's backend."""

from . import quantize  # noqa: F401  (registers handlers)
from .handle import OpenVinoModel, from_ov_model

__all__ = ["OpenVinoModel", "from_ov_model"]
