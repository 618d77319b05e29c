"""A trial: one pipeline measured against a baseline on a task, on this device, under fixed settings.

    trial = Trial(bench, pipeline, trial_id)      # picklable: a worker process or a Dask worker runs it
    record = trial.run()                          # -> TrialRecord, the one row type (inference and training)

A `Bench` is what every trial of a study shares: the baseline, the task, the device and the measuring
settings (`measure.InferenceBench`, `training.TrainingBench`). It names trials by content (`trial_id`): the
same model, data, pipeline, machine, libraries, workbench code and settings give the same id in any
process, and a change to any of them gives a new one — so a store never serves a stale row.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from .recipes import Pipeline
from .registry import Registry
from .results import COLUMNS

PHASES = ("infer", "train")
TRAIN_COLUMNS = ("phase", "train_loss", "steps", "scaling_efficiency")


def _encodable(value: Any) -> bool:
    try:
        json.dumps(value, default=json_default)
        return True
    except (TypeError, ValueError):
        return False


def json_default(value: Any) -> Any:
    """NumPy scalars as Python numbers (what json.dumps cannot write on its own)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store a {type(value).__name__} in a results row")


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """One trial's row (`results.COLUMNS`, plus `phase` and the training columns), immutable.

    `outputs` are the model's outputs on the task's evaluation inputs where a later trial needs them (the
    training baseline's, which every training trial's fidelity is measured against); not part of the row.
    """

    row: Mapping[str, Any]
    outputs: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        row = dict(self.row)
        missing = [c for c in ("trial_id", "pipeline", "status") if c not in row]
        if missing:
            raise ValueError(f"a trial record needs {', '.join(missing)}")
        row.setdefault("phase", "infer")
        object.__setattr__(self, "row", MappingProxyType(row))

    def __reduce__(self):  # the read-only row view does not pickle; the record rebuilds it
        return (TrialRecord, (dict(self.row), self.outputs))

    @property
    def trial_id(self) -> str:
        return self.row["trial_id"]

    @property
    def pipeline(self) -> str:
        return self.row["pipeline"]

    @property
    def status(self) -> str:
        return self.row["status"]

    @property
    def phase(self) -> str:
        return self.row["phase"]

    @property
    def is_baseline(self) -> bool:
        return bool(self.row.get("is_baseline"))

    def to_row(self) -> dict[str, Any]:
        """A mutable copy of the row."""
        return dict(self.row)

    def to_json(self) -> str:
        try:
            return json.dumps(dict(self.row), default=json_default, allow_nan=True)
        except (TypeError, ValueError) as exc:
            from .errors import DataError

            bad = [k for k, v in self.row.items() if not _encodable(v)]
            raise DataError(f"row {self.row.get('pipeline')!r}: column {', '.join(map(repr, bad)) or '?'} holds a "
                            f"value a results row cannot store ({exc}); rows hold numbers, text, booleans, None and "
                            "lists of them (a recipe's handler that sets a row field must convert it)") from None

    @classmethod
    def from_json(cls, text: str, outputs: np.ndarray | None = None) -> TrialRecord:
        return cls(json.loads(text), outputs)

    def __getitem__(self, column: str) -> Any:
        return self.row[column]


