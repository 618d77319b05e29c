"""Charts: a results DataFrame in, an Altair chart out. No UI imports; they render offline.

    tradeoff(frame)              latency × quality, size as mark size, colour = precision, shape = runtime,
                                 the Pareto front as a line, the baseline and the current trial marked
    latency_distribution(frame)  the timed samples of every trial (box plot): noise is visible
    size_breakdown(frame)        weight bytes vs the rest of the file, and its gzip size, per trial
    throughput_curve(curve)      samples/s over batch size (from Study.throughput)
    roofline(frame, device)      achieved GFLOP/s against the measured GEMM peak and bandwidth
    training_tradeoff(frame)     training step time × peak memory, colour = accuracy reached (TrainingStudy)
    layer_view(view)             per layer: time in the baseline and the variant side by side, and the error
                                 each layer adds (Study.layers)
    search(result)               a search's trials: objective × quality drop, the budget line, the front and
                                 the recommendation (wb.search)

    save(chart, "chart.html" | ".svg" | ".png")     inline HTML (no CDN), or images via vl-convert
    use_offline_renderer()                          notebooks / Voila: render without any CDN
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._optional import require

BYTES_PER_PARAM = {"fp32": 4, "tf32": 4, "amp-bf16": 4, "amp-fp16": 4, "fp16": 2, "bf16": 2, "int8": 1,
                   "int8-dynamic": 1, "fp16-weights": 2, "int8-simulated": 4}
TOOLTIP = [("pipeline", "N"), ("framework", "N"), ("status", "N"), ("precision", "N"), ("runtime", "N"), ("metric", "Q"),
           ("metric_delta", "Q"), ("fidelity", "Q"), ("latency_ms_p50", "Q"), ("latency_ms_iqr", "Q"),
           ("latency_ms_p90", "Q"), ("latency_ms_p99", "Q"), ("latency_n", "Q"), ("size_bytes", "Q"),
           ("size_gzip_bytes", "Q"), ("sparsity", "Q"), ("notes", "N")]


def _alt():
    return require("altair", "charts", "charts")


def quality_column(frame: pd.DataFrame) -> str:
    """The task metric where every measured trial has one, else fidelity to the baseline."""
    ok = frame[frame["status"] == "ok"]
    return "metric" if len(ok) and ok["metric"].notna().all() else "fidelity"


def _tooltip(alt, frame: pd.DataFrame) -> list:
    return [alt.Tooltip(f"{c}:{t}", format=".4g" if t == "Q" else "") for c, t in TOOLTIP if c in frame]


def tradeoff(frame: pd.DataFrame, *, quality: str | None = None, current: str | None = None,
             pinned: Sequence[str] = (), title: str | None = None):
    """Latency (x) × quality (y) of every measured trial; the Pareto front as a line."""
    alt = _alt()
    quality = quality or quality_column(frame)
    data = frame[frame["status"] == "ok"].copy()
    data["role"] = np.where(data["is_baseline"].astype(bool), "baseline",
                            np.where(data["pipeline"] == current, "current",
                                     np.where(data["pipeline"].isin(list(pinned)), "pinned", "trial")))
    data["size_kb"] = data["size_bytes"] / 1024
    base = alt.Chart(data).encode(
        x=alt.X("latency_ms_p50:Q", title="latency p50 (ms)", scale=alt.Scale(zero=False)),
        y=alt.Y(f"{quality}:Q", title=quality, scale=alt.Scale(zero=False)),
    )
    points = base.mark_point(filled=True, opacity=0.8).encode(
        size=alt.Size("size_kb:Q", title="size (KB)", scale=alt.Scale(range=[60, 600])),
        color=alt.Color("precision:N", title="precision"),
        shape=alt.Shape("runtime:N", title="runtime"),
        tooltip=_tooltip(alt, data),
    )
    front = alt.Chart(data[data["pareto"].astype(bool)].sort_values("latency_ms_p50")).mark_line(
        color="#444", strokeDash=[4, 3], point=False).encode(
        x="latency_ms_p50:Q", y=f"{quality}:Q", order="latency_ms_p50:Q")
    marked = base.transform_filter(alt.datum.role != "trial").mark_point(
        size=900, filled=False, strokeWidth=2).encode(
        color=alt.Color("role:N", scale=alt.Scale(domain=["baseline", "current", "pinned"],
                                                  range=["#000000", "#d62728", "#9467bd"]), title="marked"))
    labels = base.transform_filter(alt.datum.role != "trial").mark_text(dy=-18, fontSize=11).encode(
        text="role:N")
    return alt.layer(front, points, marked, labels).resolve_scale(color="independent").properties(
        title=title or f"{quality} vs latency (size = file size; dashed line = Pareto front)", width=520, height=340)


def latency_samples(frame: pd.DataFrame) -> pd.DataFrame:
    """Long table (pipeline, latency_ms) from each row's `latency_samples_ms`."""
    records = []
    for _, row in frame[frame["status"] == "ok"].iterrows():
        samples = row["latency_samples_ms"]
        for v in (json.loads(samples) if isinstance(samples, str) else samples or []):
            records.append({"pipeline": row["pipeline"], "latency_ms": v, "precision": row["precision"]})
    return pd.DataFrame(records, columns=["pipeline", "latency_ms", "precision"])


