"""Quiet, lazy imports of TensorFlow, Keras 3, tf_keras and TF-MOT.

TF-MOT sets TF_USE_LEGACY_KERAS=1 for the whole process when imported, which would turn a later
`tf.keras` into Keras 2. The workbench never goes through `tf.keras` (it imports `keras` and `tf_keras` by
name) and puts the variable back after importing TF-MOT, so the user's `tf.keras` stays what it was.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType

from ..._optional import require

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no oneDNN / CUDA-stub banners on stderr


_configured = False


def tf() -> ModuleType:
    global _configured
    if _configured:
        import sys

        return sys.modules["tensorflow"]
    from ..._native import quiet_native_stderr

    with quiet_native_stderr():  # absl's oneDNN / CUDA-stub banners, written before logging is configured
        module = require("tensorflow", "tf", "the TensorFlow backend")
    # Keras' "compiled metrics have yet to be built" and similar warnings about models the workbench copies
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    _pin_threads(module)
    with quiet_native_stderr():  # start the runtime now: its "failed call to cuInit" on CPU-only machines
        module.config.list_physical_devices()
    _configured = True
    return module


def _pin_threads(module: ModuleType) -> None:
    """TensorFlow fixes its thread pools when it first runs an op: size them to the cores this process may use
    (what a study measures with by default) before that happens. Too late (TF already ran) keeps its own."""
    from ...profiling.device import available_cores

    try:
        module.config.threading.set_intra_op_parallelism_threads(available_cores())
        module.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass


def keras3() -> ModuleType:
    tf()
    return require("keras", "tf", "Keras 3 models")


def tf_keras() -> ModuleType:
    tf()
    return require("tf_keras", "tf", "tf_keras (Keras 2) models")


def tfmot() -> ModuleType:
    tf_keras()
    getattr(tf().keras, "__name__", None)  # resolve the lazy tf.keras now, before TF-MOT flips the variable
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    try:
        return require("tensorflow_model_optimization", "tf", "the TF-MOT recipes (prune, cluster, qat on Keras)")
    finally:
        if before is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = before


def litert() -> ModuleType:
    return require("ai_edge_litert.interpreter", "tf", "running TFLite models (the LiteRT interpreter)")
