"""Safe loading: no code runs from a model file unless the caller says it is trusted."""

import os
import uuid
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb
from workbench.errors import DataError, ModelError, UnsafeModelError
from workbench.zoo.digits import build


class _Payload:
    """Unpickling this runs a shell command: what a malicious model file does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def cnn_weights(cnn, tmp_path):
    model, _ = cnn
    path = tmp_path / "cnn.pt"
    torch.save(model.payload.state_dict(), path)
    return path


def _outputs(handle, task):
    return np.concatenate([handle.predict(b) for b in task.batches(256)])


def test_state_dict_with_architecture(cnn, cnn_weights):
    model, task = cnn
    loaded = wb.load_model(cnn_weights, architecture=build("digits-cnn"), example_input=task.sample(1))
    np.testing.assert_allclose(_outputs(loaded, task), _outputs(model, task), atol=1e-6)


def test_safetensors(cnn, tmp_path):
    from safetensors.torch import save_file

    model, task = cnn
    path = tmp_path / "cnn.safetensors"
    save_file({k: v.contiguous() for k, v in model.payload.state_dict().items()}, str(path))
    loaded = wb.load_model(path, architecture=build("digits-cnn"))
    np.testing.assert_allclose(_outputs(loaded, task), _outputs(model, task), atol=1e-6)


def test_torchscript_archive(cnn, tmp_path):
    model, task = cnn
    path = tmp_path / "cnn.ts"
    torch.jit.save(torch.jit.trace(model.payload, model.prepare(task.sample(2))), str(path))
    with pytest.raises(UnsafeModelError, match="TorchScript archive is a program"):
        wb.load_model(path)  # an archive is code: refused unless the caller trusts it
    loaded = wb.load_model(path, trusted=True)
    np.testing.assert_allclose(_outputs(loaded, task), _outputs(model, task), atol=1e-5)


def test_a_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    path = tmp_path / "evil.pt"
    torch.save({"weight": _Payload(marker)}, path)
    with pytest.raises(UnsafeModelError) as info:
        wb.load_model(path, architecture=nn.Linear(2, 2))
    assert "would execute code" in str(info.value) and "trusted=True" in str(info.value)
    assert not marker.exists()


def test_a_pickled_module_needs_trusted(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(nn.Sequential(nn.Linear(4, 2)), path)
    with pytest.raises(UnsafeModelError, match="trusted=True"):
        wb.load_model(path)
    with pytest.warns(UserWarning, match="may execute code"):
        handle = wb.load_model(path, trusted=True, example_input=np.zeros((1, 4), np.float32))
    assert handle.predict(np.ones((3, 4), np.float32)).shape == (3, 2)


@pytest.mark.parametrize("name, content, error, fragment", [
    ("corrupt.pt", b"\x00garbage" * 50, DataError, "cannot read model file"),
    ("empty.pt", b"", DataError, "is empty"),
    ("model.exe", b"MZ" * 10, DataError, "unsupported model file type '.exe'"),
    ("model", b"x" * 10, DataError, "(no suffix)"),
    ("bad.safetensors", b"{not a header" * 10, DataError, "not a valid safetensors file"),
])
def test_bad_files(tmp_path, name, content, error, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(error, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        wb.load_model(path, architecture=nn.Linear(2, 2))


def test_bad_paths_and_mismatched_weights(tmp_path, cnn_weights):
    with pytest.raises(DataError, match="no model file"):
        wb.load_model(tmp_path / "missing.pt")
    (tmp_path / "dir.pt").mkdir()
    with pytest.raises(DataError, match="not a regular file"):
        wb.load_model(tmp_path / "dir.pt")
    with pytest.raises(DataError, match="over the"):
        wb.load_model(cnn_weights, architecture=build("digits-cnn"), max_bytes=100)
    with pytest.raises(DataError, match="string or path"):
        wb.load_model(42)
    with pytest.raises(ModelError, match="pass architecture="):
        wb.load_model(cnn_weights)
    with pytest.raises(ModelError, match="do not fit the architecture"):
        wb.load_model(cnn_weights, architecture=build("digits-mlp"))
    with pytest.raises(ModelError, match="module:Class"):
        wb.load_model(cnn_weights, architecture="digits-cnn")
    with pytest.raises(ModelError, match="must be a torch.nn.Module"):
        wb.load_model(cnn_weights, architecture=42)
    not_ts = tmp_path / "archive.pt"
    with zipfile.ZipFile(not_ts, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(DataError):
        wb.load_model(not_ts, architecture=nn.Linear(2, 2))