def latency_distribution(frame: pd.DataFrame):
    alt = _alt()
    data = latency_samples(frame)
    return alt.Chart(data).mark_boxplot(extent="min-max").encode(
        x=alt.X("latency_ms:Q", title="latency per call (ms)", scale=alt.Scale(zero=False)),
        y=alt.Y("pipeline:N", title=None, sort=None),
        color=alt.Color("precision:N"),
    ).properties(title="latency distribution per trial (box = IQR, whiskers = min..max)", width=520)


def size_parts(frame: pd.DataFrame) -> pd.DataFrame:
    """Per trial: bytes of weight values (params × bytes per value at its precision) and the rest of the file."""
    rows = []
    for _, r in frame[frame["status"] == "ok"].iterrows():
        weights = int(r["params"] * BYTES_PER_PARAM.get(r["precision"], 4))
        weights = min(weights, int(r["size_bytes"]))
        rows += [{"pipeline": r["pipeline"], "part": "weights", "bytes": weights},
                 {"pipeline": r["pipeline"], "part": "rest (scales, graph, headers)", "bytes": r["size_bytes"] - weights},
                 {"pipeline": r["pipeline"], "part": "gzip of the file", "bytes": r["size_gzip_bytes"]}]
    return pd.DataFrame(rows, columns=["pipeline", "part", "bytes"])


def size_breakdown(frame: pd.DataFrame):
    alt = _alt()
    data = size_parts(frame)
    data["KB"] = data["bytes"] / 1024
    stacked = alt.Chart(data[data["part"] != "gzip of the file"]).mark_bar().encode(
        x=alt.X("KB:Q", title="file size (KB)", stack="zero"), y=alt.Y("pipeline:N", sort=None, title=None),
        color=alt.Color("part:N", title=None), tooltip=["pipeline", "part", alt.Tooltip("KB:Q", format=".1f")])
    gzip = alt.Chart(data[data["part"] == "gzip of the file"]).mark_tick(color="black", thickness=3, size=18).encode(
        x="KB:Q", y=alt.Y("pipeline:N", sort=None), tooltip=["pipeline", alt.Tooltip("KB:Q", format=".1f")])
    return alt.layer(stacked, gzip).properties(title="size: weights vs the rest (tick = gzip size)", width=520)