class Bench(abc.ABC):
    """What every trial of one study shares; `measure` runs one pipeline and returns its record."""

    phase: str = "infer"
    columns: tuple[str, ...] = COLUMNS
    # set by every bench: what its trials run on
    baseline: Any = None        # the ModelHandle of the model as given
    task: Any = None            # the Task
    device: Any = None          # the DeviceProfile
    threads: int = 1
    #: what `observe` sets: a worker that keeps its own copy of the bench between trials is sent these
    observed: tuple[str, ...] = ()

    @property
    @abc.abstractmethod
    def registry(self) -> Registry:
        """Where the recipe names of this bench's pipelines are looked up."""

    @abc.abstractmethod
    def settings(self) -> dict[str, Any]:
        """How this bench measures (batch, threads, timing, steps, ...): part of every trial's identity."""

    def identity(self) -> dict[str, Any]:
        """Everything besides the pipeline that decides a trial's answer (see `trial_identity`). The model's
        and the task's fingerprints are computed once per bench, before any worker gets a copy."""
        if "_fingerprints" not in self.__dict__:
            self._fingerprints = {"model": self.baseline.fingerprint(), "task": self.task.fingerprint()}
        return {"phase": self.phase, **self._fingerprints, "machine": self.device.fingerprint,
                "versions": self.device.versions, "settings": self.settings()}

    @abc.abstractmethod
    def measure(self, pipeline: Pipeline, trial_id: str) -> TrialRecord:
        """Measure one pipeline. Anything that goes wrong inside becomes the record's status and error."""

    def observe(self, record: TrialRecord) -> None:
        """Told of every record the study knows (measured or from the store): the baseline's is what
        later rows are relative to."""

    def trial_id(self, pipeline: Pipeline) -> str:
        return trial_identity(pipeline, self.identity())

    def skeleton(self, pipeline: Pipeline, trial_id: str) -> dict[str, Any]:
        row: dict[str, Any] = dict.fromkeys(self.columns)
        row.update(trial_id=trial_id, pipeline=pipeline.spec, status="ok", error=None, phase=self.phase,
                   framework=self.baseline.framework, threads=self.threads, **self.device.row_fields(),
                   is_baseline=pipeline.is_baseline, pareto=False,
                   model=self.baseline.name or type(self.baseline.payload).__name__,
                   model_id=self.identity()["model"][:16], task=getattr(self.task, "name", None),
                   created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        return row

    def failed(self, pipeline: Pipeline, trial_id: str, error: str, started: float) -> TrialRecord:
        """The record of a trial that never reported back (its worker crashed, hung or was lost)."""
        row = self.skeleton(pipeline, trial_id)
        row.update(status="failed", error=error, duration_s=round(time.perf_counter() - started, 3))
        return TrialRecord(row)


@dataclasses.dataclass(frozen=True)
class Trial:
    """One pipeline on a bench, named by its content address. Picklable (cloudpickle): executors send it to
    worker processes; built models are not part of it."""

    bench: Bench
    pipeline: Pipeline
    trial_id: str

    @classmethod
    def of(cls, bench: Bench, pipeline: Pipeline) -> Trial:
        return cls(bench, pipeline, bench.trial_id(pipeline))

    @property
    def threads(self) -> int:
        return self.bench.threads

    def run(self) -> TrialRecord:
        return self.bench.measure(self.pipeline, self.trial_id)

    def failed(self, error: str, started: float) -> TrialRecord:
        return self.bench.failed(self.pipeline, self.trial_id, error, started)


# -- identity ---------------------------------------------------------------------------------------

def trial_identity(pipeline: Pipeline, parts: dict[str, Any]) -> str:
    """sha256 of the pipeline (every recipe parameter, defaults included) and the bench's parts: the model's
    fingerprint (weights and code), the task's (evaluation and training data), the machine and library
    versions (the device fingerprint), the workbench's own code, and the measuring settings."""
    content = {"pipeline": [step.to_dict() for step in pipeline.steps], "workbench": code_digest(),
               "user code": user_code(pipeline), **parts}
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def user_code(pipeline: Pipeline) -> list[str]:
    """The code of recipes (and their handlers) that are not the workbench's own: a user's recipe edited in a
    notebook is measured again."""
    from . import _code
    from .recipes.base import HANDLERS

    digests = []
    for step in pipeline.steps:
        cls = type(step)
        if cls.__module__.startswith("workbench."):
            continue
        digests.append(_code.code_digest(cls))
        digests += [_code.code_digest(HANDLERS.get(key)) for key in HANDLERS.names()
                    if key.split("@")[0].removeprefix("train:") == cls.name]
    return digests


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 of the workbench package's source files (an edited checkout measures again)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


__all__ = ["Bench", "PHASES", "TRAIN_COLUMNS", "Trial", "TrialRecord", "code_digest", "json_default",
           "trial_identity"]
