"""Where trials run.

    inline    in this process: fastest, for the panel; a crash in a recipe takes the process with it
    process   each trial in a fresh worker process (spawn) with a timeout and a memory limit: a segfault,
              an abort, a hang or a runaway allocation becomes a failed row and the study (and the notebook
              kernel) goes on
    dask      trials on a Dask cluster: a local cluster of worker processes by default, or a scheduler
              address; each trial asks for `threads` cores of a worker, so timed trials never share cores

Trials run one at a time on inline and process executors. The baseline is always measured first: every
other row's metric_delta is relative to it.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ParameterError, WorkbenchError
from .registry import Registry

if TYPE_CHECKING:
    from .trial import Trial, TrialRecord

EXECUTORS: Registry[type] = Registry("executor")


class Executor:
    """Runs trials and yields their records in the order given. Sees only the public Trial / TrialRecord API."""

    name = ""

    def run(self, trials: Sequence[Trial]) -> Iterator[TrialRecord]:
        raise NotImplementedError

    def close(self) -> None:
        """Release workers or clusters the executor started."""


class InlineExecutor(Executor):
    name = "inline"

    def run(self, trials: Sequence[Trial]) -> Iterator[TrialRecord]:
        for trial in trials:
            yield trial.run()


def _check_timeout(timeout_s: float | None) -> float | None:
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                  or not timeout_s > 0):
        raise ParameterError("executor", "timeout_s", timeout_s, "a positive number of seconds (or None for no limit)")
    return None if timeout_s is None else float(timeout_s)


def run_payload(payload: bytes, memory_limit_bytes: int | None = None) -> TrialRecord:
    """Worker side: unpickle a trial and run it (used by the process and Dask executors)."""
    import cloudpickle

    if memory_limit_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    trial = cloudpickle.loads(payload)
    return trial.run()


def _process_main(payload_path: str, result_path: str, memory_limit_bytes: int | None) -> None:
    import pickle

    from .files import atomic_write_bytes

    record = run_payload(Path(payload_path).read_bytes(), memory_limit_bytes)
    atomic_write_bytes(result_path, pickle.dumps(record))


def _death(exitcode: int) -> str:
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        cause = {"SIGKILL": " (out of memory, or killed from outside)", "SIGSEGV": " (a segmentation fault)",
                 "SIGABRT": " (an abort)"}.get(name, "")
        return f"the worker process died with {name}{cause}"
    return f"the worker process exited with status {exitcode} before writing its result"


class ProcessExecutor(Executor):
    """Each trial in a fresh process: `timeout_s` per trial, `memory_limit_bytes` of address space."""

    name = "process"

    def __init__(self, timeout_s: float | None = 600.0, memory_limit_bytes: int | None = -1):
        self.timeout_s = _check_timeout(timeout_s)
        if memory_limit_bytes == -1:
            import psutil

            memory_limit_bytes = int(psutil.virtual_memory().total * 0.8)
        if memory_limit_bytes is not None and memory_limit_bytes < 2**28:
            raise ParameterError("process executor", "memory_limit_bytes", memory_limit_bytes,
                                 "at least 256 MiB (a worker imports its framework)")
        self.memory_limit_bytes = memory_limit_bytes

    def run(self, trials: Sequence[Trial]) -> Iterator[TrialRecord]:
        for trial in trials:
            yield self.run_one(trial)

    def run_one(self, trial: Trial) -> TrialRecord:
        import multiprocessing
        import pickle

        import cloudpickle

        started = time.perf_counter()
        try:
            payload = cloudpickle.dumps(trial)
        except Exception as exc:  # something in the model or task that cannot travel to a worker
            return trial.failed(f"cannot send the trial to a worker process ({type(exc).__name__}: {exc}); "
                                "run it inline", started)
        with tempfile.TemporaryDirectory(prefix="wb-trial-") as tmp:
            payload_path, result_path = os.path.join(tmp, "payload.pkl"), os.path.join(tmp, "record.pkl")
            Path(payload_path).write_bytes(payload)
            # not a daemon: a trial may start processes of its own (ddp); it is killed on timeout
            proc = multiprocessing.get_context("spawn").Process(
                target=_process_main, args=(payload_path, result_path, self.memory_limit_bytes), daemon=False)
            proc.start()
            proc.join(self.timeout_s)
            if proc.is_alive():
                proc.kill()
                proc.join()
                return trial.failed(f"timed out after {self.timeout_s:g} s: the trial was killed "
                                    "(raise the executor's timeout_s for slow recipes)", started)
            if os.path.exists(result_path):
                return pickle.loads(Path(result_path).read_bytes())
            return trial.failed(_death(proc.exitcode), started)


class DaskExecutor(Executor):
    """Trials on Dask: a local cluster of `n_workers` processes (loopback only) or the scheduler at `address`."""

    name = "dask"

    def __init__(self, address: str | None = None, n_workers: int = 2, threads_per_worker: int = 1,
                 timeout_s: float | None = 600.0):
        if not isinstance(n_workers, int) or n_workers < 1:
            raise ParameterError("dask executor", "n_workers", n_workers, "a whole number >= 1")
        self.address, self.n_workers, self.threads_per_worker = address, n_workers, threads_per_worker
        self.timeout_s = _check_timeout(timeout_s)
        self._client = None
        self._cluster = None

    @property
    def client(self):
        from ._optional import require

        distributed = require("distributed", "dask", "the Dask executor")
        if self._client is None:
            if self.address:
                self._client = distributed.Client(self.address, timeout="30s")
            else:
                import dask

                with dask.config.set({"distributed.worker.daemon": False}):  # trials may start processes (ddp)
                    self._cluster = distributed.LocalCluster(
                        n_workers=self.n_workers, threads_per_worker=self.threads_per_worker, processes=True,
                        host="127.0.0.1", dashboard_address=None, resources={"cores": self.threads_per_worker})
                self._client = distributed.Client(self._cluster)
        return self._client

    def _check_cores(self, threads: int) -> None:
        offered = [w.get("resources", {}).get("cores", 0) for w in self.client.scheduler_info()["workers"].values()]
        if not any(c >= threads for c in offered):
            raise WorkbenchError(
                f"no Dask worker offers {threads} core(s) (workers offer {offered or 'nothing'}): start workers "
                f"with `--resources cores=N`, or run the study with threads <= {max(offered, default=0)}")

    def run(self, trials: Sequence[Trial]) -> Iterator[TrialRecord]:
        import cloudpickle
        from distributed import TimeoutError as DaskTimeout

        if not trials:
            return
        threads = max(t.threads for t in trials)
        self._check_cores(threads)
        started = time.perf_counter()
        futures = []
        for t in trials:
            try:
                futures.append(self.client.submit(run_payload, cloudpickle.dumps(t), resources={"cores": t.threads},
                                                  pure=False, retries=0))
            except Exception as exc:  # the trial cannot travel to a worker: its record says why
                futures.append(exc)
        for trial, future in zip(trials, futures):
            if isinstance(future, Exception):
                yield trial.failed(f"cannot send the trial to a Dask worker ({type(future).__name__}: {future})",
                                   started)
                continue
            try:
                yield future.result(timeout=self.timeout_s)
            except DaskTimeout:
                future.cancel()
                yield trial.failed(f"timed out after {self.timeout_s:g} s on the Dask cluster", started)
            except Exception as exc:  # KilledWorker, a crash, a lost connection: the trial's record says so
                yield trial.failed(f"dask: {type(exc).__name__}: {exc}", started)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None


EXECUTORS.register("inline", InlineExecutor)
EXECUTORS.register("process", ProcessExecutor)
EXECUTORS.register("dask", DaskExecutor)


def as_executor(value: Any) -> Executor:
    """An Executor instance, or the name of one (built with its defaults)."""
    if isinstance(value, Executor):
        return value
    if isinstance(value, str):
        return EXECUTORS.get(value)()
    raise WorkbenchError(f"executor must be one of {', '.join(EXECUTORS.names())} or an Executor, got {value!r}")
