"""A study: a baseline model + a task + this device + a list of pipelines → Results.

User mistakes (a bad spec, bad data, a non-model, a baseline whose forward fails) raise at once.
Anything that goes wrong inside a trial becomes that trial's row, with `status` and `error`, and the
study goes on with the next pipeline.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import os
import json
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .errors import DataError, ModelError, UnsupportedError, WorkbenchError
from .executors import Executor, InlineExecutor, as_executor
from .model import ModelHandle, wrap
from .profiling.device import DeviceProfile, device
from .profiling.timing import TimingConfig, measure_latency
from .recipes import ApplyContext, Pipeline, as_pipeline, parse_pipelines
from .results import COLUMNS, Results
from .store import ResultsStore
from .tasks import Task



class _TrialFailure(Exception):
    def __init__(self, stage: str, exc: BaseException):
        self.stage, self.exc = stage, exc
        super().__init__(f"{stage}: {type(exc).__name__}: {exc}")


class Study:
    """Measure pipelines of recipes against a baseline model on a task, on this device.

    model:          a torch nn.Module or a workbench ModelHandle
    task:           a workbench Task (wb.tasks.Classification(x, y), ...)
    example_input:  what forward takes, for models that need more than the task's inputs
    batch_size:     the batch that latency is timed at (the same for every trial)
    threads:        intra-op threads for every measurement (default: the cores available)
    timing:         a TimingConfig (minimum time and count, warm-up)
    """

    def __init__(self, model: Any, task: Task, *, example_input: Any = None, batch_size: int = 32,
                 threads: int | None = None, timing: TimingConfig | None = None,
                 device_profile: DeviceProfile | None = None, measure_memory: bool = True,
                 measure_flops: bool = True, seed: int = 0, target: str = "cpu",
                 store: str | os.PathLike | ResultsStore | None = None, executor: str | Executor = "inline"):
        if not isinstance(task, Task):
            raise DataError(f"task must be a workbench Task (e.g. wb.tasks.Classification(x, y)), "
                            f"got {type(task).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        self.device = device_profile or device()
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise DataError(f"threads must be a whole number >= 1, got {threads!r}")
        self.threads = threads or self.device.cores_available
        self.task = task
        self.batch_size = batch_size
        self.timing = timing or TimingConfig()
        self.measure_memory, self.measure_flops, self.seed = measure_memory, measure_flops, seed
        self.eval_batch = task.eval_batch_size or batch_size
        self.baseline: ModelHandle = wrap(model, task.sample(1) if example_input is None else example_input)
        if target != "cpu":
            if not hasattr(self.baseline, "to_device"):
                raise ModelError(f"target={target!r}: {type(self.baseline).__name__} models run on the CPU only")
            self.baseline = self.baseline.to_device(target)
        self.target = target
        self._reference = self._check_baseline()
        self._rows: dict[str, dict[str, Any]] = {}   # canonical spec → row, for this study's lifetime
        self._handles: dict[str, ModelHandle] = {}
        self._lock = threading.RLock()  # one measurement at a time: trials time the machine, and torch's
        # profiler is not safe to run from two threads at once
        self.store = store if isinstance(store, ResultsStore) or store is None else ResultsStore(store)
        self.executor = as_executor(executor)

    # -- the public verbs ------------------------------------------------------------------------
    def run(self, pipelines: str | Iterable[Any], *, progress: bool = True, include_baseline: bool = True) -> Results:
        """Measure each pipeline (parsed up front: a bad spec raises before anything runs).

        Trials already measured in this study, or found in its store, are not measured again; each new row
        is written to the store as soon as it is measured.
        """
        import pandas as pd

        todo = parse_pipelines(pipelines)
        if include_baseline:
            todo = [Pipeline(())] + [p for p in todo if not p.is_baseline]
        unique = list(dict.fromkeys(todo))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(unique), desc="trials", unit="trial", leave=False)
        try:
            for row in self._rows_for(unique):
                if bar is not None:
                    bar.set_postfix_str(row["pipeline"][:40])
                    bar.update()
        finally:
            if bar is not None:
                bar.close()
        rows = [self._rows[p.spec] for p in unique]
        return Results(pd.DataFrame(rows, columns=list(COLUMNS)))

    def trial(self, pipeline: Any) -> dict[str, Any]:
        """One row: measured once per study (or taken from the store), then served from memory."""
        pipeline = as_pipeline(pipeline)
        for _ in self._rows_for([pipeline]):
            pass
        return dict(self._rows[pipeline.spec])

    def _rows_for(self, pipelines: list[Pipeline]) -> Iterator[dict[str, Any]]:
        """Rows of `pipelines` as they become known: memory, then the store, then the executor."""
        if all(p.spec in self._rows for p in pipelines):  # known rows are served without waiting for the lock
            for pipeline in dict.fromkeys(pipelines):     # (a panel's thread may be measuring meanwhile)
                yield self._rows[pipeline.spec]
            return
        with self._lock:
            yield from self._rows_for_locked(pipelines)

    def _rows_for_locked(self, pipelines: list[Pipeline]) -> Iterator[dict[str, Any]]:
        baseline = Pipeline(())
        if baseline.spec not in self._rows and any(not p.is_baseline for p in pipelines):
            pipelines = [baseline] + list(pipelines)
        missing = []
        for pipeline in dict.fromkeys(pipelines):
            if pipeline.spec in self._rows:
                yield self._rows[pipeline.spec]
                continue
            stored = self.store.get(self._trial_id(pipeline)) if self.store is not None else None
            if stored is not None:
                self._rows[pipeline.spec] = stored
                yield stored
            else:
                missing.append(pipeline)
        # the baseline goes first and alone: every other row's metric_delta is relative to it
        for batch in ([p for p in missing if p.is_baseline], [p for p in missing if not p.is_baseline]):
            if not batch:
                continue
            for pipeline, row in zip(batch, self.executor.run(self, batch)):
                self._rows[pipeline.spec] = row
                if self.store is not None:
                    self.store.put(row)
                yield row

    def is_measured(self, pipeline: Any) -> bool:
        """Whether `trial(pipeline)` would answer at once (measured in this study or found in its store)."""
        pipeline = as_pipeline(pipeline)
        if pipeline.spec in self._rows:
            return True
        return self.store is not None and self.store.get(self._trial_id(pipeline)) is not None

    def results(self) -> Results:
        """Every trial measured so far in this study, the baseline first."""
        import pandas as pd

        rows = sorted(self._rows.values(), key=lambda r: not r["is_baseline"])
        return Results(pd.DataFrame(rows, columns=list(COLUMNS)))

    def throughput(self, pipelines: str | Iterable[Any] = "baseline",
                   batch_sizes: Iterable[int] = (1, 8, 32, 128)) -> Any:
        """Samples per second over batch sizes for each pipeline (same timing rules as the trials)."""
        import pandas as pd

        records = []
        for pipeline in parse_pipelines(pipelines):
            handle = self.handle(pipeline)
            for batch_size in batch_sizes:
                with handle.session(self.threads):
                    stats = measure_latency(handle.runner(self.task.sample(batch_size)), self.timing,
                                            sync=handle.synchronize)
                records.append({"pipeline": pipeline.spec, "batch_size": batch_size, "latency_ms_p50": stats.p50,
                                "latency_ms_iqr": stats.iqr, "throughput": batch_size / (stats.p50 / 1000)})
        return pd.DataFrame(records)

    def handle(self, pipeline: Any) -> ModelHandle:
        """The optimized model of a pipeline (built once per study)."""
        pipeline = as_pipeline(pipeline)
        if pipeline.spec not in self._handles:
            self._handles[pipeline.spec] = pipeline.apply(self.baseline, self._context())
        return self._handles[pipeline.spec]

    # -- internals -------------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        """What a worker process needs: no built handles (compiled code does not pickle), no store, inline."""
        state = dict(self.__dict__)
        state.update(_handles={}, store=None, executor=InlineExecutor())
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def _payload(self, pipeline: Pipeline) -> bytes:
        import cloudpickle

        self._model_digest()  # computed once here, not in every worker
        return cloudpickle.dumps((self, pipeline))

    def _skeleton(self, pipeline: Pipeline) -> dict[str, Any]:
        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        row.update(
            trial_id=self._trial_id(pipeline), pipeline=pipeline.spec, framework=self.baseline.framework,
            status="ok", error=None, metric_name=self.task.metric_name, batch_size=self.batch_size,
            threads=self.threads, **self.device.row_fields(),
            is_baseline=pipeline.is_baseline, pareto=False,
            created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        )
        return row

    def _failed_row(self, pipeline: Pipeline, error: str, started: float) -> dict[str, Any]:
        """The row of a trial that never reported back (its worker crashed, hung or was lost)."""
        row = self._skeleton(pipeline)
        row.update(status="failed", error=error, duration_s=round(time.perf_counter() - started, 3))
        return row

    def _context(self) -> ApplyContext:
        return ApplyContext(task=self.task, device=self.device, seed=self.seed)

    def _outputs(self, handle: ModelHandle) -> np.ndarray:
        with handle.session(self.threads):
            return self.task.restore(np.concatenate([handle.predict(b) for b in self.task.batches(self.eval_batch)]))

    def _check_baseline(self) -> np.ndarray:
        what = f"the baseline model ({type(getattr(self.baseline, 'module', self.baseline)).__name__})"
        try:
            outputs = self._outputs(self.baseline)
        except WorkbenchError:
            raise
        except Exception as exc:
            shape = getattr(self.task.inputs, "shape", "?")
            raise ModelError(
                f"{what} raised {type(exc).__name__} on the task's inputs (shape {shape}): {exc}. "
                "Check that the task's inputs are what the model's forward expects"
            ) from exc
        if not np.isfinite(outputs).all():
            bad = int((~np.isfinite(outputs)).sum())
            raise ModelError(f"{what} produces NaN/Inf in {bad} of {outputs.size} output values on the task's "
                             "inputs: check its weights and inputs before optimizing it")
        self.task.check_outputs(outputs)
        return outputs

    def _measure(self, pipeline: Pipeline) -> dict[str, Any]:
        started = time.perf_counter()
        row = self._skeleton(pipeline)
        notes: list[str] = []
        try:
            try:
                handle = self.handle(pipeline)
            except UnsupportedError as exc:
                row.update(status="unsupported", error=str(exc))
                return row
            except Exception as exc:
                raise _TrialFailure("apply", exc) from exc
            row.update(runtime=handle.runtime, precision=handle.precision, fused=handle.fused,
                       engine=handle.engine or "n/a")
            notes += handle.notes
            notes += self._device_notes(handle)
            self._fill_latency(row, handle)  # first: its first call is the one that pays for compilation
            self._fill_quality(row, handle)
            self._fill_size(row, handle)
            self._fill_compute(row, handle, notes)
        except _TrialFailure as failure:
            row.update(status="failed", error=str(failure))
            tb = traceback.extract_tb(failure.exc.__traceback__)
            if tb:
                notes.append(f"raised at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}")
        finally:
            if row["notes"]:
                notes.insert(0, row["notes"])
            row["notes"] = "; ".join(dict.fromkeys(notes)) or None
            row["duration_s"] = round(time.perf_counter() - started, 3)
        return row

    def _stage(self, stage: str, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:
            raise _TrialFailure(stage, exc) from exc

    def _fill_quality(self, row: dict, handle: ModelHandle) -> None:
        outputs = self._stage("predict", self._outputs, handle)
        if not np.isfinite(outputs).all():
            bad = int((~np.isfinite(outputs)).sum())
            raise _TrialFailure("predict", FloatingPointError(
                f"outputs contain NaN/Inf ({bad} of {outputs.size} values); this pipeline breaks the model"))
        fidelity = self._stage("fidelity", self.task.fidelity, outputs, self._reference)
        row.update({k: v for k, v in fidelity.items() if k in row})
        metric = self._stage("metric", self.task.score, outputs)
        row["metric"] = metric
        base = self._rows.get(Pipeline(()).spec)
        base_metric = metric if row["is_baseline"] else (base or {}).get("metric")
        row["metric_delta"] = None if metric is None or base_metric is None else metric - base_metric

    def _fill_size(self, row: dict, handle: ModelHandle) -> None:
        blob = self._stage("serialize", handle.serialize)
        stats = self._stage("weight stats", handle.weight_stats)
        row.update(size_bytes=len(blob), size_gzip_bytes=len(gzip.compress(blob, compresslevel=6)),
                   params=stats.params, nonzero_params=stats.nonzero_params, sparsity=stats.sparsity)

    def _fill_latency(self, row: dict, handle: ModelHandle) -> None:
        batch = self.task.sample(self.batch_size)
        source = getattr(handle, "source", handle)
        if hasattr(source, "batch_note"):  # text: say which sequence length the timing is for
            row["notes"] = source.batch_note(batch)

        def timed():
            with handle.session(self.threads):
                return measure_latency(handle.runner(batch), self.timing, sync=handle.synchronize)

        stats = self._stage("latency", timed)
        row.update(stats.as_row())
        row["throughput"] = self.batch_size / (stats.p50 / 1000)
        row["latency_samples_ms"] = json.dumps(stats.thinned())

    def _fill_compute(self, row: dict, handle: ModelHandle, notes: list[str]) -> None:
        batch = self.task.sample(self.batch_size)
        if self.measure_flops:
            flops = self._stage("flops", handle.flops, batch)
            if flops is None:
                notes.append("flops: not countable for this model")
            row["flops"] = flops
            if flops and row["latency_ms_p50"]:
                achieved = flops / (row["latency_ms_p50"] / 1000) / 1e9
                peak = self.device.peak_gflops_1t if self.threads == 1 else self.device.peak_gflops_all
                row["gflops_achieved"] = achieved
                row["pct_of_peak"] = 100 * achieved / peak if peak else None
        else:
            notes.append("flops: not measured (measure_flops=False)")
        if self.measure_memory:
            row["peak_mem_bytes"] = self._stage("peak memory", handle.peak_memory, batch)
            if row["peak_mem_bytes"] is None:
                notes.append(f"peak memory: not measurable for the {handle.runtime} runtime (no allocator statistics)")
        else:
            notes.append("peak memory: not measured (measure_memory=False)")

    def _device_notes(self, handle: ModelHandle) -> list[str]:
        precision = handle.precision.removeprefix("amp-")
        on_gpu = getattr(handle, "device", "cpu").startswith("cuda")
        if precision in ("fp16", "bf16") and not on_gpu and not self.device.is_accelerated(precision):
            features = "avx512_fp16/AMX-FP16" if precision == "fp16" else "avx512_bf16/AMX"
            return [f"{precision} is emulated on this CPU (no {features}): expect it slower than fp32"]
        return []

    def _trial_id(self, pipeline: Pipeline) -> str:
        h = hashlib.sha256()
        timing = dataclasses.astuple(self.timing)
        for part in (pipeline.spec, self.task.fingerprint(), self.device.fingerprint, str(self.batch_size),
                     str(self.threads), self._model_digest(), str(timing), self.target,
                     f"{self.measure_flops}{self.measure_memory}{self.seed}"):
            h.update(part.encode() + b"\0")
        return h.hexdigest()[:12]

    def _model_digest(self) -> str:
        if not hasattr(self, "_digest"):
            self._digest = hashlib.sha256(self.baseline.serialize()).hexdigest()[:16]
        return self._digest
