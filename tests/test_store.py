"""The durable store: resume after SIGKILL without losing a finished trial; concurrent writers; the cache key."""

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import workbench as wb
from workbench.errors import DataError, WorkbenchError
from workbench.store import ResultsStore

from .conftest import FAST, kill_after

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ["prune(0.1)", "prune(0.2)", "prune(0.3)", "prune(0.4)", "prune(0.5)", "prune(0.6)", "prune(0.7)",
         "prune(0.8)"]

SCRIPT = textwrap.dedent("""
    import sys, workbench as wb
    model, task = wb.zoo.load("digits-cnn")
    study = wb.Study(model, task, store=sys.argv[1], measure_memory=False,
                     timing=wb.TimingConfig(min_time_s=float(sys.argv[2]), min_runs=10))
    for spec in sys.argv[3].split(";"):
        row = study.trial(spec)
        print("done", row["pipeline"], flush=True)
""")


def _sweep(store: Path, min_time: float, specs=SWEEP) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(store), str(min_time), ";".join(specs)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ})


@pytest.mark.slow
def test_sigkill_midway_loses_no_finished_trial_and_resumes(tmp_path, cnn):
    store_path = tmp_path / "sweep.db"
    finished = kill_after(_sweep(store_path, 0.3), 4)
    store = ResultsStore(store_path)
    assert store.check() == "ok"
    stored = {r["pipeline"] for r in store.rows()}
    assert set(finished) <= stored  # every trial reported done is in the store
    assert len(stored) < len(SWEEP) + 1

    model, task = cnn
    study = wb.Study(model, task, store=store_path, measure_memory=False,
                     timing=wb.TimingConfig(min_time_s=0.3, min_runs=10))
    before = {r["pipeline"]: r["created_at"] for r in store.rows()}
    results = study.run(SWEEP, progress=False)
    assert (results.frame["status"] == "ok").all()
    after = {r["pipeline"]: r["created_at"] for r in store.rows()}
    for pipeline, created in before.items():  # finished trials were skipped, not measured again
        assert after[pipeline] == created
    assert len(store) == len(SWEEP) + 1


@pytest.mark.slow
def test_two_studies_writing_one_store_at_once(tmp_path):
    store_path = tmp_path / "shared.db"
    a = _sweep(store_path, 0.05, SWEEP[:4])
    b = _sweep(store_path, 0.05, ["fold-bn", "int8-dynamic", "prune(0.5) + int8-dynamic", "fuse"])
    assert a.wait(timeout=300) == 0 and b.wait(timeout=300) == 0
    store = ResultsStore(store_path)
    assert store.check() == "ok"
    assert {r["pipeline"] for r in store.rows()} >= set(SWEEP[:4]) | {"fold-bn", "fuse"}
    assert len(store) == 9  # one shared baseline row: the same trial has the same content address


def test_cache_key_changes_with_every_input(cnn, tmp_path):
    model, task = cnn
    store = tmp_path / "cache.db"
    first = wb.Study(model, task, timing=FAST, store=store).trial("fold-bn")
    again = wb.Study(model, task, timing=FAST, store=store).trial("fold-bn")
    assert again == first  # served from the store, not measured again

    def key(**changes):
        kwargs = dict(model=model, task=task, timing=FAST, store=store)
        kwargs.update(changes)
        return wb.Study(**kwargs).bench.trial_id(wb.Pipeline.parse("fold-bn"))

    base = key()
    other_weights = model.evolve(payload=__import__("copy").deepcopy(model.payload))
    with __import__("torch").no_grad():
        next(other_weights.payload.parameters()).add_(1e-3)
    assert key(model=other_weights) != base                              # weights
    assert key(task=wb.tasks.Classification(task.inputs[:100], task.labels[:100])) != base  # task data
    assert key(timing=wb.TimingConfig(min_time_s=0.06, min_runs=10)) != base                # measuring
    assert key(batch_size=8) != base and key(threads=1) != base
    assert wb.Study(model, task, timing=FAST).bench.trial_id(wb.Pipeline.parse("fold-bn + int8-dynamic")) != base  # spec
    profile = wb.device()
    import dataclasses
    moved = dataclasses.replace(profile, fingerprint="another-machine")
    assert key(device_profile=moved) != base                              # device and library versions
    assert wb.Study(model, task, timing=FAST).bench.trial_id(wb.Pipeline.parse("fold-bn")) == base  # and stable


def test_failed_trials_are_retried_from_a_store(tmp_path, cnn):
    from . import faults  # noqa: F401

    model, task = cnn
    store = ResultsStore(tmp_path / "s.db")
    study = wb.Study(model, task, timing=FAST, store=store)
    row = study.trial("fold-bn")
    bad = dict(row, status="failed", error="transient", trial_id="x" * 12, pipeline="prune(0.9)")
    store.put(bad)
    assert store.get("x" * 12) is None and store.get(row["trial_id"])["status"] == "ok"


def test_bad_store_paths(tmp_path):
    (tmp_path / "folder.db").mkdir()
    with pytest.raises(WorkbenchError, match="is a folder"):
        ResultsStore(tmp_path / "folder.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DataError, match="not a workbench results store"):
        ResultsStore(junk)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE people (name TEXT)").connection.commit()
    with pytest.raises(DataError, match="not a workbench results store"):
        ResultsStore(other)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WorkbenchError, match="cannot open the results store"):
        ResultsStore(blocker / "r.db")
