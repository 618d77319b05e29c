"""Why is it slower, where did the accuracy go: the per-layer view of one trial against its baseline.

    view = study.layers("int8-dynamic")      # a LayerView
    view.frame                               # one row per layer: time (baseline, variant), error, flags
    print(view.explanation)                  # the frame in one paragraph
    view.chart()                             # time and error per layer, side by side

Layers are the baseline's, grouped: a group starts at a layer with weights (Conv, Linear, Embedding) or at a
layer with its own computation around sub-layers (attention), and takes the parameter-free layers after it (BN,
ReLU, pooling): so a Conv-BN-ReLU that a variant fused or folded is one row in both. A variant's layers are
matched to the groups by name (torch module names, which FX conversion, fusion and the ONNX export keep; ONNX
Runtime's and the quantizers' added nodes are attributed by name prefix, `backends/onnx/layers.py`).

Per layer: the error of its output against the baseline's on the same inputs (SQNR in dB, cosine, max-abs) and
the share of the final output error it explains (the noise-to-signal it adds over the layers before it, as a
share of all the noise added); its time in the baseline and in the variant (medians over repeated instrumented
runs) with the kernel that ran and the precision it ran in. What no layer owns — the measured median latency
less the layers' times — is the row "(outside layers)": framework overhead between layers, copies and layout
changes, hooks.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd

from .layerprobe import OUTSIDE, QDQ, LayerTimes, LayerTrace
from .recipes.layers import matches

#: an output SQNR above this is float rounding, not error worth explaining
EXACT_DB = 60.0
#: a layer whose baseline time is below this share of the forward is too small for int8 to pay for itself
SMALL_SHARE = 0.03
FRAME_COLUMNS = ("layer", "members", "op", "precision", "kernel", "baseline_kernel", "baseline_ms", "ms",
                 "baseline_share", "share", "sqnr_db", "cosine", "max_abs", "error_share", "flags")


@dataclasses.dataclass(frozen=True)
class LayerView:
    """The joined per-layer view of `pipeline` against the baseline (see the module docstring)."""

    pipeline: str
    frame: pd.DataFrame
    explanation: str
    latency_ms: float           # the trial's measured median (the row's latency_ms_p50)
    baseline_latency_ms: float
    coverage: float             # the variant's layer times summed / its measured median
    baseline_coverage: float
    method: str
    notes: tuple[str, ...] = ()

    def chart(self, top: int = 20):
        from .charts import layer_view

        return layer_view(self, top=top)

    def flagged(self, flag: str) -> pd.DataFrame:
        """The rows whose flags include `flag` (e.g. "stayed fp32")."""
        return self.frame[self.frame["flags"].str.contains(flag, regex=False)]

    def _repr_markdown_(self) -> str:
        return f"**{self.pipeline}** — {self.explanation}"


def groups(trace: LayerTrace) -> dict[str, list[str]]:
    """Group name → its layers (see the module docstring), in the order they finish."""
    result: dict[str, list[str]] = {}
    current: str | None = None
    for name in trace.order:
        if current is None or name in trace.weighted or name not in trace.leaves:
            current = name
            result[current] = []
        result[current].append(name)
    return result


def error_stats(reference: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """SQNR (dB), cosine, max-abs and noise-to-signal of `output` against `reference`; a non-finite output
    (fp16 overflow, NaN) is infinitely wrong: SQNR -inf, nsr inf."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    out = np.asarray(output, dtype=np.float64).ravel()
    if not np.all(np.isfinite(out)):
        return {"sqnr_db": -math.inf, "cosine": float("nan"), "max_abs": math.inf, "nsr": math.inf}
    noise = float(np.sum((ref - out) ** 2))
    signal = float(np.sum(ref ** 2))
    norms = float(np.linalg.norm(ref) * np.linalg.norm(out))
    return {"sqnr_db": math.inf if noise == 0 else 10 * math.log10(signal / noise) if signal > 0 else -math.inf,
            "cosine": float(ref @ out / norms) if norms > 0 else float(noise == 0),
            "max_abs": float(np.max(np.abs(ref - out))) if ref.size else 0.0,
            "nsr": noise / signal if signal > 0 else (0.0 if noise == 0 else math.inf)}


