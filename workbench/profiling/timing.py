"""Latency that can be trusted: warm-up apart, a minimum time *and* count, order statistics and spread.

Every inference runner is timed the same way, whatever its framework: `measure_latency(fn)` calls `fn()`
once (the first call, which includes lazy initialisation and compilation, reported apart), warms up,
then times single calls until both `min_runs` and `min_time_s` are reached.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import numpy as np

from ..errors import ParameterError

#: IQR / median above this marks a measurement as noisy
NOISY_SPREAD = 0.10


@dataclasses.dataclass(frozen=True)
class TimingConfig:
    """How long and how often to time. Defaults suit interactive use; benchmarks ask for more."""

    min_time_s: float = 0.5
    min_runs: int = 30
    max_runs: int = 100_000
    max_time_s: float = 30.0
    warmup_runs: int = 5

    @classmethod
    def interactive(cls) -> TimingConfig:
        """What the panel and the dashboard time trials with: quick enough to toggle, enough calls for a p90."""
        return cls(min_time_s=0.3, min_runs=20)

    def __post_init__(self) -> None:
        checks = {
            "min_time_s": self.min_time_s >= 0 and math.isfinite(self.min_time_s),
            "min_runs": isinstance(self.min_runs, int) and self.min_runs >= 5,
            "max_runs": isinstance(self.max_runs, int) and self.max_runs >= self.min_runs,
            "max_time_s": self.max_time_s > 0 and self.max_time_s >= self.min_time_s,
            "warmup_runs": isinstance(self.warmup_runs, int) and self.warmup_runs >= 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ParameterError(
                "TimingConfig", bad[0], getattr(self, bad[0]),
                "min_time_s >= 0, min_runs >= 5 (fewer cannot give a p90), max_runs >= min_runs, "
                "max_time_s >= min_time_s and warmup_runs >= 0 (invalid timing config)"
            )


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Order statistics of per-call latency, in milliseconds."""

    samples_ms: tuple[float, ...]
    first_call_ms: float

    @property
    def n(self) -> int:
        return len(self.samples_ms)

    def _q(self, q: float) -> float:
        return float(np.percentile(self.samples_ms, q))

    @property
    def p50(self) -> float:
        return self._q(50)

    @property
    def iqr(self) -> float:
        return self._q(75) - self._q(25)

    @property
    def p90(self) -> float:
        return self._q(90)

    @property
    def p99(self) -> float:
        return self._q(99)

    @property
    def spread(self) -> float:
        """IQR relative to the median."""
        return self.iqr / self.p50 if self.p50 > 0 else math.inf

    @property
    def noisy(self) -> bool:
        return self.spread > NOISY_SPREAD

    def as_row(self) -> dict:
        return {
            "latency_ms_p50": self.p50, "latency_ms_iqr": self.iqr, "latency_ms_p90": self.p90,
            "latency_ms_p99": self.p99, "latency_n": self.n, "noisy": self.noisy,
            "first_call_ms": self.first_call_ms,
        }

    def thinned(self, k: int = 200) -> list[float]:
        """At most `k` samples spread evenly over the sorted distribution (for charts)."""
        s = np.sort(np.asarray(self.samples_ms))
        if len(s) <= k:
            return [round(float(v), 6) for v in s]
        idx = np.linspace(0, len(s) - 1, k).round().astype(int)
        return [round(float(v), 6) for v in s[idx]]


def measure_latency(fn: Callable[[], object], config: TimingConfig | None = None,
                    sync: Callable[[], None] | None = None) -> LatencyStats:
    """Time `fn()`; `sync` (e.g. torch.cuda.synchronize) runs after each call so the device work counts."""
    config = config or TimingConfig()
    sync = sync or (lambda: None)
    clock = time.perf_counter_ns

    t = clock()
    fn()
    sync()
    first_call_ms = (clock() - t) / 1e6
    for _ in range(config.warmup_runs):
        fn()
    sync()

    samples: list[float] = []
    start = clock()
    min_ns, max_ns = config.min_time_s * 1e9, config.max_time_s * 1e9
    while True:
        t = clock()
        fn()
        sync()
        end = clock()
        samples.append((end - t) / 1e6)
        elapsed = end - start
        if len(samples) >= config.max_runs or elapsed >= max_ns:
            break
        if len(samples) >= config.min_runs and elapsed >= min_ns:
            break
    return LatencyStats(tuple(samples), first_call_ms)
