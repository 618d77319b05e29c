"""The panel's responsiveness on digits-cnn: a cached toggle → updated chart spec, and a new configuration
measured and shown (both through the panel model, as the widgets call it)."""

from __future__ import annotations

import itertools
import time

import workbench as wb
from workbench.profiling import TimingConfig

from .harness import Row, quantiles

#: what the panel times each trial with (the app uses the same)
PANEL_TIMING = TimingConfig(min_time_s=0.3, min_runs=20)
NEW = [dict(precision="int8-dynamic"), dict(precision="int8-static"), dict(sparsity=0.3),
       dict(sparsity=0.5, precision="int8-static"), dict(fusion="fuse"), dict(fusion="torchscript"),
       dict(sparsity=0.5, pattern="channel"), dict(precision="bf16")]


def run(rounds: int, timing: TimingConfig, threads: int) -> list[Row]:
    from workbench.widgets import TradeoffModel

    model, task = wb.zoo.load("digits-cnn")
    study = wb.Study(model, task, threads=threads, timing=PANEL_TIMING)
    panel = TradeoffModel(study, background=False)
    new_times = []
    for changes in NEW:  # each a configuration the study has not measured
        started = time.perf_counter()
        panel.set(**{"precision": "fp32", "sparsity": 0.0, "pattern": "unstructured", "fusion": "none", **changes})
        panel.chart().to_dict()
        new_times.append(time.perf_counter() - started)
    cached_times = []
    for changes in itertools.islice(itertools.cycle(NEW), max(3 * len(NEW), rounds)):
        started = time.perf_counter()
        panel.set(**{"precision": "fp32", "sparsity": 0.0, "pattern": "unstructured", "fusion": "none", **changes})
        panel.chart().to_dict()
        cached_times.append(time.perf_counter() - started)
    new_median, new_iqr = quantiles(new_times)
    cached_median, cached_iqr = quantiles(cached_times)
    return [
        Row("panel: cached toggle -> updated chart spec (digits-cnn)", cached_median, cached_iqr, "s",
            len(cached_times), "< 0.2 s", cached_median < 0.2, f"max {max(cached_times):.3f} s"),
        Row("panel: new configuration measured and shown (digits-cnn)", new_median, new_iqr, "s", len(new_times),
            "< 3 s", new_median < 3.0, f"max {max(new_times):.2f} s; timing {PANEL_TIMING.min_time_s} s / "
                                        f"{PANEL_TIMING.min_runs} calls per trial"),
    ]
