"""Where trials run.

    inline    in this process: fastest, for the panel; a crash in a recipe takes the process with it
    process   each trial in a fresh worker process (spawn) with a timeout and a memory limit: a segfault,
              an abort, a hang or a runaway allocation becomes a failed row and the study (and the notebook
              kernel) goes on
    warm      the same isolation from one long-lived worker per study, its frameworks imported and the model
              unpickled before the first trial and kept between trials; restarted after a trial that crashed,
              hung or ran out of memory (what the dashboard runs its trials on)
    dask      trials on a Dask cluster: a local cluster of worker processes by default, or a scheduler
              address; each trial asks for `threads` cores of a worker, so timed trials never share cores

Trials run one at a time on inline and process executors. The baseline is always measured first: every
other row's metric_delta is relative to it.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._sysmem import tree_resident_bytes
from ._worker import KEEP_BENCHES, limit_address_space
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

    def prepare(self, bench: Any) -> None:
        """Told of the study's bench when the study is made: a chance to start workers ahead of the first trial."""

    def close(self) -> None:
        """Release workers or clusters the executor started."""


class InlineExecutor(Executor):
    name = "inline"

    def run(self, trials: Sequence[Trial]) -> Iterator[TrialRecord]:
        for trial in trials:
            yield trial.run()


def _check_timeout(timeout_s: float | None, owner: str = "executor") -> float | None:
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                  or not timeout_s > 0):
        raise ParameterError(owner, "timeout_s", timeout_s, "a positive number of seconds (or None for no limit)")
    return None if timeout_s is None else float(timeout_s)


def run_payload(payload: bytes, memory_limit_bytes: int | None = None) -> TrialRecord:
    """Worker side: unpickle a trial and run it (used by the process and Dask executors)."""
    import cloudpickle

    limit_address_space(memory_limit_bytes or 0)
    trial = cloudpickle.loads(payload)
    return trial.run()


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


