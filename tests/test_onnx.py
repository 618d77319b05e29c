"""ONNX export and ONNX Runtime: the third runtime, with its own int8 paths."""

import numpy as np
import onnx
import pytest

import workbench as wb
from workbench.errors import IncompatibleRecipesError, ParameterError

from .conftest import FAST


@pytest.fixture(scope="module")
def ort_rows(cnn_study):
    return cnn_study.run(["to-onnx", "to-onnx(level=disable)", "to-onnx + int8-dynamic",
                          "to-onnx + int8-static", "prune(0.5) + to-onnx", "fold-bn + to-onnx",
                          "to-onnx(exporter=torchscript) + int8-static"],
                         progress=False).frame.set_index("pipeline")


@pytest.mark.parametrize("spec, min_fidelity", [("to-onnx", 1.0), ("to-onnx(level=disable)", 1.0),
                                               ("to-onnx + int8-dynamic", 0.98),
                                               ("to-onnx + int8-static", 0.98), ("fold-bn + to-onnx", 1.0)])
def test_ort_trials_are_faithful(ort_rows, spec, min_fidelity):
    row = ort_rows.loc[spec]
    assert row["status"] == "ok", row["error"]
    assert row["runtime"] == "onnxruntime" and row["framework"] == "torch"  # exported from torch
    assert row["fidelity"] >= min_fidelity
    assert row["metric_delta"] >= -0.01


def test_ort_fp32_matches_torch_and_int8_is_smaller(ort_rows, cnn_study):
    assert ort_rows.loc["to-onnx", "fidelity_max_abs"] < 1e-4
    assert ort_rows.loc["to-onnx + int8-static", "size_bytes"] < 0.5 * ort_rows.loc["to-onnx", "size_bytes"]
    assert ort_rows.loc["to-onnx + int8-dynamic", "precision"] == "int8"
    assert ort_rows.loc["prune(0.5) + to-onnx", "sparsity"] == pytest.approx(0.5, abs=0.02)
    assert ort_rows.loc["to-onnx", "flops"] == ort_rows.loc["baseline", "flops"]
    model = onnx.load_from_string(cnn_study.handle("to-onnx").serialize())
    onnx.checker.check_model(model)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a dynamic batch axis


def test_the_torchscript_exporter_is_a_choice_with_the_same_layers(ort_rows, cnn_study):
    row = ort_rows.loc["to-onnx(exporter=torchscript) + int8-static"]
    assert row["status"] == "ok", row["error"]
    assert row["fidelity"] >= 0.98 and row["metric_delta"] >= -0.01 and "TorchScript exporter" in row["notes"]
    legacy, dynamo = cnn_study.handle("to-onnx(exporter=torchscript)"), cnn_study.handle("to-onnx")
    changed = cnn_study.handle("to-onnx(exporter=torchscript) + int8-static").changed_layers
    assert len(changed) >= 3 and changed == cnn_study.handle("to-onnx + int8-static").changed_layers  # module
    # paths read from its node names
    graph = onnx.load_from_string(legacy.serialize()).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param and graph.output[0].type.tensor_type.shape.dim[0].dim_param
    np.testing.assert_allclose(legacy.predict(cnn_study.task.sample(3)), dynamo.predict(cnn_study.task.sample(3)),
                               atol=1e-4)
    with pytest.raises(ParameterError, match="dynamo, torchscript"):
        wb.Pipeline.parse("to-onnx(exporter=jit)")


def test_isa_aware_int8_defaults_say_what_was_chosen(ort_rows, device):
    notes = ort_rows.loc["to-onnx + int8-dynamic", "notes"]
    if device.int8_reduce_range:
        assert "7-bit weights (reduce_range)" in notes
    else:
        assert "8-bit weights (u8s8" in notes


def test_threads_are_set_on_the_session(cnn_study):
    handle = cnn_study.handle("to-onnx")
    x = cnn_study.task.sample(4)
    with handle.session(1):
        one = handle.predict(x)
        assert handle._session().get_session_options().intra_op_num_threads == 1
    np.testing.assert_allclose(one, handle.predict(x), atol=1e-5)


def test_what_cannot_work(cnn):
    model, task = cnn
    with pytest.raises(IncompatibleRecipesError, match="put to-onnx before it"):
        wb.Pipeline.parse("ort-int8-dynamic")  # an old name keeps its meaning
    with pytest.raises(IncompatibleRecipesError, match="two runtimes"):
        wb.Pipeline.parse("to-onnx + compile")
    with pytest.raises(ParameterError, match="disable, basic, extended, all"):
        wb.Pipeline.parse("to-onnx(level=max)")
    study = wb.Study(model, task, timing=FAST, measure_memory=False)
    row = study.trial("int8-dynamic + to-onnx")  # torch's quantized modules do not export
    assert row["status"] == "unsupported" and "ONNX export failed" in row["error"] and "\x1b[" not in row["error"]
