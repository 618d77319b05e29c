"""How long the per-layer view takes to be ready for one configuration (goals: digits-cnn within 3 s, MiniLM-L6
within 30 s on the machine at hand).

Each round builds a fresh study whose trials are already measured (the view is what is timed: two layer traces,
two instrumented timings, the join), for digits-cnn `int8-dynamic` and `to-onnx + int8-dynamic`, and for MiniLM
`to-onnx + int8-dynamic`. The view's coverage (layers' times / measured median) is reported beside it.
"""

from __future__ import annotations

import time

import workbench as wb

from .harness import Row, quantiles

CASES = (("digits-cnn", "int8-dynamic", 3.0), ("digits-cnn", "to-onnx + int8-dynamic", 3.0),
         ("minilm-l6", "to-onnx + int8-dynamic", 30.0))


def run(rounds: int, timing: wb.TimingConfig, threads: int) -> list[Row]:
    rows = []
    loaded = {}
    for name, spec, goal in CASES:
        if name not in loaded:
            loaded[name] = wb.zoo.load(name)
        model, task = loaded[name]
        seconds, coverage = [], []
        for _ in range(max(2, rounds // 3)):
            study = wb.Study(model, task, timing=timing, threads=threads, measure_memory=False)
            study.trial(spec)
            started = time.perf_counter()
            view = study.layers(spec)
            seconds.append(time.perf_counter() - started)
            coverage.append(view.coverage)
        median, iqr = quantiles(seconds)
        rows.append(Row(f"per-layer view ready: {name} {spec}", median, iqr, "s", len(seconds), f"< {goal:g} s",
                        median < goal, f"layers' times / measured median {quantiles(coverage)[0]:.2f}"))
    return rows
