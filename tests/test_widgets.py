"""The panel, driven through its state (set a value, assert the numbers and the chart spec), not pixels."""

import re
import time

import pytest

import workbench as wb
from workbench.widgets import PanelState, TradeoffModel, availability

from .conftest import FAST


@pytest.fixture(scope="module")
def panel_study(cnn):
    model, task = cnn
    return wb.Study(model, task, timing=FAST, measure_memory=False)


@pytest.fixture
def model(panel_study):
    return TradeoffModel(panel_study, background=False)


@pytest.mark.parametrize("changes, spec", [
    ({}, "baseline"),
    ({"precision": "int8-dynamic"}, "int8-dynamic"),
    ({"precision": "int8-static"}, "int8-static"),
    ({"precision": "fp16"}, "fp16"),
    ({"precision": "bf16"}, "bf16"),
    ({"precision": "qat"}, "qat"),
    ({"sparsity": 0.5}, "prune(0.5)"),
    ({"sparsity": 0.3, "pattern": "channel"}, "prune(0.3, pattern=channel)"),
    ({"sparsity": 0.7, "pattern": "2:4"}, "prune(0.5, pattern=2:4)"),
    ({"fusion": "fuse"}, "fuse"),
    ({"fusion": "torchscript", "precision": "int8-static"}, "int8-static + torchscript"),
    ({"fusion": "fuse", "precision": "int8-static", "sparsity": 0.5}, "prune(0.5) + fuse + int8-static"),
    ({"fusion": "compile"}, "compile"),
    ({"runtime": "onnxruntime"}, "to-onnx"),
    ({"runtime": "onnxruntime", "precision": "int8-static", "sparsity": 0.5}, "prune(0.5) + to-onnx + int8-static"),
])
def test_controls_compose_the_pipeline(changes, spec):
    assert PanelState(**changes).spec == spec
    assert wb.Pipeline.parse(spec).spec == spec


@pytest.mark.parametrize("changes", [{"precision": "int4"}, {"sparsity": 0.95}, {"sparsity": -0.1},
                                     {"pattern": "block"}, {"fusion": "tensorrt"}, {"runtime": "coreml"}])
def test_bad_control_values(model, changes):
    with pytest.raises(wb.ParameterError):
        model.set(**changes)
    assert model.shown is not None  # still usable


def test_each_change_shows_the_trial_and_its_deltas(model):
    model.set(precision="int8-static")
    assert model.shown["pipeline"] == "int8-static" and model.shown["status"] == "ok"
    table = {r["quantity"]: r for r in model.comparison()}
    latency = table["latency (median ± IQR/2)"]
    assert latency["baseline"] == model.baseline["latency_ms_p50"]
    assert latency["current"] == model.shown["latency_ms_p50"]
    assert " ms ± " in latency["current_text"]
    size = table["size"]
    assert size["ratio"] < 0.5 and size["change"].endswith("x smaller") and size["verdict"] == "better"
    assert size["current_text"].endswith(" KB")  # int8 is much smaller, said in words and units
    assert table["accuracy"]["change"] in ("unchanged",) or table["accuracy"]["change"].endswith(" points")
    model.set(sparsity=0.5)
    assert model.shown["pipeline"] == "prune(0.5) + int8-static"
    assert model.shown["sparsity"] == pytest.approx(0.5, abs=0.02)
    spec = model.chart().to_dict()
    roles = {r["pipeline"]: r["role"] for r in spec["datasets"][spec["layer"][1]["data"]["name"]]}
    assert roles["prune(0.5) + int8-static"] == "current" and roles["baseline"] == "baseline"
    assert {"int8-static", "prune(0.5) + int8-static"} <= set(roles)


def test_what_the_framework_does_not_offer_says_why(model):
    options = availability("torch")
    assert options["precision"]["int8-static"] == ""
    assert options["fusion"]["xla"] == "xla: for keras models, not torch"
    assert options["runtime"]["tflite"] == "tflite: for keras, tflite models, not torch"
    assert options["runtime"]["onnxruntime"] != "" or "to-onnx" in wb.recipes.RECIPES
    with pytest.raises(wb.UnsupportedError, match="xla"):
        model.set(fusion="xla")


