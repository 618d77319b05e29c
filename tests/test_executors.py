"""Isolation: trials that crash, hang or allocate without bound become failed rows; the sweep goes on.
Scale-out: a Dask local cluster returns the same rows (less timings) as the process executor."""

import os
import signal
import time

import pytest

import workbench as wb
from workbench.errors import WorkbenchError
from workbench.executors import DaskExecutor, ProcessExecutor, WarmExecutor

from . import faults  # noqa: F401  (registers the misbehaving recipes)
from .conftest import FAST

TIMING_COLUMNS = {"latency_ms_p50", "latency_ms_iqr", "latency_ms_p90", "latency_ms_p99", "latency_n", "noisy",
                  "first_call_ms", "throughput", "gflops_achieved", "pct_of_peak", "latency_samples_ms",
                  "created_at", "duration_s", "pareto", "load_others", "contended", "lock_wait_ms"}


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
    assert any(cause in rows.loc["test-hog", "error"] for cause in ("MemoryError", "over the executor's limit"))
    for bad in ("test-abort", "test-segfault", "test-hang", "test-hog"):
        assert rows.loc[bad, "status"] == "failed"
    for good in ("baseline", "prune(0.5)", "fold-bn"):
        assert rows.loc[good, "status"] == "ok", rows.loc[good, "error"]
    assert rows.loc["prune(0.5)", "sparsity"] == pytest.approx(0.5, abs=0.01)


@pytest.mark.slow
def test_a_timed_out_trial_takes_the_processes_it_started_with_it(cnn, tmp_path, monkeypatch):
    import psutil

    model, task = cnn
    pid_file = tmp_path / "child.pid"
    monkeypatch.setenv("WB_TEST_CHILD_PID_FILE", str(pid_file))
    study = wb.Study(model, task, timing=FAST, measure_memory=False, executor=ProcessExecutor(timeout_s=15))
    row = study.run(["test-spawn-hang"], progress=False).frame.set_index("pipeline").loc["test-spawn-hang"]
    assert row["status"] == "failed" and "timed out after 15 s" in row["error"]
    grandchild = int(pid_file.read_text())
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE


@pytest.mark.slow
def test_a_failed_row_carries_the_end_of_the_workers_stderr(cnn):
    model, task = cnn
    study = wb.Study(model, task, timing=FAST, measure_memory=False, executor=ProcessExecutor(timeout_s=60))
    row = study.run(["test-stderr-exit"], progress=False).frame.set_index("pipeline").loc["test-stderr-exit"]
    assert row["status"] == "failed"
    assert "exited with status 3" in row["error"] and "could not find libfoo.so.3" in row["error"]


_ORPHAN_PARENT = """
import sys, workbench as wb
from tests import faults
model, task = wb.zoo.load("digits-mlp")
study = wb.Study(model, task, timing=wb.TimingConfig(min_time_s=0.05, min_runs=5, warmup_runs=1),
                 measure_memory=False, executor=wb.ProcessExecutor(timeout_s=600))
study.run([], progress=False)  # the baseline, in a worker of its own
print("baseline measured", flush=True)
study.run(["test-hang"], progress=False)
"""


_WARM_ORPHAN_PARENT = """
import threading
import psutil
import workbench as wb
from tests import faults
model, task = wb.zoo.load("digits-mlp")
executor = wb.executors.WarmExecutor(timeout_s=600)
study = wb.Study(model, task, timing=wb.TimingConfig(min_time_s=0.05, min_runs=5, warmup_runs=1),
                 measure_memory=False, executor=executor)
study.run([], progress=False)
first = executor.pid
thread = threading.Thread(target=lambda: study.trial("test-segfault"))  # restarts the worker from this thread
thread.start()
thread.join()
import time; time.sleep(1.5)
assert executor.pid not in (None, first) and psutil.pid_exists(executor.pid), "the restarted worker died with its thread"
print("baseline measured", flush=True)
study.run(["test-hang"], progress=False)
"""


