"""The search: which configuration is the fastest (or smallest) within an accuracy budget, found in a time budget.

    found = wb.search(model, task, max_drop=1.0, budget_s="10m", store="search.db")
    found.recommended; print(found.explanation); found.chart(); found.tried()

How it goes (`Search.run`):
1. The baseline is measured (it sets the quality the budget is counted from).
2. The configurations asked for (`candidates`) are measured first, then each recipe of the space alone.
3. Optuna's TPE sampler (seeded, with the accuracy budget as a constraint) proposes combinations until the
   time budget is spent or every configuration the space can make has been tried. Each proposal is an ordinary
   workbench trial: content-addressed, written to the study's store as it finishes — so a search killed half-way
   and run again replays the finished trials from the store (the sampler, seeded and told the same values,
   proposes the same ones) and measures only what it had not.
4. Mixed precision: an int8 (or pruned) configuration that would beat the best so far but misses the accuracy
   budget gets its most damaging layers kept in float, one more at a time, in the order of the per-layer view's
   share of the output error (`Study.layers`) — the fallback INC uses, driven by measured errors.
5. The candidates within the budget on the selection split are checked, fastest first, on the held-out split
   the search never selected on; the first that holds there is the recommendation, with a paired bootstrap
   interval for its quality change. When none holds, the answer says so and names the closest.
"""

from __future__ import annotations

import math
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd

from .._optional import require
from ..errors import DataError, ParameterError, WorkbenchError
from ..recipes import Pipeline, parse_pipelines
from ..tasks import Task, outputs_on
from .heldout import HeldOut, check
from .quality import quality_of
from .result import SEARCH_COLUMNS, SearchResult
from .space import NOTHING, Space, default_space

if TYPE_CHECKING:
    from ..study import Study

OBJECTIVES = {"latency": "latency_ms_p50", "size": "size_bytes"}
#: the least a configuration must gain on the baseline's latency to count as faster (beyond noise)
MIN_GAIN = 0.03
#: the most layers a fallback keeps in float for one configuration
MAX_FALLBACK = 8
#: how many configurations within the budget on validation are checked on the held-out split
MAX_HELDOUT_CHECKS = 5
#: proposals in a row that add nothing new before the search calls the space exhausted
MAX_REPEATS = 30
#: handles kept built for the held-out check (the rest are rebuilt if need be): a text model is ~90 MB each
KEEP_BUILT = MAX_HELDOUT_CHECKS

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*$", re.I)