def test_a_failing_trial_shows_its_error_in_place_and_the_panel_stays_usable(mlp):
    model_, task = mlp
    panel = TradeoffModel(wb.Study(model_, task, timing=FAST, measure_memory=False), background=False)
    panel.set(fusion="fuse")  # the MLP has no BatchNorm to fuse
    assert panel.shown["status"] == "unsupported" and "no BatchNorm" in panel.error
    panel.set(fusion="none", precision="int8-dynamic")
    assert panel.error is None and panel.shown["pipeline"] == "int8-dynamic"


def test_a_change_queued_behind_a_running_trial_is_dropped_when_superseded(panel_study):
    model = TradeoffModel(panel_study, background=True)
    model.set(precision="qat", sparsity=0.4)
    model.set(precision="int8-static", sparsity=0.4)
    model.set(precision="bf16", sparsity=0.4)
    assert model.wait(300)
    assert model.shown["pipeline"] == "prune(0.4) + bf16"
    assert len(model.superseded) >= 1 and "prune(0.4) + bf16" not in model.superseded


def test_cached_toggles_do_not_measure_again(model, panel_study):
    model.set(precision="int8-dynamic")
    first = model.shown
    model.set(precision="fp32")
    model.set(precision="int8-dynamic")
    assert model.shown is first or model.shown == first


def test_background_trials_and_superseding(panel_study):
    model = TradeoffModel(panel_study, background=True)
    seen = []
    model.on_change(lambda: seen.append((model.running, model.shown and model.shown["pipeline"])))
    model.set(precision="qat", sparsity=0.2)        # slow: fine-tunes
    assert model.shown["pipeline"] != "prune(0.2) + qat"  # the page did not wait for it
    deadline = time.monotonic() + 30
    while model.running != "prune(0.2) + qat" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert model.running == "prune(0.2) + qat"
    model.set(precision="int8-dynamic", sparsity=0.2)  # supersedes the running one
    assert model.wait(300)
    assert model.shown["pipeline"] == "prune(0.2) + int8-dynamic"
    assert "prune(0.2) + qat" in model.superseded
    assert panel_study.is_measured("prune(0.2) + qat")  # its row is kept for later
    assert any(running == "prune(0.2) + qat" for running, _ in seen)  # progress was shown


def test_pin_and_export(model, tmp_path):
    model.set(precision="int8-dynamic")
    model.pin()
    model.set(precision="fp32", fusion="fuse")
    assert model.pinned == ["int8-dynamic"]
    spec = model.chart().to_dict()
    roles = {r["pipeline"]: r["role"] for r in spec["datasets"][spec["layer"][1]["data"]["name"]]}
    assert roles["int8-dynamic"] == "pinned" and roles["fuse"] == "current"
    csv = model.export_csv(tmp_path / "r.csv")
    assert "int8-dynamic" in csv.read_text()
    blob = model.export_model(tmp_path / "m.pt")
    import io

    import torch
    state = torch.load(io.BytesIO(blob.read_bytes()), weights_only=True)
    assert any("weight" in k for k in state)
    model.unpin("int8-dynamic")
    assert model.pinned == []


def test_ipywidgets_panel_over_the_model(panel_study, tmp_path):
    from workbench.widgets import DevicePanel, TradeoffPanel

    panel = TradeoffPanel(panel_study, export_dir=tmp_path, background=False)
    assert "xla" not in panel.fusion.options and "int8-static" in panel.precision.options
    assert "xla" in panel.unavailable.value
    panel.precision.value = "int8-dynamic"
    assert panel.model.shown["pipeline"] == "int8-dynamic"
    assert "int8-dynamic" in panel.status.value and "original" in panel.numbers.value
    # every change in words, coloured by which way it went: the int8 file is smaller (green)
    assert re.search(r"color:#1a7f37'>\d\.\d+x smaller<", panel.numbers.value), panel.numbers.value
    assert re.search(r"color:#(1a7f37'>\d\.\d+x faster|b3261e'>\d\.\d+x slower|777;font-style:italic'>within "
                     r"noise)", panel.numbers.value), panel.numbers.value
    quiet = TradeoffPanel(panel_study, background=False, help=False)  # the dashboard explains the controls above
    assert panel.help in panel.children and quiet.help not in quiet.children
    panel.sparsity.value = 0.5
    assert panel.model.shown["pipeline"] == "prune(0.5) + int8-dynamic"
    assert panel.chart.chart.to_dict()["layer"][1]["mark"]["type"] == "point"
    assert type(panel.chart)._is_offline  # the chart's JavaScript comes from vl-convert, not a CDN
    assert "cdn.jsdelivr" not in panel.chart._esm
    panel.pin_button.click()
    assert "prune(0.5) + int8-dynamic" in panel.pins.value
    panel.csv_button.click()
    assert "download results.csv" in panel.downloads.value and (tmp_path / "results.csv").is_file()
    panel.model_button.click()
    assert "base64," in panel.downloads.value
    device = DevicePanel()
    assert "fp32 GEMM" in device.table.value and "int8 engine" in device.table.value


