import time

import numpy as np
import pytest

import workbench as wb
from workbench.errors import DataError, UnknownNameError
from workbench.zoo.digits import digits_split


def _accuracy(handle, task):
    return task.score(np.concatenate([handle.predict(b) for b in task.batches(256)]))


def test_split_is_deterministic_disjoint_and_complete():
    split = digits_split()
    sizes = {k: len(v[0]) for k, v in split.items()}
    assert sum(sizes.values()) == 1797 and sizes["train"] > sizes["val"] > 0
    flat = {k: {x.tobytes() for x in v[0]} for k, v in split.items()}
    # a few digits scans are exact duplicates in the source data; the split itself is disjoint by index
    assert len(flat["train"] & flat["test"]) <= 5
    digits_split.cache_clear()
    again = digits_split()
    for k in split:
        np.testing.assert_array_equal(split[k][1], again[k][1])


@pytest.mark.parametrize("name, minimum", [("digits-cnn", 0.97), ("digits-mlp", 0.95)])
def test_zoo_models_reach_their_test_accuracy(name, minimum):
    model, task = wb.zoo.load(name, split="test")
    assert _accuracy(model, task) >= minimum
    assert task.train is not None and len(task.train[0]) > len(task)


@pytest.mark.slow
def test_compute_bound_cnn_at_32x32(device):
    model, task = wb.zoo.load("digits-cnn32", split="test")
    assert task.inputs.shape[1:] == (1, 32, 32)
    assert _accuracy(model, task) >= 0.97


def test_second_load_is_instant_from_the_cache(cnn):
    started = time.perf_counter()
    wb.zoo.load("digits-cnn")
    assert time.perf_counter() - started < 1.0


def test_unknown_model_and_split():
    with pytest.raises(UnknownNameError, match="digits-cnn"):
        wb.zoo.load("resnet-9000")
    with pytest.raises(DataError, match="'val' or 'test'"):
        wb.zoo.load("digits-cnn", split="train")


def test_cache_files_carry_a_checksum_that_is_verified(tmp_path):
    from workbench.files import read_checksummed, write_checksummed

    path = write_checksummed(tmp_path / "zoo" / "model.pt", b"weights" * 1000)
    assert (tmp_path / "zoo" / "model.pt.sha256").is_file()
    assert read_checksummed(path) == b"weights" * 1000
    damaged = bytearray(path.read_bytes())
    damaged[100] ^= 0xFF  # one flipped byte
    path.write_bytes(bytes(damaged))
    assert read_checksummed(path) is None
    assert not path.exists() and not (tmp_path / "zoo" / "model.pt.sha256").exists()  # rebuilt next time
    (tmp_path / "bare.pt").write_bytes(b"no checksum")
    assert read_checksummed(tmp_path / "bare.pt") is None


def test_the_zoo_cache_is_checksummed(cnn):
    from workbench.zoo.digits import _cache_path

    path = _cache_path("digits-cnn")
    assert path.is_file() and (path.parent / f"{path.name}.sha256").is_file()
