"""Isolation: trials that crash, hang or allocate without bound become failed rows; the sweep goes on.
Scale-out: a Dask local cluster returns the same rows (less timings) as the process executor."""

import os
import signal

import pytest

import workbench as wb
from workbench.errors import WorkbenchError
from workbench.executors import DaskExecutor, ProcessExecutor

from . import faults  # noqa: F401  (registers the misbehaving recipes)
from .conftest import FAST

TIMING_COLUMNS = {"latency_ms_p50", "latency_ms_iqr", "latency_ms_p90", "latency_ms_p99", "latency_n", "noisy",
                  "first_call_ms", "throughput", "gflops_achieved", "pct_of_peak", "latency_samples_ms",
                  "created_at", "duration_s", "pareto"}


@pytest.fixture(scope="module")
def isolated_study(cnn):
    model, task = cnn
    return wb.Study(model, task, timing=FAST, measure_memory=False,
                    executor=ProcessExecutor(timeout_s=30, memory_limit_bytes=3 * 2**30))


@pytest.mark.slow
def test_crashes_hangs_and_hogs_become_failed_rows(isolated_study):
    parent = os.getpid()
    results = isolated_study.run(["test-abort", "test-segfault", "test-hang", "test-hog", "prune(0.5)", "fold-bn"],
                                 progress=False)
    assert os.getpid() == parent
    rows = results.frame.set_index("pipeline")
    assert "SIGABRT" in rows.loc["test-abort", "error"]
    assert "SIGSEGV" in rows.loc["test-segfault", "error"]
    assert "timed out after 30 s" in rows.loc["test-hang", "error"]
    assert "MemoryError" in rows.loc["test-hog", "error"] or "SIGKILL" in rows.loc["test-hog", "error"]
    for bad in ("test-abort", "test-segfault", "test-hang", "test-hog"):
        assert rows.loc[bad, "status"] == "failed"
    for good in ("baseline", "prune(0.5)", "fold-bn"):
        assert rows.loc[good, "status"] == "ok", rows.loc[good, "error"]
    assert rows.loc["prune(0.5)", "sparsity"] == pytest.approx(0.5, abs=0.01)


@pytest.mark.slow
def test_dask_local_cluster_returns_the_same_rows_as_the_process_executor(cnn):
    model, task = cnn
    pipelines = ["prune(0.5)", "fold-bn", "int8-dynamic", "fold-bn + int8-dynamic"]
    executor = DaskExecutor(n_workers=2, threads_per_worker=1, timeout_s=120)
    try:
        by_dask = wb.Study(model, task, timing=FAST, threads=1, executor=executor).run(pipelines, progress=False)
        workers = executor.client.scheduler_info()["workers"]
        assert len(workers) == 2 and all(addr.startswith("tcp://127.0.0.1") for addr in workers)
    finally:
        executor.close()
    by_process = wb.Study(model, task, timing=FAST, threads=1, executor="process").run(pipelines, progress=False)
    keep = [c for c in wb.COLUMNS if c not in TIMING_COLUMNS]
    a, b = by_dask.frame[keep], by_process.frame[keep]
    assert list(a["pipeline"]) == list(b["pipeline"])
    assert (a["status"] == "ok").all()
    assert a.astype(str).equals(b.astype(str)), a.compare(b)


def test_dask_refuses_a_study_that_wants_more_cores_than_a_worker_has(cnn):
    model, task = cnn
    executor = DaskExecutor(n_workers=1, threads_per_worker=1)
    try:
        study = wb.Study(model, task, timing=FAST, threads=2, executor=executor)
        with pytest.raises(WorkbenchError, match="no Dask worker offers 2 core"):
            study.run(["fold-bn"], progress=False)
    finally:
        executor.close()


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(timeout_s=-1), "positive number of seconds"),
    (dict(timeout_s=0), "positive number of seconds"),
    (dict(timeout_s="10"), "positive number of seconds"),
    (dict(memory_limit_bytes=1000), "at least 256 MiB"),
])
def test_bad_executor_settings(kwargs, fragment):
    with pytest.raises(WorkbenchError, match=fragment):
        ProcessExecutor(**kwargs)


def test_unknown_executor_lists_the_known_ones(cnn):
    model, task = cnn
    with pytest.raises(wb.UnknownNameError, match="dask, inline, process"):
        wb.Study(model, task, executor="threads")


def test_signal_names_in_messages():
    from workbench.executors import _death

    assert "SIGKILL (out of memory" in _death(-signal.SIGKILL)
    assert "status 3" in _death(3)
