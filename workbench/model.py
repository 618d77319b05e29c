"""The model handle: what a recipe transforms and what the profiler measures.

A handle wraps a framework model (a torch nn.Module here; Keras, TFLite and ONNX in their backends), knows
its framework, runtime and precision, an example input, how to `predict(batch) -> numpy` and how to
`serialize() -> bytes`. Recipes return new handles; a handle is never mutated after it is made.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from .errors import ModelError


@dataclasses.dataclass(frozen=True)
class WeightStats:
    params: int            # elements of every weight and bias tensor
    nonzero_params: int
    prunable: int          # elements of Conv/Linear weight matrices (what pruning acts on)
    prunable_nonzero: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.prunable_nonzero / self.prunable if self.prunable else 0.0

    @classmethod
    def from_arrays(cls, arrays: Iterable[np.ndarray]) -> WeightStats:
        """Counts over weight arrays; those of 2+ dimensions (kernels, matrices) are what pruning acts on."""
        params = nonzero = prunable = prunable_nonzero = 0
        for array in arrays:
            n, nz = int(array.size), int(np.count_nonzero(array))
            params, nonzero = params + n, nonzero + nz
            if array.ndim >= 2:
                prunable, prunable_nonzero = prunable + n, prunable_nonzero + nz
        return cls(params, nonzero, prunable, prunable_nonzero)


class ModelHandle(abc.ABC):
    """Framework-neutral view of a model. Subclasses live in `workbench.backends.<framework>`."""

    framework: str = ""
    runtime: str = "eager"
    precision: str = "fp32"
    fused: bool = False
    engine: str | None = None                 # e.g. the torch quantized engine
    notes: tuple[str, ...] = ()               # facts a reader must know (emulated precision, partial quantization)
    lineage: tuple[str, ...] = ()             # specs of the recipes applied, in order
    example_input: Any = None

    @abc.abstractmethod
    def predict(self, batch: Any) -> np.ndarray:
        """Outputs for a batch of inputs, as a float NumPy array with the batch on axis 0."""

    @abc.abstractmethod
    def serialize(self) -> bytes:
        """The model as the bytes one would ship."""

    @abc.abstractmethod
    def runner(self, batch: Any) -> Callable[[], object]:
        """A zero-argument callable doing one inference on `batch` (inputs prepared ahead, for timing)."""

    @abc.abstractmethod
    def weight_stats(self) -> WeightStats:
        ...

    def flops(self, batch: Any) -> int | None:
        """Floating-point operations of one forward pass on `batch`, where the backend can count them."""
        return None

    def peak_memory(self, batch: Any) -> int | None:
        """Peak bytes allocated during one forward pass on `batch` (activations + workspace)."""
        return None

    @contextlib.contextmanager
    def session(self, threads: int | None = None) -> Iterator[None]:
        """Context in which `predict` / `runner` run with `threads` intra-op threads."""
        yield

    def synchronize(self) -> None:
        """Wait for queued device work (CUDA); a no-op on the CPU."""

    def evolve(self, **changes: Any) -> ModelHandle:
        """A copy with some attributes replaced (recipes build their result this way)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        for key, value in changes.items():
            if not hasattr(self, key):
                raise AttributeError(f"{type(self).__name__} has no attribute {key!r}")
            setattr(new, key, value)
        return new

    def describe(self) -> str:
        steps = " + ".join(self.lineage) or "baseline"
        return f"{self.framework}/{self.runtime}/{self.precision} [{steps}]"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class ThreadedRuntime:
    """For handles whose runtime takes its thread count when a session / interpreter is made: `session(threads)`
    sets `_threads` for what is made inside it (ONNX Runtime sessions, LiteRT interpreters)."""

    _threads: int | None = None

    @contextlib.contextmanager
    def session(self, threads: int | None = None) -> Iterator[None]:
        previous, self._threads = self._threads, threads
        try:
            yield
        finally:
            self._threads = previous


def wrap(model: Any, example_input: Any = None) -> ModelHandle:
    """Wrap a framework model (or pass a handle through). Raises ModelError for anything else."""
    if isinstance(model, ModelHandle):
        return model
    framework = detect_framework(model)
    if framework == "torch":
        from .backends.torch import TorchModel

        return TorchModel(model, example_input)
    if framework == "keras":
        from .backends import load_backend

        return load_backend("keras").KerasModel(model, example_input)
    raise ModelError(
        f"cannot use a {type(model).__module__}.{type(model).__qualname__} as a model: pass a torch.nn.Module or a "
        "Keras model (keras / tf.keras / tf_keras), with example_input or a task to take one from, or a workbench "
        "ModelHandle"
    )


def detect_framework(model: Any) -> str | None:
    """The framework of a model object, judged by its class hierarchy (imports nothing)."""
    names = {f"{c.__module__}.{c.__qualname__}" for c in type(model).__mro__}
    if "torch.nn.modules.module.Module" in names:
        return "torch"
    if any(n.startswith(("keras.src.models.model.Model", "tf_keras.src.engine.training.Model")) for n in names):
        return "keras"
    return None
