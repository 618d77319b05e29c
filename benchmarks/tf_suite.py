"""The TensorFlow path on digits-keras: each TFLite variant's latency against the Keras fp32 model
(interleaved rounds, median and IQR of the per-round ratios, XNNPACK on and off), XLA, and the TF-MOT
size goals (TF.js in Node.js among the runtimes) — gzip of `prune(0.8) + int8-static` at most 1/10 of the fp32 Keras file, `cluster(16)` at most
1/4 — each at most 1 point of accuracy lost; and XNNPACK's sparse inference: `prune(0.8) + tflite(sparse=true)`
against the dense flatbuffer, pruned and not, on digits-keras and on the MobileNet-shaped digits-keras-mobilenet
(the shape its sparse path takes), with the row's prediction of whether XNNPACK took it and a check of the
outputs (bit-identical to the dense file means the dense kernels ran)."""

from __future__ import annotations

import workbench as wb
from workbench.profiling import TimingConfig

from .harness import Row, interleaved_p50, ratio_row

SPEED = ["tflite", "tflite(xnnpack=false)", "int8-dynamic", "fp16", "int8-static",
         "int8-static + tflite(xnnpack=false)", "xla", "prune(0.8) + int8-static", "qat + tflite",
         "tfjs", "tfjs(quantize=uint8)"]  # TF.js in Node.js (wasm backend): unsupported rows where `make tfjs` is not run
#: pipeline -> minimum gzip reduction against the fp32 Keras file, at <= 1 point accuracy loss
SIZE_GOALS = {"prune(0.8) + int8-static": 10.0, "cluster(16)": 4.0, "prune(0.8) + cluster(16) + qat + tflite": None,
              "int8-static": None}
BATCH = 32
#: sparse inference on / off, each timed against the dense, unpruned 'tflite' and against each other
SPARSE_ON, SPARSE_OFF = "prune(0.8) + tflite(sparse=true)", "prune(0.8) + tflite"
SPARSE = {SPARSE_ON: "sparse on", SPARSE_OFF: "sparse off (zeros stored dense)"}
SPARSE_MODELS = ("digits-keras", "digits-keras-mobilenet")


def run(rounds: int, timing: TimingConfig, threads: int) -> list[Row]:
    model, task = wb.zoo.load("digits-keras")
    study = wb.Study(model, task, batch_size=BATCH, threads=threads, timing=timing, measure_memory=False)
    frame = study.run(list(dict.fromkeys(SPEED + list(SIZE_GOALS))), progress=False).frame.set_index("pipeline")
    base = frame.loc["baseline"]
    rows: list[Row] = []
    x = task.sample(BATCH)
    ok = [p for p in SPEED if frame.loc[p, "status"] == "ok"]
    runners = {}
    for p in ["baseline"] + ok:
        handle = study.handle(p)
        with handle.session(threads):  # LiteRT interpreters take their thread count when they are made
            runners[p] = handle.runner(x)
    per = interleaved_p50(runners, rounds, timing)
    for p in SPEED:
        r = frame.loc[p]
        if r["status"] != "ok":
            rows.append(Row(f"digits-keras {p}", float("nan"), float("nan"), "x", 0, "", None,
                            f"{r['status']}: {str(r['error'])[:90]}"))
            continue
        detail = (f"acc {100 * r['metric_delta']:+.1f} pt, size {r['size_bytes'] / base['size_bytes']:.2f}x, "
                  f"first call {r['first_call_ms']:.1f} ms, p50 {sorted(per[p])[len(per[p]) // 2]:.3f} ms "
                  f"(Keras {sorted(per['baseline'])[len(per['baseline']) // 2]:.3f} ms); {r['engine']}")
        rows.append(ratio_row(f"digits-keras b{BATCH} {p} speed-up vs Keras fp32", per["baseline"], per[p], None,
                              "reported", detail))
    for p, goal in SIZE_GOALS.items():
        r = frame.loc[p]
        if r["status"] != "ok":
            rows.append(Row(f"digits-keras {p} gzip reduction", float("nan"), float("nan"), "x", 0, "", False,
                            f"{r['status']}: {str(r['error'])[:90]}"))
            continue
        reduction = base["size_gzip_bytes"] / r["size_gzip_bytes"]
        loss = -100 * r["metric_delta"]
        met = None if goal is None else bool(reduction >= goal and loss <= 1.0)
        rows.append(Row(f"digits-keras {p} gzip reduction vs Keras fp32", reduction, 0.0, "x", 1,
                        f">= {goal}x, <= 1 pt" if goal else "reported", met,
                        f"{base['size_gzip_bytes'] / 1024:.1f} KB -> {r['size_gzip_bytes'] / 1024:.1f} KB gzip, "
                        f"acc {-loss:+.2f} pt, sparsity {r['sparsity']:.3f}"))
    for name in SPARSE_MODELS:
        rows += _sparse_rows(name, rounds, timing, threads)
    return rows


def _sparse_rows(name: str, rounds: int, timing: TimingConfig, threads: int) -> list[Row]:
    import numpy as np

    model, task = wb.zoo.load(name)
    study = wb.Study(model, task, batch_size=BATCH, threads=threads, timing=timing, measure_memory=False)
    frame = study.run(["tflite", *SPARSE], progress=False).frame.set_index("pipeline")
    x = task.sample(BATCH)
    runners, outputs = {}, {}
    for p in ["tflite", *SPARSE]:
        if frame.loc[p, "status"] != "ok":
            return [Row(f"{name} {p}", float("nan"), float("nan"), "x", 0, "", None,
                        f"{frame.loc[p, 'status']}: {str(frame.loc[p, 'error'])[:90]}")]
        handle = study.handle(p)
        with handle.session(threads):
            runners[p] = handle.runner(x)
            outputs[p] = handle.predict(x)
    per = interleaved_p50(runners, rounds, timing)
    checked = study.handle(SPARSE_ON).sparse_check
    same = np.array_equal(outputs[SPARSE_OFF], outputs[SPARSE_ON])
    rows = []
    for p, label in SPARSE.items():
        r = frame.loc[p]
        detail = (f"acc {100 * (r['metric'] - frame.loc['tflite', 'metric']):+.1f} pt, file "
                  f"{r['size_bytes'] / 1024:.0f} KB vs {frame.loc['tflite', 'size_bytes'] / 1024:.0f} KB, p50 "
                  f"{np.median(per[p]):.3f} ms (dense {np.median(per['tflite']):.3f} ms)")
        if p == SPARSE_ON:
            detail += (f"; XNNPACK sparse path {checked.verdict}, outputs "
                       f"{'bit-identical to' if same else 'differ from'} the dense-zeros file; "
                       f"{checked.summary()[:160]}")
        rows.append(ratio_row(f"{name} b{BATCH} {p} ({label}) speed-up vs dense tflite", per["tflite"], per[p],
                              None, "reported", detail))
    smaller = frame.loc[SPARSE_OFF, "size_bytes"] / frame.loc[SPARSE_ON, "size_bytes"]
    rows.append(ratio_row(f"{name} b{BATCH} sparse on vs off ({SPARSE_OFF})", per[SPARSE_OFF], per[SPARSE_ON], None,
                          "reported", f"the file {smaller:.1f}x smaller with sparse=true"))
    return rows
