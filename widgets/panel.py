"""ipywidgets views over the panel model: the trade-off panel and the device panel."""

from __future__ import annotations

import base64
import html
import tempfile
import threading
from pathlib import Path

import ipywidgets as W

import workbench as wb

from .state import FUSIONS, PATTERNS, PRECISIONS, RUNTIMES, TradeoffModel
from .training import TrainingModel

HELP = {
    "precision": "How numbers are stored and computed. int8 is 4x smaller than fp32 and often faster on CPUs; "
                 "fp16/bf16 halve the size and are fast on GPUs (and on CPUs that support them).",
    "sparsity": "Fraction of weights set to zero (then fine-tuned). Saves compressed size; only 'channel' "
                "pruning (which removes whole filters) or 2:4 on sparse GPUs makes it faster.",
    "fusion": "Graph-level speed-ups: fuse layers, TorchScript, or compile the model to optimized kernels.",
    "runtime": "Which engine runs the model.",
    "find": "Let the workbench search: the fastest (or smallest) configuration that loses at most the accuracy you "
            "allow, in the time you give it, confirmed on data it did not choose on.",
    "layers": "Why a configuration is slower or less accurate: each layer's time in the baseline and here (the "
              "kernel that ran), the error each layer adds, and boxes to keep layers in fp32.",
}


def _fmt(value) -> str:
    if value is None or value != value:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else html.escape(str(value))


def _status_html(model, verb: str) -> str:
    """What the panel is doing: measuring (which spec), an error in place, or which trial it shows."""
    if model.running:
        return f"<i>{verb} <code>{html.escape(model.running)}</code>…</i>"
    if model.error:
        return (f"<span style='color:#b00'><b>{html.escape(model.state.spec)}</b>: "
                f"{html.escape(model.error)}</span>")
    return f"showing <code>{html.escape(model.shown['pipeline'] if model.shown else '')}</code>"


def _numbers_html(model) -> str:
    """The current trial's numbers next to the baseline's, with the change in words, coloured by which way it went
    (green better, red worse, grey within noise or unchanged)."""
    rows = []
    for r in model.comparison():
        colour = wb.readable.COLOURS.get(r["verdict"], "inherit")
        style = f"color:{colour}" + (";font-style:italic" if r["verdict"] == "noise" else "")
        rows.append(f"<tr><td>{html.escape(r['quantity'])}</td><td>{html.escape(r['baseline_text'])}</td>"
                    f"<td>{html.escape(r['current_text'])}</td><td style='{style}'>{html.escape(r['change'])}</td></tr>")
    return ("<table class='wb-numbers'><tr><th></th><th>original</th><th>this configuration</th>"
            f"<th>change</th></tr>{''.join(rows)}</table>")


