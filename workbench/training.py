"""Training-time efficiency: the same model and data trained under each training recipe for a fixed budget
of steps; per trial the step time (median and spread, warm-up apart), samples/s, peak memory, the loss and
the accuracy reached — rows of the same results schema as inference trials (`phase` = "train").

    study = wb.TrainingStudy(model, task, batch_size=128, steps=30)
    study.run(["checkpoint", "amp", "channels-last", "compile", "grad-accum(4)", "ddp(2)"]).frame
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from .errors import DataError, UnsupportedError
from .model import wrap
from .profiling.device import DeviceProfile, device
from .profiling.timing import LatencyStats
from .recipes import Pipeline
from .recipes.base import TRAINING_RECIPES
from .results import COLUMNS, Results
from .tasks import Task

TRAIN_COLUMNS = ("phase", "train_loss", "steps", "scaling_efficiency")


def parse_training(pipelines: str | Iterable[Any]) -> list[Pipeline]:
    specs = [p for p in pipelines.split(";") if p.strip()] if isinstance(pipelines, str) else list(pipelines)
    if not specs:
        raise DataError("no training pipeline given, e.g. 'checkpoint; amp; grad-accum(4)'")
    return [p if isinstance(p, Pipeline) else Pipeline.parse(p, TRAINING_RECIPES) for p in specs]


class TrainingStudy:
    """Train `model` (from its current weights) on the task's training data under each training pipeline."""

    def __init__(self, model: Any, task: Task, *, batch_size: int = 64, steps: int = 30, warmup_steps: int = 3,
                 lr: float = 1e-3, threads: int | None = None, seed: int = 0, target: str = "cpu",
                 device_profile: DeviceProfile | None = None):
        if not isinstance(task, Task) or task.train is None or task.metric_name != "accuracy":
            raise DataError("a training study needs a classification task with training data: "
                            "wb.tasks.Classification(x_val, y_val, train=(x_train, y_train))")
        for name, value, low in (("batch_size", batch_size, 1), ("steps", steps, 5), ("warmup_steps", warmup_steps, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise DataError(f"{name} must be a whole number >= {low}, got {value!r}")
        if batch_size > len(task.train[0]):
            raise DataError(f"batch_size {batch_size} is larger than the {len(task.train[0])} training samples")
        self.device = device_profile or device()
        self.threads = threads or self.device.cores_available
        self.task = task
        self.handle = wrap(model, task.sample(1))
        from .backends.torch.train_loop import TrainConfig

        self.config = TrainConfig(batch_size=batch_size, steps=steps, warmup_steps=warmup_steps, lr=lr, seed=seed,
                                  threads=self.threads, device=target)
        x, y = task.train
        self.data = {"train": (x.astype(np.float32), y), "eval": task.inputs.astype(np.float32)}
        self._rows: dict[str, dict] = {}
        self._reference: np.ndarray | None = None

    def run(self, pipelines: str | Iterable[Any], *, progress: bool = True) -> Results:
        import pandas as pd

        todo = [Pipeline(())] + [p for p in parse_training(pipelines) if not p.is_baseline]
        todo = list(dict.fromkeys(todo))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc="training trials", unit="trial", leave=False)
        for pipeline in todo:
            if pipeline.spec not in self._rows:
                self._rows[pipeline.spec] = self._trial(pipeline)
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        rows = [self._rows[p.spec] for p in todo]
        return Results(pd.DataFrame(rows, columns=list(COLUMNS) + list(TRAIN_COLUMNS)))

    def trial(self, pipeline: Any) -> dict:
        """One training trial's row (the baseline is trained first: rows are relative to it)."""
        pipeline = pipeline if isinstance(pipeline, Pipeline) else Pipeline.parse(pipeline, TRAINING_RECIPES)
        for p in ([Pipeline(())] if "baseline" not in self._rows else []) + [pipeline]:
            if p.spec not in self._rows:
                self._rows[p.spec] = self._trial(p)
        return dict(self._rows[pipeline.spec])

    def is_measured(self, pipeline: Any) -> bool:
        pipeline = pipeline if isinstance(pipeline, Pipeline) else Pipeline.parse(pipeline, TRAINING_RECIPES)
        return pipeline.spec in self._rows

    def results(self) -> Results:
        """Every training trial so far, the baseline first."""
        import pandas as pd

        rows = sorted(self._rows.values(), key=lambda r: not r["is_baseline"])
        return Results(pd.DataFrame(rows, columns=list(COLUMNS) + list(TRAIN_COLUMNS)))

    # -- one trial ---------------------------------------------------------------------------------
    def _trial(self, pipeline: Pipeline) -> dict:
        import torch

        from .backends.torch.train_loop import train, train_ddp
        from .recipes.training import Amp, Ddp

        started = time.perf_counter()
        row = self._skeleton(pipeline)
        ddp = next((s for s in pipeline.steps if isinstance(s, Ddp)), None)
        previous = torch.get_num_threads()
        try:
            torch.set_num_threads(self.threads)
            if ddp:
                out = train_ddp(self.handle.module, pipeline.steps, self.data, self.config, ddp.world_size)
            else:
                out = train(self.handle.module, pipeline.steps, self.data, self.config)
        except UnsupportedError as exc:
            row.update(status="unsupported", error=str(exc), duration_s=round(time.perf_counter() - started, 3))
            return row
        except Exception as exc:  # a trial that breaks is a row; the study goes on
            row.update(status="failed", error=f"train: {type(exc).__name__}: {str(exc)[:500]}",
                       duration_s=round(time.perf_counter() - started, 3))
            return row
        finally:
            torch.set_num_threads(previous)
        stats = LatencyStats(tuple(out["step_ms"]), out["first_step_ms"])
        outputs = out["outputs"]
        if pipeline.is_baseline:
            self._reference = outputs
        fidelity = self.task.fidelity(outputs, self._reference if self._reference is not None else outputs)
        metric = self.task.score(outputs)
        base = self._rows.get("baseline")
        amp = next((s for s in pipeline.steps if isinstance(s, Amp)), None)
        row.update(stats.as_row())
        row.update({k: v for k, v in fidelity.items() if k in row})
        row.update(
            runtime="ddp" if ddp else ("inductor" if any(s.name == "compile" for s in pipeline.steps) else "eager"),
            precision=f"amp-{'bf16' if self.config.device == 'cpu' and (not amp or amp.dtype != 'fp16') else 'fp16'}"
            if amp else "fp32",
            metric=metric, metric_delta=metric - (base["metric"] if base else metric),
            throughput=self.config.batch_size / (stats.p50 / 1000), peak_mem_bytes=out["peak_mem_bytes"],
            latency_samples_ms=json.dumps(stats.thinned()), train_loss=float(np.mean(out["losses"][-5:])),
            steps=self.config.steps, duration_s=round(time.perf_counter() - started, 3),
        )
        notes = [f"{self.config.steps} steps of batch {self.config.batch_size} after {self.config.warmup_steps} "
                 "warm-up steps; latency columns are optimizer-step times"]
        if ddp:
            single = train(self.handle.module, (), self.data,
                           _with_threads(self.config, max(1, self.threads // ddp.world_size)))
            one = self.config.batch_size / (np.median(single["step_ms"]) / 1000)
            row["scaling_efficiency"] = row["throughput"] / (ddp.world_size * one)
            notes.append(f"ddp: {ddp.world_size} processes x {max(1, self.threads // ddp.world_size)} thread(s); "
                         f"one such process alone trains {one:.0f} samples/s; efficiency = "
                         f"throughput / ({ddp.world_size} x that)")
        row["notes"] = "; ".join(notes + out["notes"])
        return row

    def _skeleton(self, pipeline: Pipeline) -> dict:
        row: dict[str, Any] = dict.fromkeys(list(COLUMNS) + list(TRAIN_COLUMNS))
        stats = self.handle.weight_stats()
        key = hashlib.sha256(f"train|{pipeline.spec}|{self.config}|{self.task.fingerprint()}|"
                             f"{self.device.fingerprint}".encode()).hexdigest()[:12]
        row.update(trial_id=key, pipeline=pipeline.spec, framework=self.handle.framework, status="ok",
                   metric_name="accuracy", sparsity=stats.sparsity, fused=False, batch_size=self.config.batch_size,
                   threads=self.threads, size_bytes=len(self.handle.serialize()), params=stats.params,
                   nonzero_params=stats.nonzero_params, **self.device.row_fields(),
                   is_baseline=pipeline.is_baseline, pareto=False, phase="train",
                   created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        return row


def _with_threads(config, threads: int):
    import dataclasses

    return dataclasses.replace(config, threads=threads)


__all__ = ["TRAIN_COLUMNS", "TrainingStudy", "parse_training"]
