"""The ONNX Runtime backend: importing it imports onnxruntime and registers the ORT recipe handlers."""

from . import quantize  # noqa: F401  (registers handlers)
from .handle import OrtModel

__all__ = ["OrtModel"]