def test_a_cached_toggle_does_not_wait_for_a_running_trial(panel_study):
    model = TradeoffModel(panel_study, background=True)
    model.set(precision="int8-dynamic")
    assert model.wait(120)
    model.set(precision="qat", sparsity=0.6)  # a slow trial starts in the background
    deadline = time.monotonic() + 30
    while model.running is None and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.perf_counter()
    model.set(precision="int8-dynamic", sparsity=0.0)  # measured before: shown at once
    assert time.perf_counter() - started < 0.5
    assert model.shown["pipeline"] == "int8-dynamic"
    assert model.wait(300)


@pytest.mark.parametrize("changes, spec", [
    ({"precision": "int8-static"}, "int8-static"),
    ({"precision": "int8-dynamic", "runtime": "tflite"}, "int8-dynamic"),
    ({"precision": "fp16"}, "fp16"),
    ({"runtime": "tflite"}, "tflite"),
    ({"precision": "qat", "runtime": "tflite", "sparsity": 0.5}, "prune(0.5) + qat + tflite"),
    ({"fusion": "xla"}, "xla"),
])
def test_keras_choices_become_tflite_and_xla_recipes(changes, spec):
    assert PanelState(framework="keras", **changes).spec == spec


def test_a_keras_model_in_the_panel_offers_tflite_and_xla_and_says_what_is_torch_only():
    pytest.importorskip("tensorflow")
    model, task = wb.zoo.load("digits-keras")
    panel = TradeoffModel(wb.Study(model, task, timing=FAST), background=False)
    assert panel.options["fusion"]["xla"] == "" and panel.options["runtime"]["tflite"] == ""
    assert "for torch models" in panel.options["fusion"]["compile"]
    assert "torch only" in panel.options["pattern"]["channel"]
    panel.set(precision="int8-static")
    assert panel.shown["pipeline"] == "int8-static" and panel.shown["runtime"] == "litert"
    assert panel.shown["status"] == "ok" and panel.shown["metric_delta"] >= -0.01
    panel.set(precision="bf16")  # Keras' mixed_bfloat16 policy: measured where the CPU has bf16, else why not
    if wb.device(measure=False).is_accelerated("bf16"):
        assert panel.shown["status"] == "ok" and panel.shown["precision"] == "bf16"
    else:
        assert panel.shown["status"] == "unsupported" and "avx512_bf16" in panel.shown["error"]


def test_keep_in_fp32_composes_exclude_and_resets_with_another_model():
    state = PanelState(precision="int8-static", keep_fp32=("0", "12"))
    assert state.spec == "int8-static(exclude=['0', '12'])"
    assert PanelState(precision="fp16", keep_fp32=("0",)).spec == "fp16"  # no exclude= to give


def test_the_layers_view_explains_the_shown_trial_and_its_boxes_measure_exclude(model):
    model.set(precision="int8-dynamic", runtime="onnxruntime")
    assert model.layer_choices() == ["0", "3", "7", "12"]
    view = model.layers()
    assert view.pipeline == "to-onnx + int8-dynamic" and "int8" in view.explanation
    model.keep(["3"])
    assert model.shown["pipeline"] == "to-onnx + int8-dynamic(exclude='3')"
    assert model.shown["status"] == "ok" and "kept in fp32 by exclude=: 3" in model.shown["notes"]
    model.set(precision="int8-static")
    assert model.state.keep_fp32 == () and model.shown["pipeline"] == "to-onnx + int8-static"


