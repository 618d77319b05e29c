"""Training-time efficiency: every training recipe from the same initial weights on the same batches."""

import pytest
import torch
from torch import nn

import workbench as wb
from workbench.tasks import Classification
from workbench.zoo.digits import build, data_for

STEPS = 8
#: how close each recipe's training loss must be to the baseline's after the same steps (relative)
LOSS_TOLERANCE = {
    "checkpoint(4)": 1e-5,    # the same arithmetic, recomputed
    "channels-last": 1e-3,    # another memory layout: other summation orders
    "compile": 1e-3,          # fused kernels: other summation orders
    "amp": 0.05,              # bf16 matmuls and convolutions
    "grad-accum(4)": 0.05,    # BatchNorm sees micro-batches of 32 instead of 128
    "ddp(2)": 0.05,           # BatchNorm sees each rank's half of the batch
}


@pytest.fixture(scope="module")
def cnn32_task():
    data = data_for("digits-cnn32")
    return Classification(*data["val"], train=data["train"])


@pytest.fixture(scope="module")
def training_rows(cnn32_task):
    torch.manual_seed(0)
    study = wb.TrainingStudy(build("digits-cnn32"), cnn32_task, batch_size=128, steps=STEPS, warmup_steps=2)
    results = study.run(list(LOSS_TOLERANCE), progress=False)
    return results.frame.set_index("pipeline")


@pytest.mark.slow
@pytest.mark.parametrize("spec", sorted(LOSS_TOLERANCE))
def test_each_recipe_reaches_the_baseline_loss(training_rows, spec):
    row, base = training_rows.loc[spec], training_rows.loc["baseline"]
    assert row["status"] == "ok", row["error"]
    assert row["train_loss"] == pytest.approx(base["train_loss"], rel=LOSS_TOLERANCE[spec])
    assert row["latency_n"] == STEPS and row["latency_ms_p50"] > 0 and row["throughput"] > 0
    assert row["phase"] == "train"


@pytest.mark.slow
def test_checkpointing_cuts_peak_memory_by_30_percent(training_rows):
    base, ckpt = training_rows.loc["baseline"], training_rows.loc["checkpoint(4)"]
    assert ckpt["peak_mem_bytes"] <= 0.7 * base["peak_mem_bytes"]
    assert ckpt["latency_ms_p50"] > 0  # its step-time cost is reported, whatever it is


@pytest.mark.slow
def test_ddp_reports_its_scaling_efficiency(training_rows):
    row = training_rows.loc["ddp(2)"]
    assert row["runtime"] == "ddp" and 0 < row["scaling_efficiency"] < 2
    assert "2 processes" in row["notes"]


@pytest.mark.slow
def test_compile_time_is_the_first_step_not_the_steady_state(training_rows):
    row = training_rows.loc["compile"]
    assert row["runtime"] == "inductor" and row["first_call_ms"] > 3 * row["latency_ms_p50"]


@pytest.mark.slow
def test_training_rows_join_the_inference_frame_and_chart(training_rows, cnn_results):
    both = wb.Results.concat([cnn_results, wb.Results(training_rows.reset_index())])
    assert set(both.frame["phase"].fillna("inference")) == {"inference", "train"}
    spec = wb.charts.training_tradeoff(training_rows.reset_index()).to_dict()
    assert spec["layer"][0]["encoding"]["y"]["field"] == "peak_mem_mb"


def test_what_cannot_work_is_a_row_or_a_clear_error(cnn32_task):
    class NotSequential(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = build("digits-cnn32")

        def forward(self, x):
            return self.body(x)

    study = wb.TrainingStudy(NotSequential(), cnn32_task, batch_size=96, steps=5, warmup_steps=0)
    rows = study.run(["checkpoint", "grad-accum(5)"], progress=False).frame.set_index("pipeline")
    assert rows.loc["checkpoint(4)", "status"] == "unsupported" and "nn.Sequential" in rows.loc["checkpoint(4)", "error"]
    assert rows.loc["grad-accum(5)", "status"] == "unsupported" and "micro-batches" in rows.loc["grad-accum(5)", "error"]
    with pytest.raises(wb.UnknownNameError, match="checkpoint, compile, ddp"):
        study.run(["int8-static"], progress=False)
    with pytest.raises(wb.ParameterError):
        study.run(["ddp(0)"], progress=False)
    with pytest.raises(wb.IncompatibleRecipesError, match="twice"):
        study.run(["amp + amp"], progress=False)
    with pytest.raises(wb.DataError, match="training data"):
        wb.TrainingStudy(build("digits-cnn32"), wb.tasks.Unlabelled(cnn32_task.inputs))
    with pytest.raises(wb.DataError, match="larger than"):
        wb.TrainingStudy(build("digits-cnn32"), cnn32_task, batch_size=10**6)
    with pytest.raises(wb.ParameterError, match="steps"):
        wb.TrainingStudy(build("digits-cnn32"), cnn32_task, steps=0)


@pytest.mark.slow
def test_training_panel_toggles_recipes(cnn32_task):
    from workbench.widgets import TrainingModel, TrainingPanel

    torch.manual_seed(0)
    study = wb.TrainingStudy(build("digits-cnn32"), cnn32_task, batch_size=64, steps=5, warmup_steps=1)
    model = TrainingModel(study, background=False)
    model.set(checkpoint=True)
    assert model.shown["pipeline"] == "checkpoint(4)"
    table = {r["quantity"]: r for r in model.comparison()}
    memory = table["peak memory"]
    assert memory["ratio"] < 0.8 and memory["change"].endswith("x less") and memory["verdict"] == "better"
    model.set(grad_accum=2)
    assert model.shown["pipeline"] == "checkpoint(4) + grad-accum(2)"
    spec = model.chart().to_dict()
    ringed = spec["layer"][2]
    assert ringed["mark"]["type"] == "point" and ringed["transform"][0]["filter"]
    panel = TrainingPanel(study, background=False)
    panel.boxes["amp"].value = True
    assert panel.model.shown["pipeline"] == "amp" and "amp" in panel.status.value
    assert "peak memory" in panel.numbers.value
