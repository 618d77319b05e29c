"""The core's contracts: one handler per declared format, one name per technique (old names as aliases),
lineage kept by `Recipe.apply`, trials named by everything that decides their answer, in any process, and
a Trial / TrialRecord that every executor and both studies share."""

import dataclasses
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb
from workbench.backends import FORMATS, load_backend
from workbench.errors import IncompatibleRecipesError, WorkbenchError
from workbench.executors import InlineExecutor
from workbench.recipes import HANDLERS, RECIPES, TRAINING_RECIPES, Pipeline, compose, register_handler
from workbench.recipes.base import handler_key
from workbench.store import ResultsStore

from .conftest import FAST, kill_after

ROOT = Path(__file__).resolve().parent.parent


class CountingExecutor(InlineExecutor):
    """Inline, and remembers which pipelines it was asked to measure."""

    def __init__(self):
        self.measured: list[str] = []

    def run(self, trials):
        for trial in trials:
            self.measured.append(trial.pipeline.spec)
            yield trial.run()


# -- one registry, one name per technique ------------------------------------------------------------

def test_every_format_a_recipe_declares_has_a_handler():
    for fmt in ("torch", "onnx", "keras", "openvino"):
        try:
            load_backend(fmt)
        except wb.MissingDependencyError:
            pytest.fail(f"the {fmt} backend should be installed in the test environment")
    missing = []
    for registry in (RECIPES, TRAINING_RECIPES):
        for name in registry:
            cls = registry.get(name)
            if not cls.__module__.startswith("workbench."):
                continue  # test-only recipes
            assert cls.formats and set(cls.formats) <= set(FORMATS), (name, cls.formats)
            missing += [f"{name}@{fmt}" for fmt in cls.formats if handler_key(cls, fmt) not in HANDLERS]
    assert not missing, f"declared formats without a handler: {missing}"


def test_registering_a_handler_twice_is_an_error():
    load_backend("torch")
    with pytest.raises(WorkbenchError, match="already registered"):
        register_handler(RECIPES.get("int8-dynamic"), "torch")(lambda recipe, handle, context: handle)
    with pytest.raises(ValueError, match="cannot register a handler for"):
        register_handler(RECIPES.get("fold-bn"), "keras")


@pytest.mark.parametrize("old, new", [
    ("to-onnx + ort-int8-dynamic", "to-onnx + int8-dynamic"),
    ("to-onnx + ort-int8-dynamic(per_channel=false)", "to-onnx + int8-dynamic(per_channel=false)"),
    ("to-onnx + ort-int8-static", "to-onnx + int8-static(calibration=128)"),
    ("tflite-dynamic", "int8-dynamic"),
    ("tflite-fp16", "fp16"),
    ("tflite-int8", "int8-static(calibration=200)"),
    ("tflite-int8(io=int8, xnnpack=false)", "int8-static(calibration=200, io=int8) + tflite(xnnpack=false)"),
])
def test_old_names_are_aliases_that_say_what_they_became(old, new):
    with pytest.warns(FutureWarning, match="is now"):
        assert Pipeline.parse(old).spec == new
    with pytest.raises(IncompatibleRecipesError, match="put to-onnx before it"):
        Pipeline.parse("ort-int8-static")


def test_a_parameter_only_another_format_understands_is_refused_by_name(cnn_study):
    row = cnn_study.trial("int8-dynamic(reduce_range=true)")
    assert row["status"] == "unsupported" and "reduce_range applies to onnx" in row["error"]
    with pytest.raises(IncompatibleRecipesError, match="engine applies to torch models only"):  # known from the spec
        Pipeline.parse("to-onnx + int8-static(engine=x86)")
    row = cnn_study.trial("torchscript + int8-dynamic")
    assert row["status"] == "unsupported" and "not available for torchscript models" in row["error"]


def test_one_name_runs_where_the_model_is(cnn_study):
    """int8-dynamic on the torch model is torch's; after to-onnx it is ONNX Runtime's."""
    torch_row, ort_row = cnn_study.trial("int8-dynamic"), cnn_study.trial("to-onnx + int8-dynamic")
    assert torch_row["runtime"] == "eager" and ort_row["runtime"] == "onnxruntime"
    assert ort_row["precision"] == "int8" and "ONNX Runtime dynamic int8" in ort_row["notes"]
    assert ort_row["fidelity"] >= 0.98 and ort_row["size_bytes"] < 0.5 * cnn_study.trial("to-onnx")["size_bytes"]


