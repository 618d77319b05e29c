"""What "a drop of one point" means for a task: the quality a search holds a configuration to.

    accuracy        points of accuracy (97.5% → 96.5% is a drop of 1.0)
    Spearman, ...   percent of the baseline's value lost (a drop of 0.5 keeps 99.5% of it)
    no labels       points of fidelity to the baseline (top-1 agreement, or mean cosine for embeddings)

A drop is always in percent units, so `max_drop=0.5` reads the same way on every task.
"""

from __future__ import annotations

import dataclasses
import math

from ..tasks import Task


@dataclasses.dataclass(frozen=True)
class Quality:
    column: str       # the results column it is read from: metric or fidelity
    name: str         # what it is called in sentences
    unit: str         # what a drop of 1.0 is
    relative: bool    # a drop relative to the baseline's value (Spearman) or in absolute points (accuracy)
    higher_is_better: bool = True

    def drop(self, baseline: float, value: float) -> float:
        """How much worse `value` is than `baseline`, in this quality's unit (negative: better)."""
        if baseline is None or value is None or not (math.isfinite(baseline) and math.isfinite(value)):
            return math.nan
        worse = (baseline - value) if self.higher_is_better else (value - baseline)
        if self.relative:
            return 100.0 * worse / abs(baseline) if baseline else math.nan
        return 100.0 * worse

    def describe_drop(self, drop: float) -> str:
        if drop != drop:
            return "unknown"
        if self.relative:
            return f"{100 - drop:.2f}% of the baseline's {self.name} kept"
        return f"a drop of {drop:.2f} {self.unit}" if drop >= 0 else f"a gain of {-drop:.2f} {self.unit}"


    def describe_change(self, drop: float, ci: tuple[float, float] | None = None) -> str:
        """The quality cost for a headline: "accuracy unchanged (95% CI −0.8 to +0.8 points)", "accuracy −0.3
        points", "99.72% of Spearman kept"."""
        if drop != drop:
            return f"{self.name} unknown"
        if self.relative:
            text = f"{100 - drop:.2f}% of {self.name} kept"
        elif abs(drop) < 0.05:
            text = f"{self.name} unchanged"
        else:
            text = f"{self.name} {-drop:+.1f} points".replace("-", "−")
        if ci is not None and ci[0] == ci[0]:
            unit = "%" if self.relative else " points"
            text += f" (95% CI of the drop {ci[0]:+.2f} to {ci[1]:+.2f}{unit})".replace("-", "−")
        return text


def quality_of(task: Task) -> Quality:
    """The quality a search holds configurations to on `task`."""
    if task.metric_name == "accuracy":
        return Quality("metric", "accuracy", "points of accuracy", relative=False)
    if task.metric_name:
        name = "Spearman" if task.metric_name == "spearman" else task.metric_name
        return Quality("metric", name, f"% of the baseline's {name}", relative=True,
                       higher_is_better=task.higher_is_better)
    name = "top-1 agreement" if task.fidelity_name == "top1" else "cosine fidelity"
    return Quality("fidelity", name, f"points of {name} with the baseline", relative=False)
