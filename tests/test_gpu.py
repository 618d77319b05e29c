"""What only an NVIDIA GPU runs (issue 20, item 5): int8 on CUDA and fp8 through torchao, cuDNN autotuning.

On the CPU each recipe is an `unsupported` row that says what it needs (checked here on every machine); the
`gpu`-marked tests run them on a lent GPU and are skipped, with the reason, where there is none."""

from __future__ import annotations

import pytest

import workbench as wb

from .conftest import FAST


def _no_gpu() -> str | None:
    import torch

    return None if torch.cuda.is_available() else "no CUDA device on this machine (these run where a GPU is lent)"


gpu = pytest.mark.skipif(_no_gpu() is not None, reason=str(_no_gpu()))


@pytest.fixture(scope="module")
def cpu_study():
    model, task = wb.zoo.load("digits-cnn")
    return wb.Study(model, task, timing=FAST, measure_memory=False)


@pytest.mark.parametrize("spec, needs", [
    ("fp8", "sm89+"), ("fp8(granularity=tensor)", "sm89+"), ("cudnn-benchmark", "CUDA convolution algorithms")])
def test_gpu_recipes_on_the_cpu_say_what_they_need(cpu_study, spec, needs):
    row = cpu_study.trial(spec)
    assert row["status"] == "unsupported" and needs in row["error"] and "target='cuda'" in row["error"]


def test_fp8_granularity_is_checked_before_anything_runs():
    with pytest.raises(wb.ParameterError, match="granularity"):
        wb.parse_pipelines(["fp8(granularity=column)"])


@pytest.fixture(scope="module")
def cuda_mlp():
    model, task = wb.zoo.load("digits-mlp")
    return wb.Study(model, task, timing=FAST, measure_memory=False, target="cuda")


@pytest.mark.gpu
@gpu
def test_int8_dynamic_on_cuda_goes_through_torchao_and_keeps_the_accuracy(cuda_mlp):
    row = cuda_mlp.trial("int8-dynamic")
    assert row["status"] == "ok", row["error"]
    assert row["precision"] == "int8" and "torchao int8 dynamic" in row["notes"]
    assert row["metric_delta"] >= -0.01 and row["fidelity_cosine"] > 0.99


@pytest.mark.gpu
@gpu
def test_fp8_runs_on_sm89_and_says_why_not_below(cuda_mlp):
    import torch

    row = cuda_mlp.trial("fp8")
    if torch.cuda.get_device_capability() < (8, 9):
        assert row["status"] == "unsupported" and "sm89+" in row["error"]
        return
    assert row["status"] == "ok", row["error"]
    assert row["precision"] == "fp8" and row["metric_delta"] >= -0.01 and row["fidelity_cosine"] > 0.99


@pytest.mark.gpu
@gpu
def test_cudnn_benchmark_is_a_measured_choice_for_convolutions():
    model, task = wb.zoo.load("digits-cnn")
    study = wb.Study(model, task, timing=FAST, measure_memory=False, target="cuda")
    frame = study.run(["cudnn-benchmark"], progress=False).frame.set_index("pipeline")
    row = frame.loc["cudnn-benchmark"]
    assert row["status"] == "ok", row["error"]
    assert row["metric"] == pytest.approx(frame.loc["baseline", "metric"], abs=0.005)
    assert "first_call_ms" in row["notes"] and row["first_call_ms"] > row["latency_ms_p50"]


@pytest.mark.gpu
@gpu
def test_cudnn_benchmark_refuses_a_model_without_convolutions(cuda_mlp):
    row = cuda_mlp.trial("cudnn-benchmark")
    assert row["status"] == "unsupported" and "no convolution" in row["error"]
