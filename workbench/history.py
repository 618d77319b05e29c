"""What was measured before: every trial in a results store, newest first, each with the device it ran on and
its speed-up over the baseline measured on that same device — today's numbers beside last week's.

    wb.history("results.db")                         one row per measured trial, newest first
    wb.history("results.db", model="digits-cnn")     one model
    wb.history("results.db", readable=True)          the same for people: units, "2.4x faster", dates
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from .errors import DataError

COLUMNS = ("created_at", "device", "model", "task", "pipeline", "metric_name", "metric", "latency_ms_p50",
           "latency_ms_iqr", "speedup", "size_bytes", "threads", "batch_size", "noisy", "model_id")


def history(store: str | os.PathLike | Any, *, model: str | None = None, phase: str = "infer",
            readable: bool = False) -> pd.DataFrame:
    """The store's measured (status ok) trials of `phase`, newest first. `speedup` is the baseline's median latency
    over the trial's, the baseline being the one of the same model (weights), task, device, threads and batch.
    `readable=True`: units and words instead of raw numbers (`as_readable`)."""
    from .store import ResultsStore

    if not isinstance(store, ResultsStore):
        if not os.path.isfile(store):
            raise DataError(f"no results store at {str(store)!r}: studies write one with store=PATH (--store)")
        store = ResultsStore(store)
    frame = pd.DataFrame(store.rows())
    if frame.empty or "model" not in frame:
        frame = pd.DataFrame(columns=list(COLUMNS))
        return as_readable(frame) if readable else frame
    frame = frame[(frame["status"] == "ok") & (frame.get("phase", "infer") == phase)]
    if model is not None:
        frame = frame[frame["model"] == model]
    key = ["model_id", "task", "device_fingerprint", "threads", "batch_size"]
    baselines = (frame[frame["is_baseline"].astype(bool)].sort_values("created_at")
                 .groupby(key, dropna=False)["latency_ms_p50"].last().rename("baseline_ms"))
    frame = frame.join(baselines, on=key)
    frame["speedup"] = frame["baseline_ms"] / frame["latency_ms_p50"]
    frame = frame.sort_values("created_at", ascending=False)[list(COLUMNS)].reset_index(drop=True)
    return as_readable(frame) if readable else frame


def as_readable(frame: pd.DataFrame) -> pd.DataFrame:
    """The history with units and words: date and time, latency 'ms ± IQR/2', '2.4x faster', sizes in KB/MB."""
    from . import readable as words

    def speed(value: float) -> str:
        if value != value:
            return "–"
        return words.change("time", 1.0, 1.0 / value).text if value else "–"

    return pd.DataFrame({
        "when (UTC)": frame["created_at"].str.replace("T", " ").str.slice(0, 16),
        "device": frame["device"], "model": frame["model"], "task": frame["task"], "configuration": frame["pipeline"],
        "quality": ["–" if m is None or m != m else f"{words.percent(m)} {n}" if n == "accuracy"
                    else f"{words.number(m)} {n}" for m, n in zip(frame["metric"], frame["metric_name"])],
        "latency": [words.ms(v, i) for v, i in zip(frame["latency_ms_p50"], frame["latency_ms_iqr"])],
        "vs baseline": [speed(v) for v in frame["speedup"]],
        "size": [words.size(v) for v in frame["size_bytes"]],
        "threads × batch": [f"{t} × {b}" for t, b in zip(frame["threads"], frame["batch_size"])],
    })
