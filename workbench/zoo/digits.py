"""scikit-learn's handwritten digits (1,797 real 8×8 scans): a deterministic split and small torch models.

    digits-cnn    conv-bn-relu ×3 on 1×8×8 (≈ 24k params)
    digits-mlp    4 × 1024 Linear layers on the 64 pixels (≈ 3.2M params; Linear-dominated)
    digits-cnn32  the same CNN shape on digits upsampled to 1×32×32 (compute-bound convolutions)
"""

from __future__ import annotations

import hashlib
import time
from functools import lru_cache

import numpy as np

from ..errors import DataError
from ..paths import cache_dir

SPLITS = ("train", "val", "test")
SEED = 0
TRAINING_VERSION = "1"  # bump when a model or its training changes: the cache key changes with it


@lru_cache(maxsize=1)
def digits_split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """60 / 20 / 20 stratified split, fixed seed; pixels scaled to [0, 1], float32, shape (n, 1, 8, 8)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None, :, :]
    y = data.target.astype(np.int64)
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=0.4, stratify=y, random_state=SEED)
    x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, test_size=0.5, stratify=y_rest,
                                                    random_state=SEED)
    return {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}


def _upsample(x: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    return F.interpolate(torch.from_numpy(x), size=(size, size), mode="bilinear", align_corners=False).numpy()


def build(name: str):
    """The untrained architecture of a zoo entry."""
    from torch import nn

    def block(cin: int, cout: int) -> list:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    if name == "digits-cnn":
        return nn.Sequential(*block(1, 16), *block(16, 32), nn.MaxPool2d(2), *block(32, 64),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    if name == "digits-cnn32":
        return nn.Sequential(*block(1, 32), *block(32, 64), nn.MaxPool2d(2), *block(64, 64), nn.MaxPool2d(2),
                             *block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))
    if name == "digits-mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                             nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    raise DataError(f"no digits architecture called {name!r}")


#: name -> (epochs, learning rate, input size)
_TRAINING = {"digits-cnn": (30, 3e-3, 8), "digits-mlp": (20, 1e-3, 8), "digits-cnn32": (12, 3e-3, 32)}


def data_for(name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    size = _TRAINING[name][2]
    split = digits_split()
    if size == 8:
        return split
    return {k: (_upsample(x, size), y) for k, (x, y) in split.items()}


def train(name: str, log: bool = False):
    """Train a zoo model from scratch, deterministically (seeded, one thread order of batches)."""
    import torch
    from torch import nn

    epochs, lr, _ = _TRAINING[name]
    x, y = data_for(name)["train"]
    torch.manual_seed(SEED)
    model = build(name)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    generator = torch.Generator().manual_seed(SEED)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xt), generator=generator)
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            optimizer.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            optimizer.step()
        scheduler.step()
        if log:
            print(f"{name} epoch {epoch + 1}/{epochs} loss {loss.item():.4f} ({time.perf_counter() - start:.1f}s)")
    return model.eval()


def _cache_path(name: str):
    import torch

    key = hashlib.sha256(f"{name}|{TRAINING_VERSION}|{_TRAINING[name]}|{torch.__version__}".encode()).hexdigest()[:12]
    return cache_dir() / "zoo" / f"{name}-{key}.pt"


def trained(name: str):
    """The trained model, from the cache (checksum verified, loaded with weights_only=True) or trained now and cached."""
    import io

    import torch

    from ..files import read_checksummed, write_checksummed

    model = build(name)
    path = _cache_path(name)
    cached = read_checksummed(path)  # None when missing or its checksum does not match
    if cached is not None:
        try:
            model.load_state_dict(torch.load(io.BytesIO(cached), map_location="cpu", weights_only=True))
            return model.eval()
        except Exception:
            path.unlink(missing_ok=True)  # written by another version: train again
    model = train(name)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    write_checksummed(path, buffer.getvalue())
    return model


def load_digits_model(name: str, split: str = "val"):
    from ..backends.torch import TorchModel
    from ..tasks import Classification

    if split not in ("val", "test"):
        raise DataError(f"split must be 'val' or 'test' (train is for fitting), got {split!r}")
    data = data_for(name)
    x, y = data[split]
    task = Classification(x, y, train=data["train"], name=f"digits/{split}")
    return TorchModel(trained(name), x[:1], copy_module=False), task