def test_the_panel_shows_keep_boxes_and_the_explanation(panel_study, tmp_path):
    from workbench.widgets import TradeoffPanel

    panel = TradeoffPanel(panel_study, export_dir=tmp_path, background=False)
    panel.precision.value = "int8-dynamic"
    assert [box.description for box in panel.keep_boxes.children] == ["12"]
    panel._explain()
    assert "stayed fp32" in panel.layers_text.value
    panel.keep_boxes.children[0].value = True
    assert panel.model.shown["pipeline"] == "int8-dynamic(exclude='12')"
    assert panel.model.shown["precision"] == "fp32"


def test_find_it_searches_in_the_background_and_lands_trials_on_the_chart(cnn):
    model_, task = cnn
    _, test = wb.zoo.load("digits-cnn", split="test")
    study = wb.Study(model_, task, timing=FAST, measure_memory=False)
    panel = TradeoffModel(study, background=True, holdout=test)
    seen = []
    panel.on_change(lambda: seen.append(panel.search_status()))
    with pytest.raises(wb.ParameterError, match="max_drop"):
        panel.search(max_drop=-1)                      # refused at once, nothing started
    assert not panel.searching
    panel.search(max_drop=1.0, budget_s=25)
    assert panel.searching
    with pytest.raises(wb.WorkbenchError, match="already running"):
        panel.search(max_drop=1.0, budget_s=25)
    panel.set(precision="int8-dynamic")                # the panel stays usable meanwhile
    assert panel.wait_search(timeout=240) and panel.search_error is None, panel.search_error
    found = panel.found
    running = [s for s in seen if s.startswith("searching:")]
    assert len(running) >= 3                           # progress while it ran: trials, best so far, time left
    assert "s left" in running[-1] and "trial(s)" in running[-1]
    assert found.stopped != "running" and panel.search_status() == found.explanation
    charted = set(panel.frame()["pipeline"])           # every trial it measured is on the panel's chart
    assert set(found.frame["pipeline"]) <= charted
    if found.met:
        assert found.recommended in panel.pinned and found.check_of(found.recommended).drop <= 1.0


def test_the_panel_shows_the_find_control_and_its_answer(panel_study):
    from workbench.widgets import TradeoffPanel

    _, test = wb.zoo.load("digits-cnn", split="test")
    panel = TradeoffPanel(panel_study, background=False, holdout=test)
    assert "find the fastest" in panel.finder.get_title(0)
    panel.find_drop.value, panel.find_budget.value = 1.0, 30
    panel.find_budget.options = [("10 s", 10)] + list(panel.find_budget.options)
    panel.find_budget.value = 10
    panel._find()
    assert panel.model.wait_search(timeout=240)
    panel.refresh()
    assert panel.find_status.value.startswith("<p>Searched") and not panel.find_button.disabled
    assert "<svg" in panel.find_chart.value or "vega" in panel.find_chart.value


def test_the_device_panel_reports_the_memory_of_this_session_and_its_trial_worker(cnn, monkeypatch):
    import psutil

    from workbench.widgets import DevicePanel, panel

    def gib(label: str, text: str) -> float:
        return float(re.search(label + r" ([0-9.]+) GiB", text).group(1))

    device = DevicePanel()
    model, task = cnn
    with wb.Study(model, task, timing=FAST, measure_memory=False, executor=wb.WarmExecutor()) as study:
        study.trial("baseline")  # the worker has imported torch and holds the model
        device.refresh_memory()
        text = device.memory.value
        worker = psutil.Process(study.executor.pid).memory_info().rss / 2**30
        assert gib("trial worker", text) >= 0.9 * worker > 0.05, text
        assert gib("kernel", text) > 0.05 and "usable" in text
    calls = []
    monkeypatch.setattr(panel, "_session_memory_html", lambda: calls.append(1) or f"refresh {len(calls)}")
    timed = DevicePanel(refresh_s=0.1)  # a notebook's: on a timer
    deadline = time.monotonic() + 10
    while timed.memory.value == "refresh 1" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert timed.memory.value.startswith("refresh ") and timed.memory.value != "refresh 1", "the timer never ran"
    for shown in (device, timed):
        shown.close()
