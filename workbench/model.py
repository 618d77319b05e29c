"""The model handle: what a recipe transforms and what the profiler measures.

A handle wraps a framework model (a torch nn.Module here; Keras, TFLite and ONNX in their backends), knows
its framework, runtime and precision, an example input, how to `predict(batch) -> numpy` and how to
`serialize() -> bytes`. Recipes return new handles; a handle is never mutated after it is made.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ModelError

if TYPE_CHECKING:
    from .recipes import Recipe


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
    """Framework-neutral view of a model. Subclasses live in `workbench.backends.<framework>`.

    The contract every handle keeps (and the only names the core uses):

    - `payload`: the wrapped model (an nn.Module, a Keras model, ONNX or TFLite bytes, an ExecuTorch program);
    - `format`: what the payload is — the key recipe handlers are registered under (torch, torchscript,
      executorch, onnx, keras, tflite); `runtime` is what runs it and `framework` the one it came from;
    - `prepare(batch)`: task inputs → what the runtime takes (done ahead of the timed call);
    - `predict`, `runner`, `serialize`, `weight_stats`, `flops`, `peak_memory`, `session`, `fingerprint`,
      `helper_processes`;
    - `lineage`: the recipes applied, in order (appended by `Recipe.apply`, never by a handler);
    - `source`: the handle it was converted or exported from (None for a model as given).
    """

    framework: str = ""
    format: str = ""
    runtime: str = "eager"
    precision: str = "fp32"
    fused: bool = False
    device: str = "cpu"
    engine: str | None = None                 # e.g. the torch quantized engine
    notes: tuple[str, ...] = ()               # facts a reader must know (emulated precision, partial quantization)
    lineage: tuple[Recipe, ...] = ()          # the recipes applied, in order
    example_input: Any = None
    payload: Any = None
    source: ModelHandle | None = None
    changed_layers: tuple[str, ...] = ()      # layers the last weights/precision recipe changed (what exclude= names)
    name: str | None = None                   # what people call the model (zoo name, file name): the rows' `model`

    @abc.abstractmethod
    def prepare(self, batch: Any) -> Any:
        """Task inputs (NumPy arrays, sentences, ...) → what this runtime's call takes."""

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

    def numpy_inputs(self, batch: Any) -> Any:
        """The batch as NumPy arrays, the way an exported graph takes it (float64 narrowed to float32)."""
        if isinstance(batch, dict):
            return {k: np.asarray(v) for k, v in batch.items()}
        array = np.asarray(batch)
        return array.astype(np.float32) if array.dtype == np.float64 else array

    def batch_note(self, batch: Any) -> str | None:
        """What a reader must know about the timed batch (text: the padded sequence length), or None."""
        return self.source.batch_note(batch) if self.source is not None else None

    def input_lengths(self, inputs: Any) -> np.ndarray | None:
        """The length of each input as this model sees it (text: tokens after truncation), what batching by
        length sorts on; None where inputs have no length (tensors of one shape)."""
        return self.source.input_lengths(inputs) if self.source is not None else None

    def flops(self, batch: Any) -> int | None:
        """Floating-point operations of one forward pass on `batch`, where the backend can count them."""
        return self.source.flops(batch) if self.source is not None else None

    def peak_memory(self, batch: Any) -> int | None:
        """Peak bytes allocated during one forward pass on `batch` (activations + workspace)."""
        return None

    def op_types(self) -> frozenset[str]:
        """The kinds of layer or operator the model is made of (torch module classes, Keras layer classes, ONNX
        op types): what a search asks before offering a recipe. Empty where the format cannot say."""
        return frozenset()

    def layer_trace(self, batch: Any) -> Any:
        """Every layer's output on `batch` (a `layerprobe.LayerTrace`), for the per-layer view."""
        from .errors import UnsupportedError

        raise UnsupportedError("per-layer view", f"not available for {self.format} models ({self.spec}) yet")

    def layer_times(self, batch: Any, threads: int | None = None, **kwargs: Any) -> Any:
        """Each layer's share of one forward on `batch` and the kernel that ran (a `layerprobe.LayerTimes`)."""
        from .errors import UnsupportedError

        raise UnsupportedError("per-layer view", f"per-layer times are not available for {self.format} models "
                                                 f"({self.spec}) yet")

    def fingerprint(self) -> str:
        """A digest of what decides this model's answers (weights and code), equal across processes."""
        return hashlib.sha256(self.serialize()).hexdigest()

    def to_device(self, device: str) -> ModelHandle:
        """A copy of this model on `device`; only torch models move off the CPU."""
        if device == "cpu":
            return self
        raise ModelError(f"target={device!r}: {type(self).__name__} models run on the CPU only")

    @contextlib.contextmanager
    def session(self, threads: int | None = None) -> Iterator[None]:
        """Context in which `predict` / `runner` run with `threads` intra-op threads."""
        yield

    def synchronize(self) -> None:
        """Wait for queued device work (CUDA); a no-op on the CPU."""

    def helper_processes(self) -> tuple[int, ...]:
        """Ids of the processes that run this model's inference for it (a runtime outside Python), whose CPU time
        is the timing's own, not other load."""
        return ()

    def evolve(self, **changes: Any) -> ModelHandle:
        """A copy with some attributes replaced (recipes build their result this way)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        for key, value in changes.items():
            if not hasattr(self, key):
                raise AttributeError(f"{type(self).__name__} has no attribute {key!r}")
            setattr(new, key, value)
        return new

    @property
    def spec(self) -> str:
        """The pipeline that made this handle from the model as given."""
        return " + ".join(step.to_spec() for step in self.lineage) or "baseline"

    def describe(self) -> str:
        return f"{self.framework}/{self.format}/{self.runtime}/{self.precision} [{self.spec}]"

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
    if framework is not None:
        from .backends import load_backend

        backend = load_backend(framework)
        if framework == "torch":
            return backend.TorchModel(model, example_input)
        if framework == "keras":
            return backend.KerasModel(model, example_input)
        return backend.OrtModel(model.SerializeToString(), example_input=example_input)
    raise ModelError(
        f"cannot use a {type(model).__module__}.{type(model).__qualname__} as a model: pass a torch.nn.Module, a "
        "Keras model (keras / tf.keras / tf_keras) or an onnx.ModelProto, with example_input or a task to take one "
        "from, or a workbench ModelHandle"
    )


def detect_framework(model: Any) -> str | None:
    """The framework of a model object, judged by its class hierarchy (imports nothing)."""
    names = {f"{c.__module__}.{c.__qualname__}" for c in type(model).__mro__}
    if "torch.nn.modules.module.Module" in names:
        return "torch"
    if any(n.startswith(("keras.src.models.model.Model", "tf_keras.src.engine.training.Model")) for n in names):
        return "keras"
    if any(n.startswith("onnx.") and n.endswith(".ModelProto") for n in names):
        return "onnx"
    return None