@pytest.mark.slow
def test_a_warm_worker_runs_trial_after_trial_and_is_restarted_after_each_crash(cnn):
    model, task = cnn
    executor = WarmExecutor(timeout_s=60, memory_limit_bytes=3 * 2**30)
    with wb.Study(model, task, timing=FAST, measure_memory=False, executor=executor) as study:
        first = executor.pid
        assert first is not None, "the worker starts with the study, before the first trial"
        pids = {}
        # (a hang and a runaway allocation in a warm worker: the dashboard's browser test, tests/test_app.py)
        for spec in ["baseline", "prune(0.5)", "test-segfault", "fold-bn", "test-abort", "int8-dynamic",
                     "test-stderr-exit"]:
            row = study.trial(spec)
            pids[spec] = (row["status"], row["error"], executor.pid)
        inline = wb.Study(model, task, timing=FAST, measure_memory=False).trial("prune(0.5)")
    assert executor.pid is None, "close() ends the worker"
    assert pids["baseline"][2] == pids["prune(0.5)"][2] == first, "good trials share one worker"
    assert "SIGSEGV" in pids["test-segfault"][1] and pids["test-segfault"][2] != first
    assert pids["fold-bn"][0] == "ok" and pids["fold-bn"][2] == pids["test-segfault"][2]
    assert "SIGABRT" in pids["test-abort"][1]
    assert pids["int8-dynamic"][0] == "ok", pids["int8-dynamic"][1]
    assert "libfoo.so.3" in pids["test-stderr-exit"][1] and "status 3" in pids["test-stderr-exit"][1]
    assert executor.restarts == 3
    rows = study.results().frame.set_index("pipeline")
    # the observed baseline reached the worker: deltas are relative to it, and the answer matches inline
    assert rows.loc["prune(0.5)", "metric_delta"] == pytest.approx(inline["metric_delta"], abs=1e-9)
    assert rows.loc["prune(0.5)", "metric"] == pytest.approx(inline["metric"], abs=1e-9)


@pytest.mark.slow
def test_closing_a_warm_executor_ends_a_running_trial_at_once_and_refuses_later_ones(cnn):
    import threading

    model, task = cnn
    executor = WarmExecutor(timeout_s=300)
    study = wb.Study(model, task, timing=FAST, measure_memory=False, executor=executor)
    study.trial("baseline")
    rows = {}
    thread = threading.Thread(target=lambda: rows.setdefault("hang", study.trial("test-hang")))
    thread.start()
    time.sleep(2)  # inside the hanging trial
    started = time.monotonic()
    study.close()
    thread.join(30)
    assert time.monotonic() - started < 10, "close() waited for the running trial"
    assert "closed" in rows["hang"]["error"] and executor.pid is None
    assert "closed" in study.trial("fold-bn")["error"] and executor.pid is None, "a trial after close started a worker"


@pytest.mark.slow
def test_one_warm_executor_serves_several_studies_and_prepare_does_not_restart_it(cnn, mlp):
    executor = WarmExecutor(timeout_s=120)
    try:
        studies = [wb.Study(*zoo, timing=FAST, measure_memory=False, executor=executor) for zoo in (cnn, mlp, cnn)]
        first = executor.pid
        assert first is not None and executor.restarts == 0, "prepare of the 2nd and 3rd study kept the worker"
        for _ in range(2):  # three benches through a worker that keeps two: each is sent again when needed
            for study in studies:
                row = study.trial("prune(0.5)")
                assert row["status"] == "ok", row["error"]
        assert executor.pid == first and executor.restarts == 0
    finally:
        executor.close()


@pytest.mark.slow
@pytest.mark.parametrize("script", [_ORPHAN_PARENT, _WARM_ORPHAN_PARENT], ids=["process", "warm"])
def test_workers_die_with_their_parent(script):
    import subprocess
    import sys

    import psutil

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "baseline measured"
        deadline = time.monotonic() + 60
        workers = []
        while not workers and time.monotonic() < deadline:  # the hanging trial's worker
            time.sleep(0.5)
            workers = [p for p in psutil.Process(parent.pid).children() if "workbench._worker" in p.cmdline()]
        assert workers, "the hanging trial's worker never started"
        time.sleep(2)  # past the worker's start-up: it is inside the trial
    finally:
        parent.kill()
        parent.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"workers outlived their parent: {alive}"


def test_the_memory_limit_reads_cgroup_limits(tmp_path):
    from workbench._sysmem import cgroup_memory_limit

    v2 = tmp_path / "v2"
    (v2 / "user.slice" / "job").mkdir(parents=True)
    (v2 / "user.slice" / "memory.max").write_text("4294967296\n")
    (v2 / "user.slice" / "job" / "memory.max").write_text("max\n")
    (tmp_path / "cg2").write_text("0::/user.slice/job\n")
    assert cgroup_memory_limit(tmp_path / "cg2", v2) == 4 * 2**30  # a parent's limit applies to its children

    v1 = tmp_path / "v1"
    (v1 / "memory" / "docker" / "abc").mkdir(parents=True)
    (v1 / "memory" / "docker" / "abc" / "memory.limit_in_bytes").write_text("2147483648\n")
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    (tmp_path / "cg1").write_text("5:cpu:/\n4:memory:/docker/abc\n0::/\n")
    assert cgroup_memory_limit(tmp_path / "cg1", v1) == 2 * 2**30

    (tmp_path / "none").write_text("0::/\n")
    assert cgroup_memory_limit(tmp_path / "none", tmp_path / "empty") is None
    assert cgroup_memory_limit(tmp_path / "missing", v1) is None