def build(pipeline: str, baseline: LayerTrace, variant: LayerTrace, baseline_times: LayerTimes,
          variant_times: LayerTimes, *, int8: bool, exclude: tuple[str, ...] = (),
          notes: tuple[str, ...] = ()) -> LayerView:
    """Join two traces and two timings into the view (framework-free; the probes are the backends').

    The latency the layers' times are set against is each model's plain forward, timed interleaved with the
    instrumented runs (`LayerTimes.total_ms`): the same conditions, so drift between the trial and this view
    does not show up as time outside the layers."""
    latency_ms, baseline_latency_ms = variant_times.total_ms, baseline_times.total_ms
    grouped = groups(baseline)
    group_of = {member: name for name, members in grouped.items() for member in members}
    rows: dict[str, dict[str, Any]] = {}
    for name, members in grouped.items():
        rows[name] = {"layer": name, "members": ", ".join(members),
                      "op": "+".join(dict.fromkeys(baseline.ops.get(m, "") for m in members)),
                      "baseline_ms": 0.0, "ms": 0.0, "kernel": "", "baseline_kernel": "", "precision": "",
                      "_weighted": any(m in baseline.weighted for m in members), "_members": members}
    _add_times(rows, group_of, baseline_times, "baseline_ms", "baseline_kernel", None)
    _add_times(rows, group_of, variant_times, "ms", "kernel", "precision")
    # error: the group's output (its last layer) against the variant's last layer in the group that it has;
    # a layer fused with the ones after it (Conv-BN-ReLU in FX) returns what the last of them returns
    worst_nsr = 0.0
    added: dict[str, float] = {}
    for name, members in grouped.items():
        reference = baseline.outputs.get(members[-1])
        present = [m for m in members if m in variant.outputs]
        output = variant.outputs.get(present[-1]) if present else None
        if reference is None or output is None or reference.shape != output.shape:
            continue
        stats = error_stats(reference, output)
        rows[name].update(sqnr_db=stats["sqnr_db"], cosine=stats["cosine"], max_abs=stats["max_abs"])
        if not math.isfinite(stats["nsr"]):
            rows[name]["_nonfinite"] = True
            if not any(r.get("_nonfinite") for k, r in rows.items() if k != name):
                added[name] = math.inf  # the first layer whose output is not finite owns the error
            continue
        added[name] = max(0.0, stats["nsr"] - worst_nsr)
        worst_nsr = max(worst_nsr, stats["nsr"])
        if set(members) - set(variant.order) and present:
            rows[name]["_fused"] = [m for m in members if m not in variant.order]
    if any(math.isinf(v) for v in added.values()):
        added = {k: (1.0 if math.isinf(v) else 0.0) for k, v in added.items()}
    total_added = sum(added.values())
    for name, value in added.items():
        rows[name]["error_share"] = value / total_added if total_added > 0 else 0.0
    # what no layer owns
    for key, latency in (("baseline_ms", baseline_latency_ms), ("ms", latency_ms)):
        owned = sum(r[key] for r in rows.values())
        rows.setdefault(OUTSIDE, _extra_row(OUTSIDE, "framework overhead, copies, layout"))[key] = latency - owned
    frame = pd.DataFrame(list(rows.values()))
    frame["baseline_share"] = frame["baseline_ms"] / baseline_latency_ms
    frame["share"] = frame["ms"] / latency_ms
    for column in FRAME_COLUMNS + ("_fused", "_nonfinite"):
        if column not in frame:
            frame[column] = np.nan
    frame["flags"] = [", ".join(_flags(row, frame, latency_ms, baseline_latency_ms, int8, exclude))
                      for row in frame.to_dict("records")]
    frame = frame[list(FRAME_COLUMNS)].reset_index(drop=True)
    coverage = 1 - float(frame.loc[frame["layer"] == OUTSIDE, "ms"].iloc[0]) / latency_ms
    base_coverage = 1 - float(frame.loc[frame["layer"] == OUTSIDE, "baseline_ms"].iloc[0]) / baseline_latency_ms
    view = LayerView(pipeline, frame, "", latency_ms, baseline_latency_ms, coverage, base_coverage,
                     f"baseline: {baseline_times.method}; variant: {variant_times.method}", notes)
    return dataclasses.replace(view, explanation=explain(view, int8))


def _extra_row(name: str, op: str) -> dict[str, Any]:
    return {"layer": name, "members": "", "op": op, "baseline_ms": 0.0, "ms": 0.0, "kernel": "",
            "baseline_kernel": "", "precision": "", "_weighted": False, "_members": []}


def _add_times(rows: dict[str, dict], group_of: dict[str, str], times: LayerTimes, ms_key: str, kernel_key: str,
               precision_key: str | None) -> None:
    heaviest: dict[str, float] = {}
    for t in times.layers:
        name = group_of.get(t.layer)
        if name is None:  # a layer only the variant has: its quantize/dequantize nodes, layout changes
            name = t.layer
            rows.setdefault(name, _extra_row(name, "quantize / dequantize activations" if name == QDQ else t.kernel))
        row = rows[name]
        row[ms_key] += t.ms
        if t.ms > heaviest.get(name, -1.0) and t.kernel:
            heaviest[name] = t.ms
            row[kernel_key] = t.kernel
            if precision_key:
                row[precision_key] = t.precision


