"""Your own model files and data: every file type loads, is measured with the recipes that apply to it, and every
mistake is one line that says what was expected. The files are made here from the zoo's trained models."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.errors import DataError, ModelError, UnsafeModelError

from .conftest import FAST
from .own_net import user_package


@pytest.fixture(scope="module")
def files(tmp_path_factory, cnn):
    """A folder of model and data files, as a user would bring them."""
    folder = tmp_path_factory.mktemp("byo")
    model, task = cnn
    np.savez(folder / "digits.npz", x=task.inputs, y=task.labels, x_train=task.train[0][:400],
             y_train=task.train[1][:400])
    np.savez(folder / "unlabelled.npz", x=task.inputs[:64])
    np.savez(folder / "too_many_classes.npz", x=task.inputs[:20], y=np.arange(20))
    study = wb.Study(model, task, timing=FAST)
    (folder / "cnn.onnx").write_bytes(study.handle("to-onnx").serialize())
    x = torch.from_numpy(task.inputs[:4])
    exported = torch.export.export(model.payload, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(exported, str(folder / "cnn.pt2"))
    torch.jit.save(torch.jit.trace(model.payload, x), str(folder / "cnn.ts"))
    net = user_package(folder, task)  # a user's own architecture in a package beside the weights
    torch.save(net.state_dict(), folder / "mlp.pt")
    from safetensors.torch import save_file

    save_file(net.state_dict(), str(folder / "mlp.safetensors"))
    # a CSV of flat features with a label and a split column
    rows = ["split," + ",".join(f"p{i}" for i in range(64)) + ",label"]
    for split, (xs, ys) in (("train", (task.train[0][:300], task.train[1][:300])), ("val", (task.inputs, task.labels))):
        rows += [f"{split}," + ",".join(f"{v:.4f}" for v in xi.ravel()) + f",{yi}" for xi, yi in zip(xs, ys)]
    (folder / "digits.csv").write_text("\n".join(rows) + "\n")
    # a folder of PNGs, one sub-folder per class, train/ and val/
    from PIL import Image

    for split, (xs, ys) in (("train", (task.train[0][:200], task.train[1][:200])), ("val", (task.inputs, task.labels))):
        for i, (xi, yi) in enumerate(zip(xs, ys)):
            target = folder / "images" / split / f"digit{yi}"
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.round(xi[0] * 255).astype(np.uint8)).save(target / f"{i}.png")
    return folder


def test_an_onnx_file_takes_ort_quantization_and_graph_levels(files):
    handle, task = wb.open_model(files / "cnn.onnx", data=files / "digits.npz")
    assert handle.format == "onnx" and handle.name == "cnn.onnx" and task.num_classes == 10
    frame = wb.Study(handle, task, timing=FAST).run(
        "int8-dynamic; int8-static; to-onnx(level=disable)", progress=False).frame.set_index("pipeline")
    assert (frame["status"] == "ok").all(), frame["error"].to_dict()
    assert frame.loc["baseline", "metric"] >= 0.95
    assert frame.loc["int8-static", "precision"] == "int8"
    assert frame.loc["int8-static", "metric"] >= frame.loc["baseline", "metric"] - 0.02
    assert frame.loc["int8-static", "size_bytes"] < 0.5 * frame.loc["baseline", "size_bytes"]
    assert "graph optimization level disable" in frame.loc["to-onnx(level=disable)", "notes"]
    assert frame.loc["baseline", "model"] == "cnn.onnx" and frame.loc["baseline", "task"] == "digits.npz"


def test_an_onnx_file_without_labels_is_measured_by_fidelity(files):
    handle, task = wb.open_model(files / "cnn.onnx", data=files / "unlabelled.npz")
    assert task.metric_name is None
    frame = wb.Study(handle, task, timing=FAST).run("int8-static", progress=False).frame.set_index("pipeline")
    assert frame.loc["int8-static", "status"] == "ok" and frame.loc["int8-static", "fidelity"] > 0.99


def test_code_bearing_files_need_trusted_and_then_run(files):
    for name in ("cnn.pt2", "cnn.ts"):
        with pytest.raises(UnsafeModelError, match="trusted=True"):
            wb.open_model(files / name, data=files / "digits.npz")
    handle, task = wb.open_model(files / "cnn.pt2", data=files / "digits.npz", trusted=True)
    frame = wb.Study(handle, task, timing=FAST).run("int8-static; to-onnx + int8-static",
                                                    progress=False).frame.set_index("pipeline")
    assert frame.loc["baseline", "metric"] >= 0.95
    # an exported program's layers are ATen calls, not modules: FX int8 cannot see them, and says what can
    assert frame.loc["int8-static", "status"] == "unsupported"
    assert "to-onnx + int8-static" in frame.loc["int8-static", "error"]
    assert frame.loc["to-onnx + int8-static", "status"] == "ok"
    assert frame.loc["to-onnx + int8-static", "metric"] >= frame.loc["baseline", "metric"] - 0.02
    ts, _ = wb.open_model(files / "cnn.ts", data=files / "digits.npz", trusted=True)
    np.testing.assert_allclose(ts.predict(task.inputs[:8]), handle.predict(task.inputs[:8]), atol=1e-4)


def test_state_dicts_with_an_architecture_by_name(files, monkeypatch):
    monkeypatch.chdir(files)
    handle, task = wb.open_model("mlp.pt", data="digits.npz", architecture="my_pkg.nets:Net")
    by_file, _ = wb.open_model("mlp.safetensors", data="digits.npz", architecture="my_pkg/nets.py:Net")
    np.testing.assert_allclose(handle.predict(task.inputs[:16]), by_file.predict(task.inputs[:16]), atol=1e-6)
    accuracy = task.score(handle.predict(task.inputs))
    assert accuracy >= 0.85, accuracy
    frame = wb.Study(handle, task, timing=FAST).run("int8-dynamic", progress=False).frame.set_index("pipeline")
    assert frame.loc["int8-dynamic", "status"] == "ok"
    assert frame.loc["int8-dynamic", "metric"] >= accuracy - 0.03
    with pytest.raises(ModelError, match="has no 'Nope'"):
        wb.open_model("mlp.pt", data="digits.npz", architecture="my_pkg.nets:Nope")
    with pytest.raises(ModelError, match="cannot import 'no_such_pkg.nets'"):
        wb.open_model("mlp.pt", data="digits.npz", architecture="no_such_pkg.nets:Net")


def test_keras_and_tflite_files(files, tmp_path):
    keras_model, keras_task = wb.zoo.load("digits-keras")
    keras_model.payload.save(tmp_path / "digits.keras")
    np.savez(tmp_path / "nhwc.npz", x=keras_task.inputs, y=keras_task.labels,
             x_train=keras_task.train[0][:300], y_train=keras_task.train[1][:300])
    handle, task = wb.open_model(tmp_path / "digits.keras", data=tmp_path / "nhwc.npz")
    study = wb.Study(handle, task, timing=FAST)
    frame = study.run("int8-static", progress=False).frame.set_index("pipeline")
    assert frame.loc["int8-static", "status"] == "ok" and frame.loc["int8-static", "runtime"] == "litert"
    assert frame.loc["int8-static", "metric"] >= frame.loc["baseline", "metric"] - 0.02
    (tmp_path / "digits.tflite").write_bytes(study.handle("int8-static").serialize())
    lite, lite_task = wb.open_model(tmp_path / "digits.tflite", data=tmp_path / "nhwc.npz")
    assert lite.format == "tflite" and lite.precision == "int8" and lite.framework == "tflite"
    frame = wb.Study(lite, lite_task, timing=FAST).run("tflite(xnnpack=false)", progress=False).frame
    assert (frame["status"] == "ok").all() and frame["metric"].min() >= 0.95
    # images laid out channels-first do not fit a channels-last model: one line that says so and how to fix it
    with pytest.raises(DataError, match=r"does not fit the model.*transpose: x.transpose\(0, 2, 3, 1\)"):
        wb.open_model(tmp_path / "digits.tflite", data=files / "digits.npz")


def test_data_files_csv_and_image_folders(files):
    handle, _ = wb.open_model(files / "cnn.onnx", data=files / "digits.npz")
    table = wb.load_data(files / "digits.csv")
    assert table.inputs.shape == (359, 64) and table.train[0].shape == (300, 64) and table.num_classes == 10
    images = wb.load_data(files / "images")
    assert images.inputs.shape == (359, 1, 8, 8) and images.train[0].shape == (200, 1, 8, 8)
    accuracy = images.score(handle.predict(images.inputs))
    assert accuracy >= 0.95, accuracy  # the PNGs hold the same digits (8-bit rounding only)
    assert wb.load_data(files / "images", layout="nhwc").inputs.shape == (359, 8, 8, 1)
    sts = wb.load_data("data/stsbenchmark/sts-dev.csv")
    assert sts.metric_name == "spearman" and sts.units == 1500
    unlabelled = wb.load_data(files / "digits.npz", task="fidelity")
    assert unlabelled.metric_name is None


@pytest.mark.parametrize("call, message", [
    (lambda f: wb.open_model(f / "cnn.onnx", data=f / "too_many_classes.npz"),
     "labels up to 19 but the model gives 10 class scores"),
    (lambda f: wb.open_model(f / "cnn.onnx"), "a model file needs data"),
    (lambda f: wb.open_model(f / "cnn.onnx", data=f / "my_pkg" / "nets.py"), "unsupported data file type '.py'"),
    (lambda f: wb.open_model(f / "my_pkg" / "nets.py", data=f / "digits.npz"), "unsupported model file type '.py'"),
    (lambda f: wb.open_model(f / "cnn.onnx", data="data/stsbenchmark/sts-dev.csv"), "not a text model"),
    (lambda f: wb.open_model(f / "cnn.onnx", data=f / "unlabelled.npz", task="classification"), "holds no labels"),
    (lambda f: wb.open_model(f / "cnn.onnx", data=f / "digits.npz", task="regression"), "unknown task 'regression'"),
    (lambda f: wb.load_data(f / "nowhere.npz"), "no data at"),
])
def test_mistakes_are_one_line_that_says_what_was_expected(files, call, message):
    with pytest.raises(DataError) as info:
        call(files)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_damaged_onnx_or_tflite_file(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage")
    (tmp_path / "bad.tflite").write_bytes(b"\x00" * 32)
    with pytest.raises(DataError, match="not a valid ONNX model"):
        wb.load_model(tmp_path / "bad.onnx")
    with pytest.raises(DataError, match="not a TFLite flatbuffer"):
        wb.load_model(tmp_path / "bad.tflite")


def test_the_command_line_takes_a_model_file_and_data(files):
    run = subprocess.run(
        [sys.executable, "-m", "workbench", "run", "--model", "mlp.pt", "--architecture", "my_pkg.nets:Net",
         "--data", "digits.csv", "--recipes", "int8-dynamic", "--min-time", "0.05", "--no-progress"],
        cwd=files, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "data: digits.csv → digits.csv: 359 samples, 10 classes, metric accuracy" in run.stderr
    assert "int8-dynamic" in run.stdout
    wrong = subprocess.run(
        [sys.executable, "-m", "workbench", "run", "--model", str(files / "cnn.pt2"), "--data",
         str(files / "digits.npz"), "--recipes", "int8-dynamic"], capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines()[-1].startswith("workbench run: error: refused to load 'cnn.pt2'")


def test_model_choices_for_the_dashboard(files):
    choices = wb.sources.model_choices(str(files / "cnn.onnx"), models_dir=files, data=str(files / "digits.npz"))
    labels = list(choices)
    assert labels[0] == "cnn.onnx" and "digits-cnn" in labels and "mlp.pt" in labels and "cnn.pt2" in labels
    assert choices["cnn.onnx"]["data"].endswith("digits.npz")
    assert choices["digits-cnn"]["data"] is None