def test_cuda_trials_are_watched_not_capped_in_address_space():
    from types import SimpleNamespace

    executor = ProcessExecutor(memory_limit_bytes=2**30)

    def trial(target):
        return SimpleNamespace(bench=SimpleNamespace(settings=lambda: {"target": target}))

    assert executor._address_space_limit(trial("cpu")) == 2**30
    assert executor._address_space_limit(trial("cuda:0")) == 0
    assert ProcessExecutor(memory_limit_bytes=None)._address_space_limit(trial("cpu")) == 0


def _without_timing_notes(notes):
    if not isinstance(notes, str):
        return notes
    kept = [n for n in notes.split("; ") if not n.startswith(("timed while other processes", "waited "))]
    return "; ".join(kept) or None


@pytest.mark.slow
def test_dask_local_cluster_returns_the_same_rows_as_the_process_executor(cnn):
    model, task = cnn
    pipelines = ["prune(0.5)", "fold-bn", "int8-dynamic", "fold-bn + int8-dynamic"]
    executor = DaskExecutor(n_workers=2, threads_per_worker=1, timeout_s=120)
    try:
        by_dask = wb.Study(model, task, timing=FAST, threads=1, executor=executor).run(pipelines, progress=False)
        workers = executor.client.scheduler_info()["workers"]
        assert len(workers) == 2 and all(addr.startswith("tls://127.0.0.1") for addr in workers)  # TLS, loopback
    finally:
        executor.close()
    by_process = wb.Study(model, task, timing=FAST, threads=1, executor="process").run(pipelines, progress=False)
    keep = [c for c in wb.COLUMNS if c not in TIMING_COLUMNS]
    a, b = by_dask.frame[keep].copy(), by_process.frame[keep].copy()
    for frame in (a, b):  # the two Dask workers build while the other times: notes on contention are timing
        frame["notes"] = frame["notes"].map(_without_timing_notes)
    assert list(a["pipeline"]) == list(b["pipeline"])
    assert (a["status"] == "ok").all()
    assert a.astype(str).equals(b.astype(str)), a.compare(b)


@pytest.mark.slow
def test_dask_defaults_fit_the_study_and_a_hung_trial_does_not_keep_its_worker(cnn):
    """No settings: one worker per `threads` cores (2 cores here: one worker of 2); the hung trial's worker is
    restarted, so the trial after it runs on the same, only, worker."""
    model, task = cnn
    executor = DaskExecutor(timeout_s=20)
    try:
        study = wb.Study(model, task, timing=FAST, threads=2, measure_memory=False, executor=executor)
        rows = study.run(["test-hang", "fold-bn"], progress=False).frame.set_index("pipeline")
        workers = executor.client.scheduler_info()["workers"].values()
        assert {w["resources"]["cores"] for w in workers} == {2}
        assert all(w["memory_limit"] > 2**28 for w in workers)
    finally:
        executor.close()
    assert rows.loc["test-hang", "status"] == "failed"
    assert "timed out after 20 s" in rows.loc["test-hang", "error"] and "worker was restarted" in rows.loc[
        "test-hang", "error"]
    assert rows.loc["fold-bn", "status"] == "ok", rows.loc["fold-bn", "error"]
    assert executor._cluster is None and executor._client is None


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
    (dict(memory_limit_bytes=2**50), "at most .* GiB, the memory this machine"),
    (dict(memory_limit_bytes=2.5e9), "a whole number of bytes"),
])
@pytest.mark.parametrize("executor", [ProcessExecutor, WarmExecutor])
def test_bad_executor_settings(kwargs, fragment, executor):
    with pytest.raises(WorkbenchError, match=fragment):
        executor(**kwargs)


def test_unknown_executor_lists_the_known_ones(cnn):
    model, task = cnn
    with pytest.raises(wb.UnknownNameError, match="dask, inline, process"):
        wb.Study(model, task, executor="threads")


def test_signal_names_in_messages():
    from workbench.executors import _death

    assert "SIGKILL (out of memory" in _death(-signal.SIGKILL)
    assert "status 3" in _death(3)
