"""Tasks: evaluation data + a metric, and fidelity to the baseline (which needs no labels).

    wb.tasks.Classification(x_val, y_val)                  arrays or tensors
    wb.tasks.Classification(val_loader)                    a DataLoader of (x, y) batches
    wb.tasks.Classification(x_val, y_val, train=(x, y))    training data for calibration / fine-tuning
    wb.tasks.Unlabelled(x)                                 fidelity only
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from .errors import DataError
from .registry import Registry

TASKS: Registry[type] = Registry("task")


def _as_array(value: Any, what: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except Exception as exc:
        raise DataError(f"{what} cannot be read as an array ({type(value).__name__}): {exc}. Pass a rectangular "
                        "numeric array (ragged lists must be padded first)") from None
    if array.dtype == object:
        raise DataError(f"{what} is not numeric (dtype object): pass a rectangular numeric array "
                        "(ragged lists must be padded first)")
    if array.ndim == 0:
        raise DataError(f"{what} is a scalar; pass an array with the samples on axis 0")
    if len(array) == 0:
        raise DataError(f"{what} is empty (shape {array.shape}): a task needs at least one sample")
    return array


def _from_loader(loader: Any, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    xs, ys = [], []
    for item in loader:
        if isinstance(item, (tuple, list)) and len(item) >= 2:
            xs.append(_as_array(item[0], f"{what} batch inputs"))
            ys.append(_as_array(item[1], f"{what} batch labels"))
        else:
            xs.append(_as_array(item, f"{what} batch"))
    if not xs:
        raise DataError(f"{what} yielded no batches: a task needs at least one sample")
    x = np.concatenate(xs)
    y = np.concatenate(ys) if ys and len(ys) == len(xs) else None
    return x, y


def _is_loader(value: Any) -> bool:
    return hasattr(value, "__iter__") and not isinstance(value, (np.ndarray, list, tuple, str, bytes)) \
        and not hasattr(value, "shape")


def hash_array(h: Any, array: Any) -> None:
    """Feed an array's dtype, shape and every value to a hash (object arrays — sentences — item by item)."""
    if array is None:
        h.update(b"none\0")
        return
    array = np.asarray(array)
    h.update(f"{array.dtype}{array.shape}".encode())
    if array.dtype == object:
        for item in array.ravel():
            h.update(str(item).encode("utf-8", "surrogatepass") + b"\0")
    else:
        h.update(np.ascontiguousarray(array).tobytes())


def _check_finite(x: np.ndarray, what: str) -> None:
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise DataError(f"{what} holds {bad} NaN/Inf value(s): clean or drop those samples first")


