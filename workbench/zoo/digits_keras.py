"""digits-keras: a small Keras 3 CNN on the same digits split as the torch zoo models (channels-last).

    conv-bn-relu ×4 (32, 64, 128, 128 filters) on 8×8×1, max-pool after the second, global average pool,
    Dense(10) logits: ≈ 242k parameters, trained deterministically and cached like the torch entries.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

from ..errors import DataError
from ..paths import cache_dir
from .digits import SEED, digits_split

TRAINING_VERSION = "1"
EPOCHS, LR, BATCH = 20, 3e-3, 64


def data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The digits split with images channels-last, (n, 8, 8, 1), as Keras convolutions expect."""
    return {k: (np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y) for k, (x, y) in digits_split().items()}


def build():
    from ..backends.keras import _tf

    keras = _tf.keras3()
    layers = keras.layers

    def block(filters: int) -> list:
        # momentum 0.9: with ~340 training steps Keras' default 0.99 leaves the moving statistics unconverged
        return [layers.Conv2D(filters, 3, padding="same", use_bias=False), layers.BatchNormalization(momentum=0.9),
                layers.ReLU()]

    return keras.Sequential([keras.Input((8, 8, 1)), *block(32), *block(64), layers.MaxPooling2D(), *block(128),
                             *block(128), layers.GlobalAveragePooling2D(), layers.Dense(10)], name="digits_keras")


def train(log: bool = False):
    from ..backends.keras import _tf

    keras = _tf.keras3()
    x, y = data()["train"]
    keras.utils.set_random_seed(SEED)
    model = build()
    steps = EPOCHS * -(-len(x) // BATCH)
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LR, steps)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.perf_counter()
    model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0, shuffle=True)
    if log:
        print(f"digits-keras trained in {time.perf_counter() - start:.1f}s")
    return model


def _cache_path():
    from ..backends.keras import _tf

    versions = f"{_tf.keras3().__version__}|{_tf.tf().__version__}"
    key = hashlib.sha256(f"digits-keras|{TRAINING_VERSION}|{EPOCHS}|{LR}|{versions}".encode()).hexdigest()[:12]
    return cache_dir() / "zoo" / f"digits-keras-{key}.weights.h5"


def trained():
    """The trained model: weights from the cache, or trained now (≈ 10 s) and cached atomically."""
    import os
    import tempfile

    from ..files import read_checksummed, write_checksummed

    path = _cache_path()
    model = build()
    if read_checksummed(path) is not None:  # None when missing or its checksum does not match
        try:
            model.load_weights(str(path))
            return model
        except Exception:
            path.unlink(missing_ok=True)  # a corrupt cache entry: train again
    trained_model = train()
    model.set_weights(trained_model.get_weights())  # the uncompiled copy: no optimizer state travels with it
    with tempfile.TemporaryDirectory() as tmp:  # Keras writes weights to a path; the cache gets them atomically
        file = os.path.join(tmp, "model.weights.h5")
        model.save_weights(file)
        with open(file, "rb") as f:
            write_checksummed(path, f.read())
    return model


def load(split: str = "val"):
    from ..backends.keras import KerasModel
    from ..tasks import Classification

    if split not in ("val", "test"):
        raise DataError(f"split must be 'val' or 'test' (train is for fitting), got {split!r}")
    d = data()
    x, y = d[split]
    task = Classification(x, y, train=d["train"], name=f"digits/{split}")
    return KerasModel(trained(), x[:1]), task
