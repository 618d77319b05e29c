"""Recipes: frozen configs, registered by name, composed into pipelines."""

from . import export, fusion, precision, quantization, sparsity, tensorflow, training  # noqa: F401  (registers the recipes)
from .aliases import ALIASES
from .base import HANDLERS, RECIPES, TRAINING_RECIPES, ApplyContext, Recipe, register_handler, register_recipe
from .export import ToOnnx, ToOpenVino
from .fusion import ChannelsLast, Compile, CudnnBenchmark, ExecuTorch, FoldBatchNorm, Fuse, TorchScript
from .pipeline import BASELINE, Pipeline, as_pipeline, compose, parse_pipelines
from .precision import Autocast, Bf16, Fp8, Fp16, Tf32
from .quantization import Int4WeightOnly, Int8Dynamic, Int8Static, Int8WeightOnly, Qat
from .sparsity import Cluster, Prune, SparseKernels
from .tensorflow import EdgeTpu, Tfjs, Tflite, TfMicro, Xla


def available() -> list[str]:
    """Names of every registered recipe."""
    return RECIPES.names()


def describe() -> list[dict]:
    """One dict per recipe: name, kind, formats, summary, parameters with defaults."""
    import dataclasses

    out = []
    for name in RECIPES.names():
        cls = RECIPES.get(name)
        params = {f.name: (None if f.default is dataclasses.MISSING else f.default) for f in dataclasses.fields(cls)}
        out.append({"name": name, "kind": cls.kind, "formats": list(cls.formats),
                    "summary": cls.summary, "params": params})
    return out


__all__ = [
    "ALIASES", "HANDLERS", "RECIPES", "TRAINING_RECIPES", "ApplyContext", "Autocast", "BASELINE", "Bf16",
    "ChannelsLast", "Cluster", "Compile", "CudnnBenchmark", "EdgeTpu", "ExecuTorch", "FoldBatchNorm", "Fp8", "Fp16",
    "Fuse", "Int8Dynamic",
    "Int4WeightOnly", "Int8Static", "Int8WeightOnly", "Pipeline", "Prune", "Qat", "Recipe", "SparseKernels", "Tf32", "Tfjs", "Tflite",
    "TfMicro", "ToOnnx", "ToOpenVino", "TorchScript", "Xla", "as_pipeline", "available", "compose", "describe", "parse_pipelines",
    "register_handler", "register_recipe",
]
