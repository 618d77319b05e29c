"""Foundation benchmarks: int8-dynamic vs fp32 on the MLP; the workbench timer vs torch.utils.benchmark."""

from __future__ import annotations

import torch
import torch.utils.benchmark as tb

import workbench as wb
from workbench.profiling import TimingConfig, measure_latency
from workbench.recipes import Pipeline

from .harness import Row, interleaved_p50, quantiles, ratio_row


def run(rounds: int, timing: TimingConfig, threads: int, batch: int = 32) -> list[Row]:
    rows = []
    model, task = wb.zoo.load("digits-mlp")
    q = Pipeline.parse("int8-dynamic").apply(model)
    x = task.sample(batch)
    with model.session(threads):
        per = interleaved_p50({"fp32": model.runner(x), "int8": q.runner(x)}, rounds, timing)
    rows.append(ratio_row(f"MLP 4x1024 int8-dynamic speed-up vs fp32 (batch {batch}, {threads} thr)",
                          per["fp32"], per["int8"], 2.0, ">= 2.0x",
                          f"fp32 {quantiles(per['fp32'])[0]:.3f} ms, int8 {quantiles(per['int8'])[0]:.3f} ms"))
    size_ratio = len(model.serialize()) / len(q.serialize())
    rows.append(Row("MLP 4x1024 int8-dynamic size reduction vs fp32", size_ratio, 0.0, "x", 1, ">= 3.5x",
                    size_ratio >= 3.5, f"{len(model.serialize()) / 1e6:.2f} MB -> {len(q.serialize()) / 1e6:.2f} MB"))

    # Cross-check: our median against torch.utils.benchmark.Timer, same model, inputs and threads.
    cnn, cnn_task = wb.zoo.load("digits-cnn")
    xs = cnn.prepare(cnn_task.sample(batch))
    module = cnn.payload
    ours, theirs = [], []
    with cnn.session(threads):
        run_once = cnn.runner(cnn_task.sample(batch))
        timer = tb.Timer(stmt="with torch.inference_mode(): module(x)", globals={"module": module, "x": xs, "torch": torch},
                         num_threads=threads)
        for r in range(rounds):
            if r % 2 == 0:
                ours.append(measure_latency(run_once, timing).p50)
                theirs.append(timer.blocked_autorange(min_run_time=timing.min_time_s).median * 1e3)
            else:
                theirs.append(timer.blocked_autorange(min_run_time=timing.min_time_s).median * 1e3)
                ours.append(measure_latency(run_once, timing).p50)
    ratio = [o / t for o, t in zip(ours, theirs)]
    median, iqr = quantiles(ratio)
    rows.append(Row(f"digits-cnn median: workbench / torch.utils.benchmark (batch {batch})", median, iqr, "x",
                    rounds, "0.95 .. 1.05", 0.95 <= median <= 1.05,
                    f"workbench {quantiles(ours)[0]:.4f} ms, Timer {quantiles(theirs)[0]:.4f} ms"))
    return rows
