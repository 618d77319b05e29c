"""Numbers for people: sizes in KB / MB, latency in ms with its spread, and every change said in words with
which way is better ("2.4x slower", "4.0x smaller", "-0.3 points"), for the dashboard, the history and reports.

    readable.size(90_893_809)                      '86.7 MB'
    readable.change("time", 1.0, 2.45)             Change('2.45x slower', 'worse', 2.45)
    readable.change("points", 0.981, 0.978)        Change('-0.3 points', 'worse', None)
"""

from __future__ import annotations

import math
from typing import NamedTuple

#: kind of quantity -> whether lower is better (None: neither way is better)
KINDS = {"time": True, "size": True, "memory": True, "rate": False, "points": False, "score": False, "loss": True,
         "share": None}
#: a change smaller than this (relative for ratios, in points for points) reads as "unchanged"; sizes are exact, so
#: a smaller change of size still counts
SAME = {"ratio": 0.02, "size": 0.001, "points": 0.05}


class Change(NamedTuple):
    text: str              # "2.45x slower", "-0.3 points", "within noise (1.02x)"
    verdict: str | None    # better, worse, same, noise (not distinguishable from timing noise), or None
    ratio: float | None    # current / baseline for ratio quantities


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value, digits: int = 3) -> str:
    """Three significant digits, no exponent for everyday magnitudes."""
    if _missing(value):
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


def size(nbytes) -> str:
    if _missing(nbytes):
        return "–"
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if abs(nbytes) >= scale:
            return f"{number(nbytes / scale)} {unit}"
    return f"{int(nbytes)} B"


def ms(value, iqr=None) -> str:
    if _missing(value):
        return "–"
    return f"{number(value)} ms" + (f" ± {number(iqr / 2, 2)}" if not _missing(iqr) else "")


def percent(share) -> str:
    if _missing(share):
        return "–"
    return "<0.01%" if 0 < abs(share) < 1e-4 else f"{number(100 * share)}%"


def show(kind: str, value) -> str:
    """A value of this kind of quantity, with its unit."""
    if kind in ("size", "memory"):
        return size(value)
    if kind == "time":
        return ms(value)
    if kind in ("points", "share"):
        return percent(value)
    return number(value)  # score, rate, loss


def change(kind: str, baseline, current, *, noise: float | None = None) -> Change:
    """The change from `baseline` to `current` in words. `noise`: the timing spread (e.g. the mean of both
    IQRs); a difference inside it is "within noise", whichever way it went."""
    if _missing(baseline) or _missing(current) or kind not in KINDS:
        return Change("–", None, None)
    lower_is_better = KINDS[kind]
    if kind in ("points", "share"):
        diff = 100 * (current - baseline)
        if abs(diff) < SAME["points"]:
            return Change("unchanged", "same", None)
        verdict = None if lower_is_better is None else ("better" if diff > 0 else "worse")
        return Change(f"{diff:+.{1 if abs(diff) >= 0.1 else 2}f} points".replace("-", "−"), verdict, None)
    if kind in ("loss", "score"):  # a loss (lower is better) or a score that is not a share (Spearman)
        diff = current - baseline
        if abs(diff) < (5e-4 if kind == "score" else 1e-12):
            return Change("unchanged", "same", None)
        better = diff < 0 if kind == "loss" else diff > 0
        return Change(f"{diff:+.3g}".replace("-", "−") if kind == "score" else f"{diff:+.3g}",
                      "better" if better else "worse", None)
    if baseline == 0 or current == 0:
        return Change("–", None, None)
    ratio = current / baseline
    if current == baseline:  # the same measurement (the original shown against itself)
        return Change("unchanged", "same", ratio)
    if noise is not None and abs(current - baseline) <= noise:
        return Change(f"within noise ({ratio:.2f}x)", "noise", ratio)
    if abs(ratio - 1) < SAME["size" if kind in ("size", "memory") else "ratio"]:
        return Change("unchanged", "same", ratio)
    words = {"time": ("faster", "slower"), "size": ("smaller", "larger"), "memory": ("less", "more"),
             "rate": ("lower", "higher")}[kind]
    lower = ratio < 1
    factor = 1 / ratio if lower else ratio
    better = lower if lower_is_better else not lower
    return Change(f"{factor:.{(3 if factor < 1.1 else 2) if factor < 10 else 1}f}x {words[0] if lower else words[1]}",
                  "better" if better else "worse", ratio)


def timing_noise(baseline, row) -> float | None:
    """The spread two latencies are compared within: the mean of their IQRs (results rows as mappings)."""
    spreads = [r.get("latency_ms_iqr") for r in (baseline, row)]
    return sum(s for s in spreads if isinstance(s, (int, float)) and s == s) / 2 or None


def summary(baseline, row, quality: str, *, speedup: float | None = None) -> str:
    """A configuration against the baseline in one line: "int8-static: 2.31x faster, 2.99x smaller, accuracy
    unchanged". `baseline` and `row` are results rows (mappings); `quality` says what it cost; `speedup` (baseline
    time over this one's, e.g. timed again side by side) replaces the rows' latency ratio."""
    if speedup:
        speed = change("time", 1.0, 1.0 / speedup).text
    else:
        speed = change("time", baseline.get("latency_ms_p50"), row.get("latency_ms_p50"),
                       noise=timing_noise(baseline, row)).text
    size_change = change("size", baseline.get("size_bytes"), row.get("size_bytes")).text
    return f"{row.get('pipeline')}: {speed}, {'size ' if size_change == 'unchanged' else ''}{size_change}, {quality}"


COLOURS = {"better": "#1a7f37", "worse": "#b3261e", "noise": "#777", "same": "#777"}