class TradeoffPanel(W.VBox):
    """Toggle precision, sparsity, fusion and runtime; see the trial next to the baseline and on the chart."""

    def __init__(self, study: wb.Study, *, export_dir: str | Path | None = None, background: bool = True,
                 holdout: wb.tasks.Task | None = None, help: bool = True):
        """`help=False` leaves out the controls' explanations below the panel (a page that explains them above)."""
        self.model = TradeoffModel(study, background=background, holdout=holdout)
        self.export_dir = Path(export_dir or tempfile.mkdtemp(prefix="workbench-export-"))
        opts = self.model.options
        offered = lambda control, values: [v for v in values if not opts[control][v]]  # noqa: E731
        self.precision = W.ToggleButtons(options=offered("precision", PRECISIONS), description="precision")
        self.sparsity = W.FloatSlider(value=0.0, min=0.0, max=0.9, step=0.05, description="sparsity",
                                      continuous_update=False, readout_format=".0%")
        self.pattern = W.Dropdown(options=list(PATTERNS), description="pattern")
        self.fusion = W.ToggleButtons(options=offered("fusion", FUSIONS), description="fusion")
        self.runtime = W.ToggleButtons(options=offered("runtime", RUNTIMES), description="runtime")
        unavailable = [reason for control in opts.values() for reason in control.values() if reason]
        self.unavailable = W.HTML("<small>Not offered for this model: " + "; ".join(map(html.escape, unavailable))
                                  + "</small>" if unavailable else "")
        self.help = W.HTML("<small>" + "<br>".join(f"<b>{k}</b>: {v}" for k, v in HELP.items()) + "</small>")
        self.status = W.HTML()
        self.headline = W.HTML()
        self.numbers = W.HTML()
        self.pin_button = W.Button(description="pin", tooltip="keep this configuration marked on the chart")
        self.csv_button = W.Button(description="export CSV")
        self.model_button = W.Button(description="export model")
        self.downloads = W.HTML()
        self.pins = W.HTML()
        self.chart = self._chart_widget()
        self.layers_button = W.Button(description="explain (layers)",
                                      tooltip="time and error per layer for the configuration shown")
        self.layers_text = W.HTML()
        self.layers_chart = W.HTML()
        self.keep_boxes = W.VBox()
        self._boxes_for: tuple = ()
        self._syncing = False
        self.layers_button.on_click(lambda _: threading.Thread(target=self._explain, daemon=True).start())
        self.layers = W.Accordion(children=[W.VBox([
            self.layers_button, self.layers_text, self.layers_chart,
            W.HTML("<b>keep in fp32</b> (the int8 recipe's <code>exclude=</code>; measured like any toggle)"),
            self.keep_boxes])])
        self.layers.set_title(0, "layers: why is it slower, where did the accuracy go")
        self.find_objective = W.ToggleButtons(options=["latency", "size"], description="fastest by")
        self.find_drop = W.BoundedFloatText(value=1.0, min=0.0, max=99.0, step=0.1, description="max drop",
                                            tooltip="points of accuracy (or % of the metric, or points of fidelity)")
        self.find_budget = W.Dropdown(options=[("30 s", 30), ("1 min", 60), ("2 min", 120), ("5 min", 300),
                                               ("10 min", 600)], value=60, description="time")
        self.find_button = W.Button(description="find it", button_style="primary",
                                    tooltip="search in the background; trials land on the chart as they are measured")
        self.find_stop = W.Button(description="stop", disabled=True)
        self.find_status = W.HTML()
        self.find_chart = W.HTML()
        self.find_button.on_click(lambda _: self._find())
        self.find_stop.on_click(lambda _: self.model.stop_search())
        self.finder = W.Accordion(children=[W.VBox([
            W.HBox([self.find_objective, self.find_drop, self.find_budget]),
            W.HBox([self.find_button, self.find_stop]), self.find_status, self.find_chart])])
        self.finder.set_title(0, "find the fastest within … (search)")
        self._found_shown = None
        for widget, control in ((self.precision, "precision"), (self.sparsity, "sparsity"),
                                (self.pattern, "pattern"), (self.fusion, "fusion"), (self.runtime, "runtime")):
            widget.observe(lambda change, c=control: self._changed(c, change["new"]), names="value")
        self.pin_button.on_click(lambda _: self.model.pin())
        self.csv_button.on_click(lambda _: self._export("csv"))
        self.model_button.on_click(lambda _: self._export("model"))
        self.model.on_change(self.refresh)
        super().__init__([
            self.headline, W.HTML(f"<h3>{html.escape(study.task.describe())}</h3>"),
            self.precision, W.HBox([self.sparsity, self.pattern]), self.fusion, self.runtime, self.unavailable,
            self.status, W.HBox([self.numbers, self.chart]),
            W.HBox([self.pin_button, self.csv_button, self.model_button]), self.pins, self.downloads, self.finder,
            self.layers, *([self.help] if help else []),
        ])
        self.refresh()

    def _chart_widget(self):
        import altair as alt

        try:
            alt.JupyterChart.enable_offline()  # vega's JavaScript from vl-convert, never from a CDN
            return alt.JupyterChart(self.model.chart(), embed_options={"actions": False})
        except Exception:  # no anywidget: fall back to a static SVG
            return W.HTML()

    def _changed(self, control: str, value) -> None:
        try:
            self.model.set(**{control: value})
        except wb.WorkbenchError as exc:
            self.status.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"

    def _export(self, what: str) -> None:
        try:
            if what == "csv":
                path = self.model.export_csv(self.export_dir / "results.csv")
            else:
                name = self.model.shown["pipeline"].replace(" ", "").replace("+", "_") if self.model.shown else "model"
                path = self.model.export_model(self.export_dir / f"{name}.bin")
        except wb.WorkbenchError as exc:
            self.downloads.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
            return
        data = base64.b64encode(path.read_bytes()).decode()
        self.downloads.value = (f"saved {html.escape(str(path))} — <a download='{html.escape(path.name)}' "
                                f"href='data:application/octet-stream;base64,{data}'>download {path.name}</a>")

    def _explain(self) -> None:
        self.layers_text.value = "<i>timing every layer…</i>"
        self.layers_button.disabled = True
        try:
            view = self.model.layers()
        except Exception as exc:  # a probe's failure is shown where the view would be; the panel stays usable
            self.layers_text.value = f"<span style='color:#b00'>{html.escape(f'{type(exc).__name__}: {exc}')}</span>"
            return
        finally:
            self.layers_button.disabled = False
            self._sync_keep_boxes()
        if view is None:
            self.layers_text.value = "<i>choose a configuration that ran first</i>"
            return
        self.layers_text.value = f"<p>{html.escape(view.explanation)}</p>"
        try:
            self.layers_chart.value = view.chart().to_html(inline=True)
        except Exception as exc:  # no vl-convert for inline JavaScript: the table still says it all
            self.layers_chart.value = f"<small>chart unavailable ({html.escape(type(exc).__name__)})</small>"

    def _find(self) -> None:
        try:
            self.model.search(objective=self.find_objective.value, max_drop=self.find_drop.value,
                              budget_s=self.find_budget.value)
        except wb.WorkbenchError as exc:
            self.find_status.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"

    def _refresh_find(self) -> None:
        m = self.model
        self.find_button.disabled, self.find_stop.disabled = m.searching, not m.searching
        self.find_status.value = f"<p>{html.escape(m.search_status())}</p>"
        found = m.found
        if found is not None and not m.searching and found.stopped != "running" and found is not self._found_shown:
            self._found_shown = found
            try:
                self.find_chart.value = found.chart().to_html(inline=True)
            except Exception as exc:  # no vl-convert for inline JavaScript: the paragraph still says it all
                self.find_chart.value = f"<small>chart unavailable ({html.escape(type(exc).__name__)})</small>"

    def _keep_changed(self) -> None:
        if self._syncing:
            return
        self.model.keep([box.description for box in self.keep_boxes.children if box.value])

    def _sync_keep_boxes(self) -> None:
        """One checkbox per layer the int8 recipe quantizes, ticked for those kept in fp32."""
        choices = tuple(self.model.layer_choices())
        kept = set(self.model.state.keep_fp32)
        self._syncing = True
        try:
            if choices == self._boxes_for:
                for box in self.keep_boxes.children:
                    box.value = box.description in kept
                return
            self._boxes_for = choices
            boxes = [W.Checkbox(value=name in kept, description=name, indent=False) for name in choices]
            for box in boxes:
                box.observe(lambda _: self._keep_changed(), names="value")
            self.keep_boxes.children = boxes
        finally:
            self._syncing = False

    def dispose(self) -> None:
        """Close the panel for good: its pending trials and search stopped, its study's workers released, its
        widgets closed in the kernel and the page (the dashboard does this when it switches model). Not done on
        garbage collection: a study may be shared with other panels."""
        self.model.close()
        _close_tree(self)

    def refresh(self) -> None:
        m = self.model
        self.headline.value = f"<p class='wb-headline'><b>{html.escape(m.headline())}</b></p>"
        self.status.value = _status_html(m, "measuring")
        self.numbers.value = _numbers_html(m)
        self.pins.value = ("pinned: " + ", ".join(f"<code>{html.escape(p)}</code>" for p in m.pinned)) if m.pinned else ""
        self._sync_keep_boxes()
        self._refresh_find()
        chart = m.chart()
        if hasattr(self.chart, "chart"):
            self.chart.chart = chart
        else:
            self.chart.value = chart.to_html(inline=True) if hasattr(chart, "to_html") else ""


