"""Ratios measured in one run: variants interleaved round by round, medians with spread.

These machines are noisy (another process can load a core at any time), so every comparison times
A and B alternately for several rounds and reports the median of the per-round ratios with its IQR.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from workbench.profiling import TimingConfig, measure_latency


@dataclasses.dataclass
class Row:
    benchmark: str
    value: float
    spread: float          # IQR of the per-round values (same unit as value)
    unit: str
    rounds: int
    goal: str = ""
    met: bool | None = None
    detail: str = ""


def quantiles(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(np.median(arr)), float(np.percentile(arr, 75) - np.percentile(arr, 25))


def interleaved_p50(fns: dict[str, Callable[[], object]], rounds: int, timing: TimingConfig,
                    sync: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Per-round median latency (ms) of each function, the functions taking turns in every round."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    for r in range(rounds):
        for name in (order if r % 2 == 0 else order[::-1]):  # alternate who goes first
            out[name].append(measure_latency(fns[name], timing, sync=sync).p50)
    return out


def ratio_row(name: str, base: list[float], variant: list[float], goal_min: float | None = None,
              goal_text: str = "", detail: str = "") -> Row:
    ratios = [b / v for b, v in zip(base, variant)]
    median, iqr = quantiles(ratios)
    met = None if goal_min is None else median >= goal_min
    return Row(name, median, iqr, "x", len(ratios), goal_text, met, detail)


def format_table(rows: list[Row]) -> str:
    header = f"| {'benchmark':<68} | {'median':>9} | {'IQR':>7} | {'n':>3} | {'goal':<14} | {'met':<4} | detail"
    lines = [header, "|" + "-" * 70 + "|" + "-" * 11 + "|" + "-" * 9 + "|" + "-" * 5 + "|" + "-" * 16 + "|"
             + "-" * 6 + "|" + "-" * 8]
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "NO")
        lines.append(f"| {r.benchmark:<68} | {r.value:>8.3f}{r.unit:<1} | {r.spread:>7.3f} | {r.rounds:>3} | "
                     f"{r.goal:<14} | {met:<4} | {r.detail}")
    return "\n".join(lines)