def throughput_curve(curve: pd.DataFrame):
    """`curve`: columns pipeline, batch_size, throughput (samples/s), as Study.throughput returns."""
    alt = _alt()
    return alt.Chart(curve).mark_line(point=True).encode(
        x=alt.X("batch_size:Q", scale=alt.Scale(type="log", base=2), title="batch size"),
        y=alt.Y("throughput:Q", title="samples / s"), color="pipeline:N",
        tooltip=["pipeline", "batch_size", alt.Tooltip("throughput:Q", format=".4g"),
                 alt.Tooltip("latency_ms_p50:Q", format=".4g")],
    ).properties(title="throughput over batch size", width=520)


def roofline_points(frame: pd.DataFrame) -> pd.DataFrame:
    """Arithmetic intensity (FLOP per byte of weights + peak activations) and achieved GFLOP/s per trial."""
    data = frame[(frame["status"] == "ok") & frame["flops"].notna() & frame["latency_ms_p50"].notna()].copy()
    moved = data["size_bytes"].astype(float) + data["peak_mem_bytes"].fillna(0).astype(float)
    data["intensity"] = data["flops"].astype(float) / moved
    data["gflops"] = data["flops"].astype(float) / (data["latency_ms_p50"] / 1000) / 1e9
    return data[["pipeline", "precision", "intensity", "gflops"]]


def roofline(frame: pd.DataFrame, device: Any):
    """Each trial against the machine's measured roofs: min(GEMM peak, bandwidth × intensity), one roof per
    precision the trials compute in (fp32 always; int8, bf16, fp16 where trials ran in them and the device
    profile measured their GEMM peak)."""
    from .profiling.device import compute_precision

    alt = _alt()
    points = roofline_points(frame)
    peak, bandwidth = device.peak_gflops_all, device.bandwidth_gbs
    computed = {compute_precision(p, s) for p, s in zip(points["precision"], points["pipeline"])}
    others = {p: device.peaks[p]["all"] for p in sorted(computed - {"fp32"})
              if device.peaks.get(p, {}).get("all")}
    lo = min(points["intensity"].min() / 4 if len(points) else 0.1, 0.1)
    hi = max(points["intensity"].max() * 4 if len(points) else 100.0, 4 * max([peak, *others.values()]) / bandwidth)
    xs = np.geomspace(lo, hi, 60)
    x = alt.X("intensity:Q", scale=alt.Scale(type="log"), title="FLOP per byte (weights + peak activations)")
    y = alt.Y("gflops:Q", scale=alt.Scale(type="log"), title="GFLOP/s")
    roof = pd.DataFrame({"intensity": xs, "gflops": np.minimum(peak, bandwidth * xs), "roof": "fp32"})
    layers = [alt.Chart(roof).mark_line(color="#888").encode(x=x, y=y)]
    if others:
        extra = pd.concat([pd.DataFrame({"intensity": xs, "gflops": np.minimum(v, bandwidth * xs), "roof": p})
                           for p, v in others.items()])
        layers.append(alt.Chart(extra).mark_line(strokeDash=[4, 3]).encode(
            x=x, y=y, color=alt.Color("roof:N", title="roof"), detail="roof:N"))
    layers.append(alt.Chart(points).mark_point(filled=True, size=90).encode(
        x="intensity:Q", y="gflops:Q", color="precision:N",
        tooltip=["pipeline", alt.Tooltip("intensity:Q", format=".3g"), alt.Tooltip("gflops:Q", format=".3g")]))
    roofs = ", ".join([f"fp32 {peak:.0f}"] + [f"{p} {v:.0f}" for p, v in others.items()])
    return alt.layer(*layers).resolve_scale(color="independent").properties(
        title=alt.Title(f"roofline: measured GEMM peaks (GFLOP/s) {roofs}; copy bandwidth {bandwidth:.0f} GB/s",
                        subtitle="each trial under the roof of the precision it computes in"), width=520)


