"""The held-out check: a configuration chosen on one split, scored on another the search never looked at, with a
paired bootstrap confidence interval for its quality change (so "is this drop real?" has an answer)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..tasks import Task
from .quality import Quality

#: bootstrap resamples and the confidence level of the interval
RESAMPLES = 1000
LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """One configuration on the held-out split, against the baseline on the same inputs."""

    pipeline: str
    value: float          # its quality there (accuracy, Spearman, fidelity)
    baseline: float       # the baseline's
    drop: float           # in the quality's unit (see quality.py)
    ci_low: float         # the drop's 95% interval (paired bootstrap; nan where the task cannot resample)
    ci_high: float
    units: int            # samples (or sentence pairs) it was scored on
    passed: bool          # drop <= max_drop

    def describe(self, quality: Quality) -> str:
        interval = (f" (95% CI of the drop {self.ci_low:+.2f} to {self.ci_high:+.2f})"
                    if self.ci_low == self.ci_low else "")
        real = ""
        if self.ci_low == self.ci_low:
            real = ("; the drop is real at this sample size" if self.ci_low > 0 else
                    "; the interval includes no change: not distinguishable from the baseline at this sample size")
        return (f"{quality.name} {self.value:.4f} vs the baseline's {self.baseline:.4f} on {self.units} held-out "
                f"unit(s): drop {self.drop:+.2f}{interval}{real}")


def _value(task: Task, quality: Quality, outputs: np.ndarray, reference: np.ndarray,
           units: np.ndarray | None) -> float | None:
    """The quality of `outputs` (over `units`, all when None); None where the task cannot score a subset."""
    if quality.column == "metric":
        if units is None:
            return task.score(outputs)
        return task.score_units(outputs, units)
    index = slice(None) if units is None else units
    return task.fidelity(outputs[index], reference[index])["fidelity"]


def check(pipeline: str, task: Task, quality: Quality, outputs: np.ndarray, reference: np.ndarray,
          max_drop: float, *, seed: int = 0) -> HeldOut:
    """Score `outputs` against the baseline's `reference` outputs on `task`; the drop's interval resamples the
    task's units with replacement (the same resample for both: a paired bootstrap)."""
    value = _value(task, quality, outputs, reference, None)
    baseline = _value(task, quality, reference, reference, None)
    drop = quality.drop(baseline, value)
    low = high = math.nan
    if quality.column != "metric" or task.score_units(reference, np.arange(min(task.units, 2))) is not None:
        rng = np.random.default_rng(seed)
        drops = []
        for _ in range(RESAMPLES):
            units = rng.integers(0, task.units, task.units)
            drops.append(quality.drop(_value(task, quality, reference, reference, units),
                                      _value(task, quality, outputs, reference, units)))
        drops = np.array(drops, dtype=float)
        drops = drops[np.isfinite(drops)]
        if len(drops):
            tail = (1 - LEVEL) / 2 * 100
            low, high = (float(v) for v in np.percentile(drops, [tail, 100 - tail]))
    return HeldOut(pipeline, float(value), float(baseline), float(drop), low, high, task.units,
                   bool(drop <= max_drop + 1e-12))
