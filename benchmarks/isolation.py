"""What isolating the dashboard's trials costs: the warm worker (`WarmExecutor`) against running them inline.

Per round, a fresh inline study and a fresh warm study of digits-cnn (as the dashboard makes one per session),
alternating which goes first:
  first trial   the study's first (its baseline): the warm worker receives the bench (model, task) then
  new trial     a pipeline not measured before, the bench already in the worker
  cached trial  the same pipeline asked again: served from the study's memory, no worker involved
Overhead = (warm − inline) / inline of the wall time of `Study.trial`; goal: under 10% for a new trial.
"""

from __future__ import annotations

import time

import workbench as wb
from workbench.profiling import TimingConfig

from .harness import Row, quantiles

SPECS = ("int8-dynamic", "prune(0.5, finetune=0)")


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _session(model, task, timing, threads, executor, spec) -> dict[str, float]:
    with wb.Study(model, task, timing=timing, threads=threads, measure_memory=False, executor=executor) as study:
        if isinstance(study.executor, wb.WarmExecutor):
            time.sleep(3.0)  # the page takes this long to build: the worker's imports are done by then
        return {"first": _timed(lambda: study.trial("baseline")), "new": _timed(lambda: study.trial(spec)),
                "cached": _timed(lambda: study.trial(spec))}


def run(rounds: int, timing: TimingConfig, threads: int) -> list[Row]:
    model, task = wb.zoo.load("digits-cnn")
    rows = []
    for spec in SPECS:
        seen: dict[str, dict[str, list[float]]] = {"inline": {}, "warm": {}}
        for r in range(rounds):
            order = ("inline", "warm") if r % 2 == 0 else ("warm", "inline")
            for name in order:
                executor = "inline" if name == "inline" else wb.WarmExecutor(timeout_s=600)
                for kind, seconds in _session(model, task, timing, threads, executor, spec).items():
                    seen[name].setdefault(kind, []).append(seconds)
        for kind, goal in (("first", None), ("new", 10.0), ("cached", None)):
            inline, warm = seen["inline"][kind], seen["warm"][kind]
            overhead = [100 * (w - i) / i for w, i in zip(warm, inline)]
            median, iqr = quantiles(overhead)
            unit = "ms" if kind == "cached" else "s"
            scale = 1e3 if kind == "cached" else 1.0
            detail = (f"warm {quantiles(warm)[0] * scale:.3g} {unit}, inline {quantiles(inline)[0] * scale:.3g} "
                      f"{unit} (median)")
            rows.append(Row(f"digits-cnn warm-worker overhead, {kind} trial: {spec}", median, iqr, "%", rounds,
                            "" if goal is None else f"< {goal:g}%", None if goal is None else median < goal, detail))
    return rows
