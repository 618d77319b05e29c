"""Study overhead per trial: what the workbench adds around the model's own work.

A trial through `Study.trial` (content address, store lookup, executor, record, SQLite write) against the
same work written by hand in one function: apply the pipeline, outputs on every evaluation input, metric and
fidelity, serialize + gzip, weight statistics, latency with the same TimingConfig, FLOPs and peak memory.
Each round builds a fresh study (so nothing is cached) and times both, alternating which goes first.
Overhead = (study trial − hand-written trial) / study trial; goal: under 5% on digits-cnn.
"""

from __future__ import annotations

import gzip
import tempfile
import time
from pathlib import Path

import numpy as np

import workbench as wb
from workbench.profiling import TimingConfig, measure_latency
from workbench.recipes import ApplyContext, Pipeline

from .harness import Row, quantiles

PIPELINES = ("int8-dynamic", "fold-bn", "prune(0.5, finetune=0)")


def _by_hand(model, task, spec: str, timing: TimingConfig, threads: int, batch: int, reference: np.ndarray,
             context: ApplyContext) -> float:
    started = time.perf_counter()
    handle = Pipeline.parse(spec).apply(model, context)
    sample = task.sample(batch)
    with handle.session(threads):
        measure_latency(handle.runner(sample), timing)
        outputs = task.restore(np.concatenate([handle.predict(b) for b in task.batches(task.eval_batch_size or batch)]))
    task.fidelity(outputs, reference)
    task.score(outputs)
    blob = handle.serialize()
    len(gzip.compress(blob, compresslevel=6))
    handle.weight_stats()
    handle.flops(sample)
    handle.peak_memory(sample)
    return time.perf_counter() - started


def run(rounds: int, timing: TimingConfig, threads: int, batch: int = 32) -> list[Row]:
    model, task = wb.zoo.load("digits-cnn")
    rows = []
    with tempfile.TemporaryDirectory(prefix="wb-overhead-") as tmp:
        for spec in PIPELINES:
            overheads, study_s, hand_s = [], [], []
            for r in range(rounds):
                study = wb.Study(model, task, timing=timing, threads=threads, batch_size=batch,
                                 store=Path(tmp) / f"round{r}-{len(overheads)}.db")
                study.trial("baseline")
                context = ApplyContext(task=task, device=study.device)

                def through_study() -> float:
                    started = time.perf_counter()
                    study.trial(spec)
                    return time.perf_counter() - started

                def written_by_hand() -> float:
                    return _by_hand(study.baseline, task, spec, timing, threads, batch, study.reference, context)

                if r % 2 == 0:
                    s, h = through_study(), written_by_hand()
                else:
                    h, s = written_by_hand(), through_study()
                study_s.append(s)
                hand_s.append(h)
                overheads.append(100 * (s - h) / s)
            median, iqr = quantiles(overheads)
            rows.append(Row(f"digits-cnn study overhead per trial: {spec}", median, iqr, "%", rounds, "< 5%",
                            median < 5.0, f"study trial {quantiles(study_s)[0] * 1e3:.0f} ms, by hand "
                                          f"{quantiles(hand_s)[0] * 1e3:.0f} ms (median)"))
    return rows
