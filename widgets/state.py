"""The trade-off panel's logic, with no UI: a plain state (the controls' values), what the model's framework
offers, and a model that measures the composed pipeline — from the study's cache at once, or in the
background — and keeps what the charts and numbers show. The ipywidgets panel is a thin view over this.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import workbench as wb

PRECISIONS = ("fp32", "fp16", "bf16", "int8-dynamic", "int8-static", "qat")
PATTERNS = ("unstructured", "channel", "2:4")
FUSIONS = ("none", "fuse", "torchscript", "compile", "xla")
RUNTIMES = ("eager", "onnxruntime", "openvino", "tflite")
#: the recipe each choice adds to the pipeline (None: nothing)
RECIPE_OF = {
    "precision": {"fp32": None, "fp16": "fp16", "bf16": "bf16", "int8-dynamic": "int8-dynamic",
                  "int8-static": "int8-static", "qat": "qat"},
    "fusion": {"none": None, "fuse": "fuse", "torchscript": "torchscript", "compile": "compile", "xla": "xla"},
    "runtime": {"eager": None, "onnxruntime": "to-onnx", "openvino": "to-openvino", "tflite": "tflite"},
}
#: runtimes that are an extra: offered where it is installed (module to look for, the extra that installs it)
INSTALLED_BY = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}
#: the precision choices whose recipe takes exclude= (the layers view's keep-in-fp32 boxes)
EXCLUDABLE = ("int8-dynamic", "int8-static")
CHOICES = {"precision": PRECISIONS, "pattern": PATTERNS, "fusion": FUSIONS, "runtime": RUNTIMES}


@dataclasses.dataclass(frozen=True)
class PanelState:
    """The controls' values. `spec` composes them into one pipeline."""

    precision: str = "fp32"
    sparsity: float = 0.0
    pattern: str = "unstructured"
    fusion: str = "none"
    runtime: str = "eager"
    framework: str = "torch"  # of the model: decides which recipes the choices become
    keep_fp32: tuple[str, ...] = ()  # layers the int8 recipe leaves in float (its exclude=)

    def __post_init__(self) -> None:
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise wb.ParameterError("panel", name, getattr(self, name), f"one of {', '.join(choices)}")
        if not 0.0 <= self.sparsity <= 0.9:
            raise wb.ParameterError("panel", "sparsity", self.sparsity, "a number in [0, 0.9]")

    @property
    def spec(self) -> str:
        """The choices' recipes, ordered by the library (`wb.recipes.compose`): one name per technique, so
        `int8-static` is FX on a torch model, ONNX Runtime's after `to-onnx`, TFLite's on a Keras model."""
        steps = []
        if self.sparsity > 0:
            sparsity = 0.5 if self.pattern == "2:4" else round(self.sparsity, 2)
            steps.append(f"prune({sparsity}{'' if self.pattern == 'unstructured' else f', pattern={self.pattern}'})")
        precision = RECIPE_OF["precision"][self.precision]
        if self.keep_fp32 and precision in EXCLUDABLE:
            precision = f"{precision}(exclude=[{', '.join(repr(name) for name in self.keep_fp32)}])"
        steps += [RECIPE_OF["fusion"][self.fusion], precision, RECIPE_OF["runtime"][self.runtime]]
        if self.framework == "keras" and RECIPE_OF["precision"][self.precision] not in (None, "qat"):
            steps = [s for s in steps if s != "tflite"]  # the quantizing converter already is TFLite
        return wb.recipes.compose(s for s in steps if s).spec


def availability(framework: str) -> dict[str, dict[str, str]]:
    """For each control and choice: "" when offered, else the reason it is not (shown next to the control).
    `framework`: the model's format (torch, keras, onnx)."""
    out: dict[str, dict[str, str]] = {}
    for control, table in RECIPE_OF.items():
        out[control] = {}
        for choice, recipe in table.items():
            if recipe is None:
                out[control][choice] = ""
            elif recipe not in wb.recipes.RECIPES:
                out[control][choice] = f"{choice}: not in this version of the workbench (no '{recipe}' recipe)"
            else:
                formats = wb.recipes.RECIPES.get(recipe).formats
                out[control][choice] = "" if framework in formats else \
                    f"{choice}: for {', '.join(formats)} models, not {framework}"
                module, extra = INSTALLED_BY.get(choice, (None, None))
                if not out[control][choice] and module and importlib.util.find_spec(module) is None:
                    out[control][choice] = f"{choice}: not installed (pip install 'efficiency-workbench[{extra}]')"
    out["pattern"] = dict.fromkeys(PATTERNS, "")
    if framework == "keras":
        out["pattern"]["channel"] = "channel: torch only (TF-MOT prunes weights, not channels)"
    return out


