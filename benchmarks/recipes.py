"""Every torch recipe against eager fp32 on the digits models: speed-up (interleaved rounds, median and IQR),
size ratio, accuracy delta and first-call time. digits-cnn32 (1x32x32 inputs) is the compute-bound case."""

from __future__ import annotations

import workbench as wb
from workbench.profiling import TimingConfig

from .harness import Row, interleaved_p50, ratio_row

RECIPES = ["fp16", "bf16", "autocast", "int8-dynamic", "int8-static", "int8-weight-only", "qat", "prune(0.5)",
           "prune(0.5, pattern=channel)", "prune(pattern=2:4)", "fold-bn", "fuse", "channels-last", "torchscript",
           "compile", "executorch", "prune(0.5, pattern=channel) + fuse + int8-static"]
#: (model, batch timed, recipes, goals: pipeline -> minimum speed-up)
MODELS = [
    ("digits-cnn", 32, RECIPES, {}),
    ("digits-mlp", 32, [r for r in RECIPES if r not in ("channels-last", "fuse", "fold-bn")], {"int8-dynamic": 2.0}),
    ("digits-cnn32", 32, RECIPES, {"int8-static": 2.5, "compile": 1.5}),
]


def run(rounds: int, timing: TimingConfig, threads: int) -> list[Row]:
    rows: list[Row] = []
    for name, batch, recipes, goals in MODELS:
        model, task = wb.zoo.load(name)
        study = wb.Study(model, task, batch_size=batch, threads=threads, timing=timing, measure_memory=False)
        frame = study.run(recipes, progress=False).frame.set_index("pipeline")
        base = frame.loc["baseline"]
        ok = [p for p in frame.index if p != "baseline" and frame.loc[p, "status"] == "ok"]
        x = task.sample(batch)
        runners = {p: study.handle(p).runner(x) for p in ["baseline"] + ok}
        with model.session(threads):
            per = interleaved_p50(runners, rounds, timing)
        for p in frame.index:
            if p == "baseline":
                continue
            r = frame.loc[p]
            if r["status"] != "ok":
                rows.append(Row(f"{name} {p}", float("nan"), float("nan"), "x", 0, "", None,
                                f"{r['status']}: {str(r['error'])[:90]}"))
                continue
            goal = goals.get(p)
            detail = (f"size {r['size_bytes'] / base['size_bytes']:.2f}x, "
                      f"acc {100 * r['metric_delta']:+.1f} pt, first call {r['first_call_ms']:.1f} ms, "
                      f"p50 {sorted(per[p])[len(per[p]) // 2]:.3f} ms")
            rows.append(ratio_row(f"{name} b{batch} {p} speed-up", per["baseline"], per[p], goal,
                                  f">= {goal}x" if goal else "reported", detail))
    return rows