def test_lineage_is_the_recipes_applied_and_handlers_never_write_it(cnn_study):
    handle = cnn_study.handle("fold-bn + to-onnx + int8-static")
    assert [type(r).__name__ for r in handle.lineage] == ["FoldBatchNorm", "ToOnnx", "Int8Static"]
    assert handle.spec == "fold-bn + to-onnx + int8-static" and handle.format == "onnx"
    assert handle.source.format == "torch" and cnn_study.baseline.lineage == ()
    backends = ROOT / "workbench" / "backends"
    writers = [p.name for p in backends.rglob("*.py") if re.search(r"lineage\s*=(?!=)", p.read_text())]
    assert writers == [], f"handlers writing lineage: {writers}"


def test_compose_orders_recipes_by_kind_and_quantizes_after_a_runtime_that_has_its_own_tools():
    assert compose(["int8-static", "prune(0.5)", "fuse"]).spec == "prune(0.5) + fuse + int8-static"
    assert compose(["int8-static", "torchscript"]).spec == "int8-static + torchscript"
    assert compose(["int8-dynamic", "to-onnx", "prune(0.3)"]).spec == "prune(0.3) + to-onnx + int8-dynamic"
    assert compose(["to-onnx", "fp16"]).spec == "fp16 + to-onnx"  # ONNX models have no fp16 handler
    assert compose(["qat", "to-onnx"]).spec == "qat + to-onnx"


# -- the trial's identity ---------------------------------------------------------------------------

class _OtherCode(nn.Sequential):
    """The same layers and weights as the digits CNN, another forward."""

    def forward(self, x):
        return super().forward(x) * 2.0


def test_a_trial_id_changes_with_everything_that_decides_its_answer(cnn, tmp_path, monkeypatch):
    model, task = cnn
    fold = Pipeline.parse("fold-bn")

    def key(pipeline=fold, **changes):
        kwargs = dict(model=model, task=task, timing=FAST, measure_memory=False)
        kwargs.update(changes)
        return wb.Study(**kwargs).bench.trial_id(pipeline)

    base = key()
    assert key() == base
    other_code = _OtherCode(*model.payload.children())
    assert key(model=other_code) != base                                            # the model's code
    x_train, y_train = task.train
    retrained = wb.tasks.Classification(task.inputs, task.labels, train=(x_train, (y_train + 1) % 10))
    assert key(task=retrained) != base                                              # training data
    assert key(Pipeline.parse("prune(0.5)")) != key(Pipeline.parse("prune(0.5, finetune=0)"))  # every parameter
    assert key(Pipeline.parse("prune(0.5)")) == key(Pipeline.parse("prune(sparsity=0.5)"))     # same recipe
    moved = dataclasses.replace(wb.device(), versions={**wb.device().versions, "torch": "9.9"})
    assert key(device_profile=moved) != base                                        # a library version
    monkeypatch.setattr("workbench.trial.code_digest", lambda: "edited")
    assert key() != base                                                            # the workbench's code


def _notebook_class(body: str) -> type:
    """A class defined the way a notebook cell defines one: no source file for inspect to find."""
    namespace: dict = {"nn": nn, "__name__": "__main__"}
    exec(compile(textwrap.dedent(body), "<cell>", "exec"), namespace)
    return namespace["Net"]


def test_code_from_a_notebook_cell_and_plain_settings_count_in_a_model_fingerprint():
    doubled = _notebook_class("""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 2)
            def forward(self, x):
                return self.fc(x) * 2
    """)
    tripled = _notebook_class("""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 2)
            def forward(self, x):
                return self.fc(x) * 3
    """)
    torch.manual_seed(0)
    a = doubled()
    b = tripled()
    b.load_state_dict(a.state_dict())
    example = np.zeros((1, 4), np.float32)
    assert wb.wrap(a, example).fingerprint() != wb.wrap(b, example).fingerprint()   # forward's code
    assert wb.wrap(a, example).fingerprint() == wb.wrap(a, example).fingerprint()
    a.scale = 2.0
    before = wb.wrap(a, example).fingerprint()
    a.scale = 3.0
    assert wb.wrap(a, example).fingerprint() != before                                # a plain setting


