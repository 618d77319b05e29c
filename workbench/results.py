"""Results: one row per trial (the schema of DESIGN.md), the Pareto front, save and load."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import DataError
from .files import read_table, write_table

#: the columns every results frame has, in this order (DESIGN.md "Results"); values may be null with a reason in `notes`
COLUMNS = (
    "trial_id", "pipeline", "framework", "runtime", "precision", "sparsity", "fused", "status", "error",
    "metric_name", "metric", "metric_delta", "fidelity", "fidelity_cosine", "fidelity_cosine_min",
    "fidelity_max_abs", "latency_ms_p50", "latency_ms_iqr", "latency_ms_p90", "latency_ms_p99", "latency_n",
    "noisy", "first_call_ms", "load_others", "contended", "lock_wait_ms", "throughput", "batch_size", "threads", "size_bytes", "size_gzip_bytes", "params",
    "nonzero_params", "flops", "gflops_achieved", "pct_of_peak", "peak_mem_bytes", "engine", "isa", "device",
    "device_fingerprint", "versions", "notes", "latency_samples_ms", "is_baseline", "pareto", "created_at",
    "duration_s", "model", "model_id", "task",
)
STATUSES = ("ok", "failed", "unsupported")
#: columns added after tables were first saved: a table without them loads, with them empty
LATER_COLUMNS = ("load_others", "contended", "lock_wait_ms")

#: what the table printed by `workbench run` and `Results.table()` shows
SUMMARY_COLUMNS = ("pipeline", "status", "precision", "sparsity", "metric", "metric_delta", "fidelity",
                   "latency_ms_p50", "latency_ms_iqr", "noisy", "size_bytes", "size_gzip_bytes", "pareto")


def pareto_mask(frame: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> np.ndarray:
    """Rows (status ok, objectives known) that no other such row dominates. objectives: (column, 'max'|'min')."""
    ok = np.array(frame["status"] == "ok", dtype=bool)
    for column, _ in objectives:
        ok &= frame[column].notna().to_numpy()
    values = np.column_stack([
        (frame[c].astype(float) * (-1.0 if d == "max" else 1.0)).to_numpy() for c, d in objectives
    ]) if objectives else np.zeros((len(frame), 0))
    mask = np.zeros(len(frame), dtype=bool)
    candidates = np.flatnonzero(ok)
    for i in candidates:
        others = values[candidates]
        dominated = ((others <= values[i]).all(axis=1) & (others < values[i]).any(axis=1)).any()
        mask[i] = not dominated
    return mask


def default_objectives(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """Quality (the task metric, else fidelity) up; median latency and size down."""
    ok = frame[frame["status"] == "ok"]
    quality = "metric" if len(ok) and ok["metric"].notna().all() else "fidelity"
    return [(quality, "max"), ("latency_ms_p50", "min"), ("size_bytes", "min")]


class Results:
    """A study's results: `.frame` (one row per trial, the baseline first) and the Pareto front."""

    def __init__(self, frame: pd.DataFrame):
        frame = frame.assign(**{c: None for c in LATER_COLUMNS if c not in frame.columns})
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise DataError(f"not a workbench results table: missing columns {', '.join(missing[:5])}")
        frame = frame.reset_index(drop=True)
        frame["pareto"] = pareto_mask(frame, default_objectives(frame))
        self.frame = frame[list(COLUMNS) + [c for c in frame.columns if c not in COLUMNS]]

    # -- views ---------------------------------------------------------------------------------
    def pareto(self, objectives: Sequence[tuple[str, str]] | None = None) -> pd.DataFrame:
        """Rows on the front of quality / latency / size (or the objectives given), fastest first."""
        mask = pareto_mask(self.frame, objectives or default_objectives(self.frame))
        return self.frame[mask].sort_values("latency_ms_p50")

    @property
    def baseline(self) -> pd.Series:
        rows = self.frame[self.frame["is_baseline"].astype(bool)]
        if rows.empty:
            raise DataError("these results have no baseline row")
        return rows.iloc[0]

    def row(self, pipeline: str) -> pd.Series:
        from .recipes import as_pipeline

        spec = as_pipeline(pipeline).spec
        rows = self.frame[self.frame["pipeline"] == spec]
        if rows.empty:
            raise DataError(f"no trial {spec!r} in these results; trials: {', '.join(self.frame['pipeline'])}")
        return rows.iloc[-1]

    def table(self, columns: Sequence[str] = SUMMARY_COLUMNS) -> str:
        """A readable fixed-width table (sizes in KB, ratios rounded)."""
        view = self.frame[list(columns)].copy()
        for c in ("size_bytes", "size_gzip_bytes"):
            if c in view:
                view[c] = (view[c] / 1024).round(1)
                view = view.rename(columns={c: c.replace("_bytes", "_kb")})
        for c in view.columns:
            if view[c].dtype.kind == "f":
                view[c] = view[c].round(4)
        return view.to_string(index=False, na_rep="-")

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        write_table(self.frame, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Results:
        return cls(read_table(path))

    @classmethod
    def concat(cls, parts: Sequence[Results]) -> Results:
        """One frame from several studies (e.g. a torch and a TensorFlow model side by side)."""
        return cls(pd.concat([p.frame for p in parts], ignore_index=True))

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        return self.table()

    def _repr_html_(self) -> str:
        return self.frame[list(SUMMARY_COLUMNS)].to_html(index=False, na_rep="-")
