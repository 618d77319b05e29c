"""The command line, run as a user runs it: a real subprocess."""

import json
import subprocess
import sys

import pandas as pd
import pytest


def _wb(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_run_writes_a_table_and_prints_it(tmp_path):
    out = tmp_path / "results.csv"
    proc = _wb("run", "--model", "digits-cnn", "--recipes", "int8-dynamic; prune(0.5); fold-bn + int8-dynamic",
               "--out", str(out), "--min-time", "0.05", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_csv(out)
    assert list(frame["pipeline"]) == ["baseline", "int8-dynamic", "prune(0.5)", "fold-bn + int8-dynamic"]
    assert (frame["status"] == "ok").all()
    assert abs(frame.loc[2, "sparsity"] - 0.5) <= 0.01
    assert "latency_ms_p50" in proc.stdout and "fold-bn + int8-dynamic" in proc.stdout


def test_run_to_parquet_with_progress_bar(tmp_path):
    out = tmp_path / "results.parquet"
    proc = _wb("run", "--recipes", "fold-bn", "--out", str(out), "--min-time", "0.05")
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_parquet(out)) == 2
    assert "trials" in proc.stderr  # the progress bar


def test_device_json():
    proc = _wb("device", "--json")
    assert proc.returncode == 0, proc.stderr
    profile = json.loads(proc.stdout)
    assert profile["cores_available"] >= 1 and "accelerated" in profile and profile["peak_gflops_all"] > 0


def test_models_and_recipes_lists():
    assert "digits-cnn" in _wb("models").stdout
    recipes = _wb("recipes").stdout
    assert "int8-dynamic" in recipes and "onnx,keras" in recipes and "int4-weight-only" in recipes
    assert "tflite-int8 → int8-static" in recipes and "ort-int8-dynamic → int8-dynamic after to-onnx" in recipes


def test_user_errors_exit_2_with_a_message_and_no_traceback(tmp_path):
    cases = [
        (["run", "--recipes", "int4-magic"], "unknown recipe 'int4-magic'"),
        (["run", "--recipes", "prune(1.5)"], "[0.0, 1.0)"),
        (["run", "--model", "resnet-9000", "--recipes", "prune(0.5)"], "known zoo models: digits-cnn"),
        (["run", "--recipes", "prune(0.5)", "--out", str(tmp_path / "r.txt")], ".csv or .parquet"),
        (["run", "--recipes", "prune(0.5)", "--batch-size", "0"], "batch_size"),
        (["run", "--recipes", " ; "], "no pipeline given"),
    ]
    for args, fragment in cases:
        proc = _wb(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert fragment in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_kill_9_of_workbench_run_without_a_store_loses_no_finished_row(tmp_path):
    """No --store: every finished row is in the run's own store (named on stderr) and in --out at once."""
    import os
    import random
    import signal

    import workbench as wb

    out = tmp_path / "rows.csv"
    specs = [f"prune(0.{i})" for i in range(1, 9)]
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "run", "--model", "digits-cnn", "--recipes",
                             "; ".join(specs), "--out", str(out), "--no-progress", "--min-time", "0.2"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    kill_at = random.Random().randint(2, 6)  # a random point, after the baseline
    store_path, done = None, []
    for line in proc.stderr:
        if line.startswith("rows are written to "):
            store_path = line.split(" ")[4]
        if line.startswith("done "):
            done.append(line.split()[-1])
            if len(done) == kill_at:
                break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert store_path and len(done) == kill_at, (store_path, done)
    store = wb.ResultsStore(store_path)
    assert store.check() == "ok"
    stored = {r["pipeline"] or "baseline" for r in store.rows() if r["status"] == "ok"}
    assert set(done) <= stored, (done, stored)
    written = set(pd.read_csv(out)["pipeline"])
    assert set(done) <= written, (done, written)
    os.unlink(store_path)


def test_old_per_run_stores_are_pruned_beyond_the_newest(tmp_path):
    import os
    import time

    from workbench.cli import prune_run_stores

    now = time.time()
    for i in range(25):  # run-00 newest ... run-24 oldest, every one 40 days old but the 3 newest
        store = tmp_path / f"run-{i:02d}.db"
        store.write_bytes(b"x")
        (tmp_path / f"run-{i:02d}.db-wal").write_bytes(b"w")
        age = 3600 * i if i < 3 else 86400 * (40 + i)
        os.utime(store, (now - age, now - age))
    (tmp_path / "mine.db").write_bytes(b"not a run store")
    removed = prune_run_stores(tmp_path, keep=20, days=30)
    assert sorted(p.name for p in removed) == [f"run-{i:02d}.db" for i in range(20, 25)]
    left = sorted(p.name for p in tmp_path.glob("run-*.db"))
    assert left == [f"run-{i:02d}.db" for i in range(20)]
    assert not (tmp_path / "run-24.db-wal").exists() and (tmp_path / "run-19.db-wal").exists()
    assert (tmp_path / "mine.db").exists()
    young = tmp_path / "young"
    young.mkdir()
    for i in range(25):
        (young / f"run-{i:02d}.db").write_bytes(b"x")
    assert prune_run_stores(young, keep=20, days=30) == [], "stores younger than the age limit are kept"