class Task:
    """Base task: evaluation inputs, optional labels and training data, a metric and fidelity."""

    metric_name: str | None = None
    higher_is_better = True
    fidelity_name = "cosine"
    #: batch for computing the outputs that are scored (None: the study's timed batch, as for text, where
    #: the batch decides the padding)
    eval_batch_size: int | None = 256

    def __init__(self, inputs: Any, *, train: Any = None, name: str = "task"):
        self.name = name
        self.inputs = inputs
        self.train = train

    def __len__(self) -> int:
        return len(self.inputs)

    # -- data ----------------------------------------------------------------------------------
    def sample(self, n: int) -> np.ndarray:
        """The first `n` evaluation inputs (repeated if the task has fewer): the timing batch."""
        if n < 1:
            raise DataError(f"batch size must be at least 1, got {n}")
        idx = np.arange(n) % len(self.inputs)
        return self.inputs[idx]

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self.inputs), batch_size):
            yield self.inputs[start:start + batch_size]

    def restore(self, outputs: np.ndarray) -> np.ndarray:
        """Outputs of `batches()` back in the order of `inputs` (tasks that batch by length reorder them)."""
        return outputs

    def for_model(self, handle: Any) -> Task:
        """The task as `handle` batches it (text: sorted by the model's token counts); itself by default."""
        return self

    def calibration(self, n: int) -> np.ndarray:
        """Up to `n` inputs for calibration, from the training data when there is some."""
        source = self.train[0] if self.train is not None else self.inputs
        return source[:n]

    @property
    def calibration_source(self) -> str:
        """Where `calibration` draws from, in words (the notes of rows that calibrate say it)."""
        if self.train is not None:
            return "the training data"
        return "the evaluation inputs (the task has no training data: an optimistic calibration)"

    def fingerprint(self) -> str:
        """sha256 of everything that decides a trial's answer: the task's kind and settings, the evaluation
        inputs, the labels and the training data (it drives calibration and fine-tuning)."""
        from ._code import code_digest

        kind = type(self)
        h = hashlib.sha256(f"{kind.__module__}.{kind.__qualname__}".encode())
        if not kind.__module__.startswith("workbench."):  # a user's task: its scoring code decides the answer
            h.update(code_digest(kind).encode())
        h.update(repr((self.name, self.eval_batch_size, self.fidelity_name)).encode())
        train = self.train if self.train is not None else ()
        for array in (self.inputs, getattr(self, "labels", None), *train):
            hash_array(h, array)
        return h.hexdigest()

    # -- scoring -------------------------------------------------------------------------------
    def score(self, outputs: np.ndarray) -> float | None:
        """The task metric on the outputs for all evaluation inputs (None when the task has no labels)."""
        return None

    def check_outputs(self, outputs: np.ndarray) -> None:
        """Raise DataError when a model's outputs cannot be scored by this task."""
        if len(outputs) != len(self.inputs):
            raise DataError(f"the model returned {len(outputs)} outputs for {len(self.inputs)} inputs")

    def fidelity(self, outputs: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        """Agreement with the baseline's outputs: cosine (mean and worst), max-abs error, top-1 agreement."""
        a = outputs.reshape(len(outputs), -1).astype(np.float64)
        b = reference.reshape(len(reference), -1).astype(np.float64)
        if a.shape != b.shape:
            raise DataError(f"outputs of shape {outputs.shape} cannot be compared with the baseline's {reference.shape}")
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cos = np.where(norms > 0, (a * b).sum(axis=1) / np.where(norms > 0, norms, 1), 1.0)
        out = {
            "fidelity_cosine": float(cos.mean()),
            "fidelity_cosine_min": float(cos.min()),
            "fidelity_max_abs": float(np.abs(a - b).max()),
        }
        if a.shape[1] > 1:
            out["fidelity_top1"] = float((a.argmax(axis=1) == b.argmax(axis=1)).mean())
        out["fidelity"] = out.get("fidelity_top1", out["fidelity_cosine"]) if self.fidelity_name == "top1" \
            else out["fidelity_cosine"]
        return out

    def describe(self) -> str:
        return f"{self.name}: {len(self)} samples, metric {self.metric_name or 'none (fidelity only)'}"

    # -- parts and resamples (a search selects on one part and reports on another) ----------------
    @property
    def units(self) -> int:
        """How many independent units the metric is computed over (samples; STS: sentence pairs): what `split`
        divides and a bootstrap resamples."""
        return len(self.inputs)

    def subset(self, units: np.ndarray, *, name: str | None = None) -> Task:
        """The same task over these units (training data kept: it is not evaluation data)."""
        part = copy.copy(self)
        part.inputs = self.inputs[units]
        if getattr(self, "labels", None) is not None:
            part.labels = self.labels[units]
        part.name = name or f"{self.name}[{len(units)}]"
        return part

    def split(self, held_out: float = 0.5, *, seed: int = 0) -> tuple[Task, Task]:
        """(selection part, held-out part): the units shuffled with `seed`, `held_out` of them set apart."""
        if isinstance(held_out, bool) or not isinstance(held_out, (int, float)) or not 0 < held_out < 1:
            raise DataError(f"held_out must be a fraction between 0 and 1, got {held_out!r}")
        n = self.units
        k = int(round(n * held_out))
        if k < 1 or k > n - 1:
            raise DataError(f"{self.name} has {n} unit(s): too few to hold {held_out:.0%} out and keep some to "
                            "select on; pass a held-out task of its own")
        order = np.random.default_rng(seed).permutation(n)
        held, kept = np.sort(order[:k]), np.sort(order[k:])
        return (self.subset(kept, name=f"{self.name} (selection part, {len(kept)} of {n})"),
                self.subset(held, name=f"{self.name} (held-out part, {k} of {n})"))

    def score_units(self, outputs: np.ndarray, units: np.ndarray) -> float | None:
        """The metric over some units (a bootstrap resample: indices may repeat); None: no metric."""
        return None


def training_data(task: Task | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(x, y) when the task has labelled classification training data to fine-tune on, else None."""
    if task is None or task.train is None or task.metric_name != "accuracy":
        return None
    return task.train


class Unlabelled(Task):
    """Inputs only: the study reports fidelity to the baseline, no task metric."""

    def __init__(self, inputs: Any, *, name: str = "unlabelled"):
        x = _from_loader(inputs, "inputs")[0] if _is_loader(inputs) else _as_array(inputs, "inputs")
        _check_finite(x, "inputs")
        super().__init__(x, name=name)


class Classification(Task):
    """Top-1 accuracy on labelled inputs; fidelity is top-1 agreement with the baseline."""

    metric_name = "accuracy"
    fidelity_name = "top1"

    def __init__(self, x: Any, y: Any = None, *, train: Any = None, name: str = "classification"):
        if y is None and _is_loader(x):
            x, y = _from_loader(x, "the data loader")
        if y is None:
            raise DataError("Classification needs labels: pass (x, y) or a loader of (x, y) batches; "
                            "for data without labels use tasks.Unlabelled(x)")
        x, y = _as_array(x, "x"), _as_array(y, "y")
        _check_finite(x, "x")
        y = self._labels(y, "y")
        if len(x) != len(y):
            raise DataError(f"x has {len(x)} samples but y has {len(y)} labels: they must match one to one")
        if train is not None:
            if _is_loader(train):
                tx, ty = _from_loader(train, "train")
            elif isinstance(train, (tuple, list)) and len(train) == 2:
                tx, ty = _as_array(train[0], "train x"), _as_array(train[1], "train y")
            else:
                raise DataError("train must be an (x, y) pair or a loader of (x, y) batches")
            _check_finite(tx, "train x")
            if ty is None or len(tx) != len(ty):
                raise DataError("train x and y must have the same number of samples")
            if tx.shape[1:] != x.shape[1:]:
                raise DataError(f"train inputs have shape {tx.shape[1:]} per sample but x has {x.shape[1:]}")
            train = (tx, self._labels(ty, "train y"))
        super().__init__(x, train=train, name=name)
        self.labels = y
        self.num_classes = int(max(y.max(), train[1].max() if train else 0)) + 1

    @staticmethod
    def _labels(y: np.ndarray, what: str) -> np.ndarray:
        if y.ndim != 1:
            raise DataError(f"{what} must be one class index per sample (1-D), got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            if np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all():
                y = y.astype(np.int64)
            else:
                raise DataError(f"{what} must hold integer class indices, got dtype {y.dtype}")
        if y.min() < 0:
            raise DataError(f"{what} holds negative class indices (min {y.min()})")
        return y.astype(np.int64)

    def check_outputs(self, outputs: np.ndarray) -> None:
        super().check_outputs(outputs)
        if outputs.ndim != 2:
            raise DataError(f"a classifier must output one score per class, shape (n, classes); got {outputs.shape}")
        if outputs.shape[1] < self.num_classes:
            raise DataError(f"the model outputs {outputs.shape[1]} class scores but the labels go up to "
                            f"{self.num_classes - 1}")

    def score(self, outputs: np.ndarray) -> float:
        return float((outputs.argmax(axis=1) == self.labels).mean())

    def score_units(self, outputs: np.ndarray, units: np.ndarray) -> float:
        return float((outputs[units].argmax(axis=1) == self.labels[units]).mean())

    def describe(self) -> str:
        return f"{self.name}: {len(self)} samples, {self.num_classes} classes, metric accuracy"


TASKS.register("classification", Classification)
TASKS.register("unlabelled", Unlabelled)


def outputs_on(handle: Any, task: Task, batch_size: int, threads: int) -> np.ndarray:
    """`handle`'s outputs on every input of `task`, in the task's order (batched the way the model pads)."""
    task = task.for_model(handle)
    with handle.session(threads):
        batches = [handle.predict(b) for b in task.batches(batch_size)]
    return task.restore(np.concatenate(batches))
