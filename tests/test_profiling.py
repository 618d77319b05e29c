import json
import time

import numpy as np
import pytest

import workbench as wb
from workbench.profiling import LatencyStats, TimingConfig, measure_latency


def _busy(ms):
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


def test_latency_of_a_known_wait():
    calls = []

    def fn():
        calls.append(1)
        _busy(2)

    stats = measure_latency(fn, TimingConfig(min_time_s=0.1, min_runs=20, warmup_runs=3))
    assert stats.n >= 20 and len(calls) == stats.n + 1 + 3  # first call and warm-up are not in the samples
    assert 1.9 <= stats.p50 <= 3.0
    assert stats.p50 <= stats.p90 <= stats.p99
    assert stats.first_call_ms >= 1.9
    assert sum(stats.samples_ms) >= 100 * 0.95  # ran at least min_time


def test_minimum_count_wins_over_minimum_time():
    stats = measure_latency(lambda: None, TimingConfig(min_time_s=0.0, min_runs=50, warmup_runs=0))
    assert stats.n == 50


def test_order_statistics_and_noise_flag():
    quiet = LatencyStats(tuple([10.0] * 50 + [10.5] * 50), first_call_ms=100.0)
    assert quiet.p50 == pytest.approx(10.25) and not quiet.noisy
    noisy = LatencyStats(tuple(np.linspace(5, 15, 101)), first_call_ms=1.0)
    assert noisy.iqr == pytest.approx(5.0) and noisy.noisy and noisy.spread == pytest.approx(0.5)
    row = noisy.as_row()
    assert row["latency_n"] == 101 and row["latency_ms_p90"] == pytest.approx(14.0)
    assert len(noisy.thinned(20)) == 20


@pytest.mark.parametrize("kwargs", [dict(min_time_s=-1), dict(min_runs=2), dict(min_runs=10, max_runs=5),
                                    dict(warmup_runs=-1), dict(max_time_s=0.1, min_time_s=1.0),
                                    dict(min_time_s=float("nan"))])
def test_bad_timing_config_is_refused(kwargs):
    with pytest.raises(wb.ParameterError, match="invalid timing config"):
        TimingConfig(**kwargs)


def test_device_profile(device):
    assert device.cores_available >= 1 and device.memory_bytes > 2**30
    assert device.accelerated["fp32"] == "native"
    assert set(device.accelerated) >= {"fp16", "bf16", "int8", "tf32", "2:4"}
    assert device.peak_gflops_1t > 1 and device.peak_gflops_all >= device.peak_gflops_1t * 0.7
    assert device.bandwidth_gbs > 0.5
    assert device.recommended_quantized_engine in device.quantized_engines
    assert device.versions["torch"].startswith("2.")
    json.dumps(device.to_dict())  # serialisable for reports
    text = device.summary()
    assert "fp32 GEMM" in text and "quantized" in text
    if device.arch == "x86_64":
        assert "avx2" in device.isa or "sse4_2" in device.isa
        assert device.int8_reduce_range == (not device.has_vnni)
    if not device.gpus:
        assert device.accelerated["tf32"] == "" and device.accelerated["2:4"] == ""


def test_gemm_peaks_are_measured_per_precision(device):
    """int8 and bf16 kernels have their own roofs: a row is held against the roof of what it computes in."""
    assert device.peaks["fp32"]["all"] == device.peak_gflops_all
    int8 = device.peaks["int8"]
    assert int8["1t"] > 1 and int8["all"] > 1
    if device.has_vnni:  # VNNI: 4 int8 multiply-adds where fp32 does one FMA (1.97x measured on one such CPU)
        assert int8["1t"] > 1.2 * device.peak_gflops_1t
    assert device.peak("int8-dynamic", 1) == (int8["1t"], "int8")
    assert device.peak("amp-bf16", None)[1] == ("bf16" if "bf16" in device.peaks else "fp32")
    assert device.peak("fp32", 1) == (device.peak_gflops_1t, "fp32")
    assert device.peak("int8-simulated", 1) == (device.peak_gflops_1t, "fp32")
    assert "int8 GEMM" in device.summary()
    for precision in ("bf16", "fp16"):  # an accelerated precision that measures clearly slower than fp32 says so
        slower = device.slower_than_fp32(precision)
        roof = device.peaks.get(precision, {}).get("1t")
        assert bool(slower) == bool(roof and roof < 0.8 * device.peak_gflops_1t)
        if slower and device.is_accelerated(precision):
            assert slower in device.summary()


