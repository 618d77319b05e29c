"""Studies end to end on real zoo models: schema, baseline, Pareto, failures as rows, save/load."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import workbench as wb
from workbench.errors import DataError, ModelError, SpecError, UnknownNameError, WorkbenchError
from workbench.recipes import Recipe, register_handler, register_recipe

from .conftest import FAST, STANDARD_PIPELINES


@register_recipe
@dataclass(frozen=True)
class _Explode(Recipe):
    name = "test-explode"
    kind = "graph"
    formats = ("torch",)


@register_handler(_Explode, "torch")
def _explode(recipe, handle, context):
    raise RuntimeError("kaboom in the recipe")


@register_recipe
@dataclass(frozen=True)
class _Poison(Recipe):
    name = "test-nan"
    kind = "weights"
    formats = ("torch",)


@register_handler(_Poison, "torch")
def _poison(recipe, handle, context):
    import copy

    module = copy.deepcopy(handle.payload)
    with torch.no_grad():
        next(module.parameters()).fill_(float("nan"))
    return handle.evolve(payload=module)


@register_recipe
@dataclass(frozen=True)
class _KerasOnly(Recipe):
    name = "test-keras-only"
    kind = "graph"
    formats = ("keras",)


def test_every_schema_column_is_there_and_filled(cnn_results):
    frame = cnn_results.frame
    assert list(frame.columns[:len(wb.COLUMNS)]) == list(wb.COLUMNS)
    assert list(frame["pipeline"]) == ["baseline"] + STANDARD_PIPELINES
    assert (frame["status"] == "ok").all(), frame[["pipeline", "error"]]
    nullable_with_reason = {"error", "notes"}
    for column in wb.COLUMNS:
        if column in nullable_with_reason or column == "engine":
            continue
        assert frame[column].notna().all(), column
    baseline = frame.iloc[0]
    assert baseline["is_baseline"] and baseline["metric_delta"] == 0 and baseline["fidelity"] == 1.0
    assert baseline["metric"] >= 0.97
    assert set(frame["latency_n"]) and (frame["latency_n"] >= FAST.min_runs).all()
    assert (frame["latency_ms_p50"] <= frame["latency_ms_p90"]).all()
    assert frame["trial_id"].is_unique


def test_numbers_of_each_recipe(cnn_results):
    rows = cnn_results.frame.set_index("pipeline")
    assert rows.loc["prune(0.5)", "sparsity"] == pytest.approx(0.5, abs=0.01)
    assert rows.loc["prune(0.5)", "size_gzip_bytes"] < 0.75 * rows.loc["baseline", "size_gzip_bytes"]
    assert rows.loc["fold-bn", "fidelity"] == 1.0 and rows.loc["fold-bn", "fidelity_max_abs"] < 1e-4
    assert rows.loc["fold-bn", "fused"] and not rows.loc["baseline", "fused"]
    assert rows.loc["fold-bn", "params"] < rows.loc["baseline", "params"]  # BN parameters are gone
    assert rows.loc["int8-dynamic", "precision"] == "int8"
    assert rows.loc["int8-dynamic", "fidelity"] >= 0.98
    assert "Conv2d stay fp32" in rows.loc["int8-dynamic", "notes"]
    assert rows.loc["int8-dynamic", "flops"] == rows.loc["baseline", "flops"]
    assert rows.loc["baseline", "flops"] > 1e6 and 0 < rows.loc["baseline", "pct_of_peak"] < 150
    assert rows.loc["baseline", "peak_mem_bytes"] > 0


def test_pareto_front(cnn_results):
    front = cnn_results.pareto()
    assert len(front) >= 1 and front["pareto"].all()
    frame = cnn_results.frame
    assert frame["pareto"].sum() == len(front)
    # nothing off the front beats a front row on all three objectives
    for _, row in frame[~frame["pareto"]].iterrows():
        assert ((front["metric"] >= row["metric"]) & (front["latency_ms_p50"] <= row["latency_ms_p50"])
                & (front["size_bytes"] <= row["size_bytes"])).any()


def test_save_and_load_round_trip(cnn_results, tmp_path):
    for name in ("r.csv", "r.parquet"):
        cnn_results.save(tmp_path / name)
        loaded = wb.Results.load(tmp_path / name)
        pd.testing.assert_series_equal(loaded.frame["latency_ms_p50"], cnn_results.frame["latency_ms_p50"])
        assert list(loaded.frame["pipeline"]) == list(cnn_results.frame["pipeline"])
        assert list(loaded.frame["pareto"]) == list(cnn_results.frame["pareto"])


def test_saving_to_bad_places_is_a_clear_error(cnn_results, tmp_path):
    with pytest.raises(WorkbenchError, match=r"\.csv or \.parquet"):
        cnn_results.save(tmp_path / "results.xlsx")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WorkbenchError, match="cannot write results"):
        cnn_results.save(blocker / "results.csv")
    with pytest.raises(DataError, match="no results file"):
        wb.Results.load(tmp_path / "missing.csv")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot read results"):
        wb.Results.load(tmp_path / "junk.parquet")


def test_failures_become_rows_and_the_study_goes_on(cnn):
    model, task = cnn
    study = wb.Study(model, task, timing=FAST)
    results = study.run(["test-explode", "test-nan", "test-keras-only", "prune(0.5)", "fold-bn + test-explode"],
                        progress=False)
    rows = results.frame.set_index("pipeline")
    assert rows.loc["test-explode", "status"] == "failed"
    assert "apply: RuntimeError: kaboom in the recipe" in rows.loc["test-explode", "error"]
    assert rows.loc["test-nan", "status"] == "failed" and "NaN" in rows.loc["test-nan", "error"]
    assert rows.loc["test-keras-only", "status"] == "unsupported"
    assert "not available for torch models" in rows.loc["test-keras-only", "error"]
    assert rows.loc["fold-bn + test-explode", "status"] == "failed"
    assert rows.loc["prune(0.5)", "status"] == "ok"  # the sweep went on past the failures
    assert not results.frame[results.frame["status"] != "ok"]["pareto"].any()


def test_unsupported_recipe_for_the_model_is_a_row(mlp):
    model, task = mlp
    results = wb.Study(model, task, timing=FAST, measure_memory=False).run(["fold-bn"], progress=False)
    row = results.row("fold-bn")
    assert row["status"] == "unsupported" and "no BatchNorm" in row["error"]


def test_user_mistakes_raise_before_anything_runs(cnn_study):
    measured_before = set(cnn_study.results().frame["pipeline"])
    with pytest.raises(UnknownNameError):
        cnn_study.run(["prune(0.5)", "int4-magic"], progress=False)
    with pytest.raises(SpecError):
        cnn_study.run("prune(0.5", progress=False)
    with pytest.raises(wb.ParameterError, match=r"\[0.0, 1.0\)"):
        cnn_study.run(["prune(1.5)"], progress=False)
    assert set(cnn_study.results().frame["pipeline"]) == measured_before


def test_a_model_whose_forward_raises():
    class Broken(nn.Module):
        def forward(self, x):
            raise ValueError("shapes do not line up")

    task = wb.tasks.Classification(np.zeros((4, 3), np.float32), np.zeros(4, int))
    with pytest.raises(ModelError, match="raised ValueError on the task's inputs .* shapes do not line up"):
        wb.Study(Broken(), task)


def test_a_model_with_nan_outputs():
    net = nn.Linear(3, 2)
    with torch.no_grad():
        net.weight.fill_(float("nan"))
    task = wb.tasks.Classification(np.ones((4, 3), np.float32), np.zeros(4, int))
    with pytest.raises(ModelError, match="NaN/Inf"):
        wb.Study(net, task)


def test_bad_study_arguments():
    task = wb.tasks.Classification(np.ones((4, 3), np.float32), np.zeros(4, int))
    with pytest.raises(ModelError, match="torch.nn.Module"):
        wb.Study(object(), task)
    with pytest.raises(DataError, match="workbench Task"):
        wb.Study(nn.Linear(3, 2), (np.ones((4, 3)), np.zeros(4)))
    with pytest.raises(wb.ParameterError, match="batch_size"):
        wb.Study(nn.Linear(3, 2), task, batch_size=0)
    with pytest.raises(wb.ParameterError, match="threads"):
        wb.Study(nn.Linear(3, 2), task, threads=-1)
    with pytest.raises(DataError, match="labels go up to"):
        wb.Study(nn.Linear(3, 1), wb.tasks.Classification(np.ones((4, 3), np.float32), np.array([0, 1, 2, 3])))


def test_a_users_own_model_and_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    results = wb.Study(net, wb.tasks.Classification(x, y), timing=FAST, batch_size=4).run(
        "int8-dynamic; prune(0.3) + int8-dynamic", progress=False)
    assert (results.frame["status"] == "ok").all()
    assert results.frame["batch_size"].eq(4).all()
    assert results.row("prune(0.3) + int8-dynamic")["sparsity"] == pytest.approx(0.3, abs=0.02)


def test_trials_are_measured_once_per_study(cnn_study):
    first = cnn_study.trial("fold-bn")
    second = cnn_study.trial("fold-bn")
    assert first["created_at"] == second["created_at"] and first["latency_ms_p50"] == second["latency_ms_p50"]
    assert cnn_study.handle("fold-bn") is cnn_study.handle("fold-bn")
