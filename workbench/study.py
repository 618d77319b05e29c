"""A study: a baseline model + a task + this device + a list of pipelines → Results.

`Study` (inference) and `TrainingStudy` (training.py) are one orchestrator over different benches: which
trials are known (in this study, or in its store), which executor measures the rest, and progress. The
measuring itself is the bench's (`measure.InferenceBench`, `training.TrainingBench`), one `Trial` at a time.

User mistakes (a bad spec, bad data, a non-model, a baseline whose forward fails) raise at once.
Anything that goes wrong inside a trial becomes that trial's row, with `status` and `error`, and the
study goes on with the next pipeline.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .errors import DataError
from .executors import Executor, as_executor
from .measure import InferenceBench, Settings, check_batch_fits, check_count, check_threads
from .model import ModelHandle
from .profiling.device import DeviceProfile, device
from .profiling.timing import TimingConfig, measure_handle
from .recipes import Pipeline, as_pipeline, parse_pipelines
from .results import Results
from .store import ResultsStore
from .tasks import Task
from .trial import Bench, Trial, TrialRecord


class Orchestrator:
    """Runs a bench's trials: each pipeline measured once per study (or found in the store, which every new
    record is written to as soon as it is measured), the baseline first and alone."""

    progress_label = "trials"

    def __init__(self, bench: Bench, *, store: str | os.PathLike | ResultsStore | None, executor: str | Executor):
        self.bench = bench
        self.store = store if isinstance(store, ResultsStore) or store is None else ResultsStore(store)
        self.executor = as_executor(executor)
        self.executor.prepare(bench)
        self._records: dict[str, TrialRecord] = {}  # canonical spec → record, for this study's lifetime
        self._lock = threading.RLock()  # one measurement at a time: trials time the machine

    # -- the public verbs ------------------------------------------------------------------------
    def run(self, pipelines: str | Iterable[Any], *, progress: bool = True, include_baseline: bool = True,
            on_record: Callable[[TrialRecord], None] | None = None) -> Results:
        """Measure each pipeline (parsed up front: a bad spec raises before anything runs).

        Trials already measured in this study, or found in its store, are not measured again; each new row
        is written to the store as soon as it is measured. `on_record` is told of each record as it becomes
        known (measured or found), in order.
        """
        todo = parse_pipelines(pipelines, self.bench.registry)
        if include_baseline:
            todo = [Pipeline(())] + [p for p in todo if not p.is_baseline]
        unique = list(dict.fromkeys(todo))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(unique), desc=self.progress_label, unit="trial", leave=False)
        try:
            for record in self._records_for(unique):
                if bar is not None:
                    bar.set_postfix_str(record.pipeline[:40])
                    bar.update()
                if on_record is not None:
                    on_record(record)
        finally:
            if bar is not None:
                bar.close()
        return self._results(self._records[p.spec] for p in unique)

    def trial(self, pipeline: Any) -> dict[str, Any]:
        """One row: measured once per study (or taken from the store), then served from memory."""
        return self.record(pipeline).to_row()

    def record(self, pipeline: Any) -> TrialRecord:
        """The TrialRecord of a pipeline (measured if need be)."""
        pipeline = self._pipeline(pipeline)
        for _ in self._records_for([pipeline]):
            pass
        return self._records[pipeline.spec]

    def is_measured(self, pipeline: Any) -> bool:
        """Whether `trial(pipeline)` would answer at once (measured in this study or found in its store)."""
        pipeline = self._pipeline(pipeline)
        if pipeline.spec in self._records:
            return True
        return self.store is not None and self.store.get(self.bench.trial_id(pipeline)) is not None

    def results(self) -> Results:
        """Every trial measured so far in this study, the baseline first."""
        return self._results(sorted(self._records.values(), key=lambda r: not r.is_baseline))

    @property
    def baseline(self) -> ModelHandle:
        return self.bench.baseline

    @property
    def task(self) -> Task:
        return self.bench.task

    @property
    def device(self) -> DeviceProfile:
        return self.bench.device

    @property
    def threads(self) -> int:
        return self.bench.threads

    def close(self) -> None:
        """Release what the study started (the executor's workers or cluster)."""
        self.executor.close()

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- orchestration -----------------------------------------------------------------------------
    def _pipeline(self, value: Any) -> Pipeline:
        return value if isinstance(value, Pipeline) else as_pipeline(value, self.bench.registry)

    def _results(self, records: Iterable[TrialRecord]) -> Results:
        import pandas as pd

        columns = list(self.bench.columns)
        return Results(pd.DataFrame([r.to_row() for r in records], columns=columns))

    def _known(self, record: TrialRecord, spec: str) -> TrialRecord:
        self._records[spec] = record
        self.bench.observe(record)
        return record

    def _records_for(self, pipelines: list[Pipeline]) -> Iterator[TrialRecord]:
        """Records of `pipelines` as they become known: memory, then the store, then the executor."""
        if all(p.spec in self._records for p in pipelines):  # known rows are served without waiting for the
            for pipeline in dict.fromkeys(pipelines):         # lock (a panel's thread may be measuring meanwhile)
                yield self._records[pipeline.spec]
            return
        with self._lock:
            yield from self._records_for_locked(pipelines)

    def _records_for_locked(self, pipelines: list[Pipeline]) -> Iterator[TrialRecord]:
        baseline = Pipeline(())
        if baseline.spec not in self._records and any(not p.is_baseline for p in pipelines):
            pipelines = [baseline] + list(pipelines)
        missing: list[Trial] = []
        for pipeline in dict.fromkeys(pipelines):
            if pipeline.spec in self._records:
                yield self._records[pipeline.spec]
                continue
            trial = Trial.of(self.bench, pipeline)
            stored = self.store.get_record(trial.trial_id) if self.store is not None else None
            if stored is not None:
                yield self._known(stored, pipeline.spec)
            else:
                missing.append(trial)
        # the baseline goes first and alone: every other row is relative to it
        for batch in ([t for t in missing if t.pipeline.is_baseline], [t for t in missing if not t.pipeline.is_baseline]):
            if not batch:
                continue
            for trial, record in zip(batch, self.executor.run(batch)):
                if self.store is not None:
                    self.store.put_record(record)
                yield self._known(record, trial.pipeline.spec)


class Study(Orchestrator):
    """Measure pipelines of recipes against a baseline model on a task, on this device.

    model:          a torch nn.Module, a Keras model, an onnx.ModelProto or a workbench ModelHandle
    task:           a workbench Task (wb.tasks.Classification(x, y), ...)
    example_input:  what forward takes, for models that need more than the task's inputs
    batch_size:     the batch that latency is timed at (the same for every trial)
    threads:        intra-op threads for every measurement (default: the cores available)
    timing:         a TimingConfig (minimum time and count, warm-up)
    store:          a SQLite results store (path or ResultsStore): finished trials are kept and skipped on re-runs
    executor:       inline | process | warm | dask, or an Executor
    """

    def __init__(self, model: Any, task: Task, *, example_input: Any = None, batch_size: int = 32,
                 threads: int | None = None, timing: TimingConfig | None = None,
                 device_profile: DeviceProfile | None = None, measure_memory: bool = True,
                 measure_flops: bool = True, seed: int = 0, target: str = "cpu",
                 store: str | os.PathLike | ResultsStore | None = None, executor: str | Executor = "inline"):
        if not isinstance(task, Task):
            raise DataError(f"task must be a workbench Task (e.g. wb.tasks.Classification(x, y)), "
                            f"got {type(task).__name__}")
        check_count("Study", "batch_size", batch_size)
        profile = device_profile or device()
        if threads is not None:
            check_threads("Study", threads, profile)
        check_batch_fits("Study", task, batch_size)
        settings = Settings(batch_size=batch_size, threads=threads or profile.cores_available,
                            timing=timing or TimingConfig(), eval_batch=task.eval_batch_size or batch_size,
                            measure_memory=measure_memory, measure_flops=measure_flops, seed=seed, target=target)
        super().__init__(InferenceBench(model, task, profile, settings, example_input), store=store, executor=executor)
        self._views: dict[str, Any] = {}

    # -- what the bench knows, by the names notebooks use -----------------------------------------

    @property
    def batch_size(self) -> int:
        return self.bench.config.batch_size

    @property
    def timing(self) -> TimingConfig:
        return self.bench.config.timing

    @property
    def reference(self) -> Any:
        """The baseline's outputs on the task's evaluation inputs (what fidelity compares with)."""
        return self.bench.reference

    def handle(self, pipeline: Any) -> ModelHandle:
        """The optimized model of a pipeline (built once per study, never beside a timed trial)."""
        pipeline = self._pipeline(pipeline)
        with self._lock:
            return self.bench.handle(pipeline)

    def built(self, pipeline: Any) -> ModelHandle | None:
        """The pipeline's model if this study has built it already, else None (never waits, never builds)."""
        return self.bench.built(self._pipeline(pipeline))

    def layers(self, pipeline: Any, *, samples: int = 32) -> Any:
        """The per-layer view of a pipeline against the baseline (a `layers.LayerView`): time and error per
        layer, flags and a one-paragraph explanation. Built once per study, pipeline and `samples`."""
        from .errors import UnsupportedError
        from .layers import build

        pipeline = self._pipeline(pipeline)
        key = (pipeline.spec, samples)
        with self._lock:  # one view at a time, never beside a timed trial; a second caller gets the first's view
            if key in self._views:
                return self._views[key]
            record = self.record(pipeline)
            self.record(Pipeline(()))  # the baseline first: every view is relative to it
            if record.status != "ok":
                raise UnsupportedError(pipeline.spec, f"its trial is {record.status} ({record.row.get('error')}): "
                                                      "there is no model to look inside")
            handle, baseline = self.handle(pipeline), self.baseline
            inputs = self.task.sample(min(samples, len(self.task)))
            timed = self.task.sample(self.batch_size)
            traces = baseline.layer_trace(inputs), handle.layer_trace(inputs)
            with baseline.session(self.threads):
                base_times = baseline.layer_times(timed, self.threads)
            with handle.session(self.threads):
                times = handle.layer_times(timed, self.threads)
            exclude = next((tuple(s.exclude) for s in reversed(pipeline.steps) if getattr(s, "exclude", ())), ())
            view = build(pipeline.spec, *traces, base_times, times, int8=handle.precision.startswith("int8"),
                         exclude=exclude, notes=handle.notes)
            self._views[key] = view
            return view

    def sensitivity(self, pipeline: Any, *, mode: str = "exclude", layers: list[str] | None = None,
                    by: str = "layer", quality: str = "fidelity_cosine", progress: bool = True) -> Any:
        """Rank the layers a recipe changed by what each costs: `mode="exclude"` keeps one layer in float at a
        time (how much of the lost `quality` it recovers), `mode="only"` applies the recipe to one layer alone.
        `by="block"` probes each repeated block (a transformer layer) as one. Each probe is a trial (cached,
        stored, run on the executor); the cost is printed before it starts."""
        from .sensitivity import sensitivity

        return sensitivity(self, pipeline, mode=mode, layers=layers, by=by, quality=quality, progress=progress)

    def recover(self, pipeline: Any, *, share: float = 0.5, by: str = "layer", quality: str = "fidelity_cosine",
                ranking: Any = None, max_steps: int = 8, progress: bool = True) -> Any:
        """The fewest layers (in the sensitivity ranking's order) kept in fp32 that win back `share` of the
        `quality` the pipeline lost; one trial per step (see `sensitivity.recover`)."""
        from .sensitivity import recover

        return recover(self, pipeline, share=share, by=by, quality=quality, ranking=ranking, max_steps=max_steps,
                       progress=progress)

    def search(self, *, holdout: Task | None, objective: str = "latency", max_drop: float = 1.0,
               budget_s: Any = 600, space: Any = None, candidates: Any = (), allow_emulated: bool = False,
               fallback: bool = True, progress: bool = True, callback: Any = None, stop: Any = None) -> Any:
        """The fastest (or smallest) configuration within `max_drop` of the baseline's quality, found in
        `budget_s`, confirmed on `holdout` (a task this study's task was not drawn from; None: not held out, and
        the answer says so). Every trial is this study's (cached, stored). See `wb.search` and
        `recommend/loop.py`."""
        from .recommend.loop import Search

        return Search(self, holdout=holdout, objective=objective, max_drop=max_drop, budget_s=budget_s, space=space,
                      candidates=candidates, seed=self.bench.config.seed, allow_emulated=allow_emulated,
                      fallback=fallback, progress=progress, callback=callback, stop=stop).run()

    def interleaved(self, pipelines: Iterable[Any], rounds: int = 5) -> dict[str, list[float]]:
        """Per-round median latency (ms) of each pipeline's model at the study's batch, the models taking turns in
        every round (who goes first alternates): what a ratio measured under a noisy machine's load is built on."""
        specs = [self._pipeline(p).spec for p in pipelines]
        handles = {spec: self.handle(spec) for spec in specs}
        batch = self.task.sample(self.batch_size)
        out: dict[str, list[float]] = {spec: [] for spec in specs}
        with self._lock:
            for r in range(rounds):
                for spec in (specs if r % 2 == 0 else specs[::-1]):
                    handle = handles[spec]
                    with handle.session(self.threads):
                        out[spec].append(measure_handle(handle, batch, self.timing).p50)
        return out

    def throughput(self, pipelines: str | Iterable[Any] = "baseline",
                   batch_sizes: Iterable[int] = (1, 8, 32, 128)) -> Any:
        """Samples per second over batch sizes for each pipeline (same timing rules as the trials)."""
        import pandas as pd

        records = []
        for pipeline in parse_pipelines(pipelines):
            handle = self.handle(pipeline)
            for batch_size in batch_sizes:
                with self._lock, handle.session(self.threads):
                    stats = measure_handle(handle, self.task.sample(batch_size), self.timing)
                records.append({"pipeline": pipeline.spec, "batch_size": batch_size, "latency_ms_p50": stats.p50,
                                "latency_ms_iqr": stats.iqr, "throughput": batch_size / (stats.p50 / 1000)})
        return pd.DataFrame(records)