def _flags(row: dict, frame: pd.DataFrame, latency_ms: float, baseline_latency_ms: float, int8: bool,
           exclude: tuple[str, ...]) -> list[str]:
    flags = []
    name = row["layer"]
    if isinstance(row.get("_fused"), list):
        flags.append(f"fused ({', '.join(row['_fused'])} folded in)")
    if row.get("_nonfinite") is True:
        flags.append("non-finite output (overflow or NaN)")
    if int8 and row["_weighted"] and row["precision"] and row["precision"] != "int8":
        members = row["_members"] if isinstance(row["_members"], list) else []
        on_purpose = any(matches(m, pattern) for m in members for pattern in exclude)
        flags.append("kept fp32 (exclude=)" if on_purpose else "stayed fp32")
    if row["precision"] == "int8" and row["_weighted"]:
        if row["ms"] > row["baseline_ms"] * 1.05 + 0.002:
            flags.append(f"int8 slower here ({row['ms']:.3g} vs {row['baseline_ms']:.3g} ms)")
        if row["baseline_ms"] < SMALL_SHARE * baseline_latency_ms and row["ms"] >= row["baseline_ms"] * 0.9:
            flags.append("too small for int8 to pay")
    if name == QDQ:
        saved = sum(max(0.0, r["baseline_ms"] - r["ms"]) for r in frame.to_dict("records")
                    if r["precision"] == "int8" and r["_weighted"])
        if row["ms"] > saved:
            flags.append(f"quantize/dequantize overhead larger than the saving ({row['ms']:.3g} vs {saved:.3g} ms)")
    share = row.get("error_share")
    final = frame["sqnr_db"].dropna()
    if isinstance(share, float) and row.get("_nonfinite") is True:
        flags.append("the output error starts here")
    elif isinstance(share, float) and share >= 0.25 and len(final) and final.iloc[-1] < EXACT_DB:
        flags.append(f"{share:.0%} of the output error")
    return flags


def explain(view: LayerView, int8: bool) -> str:
    """One paragraph built from the frame: where the time went, what changed precision, where the error came from."""
    f = view.frame
    layers = f[~f["layer"].str.startswith("(")]
    parts = []
    speed = view.baseline_latency_ms / view.latency_ms if view.latency_ms > 0 else float("nan")
    parts.append(f"{view.pipeline} runs in {view.latency_ms:.3g} ms against the baseline's {view.baseline_latency_ms:.3g} ms "
                 f"({speed:.2f}x{'' if speed >= 1 else ': slower'}).")
    if int8:
        quantized = layers[(layers["precision"] == "int8") & layers["op"].notna()]
        stayed = f[f["flags"].str.contains("stayed fp32", regex=False)]
        kept = f[f["flags"].str.contains("kept fp32 (exclude=)", regex=False)]
        if len(stayed):
            kinds = ", ".join(dict.fromkeys(op.split("+")[0] for op in stayed["op"]))
            parts.append(f"{len(quantized)} layer group(s) ran in int8; {len(stayed)} with weights stayed fp32 ({kinds}) "
                         f"and hold {stayed['share'].sum():.0%} of the time.")
        else:
            parts.append(f"{len(quantized)} layer group(s) ran in int8.")
        if len(kept):
            parts.append(f"{len(kept)} kept in fp32 by exclude= ({', '.join(kept['layer'].head(4))}) hold "
                         f"{kept['share'].sum():.0%} of the time.")
        slower = f[f["flags"].str.contains("int8 slower here", regex=False)]
        if len(slower):
            parts.append(f"In int8, {', '.join(slower['layer'].head(4))} took longer than in fp32 "
                         f"({slower['ms'].sum():.3g} vs {slower['baseline_ms'].sum():.3g} ms): the integer kernels "
                         "that ran there are slower on this machine than the float ones.")
        qdq = f[f["layer"] == QDQ]
        if len(qdq) and float(qdq["ms"].iloc[0]) > 0:
            parts.append(f"Quantizing and dequantizing activations costs {float(qdq['ms'].iloc[0]):.3g} ms"
                         + (", more than the int8 layers save." if qdq["flags"].iloc[0] else "."))
    top_time = layers.sort_values("ms", ascending=False).head(1)
    if len(top_time):
        row = top_time.iloc[0]
        parts.append(f"The heaviest layer is {row['layer']} ({row['op']}, {row['share']:.0%} of the time, kernel "
                     f"{row['kernel'] or 'n/a'}).")
    outside = f[f["layer"] == OUTSIDE]
    if len(outside):
        parts.append(f"{1 - view.coverage:.0%} of the measured time is outside the layers (framework overhead, copies).")
    errors = layers.dropna(subset=["error_share"]).sort_values("error_share", ascending=False)
    final = layers.dropna(subset=["sqnr_db"])
    broken = f[f["flags"].str.contains("non-finite", regex=False)]
    if len(broken):
        parts.append(f"{broken['layer'].iloc[0]} ({broken['op'].iloc[0]}) returns non-finite values (overflow or NaN): "
                     "every layer after it inherits them.")
        return " ".join(parts)
    if len(errors) and errors["error_share"].iloc[0] > 0 and len(final) and final["sqnr_db"].iloc[-1] < EXACT_DB:
        top = errors.iloc[0]
        last = final.iloc[-1] if len(final) else None
        parts.append(f"Most of the output error comes from {top['layer']} ({top['op']}): {top['error_share']:.0%} of "
                     f"the noise added, SQNR {top['sqnr_db']:.1f} dB there"
                     + (f"; the output's SQNR is {last['sqnr_db']:.1f} dB." if last is not None else "."))
    elif len(final):
        parts.append(f"The outputs match the baseline's layer by layer (output SQNR {final['sqnr_db'].iloc[-1]:.0f} dB: "
                     "float rounding only).")
    return " ".join(parts)
