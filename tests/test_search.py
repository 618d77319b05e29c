"""The search (wb.search / Study.search / `workbench search`): refusals up front, the held-out check, the
"none met it" answer, resuming after kill -9, a Keras model through TFLite, the mixed-precision fallback."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.errors import DataError, ParameterError, SpecError
from workbench.recommend import Space, check_request, default_space, parse_duration, quality_of
from workbench.recommend.heldout import check
from workbench.store import ResultsStore
from workbench.text import STS

from .conftest import FAST

ROOT = Path(__file__).resolve().parent.parent
STS_DEV = ROOT / "data" / "stsbenchmark" / "sts-dev.csv"
SMALL = {"graph": [None, "fuse", "channels-last"], "precision": [None, "int8-dynamic", "int8-static"],
         "runtime": [None, "torchscript"]}


@pytest.fixture(scope="module")
def cnn_test():
    return wb.zoo.load("digits-cnn", split="test")[1]


@pytest.fixture(scope="module")
def found(cnn, cnn_test):
    model, task = cnn
    study = wb.Study(model, task, timing=FAST)
    return study.search(holdout=cnn_test, max_drop=1.0, budget_s=240, space=SMALL, progress=False)


# -- refused up front ------------------------------------------------------------------------------------
@pytest.mark.parametrize("objective, max_drop, budget, fragment", [
    ("speed", 1.0, 60, "objective"), ("latency", -1, 60, "max_drop"), ("latency", 100, 60, "max_drop"),
    ("latency", float("nan"), 60, "max_drop"), ("latency", True, 60, "max_drop"), ("latency", 1.0, 0, "budget_s"),
    ("latency", 1.0, "ten minutes", "budget_s"), ("latency", 1.0, "0.5s", "budget_s"),
])
def test_requests_that_cannot_work_are_refused_with_what_is_accepted(objective, max_drop, budget, fragment):
    with pytest.raises(ParameterError, match=fragment):
        check_request(objective, max_drop, budget)


def test_durations_read_the_way_people_write_them():
    assert parse_duration("90s") == 90 and parse_duration("10m") == 600 and parse_duration("1.5h") == 5400
    assert parse_duration(45) == 45 and parse_duration("120") == 120


def test_a_space_that_cannot_work_is_refused_before_anything_is_measured(cnn, cnn_test):
    model, task = cnn
    study = wb.Study(model, task, timing=FAST)
    with pytest.raises(ParameterError, match="nothing to search"):
        study.search(holdout=cnn_test, space={"precision": [None]}, budget_s=30, progress=False)
    with pytest.raises(wb.UnknownNameError, match="int9-magic"):
        study.search(holdout=cnn_test, space={"precision": [None, "int9-magic"]}, budget_s=30, progress=False)
    with pytest.raises(SpecError):
        study.search(holdout=cnn_test, space={"precision": [None, "prune(0.5"]}, budget_s=30, progress=False)
    with pytest.raises(ParameterError, match="xla applies to keras"):
        study.search(holdout=cnn_test, space={"runtime": [None, "xla"]}, budget_s=30, progress=False)
    with pytest.raises(DataError, match="the task searched on"):
        study.search(holdout=task, space=SMALL, budget_s=30, progress=False)
    assert study.results().frame.empty or len(study.results()) <= 1  # nothing but (at most) the baseline ran


def test_a_budget_shorter_than_one_trial_is_refused_naming_what_one_trial_took(cnn, cnn_test):
    model, task = cnn
    slow = wb.TimingConfig(min_time_s=1.5, min_runs=10)
    study = wb.Study(model, task, timing=slow)
    with pytest.raises(ParameterError, match="measuring the baseline alone took"):
        study.search(holdout=cnn_test, space=SMALL, budget_s=1, progress=False)


# -- the space ---------------------------------------------------------------------------------------------
def test_the_default_space_follows_the_model_the_task_and_the_device(cnn, device):
    model, task = cnn
    space = default_space(model, task, device)
    precisions = space.dimensions["precision"]
    assert "int8-static" in precisions and "fuse" in space.dimensions["graph"]
    assert any(c and c.startswith("prune(") and "channel" in c for c in space.dimensions["weights"])
    for precision in ("fp16", "bf16"):  # offered only where this CPU runs it natively, or when asked
        assert (precision in precisions) == device.is_accelerated(precision)
        assert precision in default_space(model, task, device, allow_emulated=True).dimensions["precision"]
    unlabelled = wb.tasks.Unlabelled(task.inputs)
    no_training = default_space(model, unlabelled, device)
    assert "weights" not in no_training.dimensions and "qat" not in no_training.dimensions["precision"]
    assert any("no labelled training data" in why for why in no_training.left_out)
    made, impossible = space.enumerate()
    assert "baseline" in made and len(made) > 50
    assert all(isinstance(reason, str) and reason for reason in impossible.values())


# -- the answer ----------------------------------------------------------------------------------------------
def test_the_winner_holds_the_budget_on_the_held_out_split(found, cnn_test):
    assert found.recommended is not None, found.explanation
    held = found.check_of(found.recommended)
    assert held.units == len(cnn_test) and held.passed
    assert held.drop <= found.max_drop  # on data the search never selected on
    assert held.ci_low <= held.drop <= held.ci_high
    row = found.row(found.recommended)
    assert row["drop"] <= found.max_drop and row["verdict"] == "recommended"
    assert row["latency_ms_p50"] < found.baseline["latency_ms_p50"]
    assert found.speedup is not None and found.speedup[0] > 1.0  # timed again beside the baseline
    assert f"Recommended: `{found.recommended}`" in found.explanation


def test_every_trial_has_a_verdict_that_agrees_with_its_numbers(found):
    frame = found.frame
    assert frame["pipeline"].is_unique and frame.iloc[0]["is_baseline"]
    for _, r in frame.iterrows():
        verdict = r["verdict"]
        if verdict.startswith("over the budget"):
            assert r["drop"] > found.max_drop
        elif verdict.startswith("slower than the recommendation"):
            assert r["drop"] <= found.max_drop
            assert r["latency_ms_p50"] >= found.row(found.recommended)["latency_ms_p50"]
        elif r["status"] != "ok":
            assert verdict.startswith(r["status"])
    assert set(frame["origin"]) <= {"baseline", "each recipe alone", "sampler"} | {
        o for o in frame["origin"] if o.startswith("fallback of")}
    assert (frame["origin"] == "each recipe alone").sum() == 5  # fuse, channels-last, 2 precisions, torchscript
    made, _ = Space(SMALL).enumerate()
    assert found.stopped == "every configuration in the space tried" and len(frame) == len(made)
    front = found.front()
    assert found.recommended in set(front["pipeline"]) and front["latency_ms_p50"].is_monotonic_increasing


def test_the_answer_is_a_table_a_chart_and_a_file(found, tmp_path):
    tried = found.tried()
    assert list(tried.columns) == ["pipeline", "origin", "status", "objective", "drop", "heldout_drop", "verdict"]
    spec = found.chart().to_dict()
    layers = spec["layer"]
    assert any(layer["mark"]["type"] == "rule" for layer in layers if isinstance(layer.get("mark"), dict))
    found.save(tmp_path / "search.csv")
    back = pd.read_csv(tmp_path / "search.csv")
    assert len(back) == len(found.frame) and "verdict" in back and "heldout_ci_low" in back


def test_an_impossible_budget_says_none_met_it_and_names_the_closest(cnn, cnn_test):
    model, task = cnn
    study = wb.Study(model, task, timing=FAST)
    space = {"weights": [None, "prune(0.6, pattern=channel, finetune=0)", "prune(0.8, pattern=channel, finetune=0)"]}
    result = study.search(holdout=cnn_test, space=space, max_drop=0.1, budget_s=120, fallback=False, progress=False)
    assert result.recommended is None and not result.met
    closest = result.closest()
    assert len(closest) >= 1 and (closest["drop"] > 0.1).all()
    assert "No configuration met the budget of 0.1 points of accuracy; the closest are" in result.explanation
    assert closest.iloc[0]["pipeline"] in result.explanation
    assert (result.frame["verdict"].iloc[1:].str.startswith("over the budget")).all()


# -- quality and the bootstrap ------------------------------------------------------------------------------------
def test_a_drop_means_points_of_accuracy_or_percent_of_spearman():
    cls = quality_of(wb.tasks.Classification(np.zeros((4, 2)), np.array([0, 1, 0, 1])))
    assert cls.drop(0.975, 0.965) == pytest.approx(1.0)
    sts = quality_of(STS(STS_DEV, limit=20))
    assert sts.relative and sts.drop(0.80, 0.796) == pytest.approx(0.5)
    fidelity = quality_of(wb.tasks.Unlabelled(np.zeros((3, 2))))
    assert fidelity.column == "fidelity" and fidelity.drop(1.0, 0.99) == pytest.approx(1.0)


def test_the_paired_bootstrap_brackets_a_real_drop_and_centres_no_change_on_zero():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 600)
    task = wb.tasks.Classification(np.zeros((600, 4)), labels)
    quality = quality_of(task)
    reference = np.eye(10)[labels]                       # the baseline: always right
    same = check("same", task, quality, reference.copy(), reference, 1.0)
    assert same.drop == 0 and same.ci_low == 0 and same.ci_high == 0 and same.passed
    worse = reference.copy()
    wrong = rng.choice(600, 30, replace=False)           # 5% of the answers broken: a drop of 5 points
    worse[wrong] = np.roll(worse[wrong], 1, axis=1)
    broken = check("broken", task, quality, worse, reference, 1.0)
    assert broken.drop == pytest.approx(5.0) and not broken.passed
    assert 0 < broken.ci_low < 5.0 < broken.ci_high < 10  # a real drop: the interval excludes zero
    assert "the drop is real" in broken.describe(quality)


def test_sts_splits_by_pairs_and_scores_resamples():
    task = STS(STS_DEV, limit=200)
    selection, held = task.split(0.5, seed=3)
    assert selection.units + held.units == 200 and abs(selection.units - held.units) <= 1
    pairs = lambda t: sorted((t.inputs[a], t.inputs[b], g) for (a, b), g in zip(t.pairs, t.gold))  # noqa: E731
    assert sorted(pairs(selection) + pairs(held)) == pairs(task)  # every pair in exactly one part
    outputs = np.random.default_rng(0).normal(size=(len(held), 16))
    assert held.score_units(outputs, np.arange(held.units)) == pytest.approx(held.score(outputs))
    assert task.split(0.5, seed=3)[1].fingerprint() == held.fingerprint()  # the same seed, the same split


# -- resumes after kill -9, from the shell ----------------------------------------------------------------------------
def _search_cmd(store: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "workbench", "search", "--model", "digits-cnn", "--space", json.dumps(SMALL),
            "--budget", "300", "--max-drop", "1", "--min-time", "0.05", "--store", str(store), "--out", str(out),
            "--no-progress"]


@pytest.mark.slow
def test_kill_minus_9_mid_search_then_the_same_command_resumes_without_measuring_twice(tmp_path):
    store_path, out = tmp_path / "search.db", tmp_path / "search.csv"
    proc = subprocess.Popen(_search_cmd(store_path, out), cwd=ROOT, env={**os.environ},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if store_path.exists() and len(ResultsStore(store_path)) >= 5:
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the search ended before it could be killed: {proc.stderr.read()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = ResultsStore(store_path)
    assert store.check() == "ok"
    before = {r["pipeline"]: r["created_at"] for r in store.rows()}
    assert 5 <= len(before) < len(Space(SMALL).enumerate()[0])

    again = subprocess.run(_search_cmd(store_path, out), cwd=ROOT, env={**os.environ}, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    after = {r["pipeline"]: r["created_at"] for r in ResultsStore(store_path).rows()}
    for pipeline, created in before.items():  # finished trials were read back, not measured again
        assert after[pipeline] == created
    assert len(after) == len(Space(SMALL).enumerate()[0])
    tried = pd.read_csv(out)
    assert list(tried["pipeline"][:len(before)]) and set(tried["pipeline"][:len(before)]) == set(before)  # replayed
    assert "Recommended:" in again.stdout or "No configuration" in again.stdout


def test_the_shell_refuses_a_bad_request_in_one_line(tmp_path):
    for args, fragment in ((["--max-drop", "-1"], "max_drop"), (["--budget", "0s"], "budget_s"),
                           (["--space", "{not json"], "--space"), (["--holdout", "most"], "--holdout")):
        done = subprocess.run([sys.executable, "-m", "workbench", "search", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2 and fragment in done.stderr and "Traceback" not in done.stderr


# -- other frameworks and the fallback ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_search_on_a_keras_model_runs_through_tflite():
    model, task = wb.zoo.load("digits-keras")
    _, test = wb.zoo.load("digits-keras", split="test")
    study = wb.Study(model, task, timing=FAST)
    space = {"precision": [None, "int8-dynamic", "int8-static"], "runtime": [None, "tflite"]}
    result = study.search(holdout=test, space=space, max_drop=1.0, budget_s=240, progress=False)
    ran = result.frame[result.frame["status"] == "ok"]
    assert (ran["runtime"] == "litert").sum() >= 5, result.tried()  # every variant ran in the interpreter
    assert result.recommended is not None, result.explanation
    assert result.row(result.recommended)["runtime"] == "litert"
    assert result.check_of(result.recommended).drop <= 1.0


@pytest.mark.slow
def test_an_int8_miss_keeps_its_most_damaging_layers_in_float_one_at_a_time():
    model, task = wb.zoo.load("minilm-l6")
    selection, held = task.split(0.5)
    study = wb.Study(model, selection, timing=FAST, measure_memory=False, measure_flops=False)
    result = study.search(holdout=held, space={"precision": [None, "int8-dynamic"]}, max_drop=2.0, budget_s=300,
                          progress=False)
    full = result.row("int8-dynamic")
    assert full["drop"] > 2.0  # per-tensor int8 on MiniLM loses more cosine fidelity than the budget
    fallbacks = result.frame[result.frame["origin"].str.startswith("fallback of int8-dynamic")]
    assert len(fallbacks) >= 1, result.explanation
    kept = [len(wb.Pipeline.parse(p).steps[-1].exclude) for p in fallbacks["pipeline"]]
    assert kept == list(range(1, len(kept) + 1))  # one more layer each step
    assert fallbacks.iloc[0]["drop"] < full["drop"]  # the layer kept first is one that mattered
    view = study.layers("int8-dynamic")
    first = wb.Pipeline.parse(fallbacks.iloc[0]["pipeline"]).steps[-1].exclude[0]
    ranked = view.frame.dropna(subset=["error_share"]).sort_values("error_share", ascending=False)
    top = ranked.iloc[0]  # the group adding most of the output error: its layer, or every layer inside it
    assert first in (top["layer"], *str(top["members"]).split(", "))
    assert math.isfinite(fallbacks["drop"].iloc[-1])
