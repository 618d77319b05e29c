"""Framework backends, imported lazily: `load_backend(format)` imports the framework that runs models of that
format and registers its recipe handlers."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..registry import Registry

#: model format -> (backend module, extra that installs the framework, the module that proves it is there)
BACKENDS: Registry[tuple[str, str, str]] = Registry("backend")
for _format in ("torch", "torchscript", "executorch"):
    BACKENDS.register(_format, ("workbench.backends.torch", "torch", "torch"))
BACKENDS.register("onnx", ("workbench.backends.onnx", "onnx", "onnxruntime"))
BACKENDS.register("keras", ("workbench.backends.keras", "tf", "tensorflow"))
BACKENDS.register("tflite", ("workbench.backends.keras", "tf", "ai_edge_litert"))
BACKENDS.register("openvino", ("workbench.backends.openvino", "openvino", "openvino"))

#: every format a handle may have (what recipes declare in `formats`)
FORMATS = tuple(BACKENDS.names())


def load_backend(fmt: str) -> ModuleType:
    module_path, extra, probe = BACKENDS.get(fmt)
    from .._optional import require

    require(probe, extra, f"the {fmt} backend")
    return importlib.import_module(module_path)
