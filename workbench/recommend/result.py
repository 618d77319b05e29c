"""What a search returns: every trial with why it was or was not chosen, the front, and the recommendation with
its evidence — or the plain statement that nothing met the budget, and what came closest."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd

from ..files import write_table
from ..results import pareto_mask
from .heldout import HeldOut
from .quality import Quality
from .space import Space

#: the columns a search adds to the study's rows
SEARCH_COLUMNS = ("origin", "drop", "verdict", "heldout_drop", "heldout_ci_low", "heldout_ci_high")
TRIED_COLUMNS = ("pipeline", "origin", "status", "objective", "drop", "heldout_drop", "verdict")


@dataclasses.dataclass
class SearchResult:
    objective: str                 # latency | size
    column: str                    # the results column minimized (latency_ms_p50, size_bytes)
    quality: Quality
    max_drop: float
    budget_s: float
    elapsed_s: float               # the search itself (trials, fallbacks)
    heldout_s: float               # the held-out checks after it
    stopped: str                   # why the search ended
    frame: pd.DataFrame            # one row per trial (the results columns + SEARCH_COLUMNS), baseline first
    recommended: str | None        # the pipeline to ship (None: nothing met the budget and beat the baseline)
    heldout: list[HeldOut]         # every held-out check made, in the order made
    selection: str                 # the task the search selected on
    holdout: str                   # the task it reported on
    space: Space | None = None
    impossible: dict[str, str] = dataclasses.field(default_factory=dict)  # combinations refused unbuilt
    speedup: tuple[float, float, float] | None = None  # recommended vs baseline timed again, interleaved: median, q1, q3
    notes: list[str] = dataclasses.field(default_factory=list)

    # -- answers ---------------------------------------------------------------------------------
    @property
    def met(self) -> bool:
        """Whether a configuration met the budget on both splits (and beat the baseline): `recommended`."""
        return self.recommended is not None

    @property
    def baseline(self) -> pd.Series:
        return self.frame[self.frame["is_baseline"].astype(bool)].iloc[0]

    def row(self, pipeline: str) -> pd.Series:
        return self.frame[self.frame["pipeline"] == pipeline].iloc[-1]

    def check_of(self, pipeline: str) -> HeldOut | None:
        return next((h for h in self.heldout if h.pipeline == pipeline), None)

    def front(self) -> pd.DataFrame:
        """Trials nothing beats on both the objective and the quality drop (validation), best objective first."""
        ok = self.frame[(self.frame["status"] == "ok") & self.frame["drop"].notna()]
        mask = pareto_mask(ok, [(self.column, "min"), ("drop", "min")])
        return ok[mask].sort_values(self.column)

    def closest(self, n: int = 3) -> pd.DataFrame:
        """The configurations that came nearest to the accuracy budget (smallest drop first), baseline aside."""
        ok = self.frame[(self.frame["status"] == "ok") & ~self.frame["is_baseline"].astype(bool)]
        ok = ok[ok[self.column] < self.baseline[self.column]]  # only those that would have been worth it
        return ok.sort_values(["drop", self.column]).head(n)

    def tried(self) -> pd.DataFrame:
        """What was tried, in order, and the verdict on each."""
        view = self.frame.rename(columns={self.column: "objective"})
        return view[list(TRIED_COLUMNS)]

    # -- words and pictures ----------------------------------------------------------------------
    def headline(self) -> str:
        """What a page says first: the configuration to ship on this machine and what it costs, or why none."""
        from .. import readable

        if not self.met:
            if self._within_but_not_better():
                return ("Ship the original model: no configuration was faster than it beyond the timing noise within "
                        f"{self.max_drop:g} {self.quality.unit}")
            return f"Ship the original model: no configuration kept within {self.max_drop:g} {self.quality.unit}"
        row, check = self.row(self.recommended), self.check_of(self.recommended)
        base = self.baseline.to_dict()
        if check is not None:
            where = (" on held-out data" if "not held out" not in self.holdout else
                     " on the data it was chosen on (nothing was held out)")
            cost = self.quality.describe_change(check.drop, (check.ci_low, check.ci_high)) + where
        else:
            cost = self.quality.describe_change(row["drop"])
        # the rows' own numbers, as the page's table shows them (the interleaved re-timing is in `explanation`)
        return "Ship " + readable.summary(base, row.to_dict(), cost)

    def _fmt(self, value: float) -> str:
        if value is None or value != value:
            return "–"
        return f"{value:.4g} ms" if self.objective == "latency" else f"{value / 1024:,.1f} KB"

    @property
    def explanation(self) -> str:
        base = self.baseline
        measured = int((self.frame["origin"] != "baseline").sum())
        parts = [f"Searched {self.elapsed_s:.0f} s of a {self.budget_s:.0f} s budget ({self.stopped}): {measured} "
                 f"configuration(s) on {self.selection}, the {self.objective} objective, at most "
                 f"{self.max_drop:g} {self.quality.unit} lost"
                 + (f"; {len(self.impossible)} impossible combination(s) refused unbuilt" if self.impossible else "")
                 + "."]
        if self.met:
            row, check = self.row(self.recommended), self.check_of(self.recommended)
            spread = (f"median {self._fmt(row['latency_ms_p50'])}, IQR {row['latency_ms_iqr']:.3g} ms over "
                      f"{int(row['latency_n'])} calls" if self.objective == "latency" else
                      f"{self._fmt(row['size_bytes'])}, latency {row['latency_ms_p50']:.4g} ms")
            ratio = base[self.column] / row[self.column] if row[self.column] else math.nan
            verb = "faster" if self.objective == "latency" else "smaller"
            again = (f" (timed again beside it, interleaved: {self.speedup[0]:.2f}x, quartiles "
                     f"{self.speedup[1]:.2f}–{self.speedup[2]:.2f}x)" if self.speedup else "")
            parts.append(f"Recommended: `{self.recommended}` — {spread}; {ratio:.2f}x {verb} than the baseline "
                         f"({self._fmt(base[self.column])}){again}. On validation: "
                         f"{self.quality.describe_drop(row['drop'])}. Held out ({self.holdout}): "
                         f"{check.describe(self.quality)}.")
            near = self._within_noise(row)
            if near:
                parts.append("Within the timing noise of it: " + ", ".join(f"`{p}`" for p in near) +
                             " (the medians differ by less than either's IQR).")
        elif self._within_but_not_better():
            parts.append(f"Configurations met the accuracy budget, but none was "
                         f"{'faster' if self.objective == 'latency' else 'smaller'} than the baseline beyond its "
                         "noise: ship the baseline.")
        else:
            closest = self.closest()
            if len(closest):
                listed = "; ".join(f"`{r['pipeline']}` ({self._fmt(r[self.column])}, drop {r['drop']:.2f})"
                                   for _, r in closest.iterrows())
                parts.append(f"No configuration met the budget of {self.max_drop:g} {self.quality.unit}; the closest "
                             f"are {listed}. Ship the baseline, or allow a drop of {closest['drop'].min():.2f}.")
            else:
                parts.append("No configuration met the budget, and none that ran beat the baseline.")
        parts.append(self._rejections())
        parts += self.notes
        return " ".join(p for p in parts if p)

    def _within_but_not_better(self) -> bool:
        verdicts = self.frame["verdict"].fillna("")
        return bool(verdicts.str.startswith("within the budget, not").any()) and not bool(
            verdicts.str.startswith("missed on the held-out").any())

    def _within_noise(self, row: pd.Series) -> list[str]:
        if self.objective != "latency":
            return []
        ok = self.frame[(self.frame["verdict"].str.startswith("slower")) & self.frame["latency_ms_p50"].notna()]
        close = ok[(ok["latency_ms_p50"] - row["latency_ms_p50"]).abs()
                   < np.maximum(ok["latency_ms_iqr"].fillna(0), row["latency_ms_iqr"] or 0)]
        return list(close["pipeline"][:3])

    def _rejections(self) -> str:
        verdicts = self.frame["verdict"].fillna("")
        over = self.frame[verdicts.str.startswith("over the budget")].sort_values(self.column)
        lines = []
        if len(over):
            first = over.iloc[0]
            lines.append(f"{len(over)} over the accuracy budget on validation (the "
                         f"{'fastest' if self.objective == 'latency' else 'smallest'}: `{first['pipeline']}`, "
                         f"{self._fmt(first[self.column])}, drop {first['drop']:.2f})")
        missed = self.frame[verdicts.str.startswith("missed on the held-out")]
        if len(missed):
            lines.append(f"{len(missed)} met it on validation but not on the held-out split ("
                         + ", ".join(f"`{p}`" for p in missed["pipeline"]) + ")")
        for status in ("failed", "unsupported"):
            n = int((self.frame["status"] == status).sum())
            if n:
                lines.append(f"{n} {status}")
        slower = int(verdicts.str.startswith(("slower", "larger")).sum())
        if slower:
            lines.append(f"{slower} within the budget but {'slower' if self.objective == 'latency' else 'larger'}")
        return ("Rejected: " + "; ".join(lines) + ".") if lines else ""

    def chart(self):
        from ..charts import search

        return search(self)

    def save(self, path: Any) -> None:
        """Every trial with its verdict (.csv or .parquet)."""
        write_table(self.frame, path)

    def _repr_markdown_(self) -> str:
        return self.explanation

    def __repr__(self) -> str:
        return self.explanation