class TrialModel:
    """What every panel shares: a study-like object (`trial`, `is_measured`, `results`), a state whose
    `spec` names one pipeline, and what is shown. `set(...)` changes the state and shows the trial of the
    composed pipeline: at once when the study has measured it, else measured in a background thread while
    the page stays usable; a change made meanwhile supersedes it (its row is still kept for later)."""

    def __init__(self, study: Any, state: Any, *, background: bool = True):
        self.study = study
        self.state = state
        self.background = background
        self.shown: dict | None = None        # the row on display
        self.error: str | None = None         # why the current choice shows no row
        self.running: str | None = None       # the spec being measured now
        self.superseded: list[str] = []       # specs dropped or finished after a newer request
        self.pinned: list[str] = []
        self._listeners: list[Callable[[], None]] = []
        self._wanted: str | None = None
        self._queue: list[str] = []
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._worker: threading.Thread | None = None
        # the baseline is measured now, before there is a page to interact with: a timing taken while the
        # interface is being built would be disturbed by it
        self.study.trial("baseline")
        self.request()

    def canonical(self, spec: str) -> str:
        """The canonical spec of the state's pipeline (raises WorkbenchError for impossible ones)."""
        return wb.Pipeline.parse(spec).spec

    def check(self, changes: dict) -> None:
        """Raise for a change the panel does not offer."""

    # -- the verbs the view calls ----------------------------------------------------------------
    def set(self, **changes: Any) -> None:
        self.check(changes)
        if hasattr(self.state, "keep_fp32") and "keep_fp32" not in changes and (
                {"precision", "runtime", "fusion"} & set(changes)):
            changes["keep_fp32"] = ()  # another model: its layers are chosen afresh
        self.state = dataclasses.replace(self.state, **changes)
        self.request()

    def request(self) -> None:
        try:
            spec = self.canonical(self.state.spec)
        except wb.WorkbenchError as exc:
            self._wanted = self.state.spec
            self.error, self.shown = str(exc), None
            self._notify()
            return
        self._wanted = spec
        if self.study.is_measured(spec) or not self.background:
            self._show(spec, self.study.trial(spec))
            return
        with self._lock:
            self.superseded += [s for s in self._queue if s != spec]  # dropped before they started
            self._queue = [spec]  # only the newest request waits
            self.error = None
            self._idle.clear()
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="panel-trials", daemon=True)
                self._worker.start()
        self._notify()

    def pin(self) -> None:
        if self.shown and self.shown["pipeline"] not in self.pinned:
            self.pinned.append(self.shown["pipeline"])
            self._notify()

    def unpin(self, spec: str) -> None:
        if spec in self.pinned:
            self.pinned.remove(spec)
            self._notify()

    def wait(self, timeout: float | None = 120) -> bool:
        """Block until no trial is pending (for scripts and tests)."""
        return self._idle.wait(timeout)

    def on_change(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def close(self) -> None:
        """Drop what waits, tell no one any more, release the study's workers (a page that switches model
        closes the old one: its threads end with the trial they are in)."""
        with self._lock:
            self.superseded += self._queue
            self._queue = []
        self._listeners.clear()
        close = getattr(self.study, "close", None)
        if close is not None:
            close()

    @property
    def baseline(self) -> dict:
        """The baseline's row, or {} while it is still being measured (never blocks the page)."""
        return self.study.trial("baseline") if self.study.is_measured("baseline") else {}

    def frame(self):
        return self.study.results().frame

    def compare(self, quantities: tuple) -> list[dict]:
        """Rows for a numbers table: each quantity for the baseline and the current trial, with the change in
        words and which way it goes (`wb.readable.change`: better, worse, same, or noise for latency differences
        inside the timing spread)."""
        base, cur = self.baseline, self.shown or {}
        out = []
        for key, label, kind in quantities:
            b, c = base.get(key), cur.get(key)
            noise = wb.readable.timing_noise(base, cur) if key == "latency_ms_p50" else None
            change = wb.readable.change(kind, b, c, noise=noise) if cur else wb.readable.Change("–", None, None)
            spread = key == "latency_ms_p50"
            out.append({"quantity": label, "baseline": b, "current": c,
                        "baseline_text": wb.readable.ms(b, base.get("latency_ms_iqr")) if spread
                        else wb.readable.show(kind, b),
                        "current_text": wb.readable.ms(c, cur.get("latency_ms_iqr")) if spread
                        else wb.readable.show(kind, c),
                        "change": change.text, "verdict": change.verdict, "ratio": change.ratio})
        return out

    def export_csv(self, path: str | Path) -> Path:
        self.study.results().save(path)
        return Path(path)

    # -- internals -------------------------------------------------------------------------------
    def _show(self, spec: str, row: dict) -> None:
        if spec != self._wanted:
            self.superseded.append(spec)
            return
        self.shown = row
        self.error = row["error"] if row["status"] != "ok" else None
        self._notify()

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self.running = None
                    self._idle.set()
                    self._notify()
                    return
                spec = self._queue.pop()
                self.running = spec
            self._notify()
            try:
                row = self.study.trial(spec)
            except Exception as exc:  # a trial's own failures are rows; this is the study itself breaking
                self.error = f"{type(exc).__name__}: {exc}"
                self._notify()
                continue
            self._show(spec, row)

    def _notify(self) -> None:
        for callback in list(self._listeners):
            callback()


class TradeoffModel(TrialModel):
    """The inference trade-off: precision, sparsity, fusion and runtime of one model on its task."""

    #: (column, label, kind for wb.readable); the metric's label is the task's (accuracy, Spearman)
    QUANTITIES = (("metric", "accuracy", "points"), ("fidelity", "fidelity", "points"),
                  ("latency_ms_p50", "latency (median ± IQR/2)", "time"), ("size_bytes", "size", "size"),
                  ("size_gzip_bytes", "size gzipped", "size"), ("sparsity", "sparsity", "share"))

    def __init__(self, study: wb.Study, *, background: bool = True, holdout: wb.tasks.Task | None = None):
        self.framework = study.baseline.format
        self.options = availability(self.framework)
        self.holdout = holdout            # what a search confirms its answer on (None: not held out, and it says so)
        self.found: Any = None            # the last search's SearchResult (partial while it runs)
        self.search_error: str | None = None
        self._search_thread: threading.Thread | None = None
        self._search_stop = threading.Event()
        self._search_running = threading.Event()  # cleared before the last notification: the view shows the answer
        super().__init__(study, PanelState(framework=self.framework), background=background)

    def check(self, changes: dict) -> None:
        for control, value in changes.items():
            reason = self.options.get(control, {}).get(value, "") if control in CHOICES else ""
            if reason:
                raise wb.UnsupportedError("panel", reason)

    # -- what the view shows ---------------------------------------------------------------------
    def chart(self):
        current = self.shown["pipeline"] if self.shown else None
        return wb.charts.tradeoff(self.frame(), current=current, pinned=self.pinned)

    def headline(self, max_drop: float = 1.0) -> str:
        """What the page says first: the fastest configuration measured so far that loses at most `max_drop`
        (points of accuracy, % of Spearman) and what it costs — or that nothing measured beats the original yet."""
        frame = self.study.results().frame
        quality = wb.recommend.quality_of(self.study.task)
        base = frame[frame["is_baseline"].astype(bool)].iloc[0]
        ok = frame[(frame["status"] == "ok") & ~frame["is_baseline"].astype(bool)].copy()
        budget = f"within {max_drop:g} {quality.unit.replace('points', 'point', 1) if max_drop == 1 else quality.unit}"
        if len(ok):
            ok["drop"] = [quality.drop(base[quality.column], v) for v in ok[quality.column]]
            faster = ok.apply(lambda r: r["latency_ms_p50"] < base["latency_ms_p50"]
                              - (wb.readable.timing_noise(base, r) or 0), axis=1).astype(bool)
            ok = ok[(ok["drop"] <= max_drop) & faster]
        if not len(ok):
            return (f"Nothing measured so far is faster than the original model {budget}: flip a control, or let "
                    "“find the fastest” search")
        best = ok.sort_values("latency_ms_p50").iloc[0]
        return (f"Fastest measured so far {budget}: "
                + wb.readable.summary(base.to_dict(), best.to_dict(), quality.describe_change(best["drop"])))

    def comparison(self) -> list[dict]:
        metric = self.study.task.metric_name
        quantities = tuple((k, metric if k == "metric" and metric else label,
                            "score" if k == "metric" and metric != "accuracy" else kind)
                           for k, label, kind in self.QUANTITIES if k != "metric" or metric)
        return self.compare(quantities)

    # -- the layers view ---------------------------------------------------------------------------
    def full_spec(self) -> str:
        """The current pipeline without keep-in-fp32 choices: whose changed layers the boxes offer."""
        return self.canonical(dataclasses.replace(self.state, keep_fp32=()).spec)

    def layer_choices(self) -> list[str]:
        """The layers the current int8 recipe quantizes (one keep-in-fp32 box each); [] when the recipe takes no
        exclude= on this model, or its model is not built yet (it is once measured here or explained)."""
        recipe = RECIPE_OF["precision"][self.state.precision]
        if recipe not in EXCLUDABLE or self._excludable_format() is False:
            return []
        handle = self.study.built(self.full_spec())
        return list(handle.changed_layers) if handle is not None else []

    def _excludable_format(self) -> bool:
        """Whether the precision recipe takes exclude= on the format it will run on (ONNX after to-onnx)."""
        recipe = wb.recipes.RECIPES.get(RECIPE_OF["precision"][self.state.precision])
        fmt = {"onnxruntime": "onnx", "openvino": "openvino"}.get(self.state.runtime, self.framework)
        return fmt in recipe.format_params.get("exclude", ())

    def layers(self):
        """The per-layer view of what is shown (Study.layers), or None when nothing measured is shown."""
        if not self.shown or self.shown["status"] != "ok":
            return None
        return self.study.layers(self.shown["pipeline"])

    def keep(self, layers: list[str]) -> None:
        """Keep these layers in fp32 (the int8 recipe's exclude=), measured like any other toggle."""
        self.set(keep_fp32=tuple(layers))

    # -- find it for me ---------------------------------------------------------------------------
    @property
    def searching(self) -> bool:
        return self._search_running.is_set()

    def search(self, *, objective: str = "latency", max_drop: float = 1.0, budget_s: float = 60) -> None:
        """Search in the background (wb.Study.search): each trial lands on the chart as it is measured; when it
        ends, the recommendation is pinned. Parameters that cannot work raise here, at once."""
        wb.recommend.check_request(objective, max_drop, budget_s)
        if self.searching:
            raise wb.WorkbenchError("a search is already running: stop it first")
        self._search_stop = threading.Event()
        self.found, self.search_error = None, None

        def work() -> None:
            try:
                self.found = self.study.search(holdout=self.holdout, objective=objective, max_drop=max_drop,
                                               budget_s=budget_s, progress=False, stop=self._search_stop,
                                               callback=self._search_progress)
                if self.found.recommended and self.found.recommended not in self.pinned:
                    self.pinned.append(self.found.recommended)
            except Exception as exc:  # the panel stays usable and says what went wrong
                self.search_error = f"{type(exc).__name__}: {exc}"
            finally:
                self._search_running.clear()
            self._notify()

        self._search_running.set()
        self._search_thread = threading.Thread(target=work, name="panel-search", daemon=True)
        self._search_thread.start()
        self._notify()

    def stop_search(self) -> None:
        self._search_stop.set()

    def close(self) -> None:
        self.stop_search()
        super().close()

    def wait_search(self, timeout: float | None = None) -> bool:
        """Block until the search and its last notification are done (for scripts and tests)."""
        if self._search_thread is not None:
            self._search_thread.join(timeout)
        return self._search_thread is None or not self._search_thread.is_alive()

    def _search_progress(self, partial: Any) -> None:
        self.found = partial
        self._notify()

    def search_status(self) -> str:
        """One line while it runs (trials, best so far, time left); the answer's paragraph once it is done."""
        if self.search_error:
            return f"search failed: {self.search_error}"
        found = self.found
        if found is None:
            return "searching…" if self.searching else ""
        if found.stopped == "running":
            ok = found.frame[(found.frame["status"] == "ok") & (found.frame["drop"] <= found.max_drop)]
            best = ok.sort_values(found.column).iloc[0] if len(ok) else None
            left = max(0.0, found.budget_s - found.elapsed_s)
            best_text = f"best within the budget so far: {best['pipeline']} ({best[found.column]:.4g})" \
                if best is not None else "nothing within the budget yet"
            return f"searching: {len(found.frame) - 1} trial(s), {best_text}, {left:.0f} s left"
        return found.explanation

    def export_model(self, path: str | Path) -> Path:
        if not self.shown or self.shown["status"] != "ok":
            raise wb.WorkbenchError("no measured trial to export: choose a configuration that ran")
        data = self.study.handle(self.shown["pipeline"]).serialize()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
        return Path(path)
