"""How an inference trial is measured: the `InferenceBench` that every trial of a `Study` shares.

A trial's outputs on every evaluation input (metric + fidelity to the baseline's outputs), the serialized
size and its gzip, weight statistics, latency of `runner(batch)` at the study's batch and thread count,
FLOPs, achieved GFLOP/s against the device's measured peak, and peak memory of one forward pass.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import ModelError, ParameterError, UnsupportedError, WorkbenchError
from .model import ModelHandle, wrap
from .profiling.device import DeviceProfile, available_cores
from .profiling.timing import TimingConfig, measure_handle
from .recipes import RECIPES, ApplyContext, Pipeline
from .registry import Registry
from .tasks import Task, outputs_on
from .trial import Bench, TrialRecord


def check_count(owner: str, name: str, value: Any, low: int = 1) -> int:
    """A whole number >= low, or a ParameterError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ParameterError(owner, name, value, f"a whole number >= {low}")
    return value


def check_threads(owner: str, threads: Any, profile: DeviceProfile) -> int:
    """A thread count this machine can run: 1 up to its logical cores (torch's OpenMP pool crashes far beyond)."""
    check_count(owner, "threads", threads)
    most = max(profile.cores_logical or 1, profile.cores_available or 1)
    if threads > most:
        raise ParameterError(owner, "threads", threads, f"at most {most}, the logical cores of this machine "
                                                        f"({profile.cores_available} available to this process)")
    return threads


def check_batch_fits(owner: str, task: Task, batch_size: int) -> None:
    """A timing batch whose inputs alone fit in a quarter of the memory this machine allows."""
    from ._sysmem import usable_memory_bytes

    one = task.sample(1)
    per_sample = getattr(one, "nbytes", 0)
    usable = usable_memory_bytes()
    if per_sample and per_sample * batch_size > usable // 4:
        need = per_sample * batch_size / 2**30
        raise ParameterError(owner, "batch_size", batch_size,
                             f"a batch whose inputs fit in memory: {batch_size} samples of {per_sample} bytes are "
                             f"{need:.1f} GiB, more than a quarter of the {usable / 2**30:.1f} GiB this machine "
                             f"allows (at most {usable // 4 // per_sample})")


@dataclasses.dataclass(frozen=True)
class Settings:
    """How every trial of a study is measured (part of each trial's identity)."""

    batch_size: int
    threads: int
    timing: TimingConfig
    eval_batch: int
    measure_memory: bool = True
    measure_flops: bool = True
    seed: int = 0
    target: str = "cpu"


_TORCH_THREAD: list[int] = []


def _first_torch_thread() -> bool:
    """Whether this thread is the first in the process to run a torch model here: another thread's OpenMP pool makes
    torch's intra-op threads slower (measured 2.5x on a 2-core machine), which rows timed elsewhere say."""
    if not _TORCH_THREAD:
        _TORCH_THREAD.append(threading.get_ident())
    return _TORCH_THREAD[0] == threading.get_ident()


class _TrialFailure(Exception):
    def __init__(self, stage: str, exc: BaseException):
        self.stage, self.exc = stage, exc
        super().__init__(f"{stage}: {type(exc).__name__}: {exc}")