def test_sts_gold_scores_count_in_full(tmp_path):
    """Above 1000 values NumPy abbreviates str(array): a changed score in the middle must still count."""
    lines = [f"g\tf\t2012\t{i}\t{(i % 50) / 10:.1f}\tsentence {i} one\tsentence {i} two" for i in range(1200)]
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("\n".join(lines) + "\n")
    lines[600] = lines[600].replace("\t0.0\t", "\t4.5\t")
    b.write_text("\n".join(lines) + "\n")
    assert wb.text.STS(a).fingerprint() != wb.text.STS(b).fingerprint()
    assert wb.text.STS(a).fingerprint() == wb.text.STS(a).fingerprint()


IDS_SCRIPT = textwrap.dedent("""
    import json, sys, onnx, workbench as wb
    from workbench.recipes import Pipeline
    model, task = wb.zoo.load("digits-cnn")
    out = {"torch": wb.Study(model, task, measure_memory=False).bench.trial_id(Pipeline.parse("int8-dynamic"))}
    keras_model, keras_task = wb.zoo.load("digits-keras")
    out["keras"] = wb.Study(keras_model, keras_task).bench.trial_id(Pipeline.parse("int8-static"))
    unlabelled = wb.tasks.Unlabelled(task.inputs)
    out["onnx"] = wb.Study(onnx.load(sys.argv[1]), unlabelled).bench.trial_id(Pipeline.parse("int8-dynamic"))
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_the_same_trial_has_the_same_id_in_two_fresh_processes(cnn_study, tmp_path):
    path = tmp_path / "cnn.onnx"
    path.write_bytes(cnn_study.handle("to-onnx").serialize())
    runs = [subprocess.run([sys.executable, "-c", IDS_SCRIPT, str(path)], capture_output=True, text=True,
                           cwd=ROOT, timeout=600) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    first, second = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert first == second and set(first) == {"torch", "keras", "onnx"}
    assert len(set(first.values())) == 3


# -- an ONNX model as the baseline ----------------------------------------------------------------

@pytest.mark.slow
def test_an_onnx_model_is_a_baseline_like_any_other(cnn, cnn_study):
    import onnx

    model, task = cnn
    proto = onnx.load_from_string(cnn_study.handle("to-onnx").serialize())
    results = wb.Study(proto, wb.tasks.Unlabelled(task.inputs), timing=FAST, executor="process").run(
        ["int8-dynamic", "int8-static", "prune(0.5)"], progress=False)  # the ONNX handle travels to workers
    rows = results.frame.set_index("pipeline")
    assert rows.loc["baseline", "framework"] == "onnx" and rows.loc["baseline", "runtime"] == "onnxruntime"
    assert rows.loc["int8-dynamic", "status"] == "ok" and rows.loc["int8-dynamic", "fidelity"] >= 0.98
    assert rows.loc["int8-static", "status"] == "ok"
    assert rows.loc["prune(0.5)", "status"] == "unsupported" and "onnx models" in rows.loc["prune(0.5)", "error"]


# -- Trial and TrialRecord --------------------------------------------------------------------------

def test_a_trial_runs_anywhere_and_its_record_is_the_row(cnn_study):
    import cloudpickle

    from workbench.trial import Trial, TrialRecord

    trial = Trial.of(cnn_study.bench, Pipeline.parse("fold-bn"))
    record = cloudpickle.loads(cloudpickle.dumps(trial)).run()   # what a worker does
    assert isinstance(record, TrialRecord) and record.trial_id == trial.trial_id and record.phase == "infer"
    assert record.status == "ok" and record["fused"]
    with pytest.raises(TypeError):
        record.row["status"] = "failed"  # immutable
    assert TrialRecord.from_json(record.to_json()) == record
    import pickle

    assert pickle.loads(pickle.dumps(record)) == record  # what the process executor sends back


@pytest.mark.slow
def test_a_keras_study_run_again_on_its_store_measures_nothing(tmp_path):
    pytest.importorskip("tensorflow")
    model, task = wb.zoo.load("digits-keras")
    store = tmp_path / "keras.db"
    specs = ["int8-static", "int8-dynamic", "tflite"]
    wb.Study(model, task, timing=FAST, store=store).run(specs, progress=False)
    import keras

    def build():  # the same architecture twice: Keras names the second one's layers dense_2, dense_3
        return keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dense(2)])

    first, second = build(), build()
    second.set_weights(first.get_weights())
    assert [x.name for x in first.layers] != [x.name for x in second.layers]
    assert wb.wrap(first).fingerprint() == wb.wrap(second).fingerprint()
    again = CountingExecutor()
    results = wb.Study(model, task, timing=FAST, store=store, executor=again).run(specs, progress=False)
    assert again.measured == [] and (results.frame["status"] == "ok").all()


TRAIN_SCRIPT = textwrap.dedent("""
    import sys, workbench as wb
    model, task = wb.zoo.load("digits-cnn32")
    study = wb.TrainingStudy(model, task, batch_size=64, steps=6, warmup_steps=1, store=sys.argv[1])
    for spec in sys.argv[2].split(";"):
        print("done", study.trial(spec)["pipeline"], flush=True)
""")


@pytest.mark.slow
def test_a_killed_training_sweep_resumes_from_its_store(tmp_path):
    store_path = tmp_path / "train.db"
    sweep = ["baseline", "channels-last", "grad-accum(2)", "amp", "checkpoint(2)"]
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, str(store_path), ";".join(sweep)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    finished = kill_after(proc, 3)
    store = ResultsStore(store_path)
    stored = {r["pipeline"] for r in store.rows()}
    assert store.check() == "ok" and stored >= set(finished) and len(stored) < len(sweep)

    model, task = wb.zoo.load("digits-cnn32")
    counting = CountingExecutor()
    study = wb.TrainingStudy(model, task, batch_size=64, steps=6, warmup_steps=1, store=store_path,
                             executor=counting)
    results = study.run(sweep[1:], progress=False)
    assert set(counting.measured) == set(sweep) - stored, "finished training trials were measured again"
    rows = results.frame.set_index("pipeline")
    assert (rows["status"] == "ok").all() and (rows["phase"] == "train").all()
    assert rows["fidelity"].notna().all(), "resumed trials compare with the stored baseline's outputs"
    assert rows.loc["baseline", "fidelity"] == 1.0


@pytest.mark.slow
def test_training_trials_run_on_the_process_executor(tmp_path):
    model, task = wb.zoo.load("digits-cnn32")
    study = wb.TrainingStudy(model, task, batch_size=64, steps=5, warmup_steps=0, executor="process")
    rows = study.run(["amp"], progress=False).frame.set_index("pipeline")
    assert (rows["status"] == "ok").all() and rows.loc["amp", "precision"] == "amp-bf16"
    assert rows.loc["amp", "fidelity"] > 0.5


def test_a_study_closes_what_it_started(cnn):
    model, task = cnn

    class Closing(InlineExecutor):
        closed = False

        def close(self):
            Closing.closed = True

    with wb.Study(model, task, timing=FAST, executor=Closing()) as study:
        study.trial("baseline")
    assert Closing.closed


def test_training_recipes_dispatch_through_handlers_too():
    loop = load_backend("torch").train_loop
    setup = loop.plan(nn.Sequential(nn.Linear(4, 4)), Pipeline.parse("amp + grad-accum(4) + checkpoint(2)",
                                                                      TRAINING_RECIPES))
    assert (setup.amp_dtype, setup.micro_batches, setup.checkpoint_segments) == ("auto", 4, 1)
    assert [r.name for r in setup.lineage] == ["amp", "grad-accum", "checkpoint"]
    with pytest.raises(wb.UnsupportedError, match="nn.Sequential"):
        loop.plan(_NotSequential(), Pipeline.parse("checkpoint", TRAINING_RECIPES))


class _NotSequential(nn.Module):
    def forward(self, x):
        return x


def test_weights_change_the_id_but_not_a_copy(cnn):
    model, task = cnn
    copy = model.evolve(payload=__import__("copy").deepcopy(model.payload))
    assert copy.fingerprint() == model.fingerprint()
    with torch.no_grad():
        next(copy.payload.parameters()).add_(1e-6)
    assert copy.fingerprint() != model.fingerprint()
    assert np.isfinite(copy.predict(task.inputs[:2])).all()
