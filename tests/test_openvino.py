"""OpenVINO as a runtime: to-openvino from torch, ONNX and Keras, NNCF int8 and weight compression on it, bf16 by
the CPU's ISA, the study's thread count, and what it refuses."""

import os

import numpy as np
import pytest

import workbench as wb
from workbench.errors import IncompatibleRecipesError

from .conftest import FAST

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PIPELINES = ["to-openvino", "to-openvino + int8-static", "to-openvino + int8-weight-only", "to-openvino + bf16",
             "prune(0.5) + to-openvino", "int8-dynamic + to-openvino"]


@pytest.fixture(scope="module")
def ov_rows(cnn_study):
    return cnn_study.run(PIPELINES, progress=False).frame.set_index("pipeline")


def test_openvino_fp32_matches_torch_and_says_it_forced_f32(ov_rows, cnn_study):
    row = ov_rows.loc["to-openvino"]
    assert row["status"] == "ok", row["error"]
    assert row["runtime"] == "openvino" and row["framework"] == "torch" and row["precision"] == "fp32"
    assert row["fidelity_max_abs"] < 1e-4
    assert "f32 forced" in row["engine"] and "in fp32" in row["engine"]
    handle = cnn_study.handle("to-openvino")
    xml, weights = handle.payload
    assert row["size_bytes"] == len(xml) + len(weights) and xml.startswith(b"<?xml")
    assert row["flops"] == ov_rows.loc["baseline", "flops"]  # counted on the torch model it came from
    assert {"Convolution", "MatMul"} <= handle.op_types()


def test_nncf_int8_runs_in_int8_and_keeps_accuracy(ov_rows):
    row = ov_rows.loc["to-openvino + int8-static"]
    assert row["status"] == "ok", row["error"]
    assert row["precision"] == "int8" and "in int8" in row["engine"]
    assert row["fidelity"] >= 0.98 and row["metric_delta"] >= -0.01
    assert row["size_bytes"] < 0.6 * ov_rows.loc["to-openvino", "size_bytes"]
    assert "NNCF post-training int8" in row["notes"] and "training data" in row["notes"]
    compressed = ov_rows.loc["to-openvino + int8-weight-only"]
    assert compressed["status"] == "ok", compressed["error"]
    assert compressed["fidelity_cosine"] > 0.999 and compressed["size_bytes"] < 0.6 * ov_rows.loc["to-openvino", "size_bytes"]
    assert ov_rows.loc["prune(0.5) + to-openvino", "sparsity"] == pytest.approx(0.5, abs=0.02)


def test_bf16_runs_where_the_cpu_has_it_and_says_why_not_elsewhere(ov_rows, device):
    row = ov_rows.loc["to-openvino + bf16"]
    if {"avx512_bf16", "amx_bf16"} & set(device.isa):
        assert row["status"] == "ok", row["error"]
        assert "bf16 asked" in row["engine"] and "in bf16" in row["engine"]
        assert row["fidelity_cosine"] > 0.999
    else:
        assert row["status"] == "unsupported" and "avx512_bf16 or AMX" in row["error"]


def test_what_cannot_work_is_a_reason_not_a_failure(ov_rows):
    row = ov_rows.loc["int8-dynamic + to-openvino"]
    assert row["status"] == "unsupported" and "to-openvino + int8-static" in row["error"]
    with pytest.raises(IncompatibleRecipesError, match="engine applies to torch"):
        wb.Pipeline.parse("to-openvino + int8-static(engine=x86)")
    with pytest.raises(IncompatibleRecipesError, match="two runtimes"):
        wb.Pipeline.parse("to-onnx + to-openvino")
    # the panel and a search put a precision the OpenVINO model has a handler for after the runtime
    assert wb.recipes.compose(["bf16", "to-openvino"]).spec == "to-openvino + bf16"


def test_the_study_thread_count_reaches_the_plugin(cnn_study):
    handle = cnn_study.handle("to-openvino")
    for threads in (1, 2):
        with handle.session(threads):
            assert int(handle.compiled().get_property("INFERENCE_NUM_THREADS")) == threads


def test_an_onnx_file_and_a_keras_model_convert(cnn, tmp_path):
    model, task = cnn
    onnx_path = tmp_path / "cnn.onnx"
    onnx_path.write_bytes(wb.Study(model, task, timing=FAST).handle("to-onnx").serialize())
    np.savez(tmp_path / "d.npz", x=task.inputs, y=task.labels)
    handle, file_task = wb.open_model(str(onnx_path), data=str(tmp_path / "d.npz"))
    rows = wb.Study(handle, file_task, timing=FAST).run(["to-openvino", "to-openvino + int8-static"],
                                                         progress=False).frame.set_index("pipeline")
    assert rows.loc["to-openvino", "status"] == "ok", rows.loc["to-openvino", "error"]
    assert rows.loc["to-openvino", "fidelity_max_abs"] < 1e-4
    assert rows.loc["to-openvino + int8-static", "metric_delta"] >= -0.02
    assert "evaluation inputs" in rows.loc["to-openvino + int8-static", "notes"]  # no x_train: it says so

    keras_model, keras_task = wb.zoo.load("digits-keras")
    keras_rows = wb.Study(keras_model, keras_task, timing=FAST).run(["to-openvino"], progress=False).frame
    row = keras_rows.set_index("pipeline").loc["to-openvino"]
    assert row["status"] == "ok", row["error"]
    assert row["framework"] == "keras" and row["fidelity_max_abs"] < 1e-4


def test_minilm_int8_through_nncf_keeps_the_embeddings_calibrated_on_the_train_split(text_rows):
    row = text_rows.loc["to-openvino + int8-static"]
    assert row["status"] == "ok", row["error"]
    assert row["fidelity_cosine"] >= 0.99  # mean cosine to the fp32 embeddings
    assert row["metric_delta"] >= -0.01  # Spearman on the scored pairs
    assert "transformer model type" in row["notes"] and "sts-train.csv" in row["notes"]


@pytest.fixture(scope="module")
def text_rows():
    from workbench.paths import data_dir
    from workbench.text import STS

    model, _ = wb.zoo.load("minilm-l6")
    task = STS(data_dir() / "stsbenchmark" / "sts-dev.csv", limit=150)  # calibrates on sts-train.csv
    study = wb.Study(model, task, timing=FAST, measure_memory=False, threads=min(2, os.cpu_count() or 1))
    return study.run(["to-openvino + int8-static"], progress=False).frame.set_index("pipeline")
