"""The TensorFlow backend: Keras 3 / tf_keras models, TF-MOT, TFLite in LiteRT, XLA and edge checks.

Importing it imports TensorFlow and registers the handlers of the keras and tflite frameworks.
"""

from . import convert, edge, mixed, tfmot  # noqa: F401  (registers handlers)
from .handle import KerasModel
from .litert import LiteModel

__all__ = ["KerasModel", "LiteModel"]