def _close_tree(widget: W.Widget) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()


def _session_memory_html() -> str:
    m = wb.profiling.session_memory()
    gib = lambda n: f"{n / 2**30:.2f} GiB"  # noqa: E731
    return (f"<table class='wb-device'><tr><td><b>this session</b></td><td>{gib(m['process_bytes'] + m['workers_bytes'])}"
            f" (kernel {gib(m['process_bytes'])}, trial worker {gib(m['workers_bytes'])})</td></tr><tr><td><b>machine"
            f"</b></td><td>{gib(m['machine_used_bytes'])} in use of {gib(m['usable_bytes'])} usable</td></tr></table>")


def _targets_html() -> str:
    rows = "".join(f"<tr><td><b>{html.escape(r['target'])}</b></td><td>{html.escape(r['precisions'])}</td>"
                   f"<td>{html.escape(r['measured here'])}</td><td>{html.escape(r['checked statically'])}</td></tr>"
                   for r in wb.targets.table().to_dict("records"))
    return ("<details><summary>deployment targets: what is measured here, what is checked</summary><table "
            "class='wb-device'><tr><th>target</th><th>precisions</th><th>measured here</th><th>checked statically"
            f"</th></tr>{rows}</table></details>")


class DevicePanel(W.VBox):
    """The device profile at a glance: what is accelerated here and the measured peaks, and the memory this session
    (its kernel and trial worker) holds, as of `refresh_memory()` (the dashboard calls it whenever its panel
    changes). `refresh_s` > 0 also refreshes it on a timer: for a notebook, not for a served page, where the
    messages would keep an abandoned session from ever looking idle to the culler."""

    def __init__(self, profile: wb.DeviceProfile | None = None, refresh_s: float = 0.0):
        profile = profile or wb.device()
        rows = [("CPU", f"{profile.cpu_model} ({profile.cores_available} cores, {profile.arch})"),
                *((("board", profile.board),) if profile.board else ()),
                ("TPU", ", ".join(profile.accelerators) or "none"),
                ("memory", f"{profile.memory_bytes / 2**30:.1f} GiB"),
                ("ISA", " ".join(profile.isa)),
                ("GPU", ", ".join(f"{g.name} (sm{g.compute_capability})" for g in profile.gpus) or "none"),
                ("fp32 GEMM", f"{profile.peak_gflops_1t or 0:.0f} GFLOP/s (1 thread), "
                              f"{profile.peak_gflops_all or 0:.0f} GFLOP/s (all cores)"),
                *((f"{p} GEMM", f"{roof.get('1t') or 0:.0f} GFLOP/s (1 thread), {roof.get('all') or 0:.0f} GFLOP/s "
                                "(all cores)") for p, roof in profile.peaks.items() if p != "fp32"),
                ("bandwidth", f"{profile.bandwidth_gbs or 0:.1f} GB/s"),
                ("int8 engine", f"{profile.recommended_quantized_engine} (reduce_range={profile.int8_reduce_range})")]
        rows += [(p, (f"accelerated: {why}" + (f" — {slower}" if (slower := profile.slower_than_fp32(p)) else ""))
                  if why else "not accelerated here") for p, why in profile.accelerated.items()]
        table = "".join(f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        self.table = W.HTML(f"<table class='wb-device'>{table}</table>")
        self.memory = W.HTML(_session_memory_html())
        self.targets = W.HTML(_targets_html())
        self._closed = threading.Event()
        super().__init__([W.HTML("<h3>This machine</h3>"), self.table, self.memory, self.targets])
        if refresh_s > 0:
            threading.Thread(target=self._refresh_memory, args=(refresh_s,), name="device-memory", daemon=True).start()

    def refresh_memory(self) -> None:
        if not self._closed.is_set():
            self.memory.value = _session_memory_html()

    def _refresh_memory(self, every_s: float) -> None:
        while not self._closed.wait(every_s):
            try:
                self.refresh_memory()
            except Exception:  # a closing kernel: the next page has its own panel
                return

    def close(self) -> None:
        self._closed.set()
        super().close()


class TrainingPanel(W.VBox):
    """Toggle training recipes; see step time, memory, loss and accuracy next to the baseline's."""

    def __init__(self, study: wb.TrainingStudy, *, background: bool = True):
        import altair as alt

        self.model = TrainingModel(study, background=background)
        self.boxes = {name: W.Checkbox(description=name.replace("_", "-"), value=False)
                      for name in ("checkpoint", "amp", "channels_last", "compile")}
        self.grad_accum = W.IntSlider(value=1, min=1, max=8, description="grad-accum")
        self.ddp = W.IntSlider(value=1, min=1, max=max(2, study.threads), description="ddp procs")
        self.status, self.numbers = W.HTML(), W.HTML()
        alt.JupyterChart.enable_offline()
        self.chart = alt.JupyterChart(self.model.chart(), embed_options={"actions": False})
        for name, box in self.boxes.items():
            box.observe(lambda change, n=name: self.model.set(**{n: change["new"]}), names="value")
        self.grad_accum.observe(lambda change: self.model.set(grad_accum=change["new"]), names="value")
        self.ddp.observe(lambda change: self.model.set(ddp=change["new"]), names="value")
        self.model.on_change(self.refresh)
        super().__init__([W.HBox(list(self.boxes.values())), W.HBox([self.grad_accum, self.ddp]), self.status,
                          W.HBox([self.numbers, self.chart])])
        self.refresh()

    def refresh(self) -> None:
        self.status.value = _status_html(self.model, "training")
        self.numbers.value = _numbers_html(self.model)
        self.chart.chart = self.model.chart()