def training_tradeoff(frame: pd.DataFrame, *, current: str | None = None):
    """Training trials: step time (x) × peak memory (y); colour = accuracy after the budget, tooltip = loss;
    the current trial (a panel's) ringed."""
    alt = _alt()
    data = frame[(frame["status"] == "ok")].copy()
    data["peak_mem_mb"] = data["peak_mem_bytes"].astype(float) / 2**20
    data["role"] = np.where(data["pipeline"] == current, "current", "trial")
    points = alt.Chart(data).mark_point(filled=True, size=160).encode(
        x=alt.X("latency_ms_p50:Q", title="optimizer step p50 (ms)", scale=alt.Scale(zero=False)),
        y=alt.Y("peak_mem_mb:Q", title="peak memory in a step (MiB)"),
        color=alt.Color("metric:Q", title="accuracy"),
        tooltip=[alt.Tooltip(c, format=".4g") if c != "pipeline" else c for c in
                 ("pipeline", "latency_ms_p50", "latency_ms_iqr", "throughput", "peak_mem_mb", "train_loss",
                  "metric") if c in data])
    labels = alt.Chart(data).mark_text(dy=-12, fontSize=11).encode(x="latency_ms_p50:Q", y="peak_mem_mb:Q",
                                                                   text="pipeline:N")
    ring = alt.Chart(data).transform_filter(alt.datum.role == "current").mark_point(
        size=700, filled=False, strokeWidth=2, color="#d62728").encode(x="latency_ms_p50:Q", y="peak_mem_mb:Q")
    return alt.layer(points, labels, ring).properties(title="training: step time vs memory", width=520, height=320)


def layer_view(view: Any, *, top: int = 20):
    """Time per layer (baseline and variant, side by side) next to the error each layer adds, for the `top`
    layers that take the most time or add the most error, in the order they run."""
    alt = _alt()
    frame = view.frame.copy()
    frame["order"] = range(len(frame))
    weight = frame[["ms", "baseline_ms"]].abs().max(axis=1) / max(view.latency_ms, 1e-9) + frame["error_share"].fillna(0)
    keep = frame.loc[weight.sort_values(ascending=False).index[:top]].sort_values("order")
    times = keep.melt(id_vars=["layer", "op", "kernel", "baseline_kernel", "flags", "order"],
                      value_vars=["baseline_ms", "ms"], var_name="model", value_name="time_ms")
    times["model"] = times["model"].map({"baseline_ms": "baseline", "ms": view.pipeline})
    order = list(keep["layer"])
    time_chart = alt.Chart(times).mark_bar().encode(
        y=alt.Y("layer:N", sort=order, title=None), yOffset=alt.YOffset("model:N"),
        x=alt.X("time_ms:Q", title="time (ms, median)"), color=alt.Color("model:N", title=None),
        tooltip=["layer", "model", "op", "kernel", "baseline_kernel", alt.Tooltip("time_ms:Q", format=".3g"), "flags"],
    ).properties(title=f"where the time goes ({view.latency_ms:.3g} vs {view.baseline_latency_ms:.3g} ms)", width=320)
    errors = keep.dropna(subset=["error_share"])
    error_chart = alt.Chart(errors).mark_bar(color="#d62728").encode(
        y=alt.Y("layer:N", sort=order, title=None, axis=alt.Axis(labels=False)),
        x=alt.X("error_share:Q", title="share of the output error added", axis=alt.Axis(format="%")),
        tooltip=["layer", "op", alt.Tooltip("sqnr_db:Q", format=".1f", title="SQNR (dB)"),
                 alt.Tooltip("cosine:Q", format=".5f"), alt.Tooltip("max_abs:Q", format=".3g"), "flags"],
    ).properties(title="where the error comes from", width=200)
    return alt.hconcat(time_chart, error_chart).resolve_scale(y="shared")


#: how a search's verdicts are coloured
SEARCH_CLASSES = {"recommended": "#d62728", "baseline": "#000000", "within the budget": "#1f77b4",
                  "over the budget": "#bbbbbb", "missed on the held-out split": "#ff7f0e"}