def parse_duration(value: Any, what: str = "budget_s") -> float:
    """Seconds from a number or a string such as "90s", "10m", "1.5h"."""
    if isinstance(value, bool):
        raise ParameterError("search", what, value, "seconds (a number) or a duration such as '90s', '10m', '1h'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ParameterError("search", what, value, "seconds (a number) or a duration such as '90s', '10m', '1h'")
        seconds = float(m.group(1)) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[(m.group(2) or "s").lower()]
    if not math.isfinite(seconds) or seconds < 1:
        raise ParameterError("search", what, value, "at least 1 second")
    return seconds


def check_request(objective: str, max_drop: Any, budget_s: Any) -> tuple[str, float, float]:
    """The results column to minimize, the accuracy budget and the time budget in seconds — or a ParameterError
    saying what cannot work, before anything is measured."""
    if objective not in OBJECTIVES:
        raise ParameterError("search", "objective", objective, f"one of {', '.join(OBJECTIVES)}")
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not math.isfinite(max_drop) \
            or not 0 <= max_drop < 100:
        raise ParameterError("search", "max_drop", max_drop,
                             "a number in [0, 100): the quality you accept to lose, in points (accuracy), percent of "
                             "the baseline's value (Spearman) or points of fidelity (tasks without labels)")
    return OBJECTIVES[objective], float(max_drop), parse_duration(budget_s)


class Search:
    """One search over a study (see the module docstring). `run()` → SearchResult."""

    def __init__(self, study: Study, *, holdout: Task | None, objective: str = "latency", max_drop: float = 1.0,
                 budget_s: Any = 600, space: Any = None, candidates: Any = (), seed: int = 0,
                 allow_emulated: bool = False, fallback: bool = True, progress: bool = True,
                 callback: Callable[[SearchResult], None] | None = None, stop: threading.Event | None = None):
        self.column, self.max_drop, self.budget_s = check_request(objective, max_drop, budget_s)
        self.study, self.objective, self.seed = study, objective, seed
        if holdout is not None:
            _check_holdout(study.task, holdout)
        self.holdout = holdout
        self.quality = quality_of(study.task)
        self.fallback, self.progress, self.callback = fallback, progress, callback
        self.stop = stop or threading.Event()
        self.candidates = parse_pipelines(candidates) if candidates else []
        self.space: Space | None = None
        if isinstance(space, (str, list, tuple)):
            self.candidates += parse_pipelines(space) if space else []  # pipelines: choose among exactly those
        elif isinstance(space, Space):
            self.space = space
        elif isinstance(space, dict):
            self.space = Space(space)
        elif space is None:
            self.space = default_space(study.baseline, study.task, study.device, objective=objective,
                                       allow_emulated=allow_emulated)
        else:
            raise ParameterError("search", "space", type(space).__name__,
                                 "None (built from the model and device), a dict of dimension -> choices, a "
                                 "wb.recommend.Space, or a list of pipeline specs")
        if self.space is not None:
            self.space.check_formats(study.baseline.format)
        if self.space is None and not self.candidates:
            raise ParameterError("search", "space", space, "at least one pipeline to try")
        self.origin: dict[str, str] = {"baseline": "baseline"}
        self.impossible: dict[str, str] = {}
        self.notes: list[str] = []
        self._order: list[str] = ["baseline"]
        self._measured: dict[str, tuple[float, float]] = {}  # spec → (objective, drop), as `_values` reads its row
        self._durations: list[float] = []  # seconds each trial of this search took to measure
        self._started = 0.0
        self._repeats = 0

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> SearchResult:
        self._started = time.monotonic()
        base = self.study.record(Pipeline(()))
        if base.status != "ok":
            raise WorkbenchError(f"the baseline did not run ({base.status}: {base.row.get('error')}): nothing to "
                                 "search against")
        took = float(base.row.get("duration_s") or 0)
        if took > self.budget_s:
            raise ParameterError("search", "budget_s", self.budget_s,
                                 f"more than one trial takes: measuring the baseline alone took {took:.0f} s; "
                                 f"give at least {max(60, 10 * took):.0f} s")
        self.base_row = base.row
        self.base_quality = base.row.get(self.quality.column)
        bar = self._bar()
        try:
            for pipeline in self.candidates:
                self._measure(pipeline, "asked for", bar)
            if self.space is not None and not self._out_of_time():
                self._sample(bar)
        finally:
            if bar is not None:
                bar.close()
        elapsed = time.monotonic() - self._started
        stopped = ("stopped" if self.stop.is_set() else "time budget spent" if self._out_of_time() else
                   "every configuration in the space tried" if self.space is not None else "every candidate tried")
        started = time.monotonic()
        result = self._result(elapsed, 0.0, stopped, final=True)
        if result.met and self.objective == "latency":
            result.speedup = self._confirm(result.recommended)
        result.heldout_s = time.monotonic() - started
        return result

    def _confirm(self, spec: str, rounds: int = 5) -> tuple[float, float, float]:
        """The recommendation's speed-up over the baseline timed again, interleaved, `rounds` times: (median,
        first quartile, third quartile) of the ratios — what a number measured once, perhaps under load, is not."""
        import numpy as np

        per = self.study.interleaved(["baseline", spec], rounds)
        ratios = [b / v for b, v in zip(per["baseline"], per[spec])]
        q1, median, q3 = np.percentile(ratios, [25, 50, 75])
        return float(median), float(q1), float(q3)

    def _sample(self, bar: Any) -> None:
        optuna = require("optuna", "search", "the search")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        made, impossible = self.space.enumerate()
        self.impossible.update(impossible)  # combinations that cannot work: refused without building anything
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=self.seed, multivariate=True,
                                                 constraints_func=lambda t: (t.user_attrs.get("excess", 1.0),))
        opt = optuna.create_study(direction="minimize", sampler=sampler)
        params = self.space.parameters()
        for pipeline in self.candidates + self.space.singles():
            choice = made.get(pipeline.spec)
            if choice is not None:
                opt.enqueue_trial(choice, skip_if_exists=True)
            elif not made and pipeline not in self.candidates:  # a space too large to enumerate: measured directly
                self._measure(pipeline, "each recipe alone", bar)
        queued = len(opt.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
        while not self._out_of_time():
            if made and len(made.keys() & self._measured.keys()) >= len(made):
                return
            trial = opt.ask()
            choice = {d: trial.suggest_categorical(d, cs) for d, cs in params.items()}
            try:
                pipeline = self.space.compose(choice)
            except WorkbenchError as exc:
                self.impossible[" + ".join(c for c in choice.values() if c != NOTHING)] = str(exc)
                self._tell(opt, trial, None)
                if self._repeated():
                    return
                continue
            if pipeline.spec in self._measured:
                self._tell(opt, trial, self._measured[pipeline.spec])
                if self._repeated():
                    return
                continue
            self._repeats = 0
            values = self._measure(pipeline, "each recipe alone" if trial.number < queued else "sampler", bar)
            self._tell(opt, trial, values)

    def _repeated(self) -> bool:
        self._repeats += 1
        return self._repeats >= MAX_REPEATS

    def _tell(self, opt: Any, trial: Any, values: tuple[float, float] | None) -> None:
        """Tell the sampler log(objective) with the budget's excess as the constraint (failed and impossible
        configurations: a penalty and an excess, so it learns to avoid them)."""
        if values is None or not math.isfinite(values[0]):
            value, excess = math.log(max(float(self.base_row[self.column]), 1e-12)) + 3.0, 1.0
        else:
            value, excess = math.log(max(values[0], 1e-12)), values[1] - self.max_drop
        trial.set_user_attr("excess", float(excess if math.isfinite(excess) else 1.0))
        opt.tell(trial, value)

    # -- one configuration -----------------------------------------------------------------------
    def _measure(self, pipeline: Pipeline, origin: str, bar: Any) -> tuple[float, float]:
        """Measure (or read from the store) one configuration; (objective, drop) — nan where it did not run."""
        if self._out_of_time() and pipeline.spec not in self.origin:
            return math.nan, math.nan
        row = self.study.trial(pipeline)
        if pipeline.spec not in self.origin:
            self.origin[pipeline.spec] = origin
            self._order.append(pipeline.spec)
            self._durations.append(float(row.get("duration_s") or 0))
        values = self._measured[pipeline.spec] = self._values(row)
        self._after(bar)
        if self.fallback and self._worth_a_fallback(pipeline, row, values):
            self._fall_back(pipeline, values, bar)
        self._release()
        return values

    def _values(self, row: dict) -> tuple[float, float]:
        if row["status"] != "ok":
            return math.nan, math.nan
        value = row.get(self.column)
        drop = self.quality.drop(self.base_quality, row.get(self.quality.column))
        return (float(value) if value is not None else math.nan), drop

    def _best(self) -> float:
        """The best objective within the budget on validation so far (the baseline's at worst)."""
        best = float(self.base_row[self.column])
        for value, drop in self._measured.values():
            if drop <= self.max_drop and value < best:
                best = value
        return best

    def _worth_a_fallback(self, pipeline: Pipeline, row: dict, values: tuple[float, float]) -> bool:
        from ..sensitivity import probed_step

        value, drop = values
        if row["status"] != "ok" or not drop > self.max_drop or not value < self._best():
            return False
        try:
            index = probed_step(pipeline)
        except ParameterError:
            return False
        return not getattr(pipeline.steps[index], "exclude", ())

    def _fall_back(self, pipeline: Pipeline, values: tuple[float, float], bar: Any) -> None:
        """Keep the layers that add most of the output error in float, one more at a time, until the budget holds
        (or the configuration stops paying)."""
        from ..recipes.layers import matches
        from ..sensitivity import excluding, probed_step

        index = probed_step(pipeline)
        try:
            view = self.study.layers(pipeline)
            changed = set(self.study.handle(Pipeline(pipeline.steps[:index + 1])).changed_layers)
        except WorkbenchError as exc:
            self.notes.append(f"No mixed-precision fallback for `{pipeline.spec}`: {exc}.")
            return
        ranked = view.frame.dropna(subset=["error_share"]).sort_values("error_share", ascending=False)
        order: list[str] = []
        covered: set[str] = set()
        for _, r in ranked.iterrows():
            name = next((m for m in [r["layer"], *str(r["members"]).split(", ")] if m in changed), None)
            inside = {c for c in changed if matches(c, r["layer"])}
            if name is None and inside and all(c.count(".") == r["layer"].count(".") + 1 for c in inside):
                name = r["layer"]  # attention computed around its own projections: the projections, together
            if name is None:
                continue
            new = {c for c in changed if matches(c, name)} - covered
            if new:  # a name whose layers are all kept already adds nothing
                order.append(name)
                covered |= new
        kept: list[str] = []
        for name in order[:MAX_FALLBACK]:
            if self._out_of_time():
                return
            kept.append(name)
            candidate = excluding(pipeline, index, tuple(kept))
            value, drop = self._measure(candidate, f"fallback of {pipeline.spec}: {', '.join(kept)} kept in float",
                                        bar)
            if not value < self._best() and not drop <= self.max_drop:
                return  # keeping more in float only makes it slower
            if drop <= self.max_drop:
                return

    def _release(self) -> None:
        """Drop built models the held-out check will not need (a text model is ~90 MB each)."""
        ok = [(v, s) for s, (v, d) in self._measured.items() if d <= self.max_drop and v == v]
        keep = {s for _, s in sorted(ok)[:KEEP_BUILT]}
        self.study.bench.release(lambda spec: spec not in keep)

    def _out_of_time(self) -> bool:
        """Stopped, or less time left than a typical trial has taken (the median so far): a trial is not started
        that would most likely end past the budget."""
        if self.stop.is_set():
            return True
        left = self.budget_s - (time.monotonic() - self._started)
        durations = sorted(self._durations)
        typical = durations[len(durations) // 2] if durations else 0.0
        return left <= 0 or left < typical

    # -- progress ----------------------------------------------------------------------------------
    def _bar(self) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=int(self.budget_s), desc="search", unit="s", leave=False,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s {postfix}")

    def _after(self, bar: Any) -> None:
        elapsed = time.monotonic() - self._started
        if bar is not None:
            bar.n = min(int(elapsed), bar.total)
            best = self._best()
            base = float(self.base_row[self.column])
            bar.set_postfix_str(f"{len(self._order) - 1} trials, best {best:.4g} ({base / best:.2f}x), "
                                f"{max(0.0, self.budget_s - elapsed):.0f} s left")
        if self.callback is not None:
            self.callback(self._result(elapsed, 0.0, "running", final=False))

    # -- the answer --------------------------------------------------------------------------------
    def _result(self, elapsed: float, heldout_s: float, stopped: str, *, final: bool) -> SearchResult:
        rows = [self.study.trial(spec) for spec in self._order]
        frame = pd.DataFrame(rows, columns=list(self.study.bench.columns))
        for column in SEARCH_COLUMNS:
            frame[column] = None
        frame["origin"] = [self.origin[spec] for spec in self._order]
        frame["drop"] = [self._values(r)[1] for r in rows]
        frame["drop"] = frame["drop"].astype(float)
        checks: list[HeldOut] = self._heldout(frame) if final else []
        recommended = next((h.pipeline for h in checks if h.passed), None)
        frame["verdict"] = [self._verdict(r, recommended, checks, final) for _, r in frame.iterrows()]
        for h in checks:
            at = frame["pipeline"] == h.pipeline
            frame.loc[at, ["heldout_drop", "heldout_ci_low", "heldout_ci_high"]] = [h.drop, h.ci_low, h.ci_high]
        for column in ("heldout_drop", "heldout_ci_low", "heldout_ci_high"):
            frame[column] = frame[column].astype(float)
        notes = list(self.notes)
        if final and self.holdout is None:
            notes.append("No held-out split was given: the recommendation was checked on the data it was selected "
                         "on, so its quality may be optimistic.")
        if self.space is not None and self.space.left_out:
            notes.append("Left out of the space: " + "; ".join(self.space.left_out) + ".")
        return SearchResult(
            objective=self.objective, column=self.column, quality=self.quality, max_drop=self.max_drop,
            budget_s=self.budget_s, elapsed_s=elapsed, heldout_s=heldout_s, stopped=stopped, frame=frame,
            recommended=recommended if final else None, heldout=checks, selection=self.study.task.name,
            holdout=(self.holdout.name if self.holdout is not None else f"{self.study.task.name} (not held out)"),
            space=self.space, impossible=dict(self.impossible), notes=notes)

    def _beats_baseline(self, row: Any) -> bool:
        """Better than the baseline by more than noise: size strictly smaller; latency at least MIN_GAIN faster
        and by more than half the larger IQR (a configuration that is the baseline in disguise — every layer
        kept in float — must not win on a lucky timing)."""
        base, value = float(self.base_row[self.column]), row[self.column]
        if value is None or value != value:
            return False
        if self.objective == "size":
            return float(value) < base
        spread = max(float(row["latency_ms_iqr"] or 0), float(self.base_row["latency_ms_iqr"] or 0))
        return float(value) < base * (1 - MIN_GAIN) and base - float(value) > spread / 2

    def _feasible(self, frame: pd.DataFrame) -> list[str]:
        """Within the budget on validation and better than the baseline, best objective first."""
        ok = frame[(frame["status"] == "ok") & (frame["drop"] <= self.max_drop) & ~frame["is_baseline"].astype(bool)]
        ok = ok[[self._beats_baseline(r) for _, r in ok.iterrows()]] if len(ok) else ok
        return list(ok.sort_values(self.column)["pipeline"])

    def _heldout(self, frame: pd.DataFrame) -> list[HeldOut]:
        """Check the best configurations within the budget on the held-out split until one holds."""
        task = self.holdout if self.holdout is not None else self.study.task
        batch = task.eval_batch_size or self.study.batch_size
        reference = outputs_on(self.study.baseline, task, batch, self.study.threads)
        checks = []
        for spec in self._feasible(frame)[:MAX_HELDOUT_CHECKS]:
            try:
                handle = self.study.handle(spec)
                outputs = outputs_on(handle, task, batch, self.study.threads)
            except Exception as exc:  # it ran on validation; a failure here is its verdict, not the search's end
                self.notes.append(f"`{spec}` could not be scored on the held-out split: {type(exc).__name__}: {exc}.")
                continue
            checks.append(check(spec, task, self.quality, outputs, reference, self.max_drop, seed=self.seed))
            if checks[-1].passed:
                break
        return checks

    def _verdict(self, row: pd.Series, recommended: str | None, checks: list[HeldOut], final: bool) -> str:
        spec = row["pipeline"]
        if row["status"] != "ok":
            return f"{row['status']}: {row['error']}"
        if spec == recommended:
            return "recommended"
        if row["is_baseline"]:
            return "baseline"
        if row["drop"] > self.max_drop:
            return f"over the budget: drop {row['drop']:.2f} > {self.max_drop:g}"
        hit = next((h for h in checks if h.pipeline == spec), None)
        if hit is not None and not hit.passed:
            return f"missed on the held-out split: drop {hit.drop:.2f} > {self.max_drop:g}"
        if not self._beats_baseline(row):
            return (f"within the budget, not {'faster' if self.objective == 'latency' else 'smaller'} than the "
                    "baseline beyond its noise")
        if not final:
            return "within the budget"
        rec = row if recommended is None else self.study.trial(recommended)
        word = "slower" if self.objective == "latency" else "larger"
        return f"{word} than the recommendation ({row[self.column]:.4g} vs {rec[self.column]:.4g})"


def _check_holdout(task: Task, holdout: Task) -> None:
    if not isinstance(holdout, Task):
        raise DataError(f"holdout must be a workbench Task (the split the search never selects on), got "
                        f"{type(holdout).__name__}")
    if type(holdout) is not type(task) or holdout.metric_name != task.metric_name:
        raise DataError(f"the held-out task ({type(holdout).__name__}, metric {holdout.metric_name}) must be the same "
                        f"kind as the one searched on ({type(task).__name__}, metric {task.metric_name})")
    shape = getattr(task.inputs, "shape", (None,))[1:]
    if getattr(holdout.inputs, "shape", (None,))[1:] != shape:
        raise DataError(f"held-out inputs have shape {holdout.inputs.shape[1:]} per sample but the search's have "
                        f"{shape}")
    if holdout.fingerprint() == task.fingerprint():
        raise DataError("the held-out task is the task searched on: hold out other data (the test split, or "
                        "task.split(0.5))")


def search(model: Any, task: Task, *, holdout: Task | float | None = 0.5, objective: str = "latency",
           max_drop: float = 1.0, budget_s: Any = 600, space: Any = None, candidates: Iterable[Any] = (),
           store: Any = None, executor: Any = "inline", batch_size: int = 32, threads: int | None = None,
           timing: Any = None, seed: int = 0, allow_emulated: bool = False, fallback: bool = True,
           progress: bool = True, callback: Callable[[SearchResult], None] | None = None) -> SearchResult:
    """The fastest (objective="latency") or smallest ("size") configuration of `model` that loses at most
    `max_drop` of `task`'s quality, found within `budget_s` (seconds, or "10m").

    holdout: a Task the search never selects on (the test split), or a fraction of `task` to set apart (the rest
             is searched on); the recommendation is confirmed there, with a bootstrap interval.
    space:   None (built from the model, task and device), a dict of dimension -> choices, or a list of pipelines.
    store:   a SQLite results store: a killed search resumes, a repeated one measures nothing twice.
    The rest are the Study's settings. Returns a SearchResult (`.recommended`, `.explanation`, `.chart()`)."""
    from ..study import Study

    check_request(objective, max_drop, budget_s)  # before the model is wrapped or anything measured
    if isinstance(holdout, (int, float)) and not isinstance(holdout, bool):
        task, holdout = task.split(float(holdout), seed=seed)
    study = Study(model, task, batch_size=batch_size, threads=threads, timing=timing, store=store, executor=executor,
                  seed=seed)
    try:
        return study.search(holdout=holdout, objective=objective, max_drop=max_drop, budget_s=budget_s, space=space,
                            candidates=candidates, allow_emulated=allow_emulated, fallback=fallback,
                            progress=progress, callback=callback)
    finally:
        study.close()