def _stderr_tail(path: str, lines: int = 12, chars: int = 1500, since: int = 0) -> str:
    """The last lines a worker wrote to stderr (after byte `since`), for a failed row ('' when it wrote nothing)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(since, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    tail = "\n".join(line for line in text.splitlines() if line.strip())
    tail = "\n".join(tail.splitlines()[-lines:])[-chars:]
    return f"; the worker's stderr ended with:\n{tail}" if tail else ""


def _worker_env() -> dict[str, str]:
    """The worker imports what this process can: its sys.path (a notebook's folder included) goes along."""
    env = dict(os.environ)
    paths = [p or os.getcwd() for p in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def _kill_group(pid: int) -> None:
    """Kill the worker's process group: the worker and whatever it started that is still alive."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _on_cuda(bench: Any) -> bool:
    """Whether a bench's trials run on a CUDA device (inference settings call it `target`, training `device`)."""
    settings = bench.settings()
    return str(settings.get("target") or settings.get("device") or "cpu").startswith("cuda")


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


class ProcessExecutor(Executor):
    """Each trial in a fresh worker process, in a process group of its own, that dies with its parent.

    timeout_s            per trial; on expiry the whole group is killed and the row says so
    memory_limit_bytes   resident memory of the worker and its children (default: 80% of what this machine, or
                         its cgroup, allows); a CPU trial also gets it as an address-space limit, so a runaway
                         allocation fails at once with MemoryError (CUDA trials map far more address space than
                         they use, so theirs is watched, not capped)
    """

    name = "process"
    poll_s = 0.25

    def __init__(self, timeout_s: float | None = 600.0, memory_limit_bytes: int | None = -1):
        from ._sysmem import usable_memory_bytes

        owner = f"{self.name} executor"
        self.timeout_s = _check_timeout(timeout_s, owner)
        usable = usable_memory_bytes()
        if memory_limit_bytes == -1:
            memory_limit_bytes = int(usable * 0.8)
        if memory_limit_bytes is not None and (isinstance(memory_limit_bytes, bool)
                                               or not isinstance(memory_limit_bytes, int)):
            raise ParameterError(owner, "memory_limit_bytes", memory_limit_bytes,
                                 "a whole number of bytes, or None for no limit")
        if memory_limit_bytes is not None and memory_limit_bytes < 2**28:
            raise ParameterError(owner, "memory_limit_bytes", memory_limit_bytes,
                                 "at least 256 MiB (a worker imports its framework)")
        if memory_limit_bytes is not None and memory_limit_bytes > usable:
            raise ParameterError(owner, "memory_limit_bytes", memory_limit_bytes,
                                 f"at most {_gib(usable)}, the memory this machine (or its cgroup) allows")
        self.memory_limit_bytes = memory_limit_bytes

    def run(self, trials: Sequence[Trial]) -> Iterator[TrialRecord]:
        for trial in trials:
            yield self.run_one(trial)

    def _address_space_limit(self, trial: Trial) -> int:
        return 0 if self.memory_limit_bytes is None or _on_cuda(trial.bench) else self.memory_limit_bytes

    def _over_limits(self, pid: int, started: float, restarted: str = "") -> str | None:
        """Why the trial in worker `pid` must be stopped now (its time or memory), or None."""
        if self.timeout_s is not None and time.perf_counter() > started + self.timeout_s:
            return (f"timed out after {self.timeout_s:g} s: the trial was killed{restarted} "
                    "(raise the executor's timeout_s for slow recipes)")
        if self.memory_limit_bytes is not None:
            used = tree_resident_bytes(pid)
            if used > self.memory_limit_bytes:
                return (f"used {_gib(used)} of memory, over the executor's limit of "
                        f"{_gib(self.memory_limit_bytes)}: the trial was killed{restarted} (raise memory_limit_bytes, "
                        "or use a smaller batch)")
        return None

    def _watch(self, proc, started: float) -> str | None:
        """Wait for the worker; the reason it was stopped, or None when it ended by itself."""
        import subprocess

        while True:
            try:
                proc.wait(self.poll_s)
                return None
            except subprocess.TimeoutExpired:
                pass
            stopped = self._over_limits(proc.pid, started)
            if stopped:
                return stopped

    def run_one(self, trial: Trial) -> TrialRecord:
        import pickle
        import subprocess

        import cloudpickle

        started = time.perf_counter()
        try:
            payload = cloudpickle.dumps(trial)
        except Exception as exc:  # something in the model or task that cannot travel to a worker
            return trial.failed(f"cannot send the trial to a worker process ({type(exc).__name__}: {exc}); "
                                "run it inline", started)
        with tempfile.TemporaryDirectory(prefix="wb-trial-") as tmp:
            payload_path, result_path = os.path.join(tmp, "payload.pkl"), os.path.join(tmp, "record.pkl")
            stderr_path = os.path.join(tmp, "stderr.txt")
            Path(payload_path).write_bytes(payload)
            command = [sys.executable, "-m", "workbench._worker", payload_path, result_path, str(os.getpid()),
                       str(self._address_space_limit(trial))]
            with open(stderr_path, "wb") as stderr:
                proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=stderr, env=_worker_env(),
                                        start_new_session=True)
            try:
                stopped = self._watch(proc, started)
            finally:  # whatever happened, nothing the trial started outlives it
                _kill_group(proc.pid)
                proc.wait()
            if stopped is None and os.path.exists(result_path):
                return pickle.loads(Path(result_path).read_bytes())
            return trial.failed((stopped or _death(proc.returncode)) + _stderr_tail(stderr_path), started)


#: what a warm worker imports before its first trial, by the framework of the study's model (torch._dynamo: the
#: FLOP counter's first use imports it, 1.4 s on a 2-core machine)
PRELOAD = {"torch": ("torch", "torch._dynamo", "torch.utils.flop_counter", "workbench.backends.torch"), "keras": ("tensorflow", "workbench.backends.keras"),
           "onnx": ("onnxruntime", "workbench.backends.onnx"), "tflite": ("tensorflow",)}


class WarmExecutor(ProcessExecutor):
    """Trials in one long-lived worker process: the isolation of the process executor (a crash, a hang or a
    runaway allocation is a failed row; the timeout and memory limit are its), without paying for a fresh
    interpreter, the framework imports and the model's transfer on every trial.

    The worker starts when the study is made (`prepare`) and imports the model's framework at once; the bench
    (model, task, the built handles of earlier trials) is sent once and kept. A worker that crashed, hung or
    went over the memory limit is killed with its process group and a fresh one started at once for the next
    trial. It ends with the study (`close`), or when its parent process dies.
    """

    name = "warm"

    def __init__(self, timeout_s: float | None = 600.0, memory_limit_bytes: int | None = -1):
        super().__init__(timeout_s, memory_limit_bytes)
        self._proc = None
        self._conn = None
        self._stderr_path: str | None = None
        self._tmp = None
        self._sent: list[str] = []      # keys of the benches the live worker holds, oldest first
        self._modules: tuple[str, ...] = ("workbench.measure",)
        self._cuda = False
        self._lock = threading.Lock()
        self._closed = False
        self.restarts = 0               # workers started after the first (for the panel and tests)

    @property
    def pid(self) -> int | None:
        """The live worker's process id (None before the first start or after close)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def prepare(self, bench: Any) -> None:
        """Start the worker (if none runs) importing what the bench's model needs."""
        framework = getattr(bench.baseline, "framework", "")
        self._modules = tuple(dict.fromkeys((*self._modules, *PRELOAD.get(framework, ()))))
        self._cuda = self._cuda or _on_cuda(bench)
        with self._lock:
            self._closed = False
            if self.pid is None:
                self._start()

    def _start(self) -> None:
        """A fresh worker (the caller holds the lock). Its imports run while the caller goes on."""
        import socket
        import subprocess
        from multiprocessing.connection import Connection

        self._stop()
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="wb-warm-")
        self._stderr_path = os.path.join(self._tmp.name, f"stderr-{self.restarts}.txt")
        ours, theirs = socket.socketpair()
        limit = 0 if self.memory_limit_bytes is None or self._cuda else self.memory_limit_bytes
        command = [sys.executable, "-m", "workbench._worker", "--warm", str(theirs.fileno()), str(os.getpid()),
                   str(limit), ",".join(self._modules)]
        with open(self._stderr_path, "wb") as stderr:
            self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=stderr, env=_worker_env(),
                                          start_new_session=True, pass_fds=(theirs.fileno(),))
        theirs.close()
        self._conn = Connection(ours.detach())
        self._sent = []

    def _stop(self) -> None:
        if self._proc is not None:
            _kill_group(self._proc.pid)
            self._proc.wait()
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None
        self._sent = []

    def _receive(self, started: float) -> tuple[Any, str | None]:
        """(the worker's answer, None), or (None, why it was stopped or died)."""
        import pickle

        while True:
            try:
                if self._conn.poll(self.poll_s):
                    answer = pickle.loads(self._conn.recv_bytes())
                    if isinstance(answer, tuple) and answer[0] == "ready":
                        continue
                    return answer, None
            except (EOFError, OSError):  # the worker died: its exit status says how
                self._proc.wait()
                return None, _death(self._proc.returncode)
            if self._closed:
                return None, "the study was closed while the trial ran (its worker was stopped)"
            if self._proc.poll() is not None and not self._conn.poll(0):
                return None, _death(self._proc.returncode)
            stopped = self._over_limits(self._proc.pid, started, " and its worker restarted")
            if stopped:
                return None, stopped

    def run_one(self, trial: Trial) -> TrialRecord:
        import cloudpickle

        started = time.perf_counter()
        with self._lock:
            if self._closed:
                return trial.failed("the study was closed before this trial could run", started)
            if self.pid is None:
                self._start()
            bench = trial.bench
            key = bench.__dict__.setdefault("_warm_key", uuid.uuid4().hex)
            state = {name: getattr(bench, name, None) for name in bench.observed}
            try:
                message = cloudpickle.dumps((key, None if key in self._sent else bench, state, trial.pipeline,
                                             trial.trial_id))
            except Exception as exc:  # something in the model or task that cannot travel to a worker
                return trial.failed(f"cannot send the trial to a worker process ({type(exc).__name__}: {exc}); "
                                    "run it inline", started)
            stderr_from = os.path.getsize(self._stderr_path) if os.path.exists(self._stderr_path) else 0
            try:
                self._conn.send_bytes(message)
                if key in self._sent:
                    self._sent.remove(key)
                self._sent = [*self._sent, key][-KEEP_BENCHES:]  # what the worker keeps (_worker.KEEP_BENCHES)
            except OSError:
                pass  # the worker died before it could read: _receive says how
            answer, stopped = self._receive(started)
            if stopped is None and isinstance(answer, tuple):
                stopped = f"the worker could not run the trial ({answer[1]})"
            if stopped is None:
                return answer
            stderr = _stderr_tail(self._stderr_path, since=stderr_from)
            self.restarts += 1
            self._start()  # the next trial finds a worker already importing its frameworks
            return trial.failed(stopped + stderr, started)

    def close(self) -> None:
        """Stop the worker now, a trial running in it included (its row says the study was closed)."""
        self._closed = True
        proc = self._proc
        if proc is not None:
            _kill_group(proc.pid)  # without the lock: a trial that holds it ends at once
        with self._lock:
            self._stop()
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None