def search_class(verdict: str) -> str:
    """The colour class of a search verdict (see SEARCH_CLASSES)."""
    for name in ("recommended", "baseline", "over the budget", "missed on the held-out split"):
        if verdict.startswith(name):
            return name
    return "within the budget"


def search(result: Any):
    """A search's trials that ran: the objective (x, log) against the quality drop on the selection split (y,
    up is better), the accuracy budget as a rule, the front (dashed) and the recommendation ringed."""
    alt = _alt()
    data = result.frame[(result.frame["status"] == "ok") & result.frame["drop"].notna()].copy()
    x_title = "latency p50 (ms)" if result.objective == "latency" else "size (KB)"
    data["x"] = data[result.column].astype(float) / (1 if result.objective == "latency" else 1024)
    data["class"] = [search_class(str(v)) for v in data["verdict"]]
    data["origin"] = [("fallback (layers kept in float)" if str(o).startswith("fallback") else o) for o in data["origin"]]
    y = alt.Y("drop:Q", title=f"drop ({result.quality.unit}, selection split)", scale=alt.Scale(reverse=True))
    base = alt.Chart(data).encode(x=alt.X("x:Q", title=x_title, scale=alt.Scale(type="log")), y=y)
    points = base.mark_point(filled=True, size=110, opacity=0.85).encode(
        color=alt.Color("class:N", title=None, scale=alt.Scale(domain=list(SEARCH_CLASSES),
                                                                 range=list(SEARCH_CLASSES.values()))),
        shape=alt.Shape("origin:N", title="proposed by"),
        tooltip=["pipeline", "origin", "verdict", alt.Tooltip("x:Q", title=x_title, format=".4g"),
                 alt.Tooltip("drop:Q", format=".3f"), alt.Tooltip("heldout_drop:Q", format=".3f"),
                 alt.Tooltip("heldout_ci_low:Q", format=".3f"), alt.Tooltip("heldout_ci_high:Q", format=".3f")])
    front_rows = result.front()
    front_rows = front_rows.assign(x=front_rows[result.column].astype(float) / (1 if result.objective == "latency" else 1024))
    front = alt.Chart(front_rows).mark_line(color="#444", strokeDash=[4, 3]).encode(x="x:Q", y="drop:Q", order="x:Q")
    budget = alt.Chart(pd.DataFrame({"drop": [result.max_drop]})).mark_rule(color="#d62728", strokeDash=[2, 2]).encode(
        y="drop:Q")
    picked = data[data["class"] == "recommended"]
    ring = alt.Chart(picked).mark_point(size=800, filled=False, strokeWidth=2, color="#d62728").encode(x="x:Q", y="drop:Q")
    label = alt.Chart(picked).mark_text(align="left", dx=14, dy=-14, fontSize=11, color="#d62728").encode(
        x="x:Q", y="drop:Q", text="pipeline:N")
    title = (f"search: {len(result.frame) - 1} configurations in {result.elapsed_s:.0f} s "
             f"(red rule = the budget of {result.max_drop:g}; dashed = front)")
    return alt.layer(budget, front, points, ring, label).properties(title=title, width=560, height=340)


def save(chart: Any, path: str | os.PathLike) -> Path:
    """.html (inline: vega bundled in the file, no CDN), .svg or .png (vl-convert), .json (the spec)."""
    from .errors import WorkbenchError

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".html", ".svg", ".png", ".json"):
        raise WorkbenchError(f"cannot save a chart as {path.name!r}: use .html, .svg, .png or .json")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".html":
        chart.save(str(path), inline=True)
    else:
        chart.save(str(path))
    return path


def use_offline_renderer(kind: str = "jupyter") -> None:
    """Render charts with no CDN: `jupyter` (JupyterChart, anywidget) or `html` (vega inlined in the page)."""
    alt = _alt()
    if kind == "jupyter":
        alt.renderers.enable("jupyter", offline=True)
    else:
        alt.renderers.enable("html", template="inline")
