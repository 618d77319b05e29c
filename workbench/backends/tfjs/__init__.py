"""TensorFlow.js: Keras models converted to TF.js graph models (in an isolated converter environment) and run
by TF.js in Node.js."""

from .handle import TfjsModel

__all__ = ["TfjsModel"]
