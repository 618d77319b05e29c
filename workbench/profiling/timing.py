"""Latency that can be trusted: warm-up apart, a minimum time *and* count, order statistics and spread.

Every inference runner is timed the same way, whatever its framework: `measure_latency(fn)` calls `fn()`
once (the first call, which includes lazy initialisation and compilation, reported apart), warms up,
then times single calls until both `min_runs` and `min_time_s` are reached.

Timed regions never overlap on one machine: each holds a machine-wide file lock (`measurement_lock`), so two
dashboard sessions, a notebook and a `workbench run` take turns instead of timing each other. The load that
other processes put on the cores meanwhile is measured (`load_others`, in cores) and a row is flagged
`contended` when it was more than the cores the trial left idle could absorb.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import ParameterError

#: IQR / median above this marks a measurement as noisy
NOISY_SPREAD = 0.10
#: cores of other processes' work, beyond the cores a trial leaves idle, that flag a timing as contended
CONTENDED_CORES = 0.25
#: how long a timed region waits for another's to end before it times anyway (flagged contended); well below a
#: dashboard trial's timeout (300 s), which the wait counts against
LOCK_WAIT_S = 60.0


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
    load_others: float | None = None    # cores busy with other processes' work while timing (None: not measured)
    contended: bool | None = None       # whether that load reached the cores this timing used
    lock_wait_ms: float = 0.0           # waited for another process's timed region to end

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
            "first_call_ms": self.first_call_ms, "load_others": self.load_others, "contended": self.contended,
            "lock_wait_ms": self.lock_wait_ms,
        }

    def thinned(self, k: int = 200) -> list[float]:
        """At most `k` samples spread evenly over the sorted distribution (for charts)."""
        s = np.sort(np.asarray(self.samples_ms))
        if len(s) <= k:
            return [round(float(v), 6) for v in s]
        idx = np.linspace(0, len(s) - 1, k).round().astype(int)
        return [round(float(v), 6) for v in s[idx]]


_LOCKS = threading.local()


def lock_path() -> str:
    """The machine-wide lock file ($WORKBENCH_MEASURE_LOCK, or one in the system's temporary folder, shared by
    every user)."""
    return os.environ.get("WORKBENCH_MEASURE_LOCK") or os.path.join(tempfile.gettempdir(), "workbench-measure.lock")


@contextlib.contextmanager
def measurement_lock(timeout_s: float = LOCK_WAIT_S) -> Iterator[dict]:
    """Hold the machine-wide measurement lock (re-entrant in a thread). Yields what happened: `waited_s`, and
    `held` False when the lock could not be had (a lock file that cannot be opened, or `timeout_s` passed);
    $WORKBENCH_MEASURE_LOCK=off times without it."""
    path = lock_path()
    if path == "off":
        yield {"waited_s": 0.0, "held": False}
        return
    depth = getattr(_LOCKS, "depth", 0)
    if depth:  # an outer timed region of this thread holds it
        _LOCKS.depth = depth + 1
        try:
            yield {"waited_s": 0.0, "held": True}
        finally:
            _LOCKS.depth -= 1
        return
    import filelock

    lock = filelock.FileLock(path, mode=0o666, thread_local=False)
    started = time.perf_counter()
    outcome: dict | None = None
    try:
        lock.acquire(timeout=timeout_s)
    except filelock.Timeout:  # another process has been timing all along: this timing is contended
        outcome = {"waited_s": time.perf_counter() - started, "held": False, "timed_out": True}
    except OSError:  # a lock file that cannot be made (a read-only temporary folder): time without it
        outcome = {"waited_s": 0.0, "held": False}
    if outcome is not None:
        yield outcome
        return
    _LOCKS.depth = 1
    try:
        yield {"waited_s": time.perf_counter() - started, "held": True}
    finally:
        _LOCKS.depth = 0
        lock.release()


def _busy_cores_seconds() -> float | None:
    """CPU seconds spent busy so far on the cores this process may run on (its affinity), all processes together."""
    import psutil

    try:
        per_cpu = psutil.cpu_times(percpu=True)
        allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(len(per_cpu))
    except Exception:  # no /proc/stat (some sandboxes)
        return None
    busy = 0.0
    for i in allowed:
        if i < len(per_cpu):
            t = per_cpu[i]._asdict()
            # guest time is already inside user / nice on Linux: not counted twice
            busy += sum(t.values()) - t.get("idle", 0.0) - t.get("iowait", 0.0) - t.get("guest", 0.0) \
                - t.get("guest_nice", 0.0)
    return busy


def _own_cpu_seconds(helpers: tuple[int, ...] = ()) -> float:
    """This process's CPU seconds, and those of the helper processes doing its timed work (a runtime in another
    process, such as TF.js in Node.js)."""
    t = os.times()
    own = t.user + t.system
    if helpers:
        import psutil

        for pid in helpers:
            try:
                times = psutil.Process(pid).cpu_times()
                own += times.user + times.system
            except psutil.Error:
                pass
    return own


def _threads_in_use() -> int:
    """torch's intra-op threads where torch is loaded, else every core (the cautious guess)."""
    import sys

    from .device import available_cores

    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else available_cores()


def load_of_others(busy: float | None, own: float, wall_s: float, threads: int) -> tuple[float | None, bool | None]:
    """(cores of other processes' work during `wall_s`, whether it contended with a timing that used `threads`)."""
    from .device import available_cores

    if busy is None or wall_s <= 0:
        return None, None
    others = max(0.0, (busy - own) / wall_s)
    idle = max(0, available_cores() - threads)
    return round(others, 3), others > idle + CONTENDED_CORES


def measure_latency(fn: Callable[[], object], config: TimingConfig | None = None,
                    sync: Callable[[], None] | None = None, threads: int | None = None,
                    helpers: tuple[int, ...] = ()) -> LatencyStats:
    """Time `fn()`; `sync` (e.g. torch.cuda.synchronize) runs after each call so the device work counts. The timed
    calls hold the machine-wide measurement lock; `threads` (default: torch's) is what contention is judged by, and
    the CPU time of `helpers` (process ids doing the work for `fn`) counts as the timing's own."""
    with measurement_lock() as lock:
        busy0, own0, wall0 = _busy_cores_seconds(), _own_cpu_seconds(helpers), time.perf_counter()
        stats = _measure(fn, config or TimingConfig(), sync or (lambda: None))
        busy1, own1, wall = _busy_cores_seconds(), _own_cpu_seconds(helpers), time.perf_counter() - wall0
    others, contended = load_of_others(None if busy0 is None or busy1 is None else busy1 - busy0, own1 - own0, wall,
                                       threads or _threads_in_use())
    if lock.get("timed_out"):
        contended = True
    return dataclasses.replace(stats, load_others=others, contended=contended,
                               lock_wait_ms=round(lock["waited_s"] * 1e3, 3))


def measure_handle(handle: Any, batch: Any, config: TimingConfig | None = None,
                   threads: int | None = None) -> LatencyStats:
    """`measure_latency` of a model handle's `runner(batch)`, with its device sync and its helper processes (call
    it inside `handle.session(threads)`: runtimes take their thread count when a session is made)."""
    return measure_latency(handle.runner(batch), config, sync=handle.synchronize, threads=threads,
                           helpers=handle.helper_processes())


def _measure(fn: Callable[[], object], config: TimingConfig, sync: Callable[[], None]) -> LatencyStats:
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