def test_int8_rows_are_held_against_the_int8_roof(mlp, device):
    model, task = mlp
    study = wb.Study(model, task, timing=wb.TimingConfig(min_time_s=0.05, min_runs=10), measure_memory=False)
    rows = study.run(["int8-dynamic", "int8-weight-only"], progress=False).frame.set_index("pipeline")
    dynamic = rows.loc["int8-dynamic"]
    assert "against the measured int8 GEMM roof" in dynamic["notes"]
    threads = study.threads
    roof = device.peaks["int8"]["1t" if threads == 1 else "all"]
    assert dynamic["pct_of_peak"] == pytest.approx(100 * dynamic["gflops_achieved"] / roof)
    assert "GEMM roof" not in rows.loc["int8-weight-only", "notes"]  # dequantized matmuls: the fp32 roof


def test_measured_peaks_are_cached_per_machine(device):
    from workbench.paths import cache_dir

    path = cache_dir() / f"device-{device.fingerprint}.json"
    assert path.is_file()
    cached = json.loads(path.read_text())
    assert cached["peak_gflops_all"] == device.peak_gflops_all
    wb.device.cache_clear()
    started = time.perf_counter()
    again = wb.device()
    assert time.perf_counter() - started < 5  # no re-measurement; the cpuinfo read is the slow part
    assert again.peak_gflops_all == device.peak_gflops_all and again.fingerprint == device.fingerprint


_TIME_ONE = """
import json
from workbench.profiling import TimingConfig, measure_latency
print("ready", flush=True)
stats = measure_latency(lambda: sum(range(1000)), TimingConfig(min_time_s=0.05, min_runs=5, warmup_runs=0))
print(json.dumps(stats.as_row()))
"""


def test_timed_regions_of_different_processes_take_turns(tmp_path, monkeypatch):
    import subprocess
    import sys

    from workbench.profiling.timing import measurement_lock

    monkeypatch.setenv("WORKBENCH_MEASURE_LOCK", str(tmp_path / "measure.lock"))
    with measurement_lock() as held:
        assert held["held"]
        other = subprocess.Popen([sys.executable, "-c", _TIME_ONE], stdout=subprocess.PIPE, text=True)
        assert other.stdout.readline().strip() == "ready"  # imported: about to time
        time.sleep(2.0)  # this process is "timing": the other waits for it
        assert other.poll() is None, "the other process timed while this one held the lock"
    row = json.loads(other.communicate(timeout=120)[0].strip().splitlines()[-1])
    assert row["lock_wait_ms"] > 1500, row
    # in a thread that already holds it, the lock is re-entrant (a timing inside a timed region does not wait)
    with measurement_lock(), measurement_lock() as inner:
        assert inner["held"] and inner["waited_s"] == 0.0


def test_load_from_other_processes_is_measured_and_flagged(tmp_path, monkeypatch):
    import subprocess
    import sys

    from workbench.profiling.device import available_cores

    monkeypatch.setenv("WORKBENCH_MEASURE_LOCK", str(tmp_path / "measure.lock"))
    timing = TimingConfig(min_time_s=1.0, min_runs=5, warmup_runs=0)
    work = lambda: time.sleep(0.002)  # noqa: E731  (uses no core itself)
    quiet = measure_latency(work, timing, threads=1)
    cores = available_cores()
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.5)
        loaded = measure_latency(work, timing, threads=1)
    finally:
        for p in burners:
            p.kill()
            p.wait()
    assert loaded.load_others > 0.7 * cores, loaded
    assert loaded.contended is True
    assert quiet.load_others < loaded.load_others - 0.5 * cores
    row = loaded.as_row()
    assert row["contended"] is True and row["load_others"] == loaded.load_others


def test_a_trial_row_says_the_load_it_was_timed_under(cnn_results):
    import pandas as pd

    base = cnn_results.frame.iloc[0]
    assert pd.notna(base["load_others"]) and base["load_others"] >= 0
    assert base["contended"] in (True, False)
    assert base["lock_wait_ms"] >= 0