class InferenceBench(Bench):
    """The baseline (wrapped, checked, its outputs kept as the reference), the task, the device and the
    settings. User mistakes raise here, at once; failures inside a trial become its record."""

    phase = "infer"
    observed = ("baseline_metric",)

    def __init__(self, model: Any, task: Task, device: DeviceProfile, settings: Settings, example_input: Any = None):
        self.task, self.device, self.config = task, device, settings
        self.threads = settings.threads
        baseline = wrap(model, task.sample(1) if example_input is None else example_input)
        self.baseline: ModelHandle = baseline.to_device(settings.target)
        self.reference = self._check_baseline()
        self.baseline_metric: float | None = None
        self._handles: dict[str, ModelHandle] = {}

    @property
    def registry(self) -> Registry:
        return RECIPES

    # -- identity ----------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def observe(self, record: TrialRecord) -> None:
        if record.is_baseline and record.status == "ok":
            self.baseline_metric = record.row.get("metric")

    # -- building --------------------------------------------------------------------------------
    def context(self) -> ApplyContext:
        return ApplyContext(task=self.task, device=self.device, seed=self.config.seed)

    def handle(self, pipeline: Pipeline) -> ModelHandle:
        """The optimized model of a pipeline (built once per bench), from the longest prefix already built: the
        probes of a sensitivity run, `to-onnx + int8-dynamic(exclude=...)`, export the model once."""
        if pipeline.spec not in self._handles:
            start, handle = 0, self.baseline
            for i in range(len(pipeline.steps) - 1, 0, -1):
                prefix = Pipeline(pipeline.steps[:i]).spec
                if prefix in self._handles:
                    start, handle = i, self._handles[prefix]
                    break
            context = self.context()
            for i in range(start, len(pipeline.steps)):
                handle = pipeline.steps[i].apply(handle, context)
                if i < len(pipeline.steps) - 1 and pipeline.steps[i].kind == "runtime":
                    self._handles[Pipeline(pipeline.steps[:i + 1]).spec] = handle  # exports are worth keeping
            self._handles[pipeline.spec] = handle
        return self._handles[pipeline.spec]

    def built(self, pipeline: Pipeline) -> ModelHandle | None:
        return self._handles.get(pipeline.spec)

    def release(self, drop: Callable[[str], bool]) -> None:
        """Forget the built models whose spec `drop` picks (rebuilt if asked for again); runtime exports stay."""
        for spec in [s for s in self._handles if drop(s)]:
            handle = self._handles[spec]
            if not (handle.lineage and handle.lineage[-1].kind == "runtime"):
                del self._handles[spec]

    def __getstate__(self) -> dict:
        """What a worker needs: no built handles (compiled code does not pickle)."""
        return {**self.__dict__, "_handles": {}}

    # -- measuring -------------------------------------------------------------------------------
    def outputs(self, handle: ModelHandle) -> np.ndarray:
        if handle.format in ("torch", "torchscript"):
            _first_torch_thread()  # the thread whose OpenMP pool torch made first
        return outputs_on(handle, self.task, self.config.eval_batch, self.threads)

    def _check_baseline(self) -> np.ndarray:
        what = f"the baseline model ({type(self.baseline.payload).__name__})"
        try:
            outputs = self.outputs(self.baseline)
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

    def skeleton(self, pipeline: Pipeline, trial_id: str) -> dict[str, Any]:
        row = super().skeleton(pipeline, trial_id)
        row.update(metric_name=self.task.metric_name, batch_size=self.config.batch_size)
        return row

    def measure(self, pipeline: Pipeline, trial_id: str) -> TrialRecord:
        started = time.perf_counter()
        row = self.skeleton(pipeline, trial_id)
        notes: list[str] = []
        try:
            try:
                handle = self.handle(pipeline)
            except UnsupportedError as exc:
                row.update(status="unsupported", error=str(exc))
                return TrialRecord(row)
            except Exception as exc:
                raise _TrialFailure("apply", exc) from exc
            row.update(runtime=handle.runtime, precision=handle.precision, fused=handle.fused,
                       engine=handle.engine or "n/a")
            notes += handle.notes
            notes += self._device_notes(handle)
            if handle.format in ("torch", "torchscript") and not _first_torch_thread():
                notes.append("timed on another thread than the one that ran torch first in this process: a second "
                             "OpenMP pool made 2-thread convolutions up to 2.5x slower on a 2-core machine; time it "
                             "from a script, a notebook cell or `workbench run` to compare it with other runtimes")
            self._fill_latency(row, handle, notes)  # first: its first call is the one that pays for compilation
            self._fill_quality(row, handle)
            self._fill_size(row, handle)
            self._fill_compute(row, handle, notes)
        except _TrialFailure as failure:
            row.update(status="failed", error=str(failure))
            tb = traceback.extract_tb(failure.exc.__traceback__)
            if tb:
                notes.append(f"raised at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}")
        finally:
            row["notes"] = "; ".join(dict.fromkeys(notes)) or None
            row["duration_s"] = round(time.perf_counter() - started, 3)
        return TrialRecord(row)

    def _stage(self, stage: str, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:
            raise _TrialFailure(stage, exc) from exc

    def _fill_quality(self, row: dict, handle: ModelHandle) -> None:
        outputs = self._stage("predict", self.outputs, handle)
        if not np.isfinite(outputs).all():
            bad = int((~np.isfinite(outputs)).sum())
            raise _TrialFailure("predict", FloatingPointError(
                f"outputs contain NaN/Inf ({bad} of {outputs.size} values); this pipeline breaks the model"))
        fidelity = self._stage("fidelity", self.task.fidelity, outputs, self.reference)
        row.update({k: v for k, v in fidelity.items() if k in row})
        metric = self._stage("metric", self.task.score, outputs)
        row["metric"] = metric
        base_metric = metric if row["is_baseline"] else self.baseline_metric
        row["metric_delta"] = None if metric is None or base_metric is None else metric - base_metric

    def _fill_size(self, row: dict, handle: ModelHandle) -> None:
        blob = self._stage("serialize", handle.serialize)
        stats = self._stage("weight stats", handle.weight_stats)
        row.update(size_bytes=len(blob), size_gzip_bytes=len(gzip.compress(blob, compresslevel=6)),
                   params=stats.params, nonzero_params=stats.nonzero_params, sparsity=stats.sparsity)

    def _fill_latency(self, row: dict, handle: ModelHandle, notes: list[str]) -> None:
        batch = self.task.sample(self.config.batch_size)
        note = handle.batch_note(batch)  # text: which sequence length the timing is for
        if note:
            notes.insert(0, note)

        def timed():
            with handle.session(self.threads):
                return measure_handle(handle, batch, self.config.timing, threads=self.threads)

        stats = self._stage("latency", timed)
        row.update(stats.as_row())
        if stats.contended:
            notes.append(f"timed while other processes kept {stats.load_others:.2f} core(s) busy, more than the "
                         f"{max(0, available_cores() - self.threads)} this trial left idle: the latency may be "
                         "inflated (measure again on a quieter machine)")
        if stats.lock_wait_ms > 1000:
            notes.append(f"waited {stats.lock_wait_ms / 1e3:.1f} s for another process's timing to end first")
        row["throughput"] = self.config.batch_size / (stats.p50 / 1000)
        row["latency_samples_ms"] = json.dumps(stats.thinned())

    def _fill_compute(self, row: dict, handle: ModelHandle, notes: list[str]) -> None:
        batch = self.task.sample(self.config.batch_size)
        if self.config.measure_flops:
            flops = self._stage("flops", handle.flops, batch)
            if flops is None:
                notes.append("flops: not countable for this model")
            row["flops"] = flops
            if flops and row["latency_ms_p50"]:
                achieved = flops / (row["latency_ms_p50"] / 1000) / 1e9
                from .profiling.device import compute_precision

                spec = " + ".join(step.name for step in handle.lineage)
                peak, roof = self.device.peak(compute_precision(handle.precision, spec), self.threads)
                row["gflops_achieved"] = achieved
                row["pct_of_peak"] = 100 * achieved / peak if peak else None
                if peak and roof != "fp32":
                    notes.append(f"pct_of_peak: against the measured {roof} GEMM roof ({peak:.0f} GFLOP/s)")
        else:
            notes.append("flops: not measured (measure_flops=False)")
        if self.config.measure_memory:
            row["peak_mem_bytes"] = self._stage("peak memory", handle.peak_memory, batch)
            if row["peak_mem_bytes"] is None:
                notes.append(f"peak memory: not measurable for the {handle.runtime} runtime (no allocator statistics)")
        else:
            notes.append("peak memory: not measured (measure_memory=False)")

    def _device_notes(self, handle: ModelHandle) -> list[str]:
        precision = handle.precision.removeprefix("amp-")
        on_gpu = handle.device.startswith("cuda")
        if precision in ("fp16", "bf16") and not on_gpu and not self.device.is_accelerated(precision):
            features = "avx512_fp16/AMX-FP16" if precision == "fp16" else "avx512_bf16/AMX"
            return [f"{precision} is emulated on this CPU (no {features}): expect it slower than fp32"]
        return []
