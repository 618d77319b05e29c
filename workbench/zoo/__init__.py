"""Built-in models on real data, trained deterministically and cached: `wb.zoo.load("digits-cnn")`.

Each entry is a loader `(split) -> (model handle, task)` registered by name. Trained weights are cached
under the workbench cache directory (keyed by the training recipe and the torch version), so the second
load is instant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import Registry

ZOO: Registry[Callable[..., Any]] = Registry("zoo model")
DEFAULT_MODEL = "digits-cnn"


def register(name: str, loader: Callable[..., Any]) -> None:
    ZOO.register(name, loader)


def names() -> list[str]:
    return ZOO.names()


def load(name: str = DEFAULT_MODEL, *, split: str = "val") -> tuple[Any, Any]:
    """(model handle, task) for a zoo entry; `split` picks the evaluation data (val or test)."""
    handle, task = ZOO.get(name)(split=split)
    handle.name = name
    return handle, task


def _digits(name: str) -> Callable[..., Any]:
    def loader(split: str = "val"):
        from .digits import load_digits_model

        return load_digits_model(name, split)

    return loader


for _name in ("digits-cnn", "digits-mlp", "digits-cnn32"):
    register(_name, _digits(_name))


def _digits_keras(name: str) -> Callable[..., Any]:
    """Keras 3 CNNs on the same digits split (channels-last), for the TensorFlow path (see digits_keras.py)."""
    def loader(split: str = "val"):
        from .digits_keras import load as load_keras

        return load_keras(split, name)

    return loader


for _name in ("digits-keras", "digits-keras-mobilenet"):
    register(_name, _digits_keras(_name))


def _minilm(split: str = "val"):
    """all-MiniLM-L6-v2 (real pretrained weights, shipped in a package) with the built-in sentences."""
    from ..backends.torch.text import load_minilm
    from ..text import EmbeddingFidelity

    return load_minilm(), EmbeddingFidelity()


register("minilm-l6", _minilm)

#: what pages (the dashboard, the report) measure a zoo model on when no data is given, if not its own task:
#: the number people know for MiniLM is its STS Benchmark Spearman (the dev split ships in data/)
PAGE_DATA = {"minilm-l6": ("stsbenchmark/sts-dev.csv", "sts")}


def page_data(name: str) -> tuple[str, str] | None:
    """(data path, task kind) a page uses for zoo model `name`, or None for the model's own task."""
    from ..paths import data_dir

    entry = PAGE_DATA.get(name)
    return (str(data_dir() / entry[0]), entry[1]) if entry else None