class DaskExecutor(Executor):
    """Trials on Dask: a local cluster (loopback, TLS) or the scheduler at `address`.

    n_workers, threads_per_worker   of the local cluster; by default each worker offers the cores a trial asks
                                    for (the study's `threads`) and there are as many workers as fit the cores
    memory_limit_bytes              per local worker (default: 80% of this machine's or its cgroup's memory,
                                    shared by the workers); Dask restarts a worker that goes over it
    timeout_s                       per trial; the worker running a timed-out trial is restarted, so a hung
                                    trial does not hold it for the rest of the sweep
    """

    name = "dask"

    def __init__(self, address: str | None = None, n_workers: int | None = None,
                 threads_per_worker: int | None = None, timeout_s: float | None = 600.0,
                 memory_limit_bytes: int | None = -1):
        from .measure import check_count

        for label, value in (("n_workers", n_workers), ("threads_per_worker", threads_per_worker)):
            if value is not None:  # None: from the study's threads and the cores
                check_count("dask executor", label, value)
        self.address, self.n_workers, self.threads_per_worker = address, n_workers, threads_per_worker
        self.memory_limit_bytes = memory_limit_bytes
        self.timeout_s = _check_timeout(timeout_s)
        self._client = None
        self._cluster = None

    def _local_cluster(self, threads: int):
        import dask
        import distributed

        from ._sysmem import usable_memory_bytes
        from .profiling.device import available_cores

        per_worker = self.threads_per_worker or threads
        workers = self.n_workers or max(1, available_cores() // per_worker)
        memory = self.memory_limit_bytes
        if memory == -1:
            memory = int(usable_memory_bytes() * 0.8 / workers)
        with dask.config.set({"distributed.worker.daemon": False}):  # trials may start processes (ddp)
            return distributed.LocalCluster(
                n_workers=workers, threads_per_worker=per_worker, processes=True, host="127.0.0.1",
                dashboard_address=None, resources={"cores": per_worker}, memory_limit=memory or 0,
                security=self._security())

    @staticmethod
    def _security():
        """TLS with a throwaway certificate; without `cryptography` the cluster is plain TCP on loopback."""
        try:
            import cryptography  # noqa: F401
        except ImportError:
            return None
        return True

    def connect(self, threads: int = 1):
        """The Dask client: to `address`, or to a local cluster started for trials of `threads` cores."""
        from ._optional import require

        distributed = require("distributed", "dask", "the Dask executor")
        if self._client is None:
            if self.address:
                self._client = distributed.Client(self.address, timeout="30s")
            else:
                self._cluster = self._local_cluster(threads)
                self._client = distributed.Client(self._cluster)
        return self._client

    @property
    def client(self):
        return self.connect()

    def _check_cores(self, threads: int) -> None:
        offered = [w.get("resources", {}).get("cores", 0) for w in self.client.scheduler_info()["workers"].values()]
        if not any(c >= threads for c in offered):
            raise WorkbenchError(
                f"no Dask worker offers {threads} core(s) (workers offer {offered or 'nothing'}): start workers "
                f"with `--resources cores=N`, or run the study with threads <= {max(offered, default=0)}")

    def _restart_worker_of(self, future) -> str:
        """Restart the worker running `future` (cancel cannot stop a running task). Says what happened."""
        try:
            holders = [w for w, keys in self.client.processing().items() if future.key in keys]
            future.cancel()
            if holders:
                self.client.restart_workers(holders, timeout=60)
                return "; its worker was restarted"
        except Exception as exc:  # a remote worker without a nanny cannot be restarted
            return f"; its worker could not be restarted ({type(exc).__name__}: {exc})"
        return ""

    def run(self, trials: Sequence[Trial]) -> Iterator[TrialRecord]:
        import cloudpickle
        from distributed import TimeoutError as DaskTimeout

        if not trials:
            return
        threads = max(t.threads for t in trials)
        self.connect(threads)
        self._check_cores(threads)
        futures = []
        for t in trials:
            try:
                futures.append(self.client.submit(run_payload, cloudpickle.dumps(t), resources={"cores": t.threads},
                                                  pure=False, retries=0))
            except Exception as exc:  # the trial cannot travel to a worker: its record says why
                futures.append(exc)
        for trial, future in zip(trials, futures):
            started = time.perf_counter()  # the timeout runs from when this trial's result is awaited
            if isinstance(future, Exception):
                yield trial.failed(f"cannot send the trial to a Dask worker ({type(future).__name__}: {future})",
                                   started)
                continue
            try:
                yield future.result(timeout=self.timeout_s)
            except DaskTimeout:
                restarted = self._restart_worker_of(future)
                yield trial.failed(f"timed out after {self.timeout_s:g} s on the Dask cluster{restarted}", started)
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
EXECUTORS.register("warm", WarmExecutor)
EXECUTORS.register("dask", DaskExecutor)


def as_executor(value: Any) -> Executor:
    """An Executor instance, or the name of one (built with its defaults)."""
    if isinstance(value, Executor):
        return value
    if isinstance(value, str):
        return EXECUTORS.get(value)()
    raise WorkbenchError(f"executor must be one of {', '.join(EXECUTORS.names())} or an Executor, got {value!r}")
