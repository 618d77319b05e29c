"""Recipes: frozen configs, registered by name, composed into pipelines."""

from . import fusion, quantization, sparsity  # noqa: F401  (registers the recipes)
from .base import RECIPES, ApplyContext, Recipe, register_handler, register_recipe
from .fusion import FoldBatchNorm
from .pipeline import BASELINE, Pipeline, as_pipeline, parse_pipelines
from .quantization import Int8Dynamic
from .sparsity import Prune


def available() -> list[str]:
    """Names of every registered recipe."""
    return RECIPES.names()


def describe() -> list[dict]:
    """One dict per recipe: name, kind, frameworks, summary, parameters with defaults."""
    import dataclasses

    out = []
    for name in RECIPES.names():
        cls = RECIPES.get(name)
        params = {f.name: (None if f.default is dataclasses.MISSING else f.default) for f in dataclasses.fields(cls)}
        out.append({"name": name, "kind": cls.kind, "frameworks": list(cls.frameworks),
                    "summary": cls.summary, "params": params})
    return out


__all__ = [
    "RECIPES", "ApplyContext", "BASELINE", "FoldBatchNorm", "Int8Dynamic", "Pipeline", "Prune", "Recipe",
    "as_pipeline", "available", "describe", "parse_pipelines", "register_handler", "register_recipe",
]
