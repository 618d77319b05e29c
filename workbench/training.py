"""Training-time efficiency: the same model and data trained under each training recipe for a fixed budget
of steps; per trial the step time (median and spread, warm-up apart), samples/s, peak memory, the loss and
the accuracy reached — records of the same schema as inference trials (`phase` = "train").

    study = wb.TrainingStudy(model, task, batch_size=128, steps=30, store="train.db")
    study.run(["checkpoint", "amp", "channels-last", "compile", "grad-accum(4)", "ddp(2)"]).frame

`TrainingStudy` is the `Study` orchestrator over a `TrainingBench`: the same store (a killed sweep resumes),
the same executors, the same content-addressed trial ids.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import numpy as np

from .backends import load_backend
from .errors import DataError, ParameterError, UnsupportedError
from .executors import Executor
from .measure import check_count, check_threads
from .model import ModelHandle, wrap
from .profiling.device import DeviceProfile, device
from .profiling.timing import LatencyStats
from .recipes import ApplyContext, Pipeline, parse_pipelines
from .recipes.base import TRAINING_RECIPES
from .registry import Registry
from .results import COLUMNS
from .store import ResultsStore
from .study import Orchestrator
from .tasks import Task
from .trial import TRAIN_COLUMNS, Bench, TrialRecord


def parse_training(pipelines: Any) -> list[Pipeline]:
    """Training pipelines from a spec ("checkpoint; amp + grad-accum(4)") or a list."""
    found = parse_pipelines(pipelines, TRAINING_RECIPES)
    if not found:
        raise DataError("no training pipeline given, e.g. 'checkpoint; amp; grad-accum(4)'")
    return found


class TrainingBench(Bench):
    """The model (its initial weights), the task's training data, the device and the training settings."""

    phase = "train"
    columns = COLUMNS + TRAIN_COLUMNS
    observed = ("baseline_metric", "reference")

    def __init__(self, model: Any, task: Task, profile: DeviceProfile, config: Any, threads: int):
        self.task, self.device, self.config, self.threads = task, profile, config, threads
        self.baseline: ModelHandle = wrap(model, task.sample(1))
        if self.baseline.format != "torch":
            raise DataError(f"training recipes train torch models; this is a {self.baseline.format} model")
        x, y = task.train
        self.data = {"train": (x.astype(np.float32), y), "eval": task.inputs.astype(np.float32)}
        self.reference: np.ndarray | None = None   # the baseline's outputs after training
        self.baseline_metric: float | None = None

    @property
    def registry(self) -> Registry:
        return TRAINING_RECIPES

    def settings(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def observe(self, record: TrialRecord) -> None:
        if record.is_baseline and record.status == "ok":
            self.baseline_metric = record.row.get("metric")
            if record.outputs is not None:
                self.reference = record.outputs

    def skeleton(self, pipeline: Pipeline, trial_id: str) -> dict[str, Any]:
        row = super().skeleton(pipeline, trial_id)
        stats = self.baseline.weight_stats()
        row.update(metric_name="accuracy", sparsity=stats.sparsity, fused=False, batch_size=self.config.batch_size,
                   size_bytes=len(self.baseline.serialize()), params=stats.params,
                   nonzero_params=stats.nonzero_params)
        return row

    def measure(self, pipeline: Pipeline, trial_id: str) -> TrialRecord:
        loop = load_backend("torch").train_loop
        started = time.perf_counter()
        row = self.skeleton(pipeline, trial_id)
        try:
            with loop.threads(self.threads):
                setup = loop.plan(self.baseline.payload, pipeline, ApplyContext(task=self.task, device=self.device,
                                                                          seed=self.config.seed))
                out = (loop.train_ddp(setup, self.data, self.config) if setup.world_size
                       else loop.train(setup, self.data, self.config))
        except UnsupportedError as exc:
            row.update(status="unsupported", error=str(exc), duration_s=round(time.perf_counter() - started, 3))
            return TrialRecord(row)
        except Exception as exc:  # a trial that breaks is a row; the study goes on
            row.update(status="failed", error=f"train: {type(exc).__name__}: {str(exc)[:500]}",
                       duration_s=round(time.perf_counter() - started, 3))
            return TrialRecord(row)
        stats = LatencyStats(tuple(out["step_ms"]), out["first_step_ms"])
        outputs = out["outputs"]
        reference = outputs if pipeline.is_baseline else self.reference
        notes = [f"{self.config.steps} steps of batch {self.config.batch_size} after {self.config.warmup_steps} "
                 "warm-up steps; latency columns are optimizer-step times"]
        if reference is not None:
            fidelity = self.task.fidelity(outputs, reference)
            row.update({k: v for k, v in fidelity.items() if k in row})
        else:
            notes.append("fidelity: the baseline's outputs are not known to this study (its store predates them)")
        metric = self.task.score(outputs)
        base_metric = metric if pipeline.is_baseline else self.baseline_metric
        row.update(stats.as_row())
        row.update(
            runtime="ddp" if setup.world_size else ("inductor" if setup.compiled else "eager"),
            precision=self._precision(setup), metric=metric,
            metric_delta=None if base_metric is None else metric - base_metric,
            throughput=self.config.batch_size / (stats.p50 / 1000), peak_mem_bytes=out["peak_mem_bytes"],
            latency_samples_ms=json.dumps(stats.thinned()), train_loss=float(np.mean(out["losses"][-5:])),
            steps=self.config.steps,
        )
        if setup.world_size:
            per_process = max(1, self.threads // setup.world_size)
            with loop.threads(per_process):
                single = loop.train(loop.TrainSetup(self.baseline.payload), self.data,
                                    dataclasses.replace(self.config, threads=per_process))
            one = self.config.batch_size / (np.median(single["step_ms"]) / 1000)
            row["scaling_efficiency"] = row["throughput"] / (setup.world_size * one)
            notes.append(f"ddp: {setup.world_size} processes x {per_process} thread(s); one such process alone "
                         f"trains {one:.0f} samples/s; efficiency = throughput / ({setup.world_size} x that)")
        row["notes"] = "; ".join(notes + out["notes"])
        row["duration_s"] = round(time.perf_counter() - started, 3)
        return TrialRecord(row, outputs=outputs if pipeline.is_baseline else None)

    def _precision(self, setup: Any) -> str:
        if not setup.amp_dtype:
            return "fp32"
        if setup.amp_dtype != "auto":
            return f"amp-{setup.amp_dtype}"
        return "amp-bf16" if self.config.device == "cpu" else "amp-fp16"


class TrainingStudy(Orchestrator):
    """Train `model` (from its current weights) on the task's training data under each training pipeline."""

    progress_label = "training trials"

    def __init__(self, model: Any, task: Task, *, batch_size: int = 64, steps: int = 30, warmup_steps: int = 3,
                 lr: float = 1e-3, threads: int | None = None, seed: int = 0, target: str = "cpu",
                 device_profile: DeviceProfile | None = None,
                 store: str | os.PathLike | ResultsStore | None = None, executor: str | Executor = "inline"):
        if not isinstance(task, Task) or task.train is None or task.metric_name != "accuracy":
            raise DataError("a training study needs a classification task with training data: "
                            "wb.tasks.Classification(x_val, y_val, train=(x_train, y_train))")
        for name, value, low in (("batch_size", batch_size, 1), ("steps", steps, 5), ("warmup_steps", warmup_steps, 0)):
            check_count("TrainingStudy", name, value, low)
        check_count("TrainingStudy", "seed", seed, 0)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < 10 or lr != lr:
            raise ParameterError("TrainingStudy", "lr", lr, "a learning rate in (0, 10)")
        if not isinstance(target, str) or not (target == "cpu" or target.startswith("cuda")):
            raise ParameterError("TrainingStudy", "target", target, "cpu, cuda or cuda:N")
        if batch_size > len(task.train[0]):
            raise DataError(f"batch_size {batch_size} is larger than the {len(task.train[0])} training samples")
        profile = device_profile or device()
        threads = check_threads("TrainingStudy", threads, profile) if threads is not None else profile.cores_available
        loop = load_backend("torch").train_loop
        config = loop.TrainConfig(batch_size=batch_size, steps=steps, warmup_steps=warmup_steps, lr=lr, seed=seed,
                                  threads=threads, device=target)
        super().__init__(TrainingBench(model, task, profile, config, threads), store=store, executor=executor)

    def run(self, pipelines: Any, *, progress: bool = True, include_baseline: bool = True):
        parse_training(pipelines)  # an empty sweep is a mistake here
        return super().run(pipelines, progress=progress, include_baseline=include_baseline)

    @property
    def config(self) -> Any:
        return self.bench.config


__all__ = ["TRAIN_COLUMNS", "TrainingBench", "TrainingStudy", "parse_training"]
