"""The PyTorch backend: importing it imports torch and registers the torch recipe handlers."""

from . import export, fusion, gpu, mobile, precision, quantize, sparsity, train_loop  # noqa: F401  (registers handlers)
from .handle import TorchModel

__all__ = ["TorchModel"]
