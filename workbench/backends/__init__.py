"""Framework backends, imported lazily: `load_backend("torch")` imports torch and registers its handlers."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..registry import Registry

#: framework name -> (module path, extra that installs the framework, the module that proves it is there)
BACKENDS: Registry[tuple[str, str, str]] = Registry("backend")
BACKENDS.register("torch", ("workbench.backends.torch", "torch", "torch"))
BACKENDS.register("onnx", ("workbench.backends.onnx", "onnx", "onnxruntime"))
BACKENDS.register("keras", ("workbench.backends.keras", "tf", "tensorflow"))
BACKENDS.register("tflite", ("workbench.backends.keras", "tf", "ai_edge_litert"))


def load_backend(framework: str) -> ModuleType:
    module_path, extra, probe = BACKENDS.get(framework)
    from .._optional import require

    require(probe, extra, f"the {framework} backend")
    return importlib.import_module(module_path)
