"""Keras 3 CNNs on the same digits split as the torch zoo models (channels-last), trained deterministically and
cached like the torch entries.

digits-keras            conv-bn-relu ×4 (32, 64, 128, 128 filters) on 8×8×1, max-pool after the second, global
                        average pool, Dense(10) logits: ≈ 242k parameters.
digits-keras-mobilenet  a MobileNet-v1-shaped CNN on the digits upsampled to 32×32 with the gray value in all three
                        channels: a 3x3 stride-2 RGB stem, five depthwise-separable blocks (64–256 channels), global
                        average pool, Dense(10): ≈ 137k parameters. The shape XNNPACK's sparse path takes
                        (backends/keras/sparse.py), explicit padding before each stride-2 layer.
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


def data(name: str = "digits-keras") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The digits split with images channels-last, (n, 8, 8, 1), as Keras convolutions expect; for the
    MobileNet, each pixel repeated 4×4 and the gray value in three channels, (n, 32, 32, 3)."""
    split = {k: (np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y) for k, (x, y) in digits_split().items()}
    if name == "digits-keras-mobilenet":
        split = {k: (np.ascontiguousarray(np.repeat(np.repeat(x, 4, axis=1), 4, axis=2).repeat(3, axis=3)), y)
                 for k, (x, y) in split.items()}
    return split


def build(name: str = "digits-keras"):
    from ..backends.keras import _tf

    keras = _tf.keras3()
    layers = keras.layers
    if name == "digits-keras-mobilenet":
        return _mobilenet(keras)

    def block(filters: int) -> list:
        # momentum 0.9: with ~340 training steps Keras' default 0.99 leaves the moving statistics unconverged
        return [layers.Conv2D(filters, 3, padding="same", use_bias=False), layers.BatchNormalization(momentum=0.9),
                layers.ReLU()]

    return keras.Sequential([keras.Input((8, 8, 1)), *block(32), *block(64), layers.MaxPooling2D(), *block(128),
                             *block(128), layers.GlobalAveragePooling2D(), layers.Dense(10)], name="digits_keras")


def _mobilenet(keras):
    layers = keras.layers

    def bn_relu() -> list:
        return [layers.BatchNormalization(momentum=0.9), layers.ReLU()]

    def separable(filters: int, stride: int) -> list:
        # stride 2: explicit padding (TensorFlow's SAME at stride 2 is asymmetric, left to run time by XNNPACK)
        depthwise = ([layers.ZeroPadding2D(1), layers.DepthwiseConv2D(3, strides=2, use_bias=False)] if stride == 2
                     else [layers.DepthwiseConv2D(3, padding="same", use_bias=False)])
        return [*depthwise, *bn_relu(), layers.Conv2D(filters, 1, use_bias=False), *bn_relu()]

    return keras.Sequential([keras.Input((32, 32, 3)), layers.ZeroPadding2D(1),
                             layers.Conv2D(32, 3, strides=2, use_bias=False), *bn_relu(),
                             *separable(64, 1), *separable(128, 2), *separable(128, 1), *separable(256, 2),
                             *separable(256, 1), layers.GlobalAveragePooling2D(), layers.Dense(10)],
                            name="digits_keras_mobilenet")


def train(name: str = "digits-keras", log: bool = False):
    from ..backends.keras import _tf

    keras = _tf.keras3()
    x, y = data(name)["train"]
    keras.utils.set_random_seed(SEED)
    model = build(name)
    steps = EPOCHS * -(-len(x) // BATCH)
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LR, steps)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.perf_counter()
    model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0, shuffle=True)
    if log:
        print(f"{name} trained in {time.perf_counter() - start:.1f}s")
    return model


def _cache_path(name: str):
    from ..backends.keras import _tf

    versions = f"{_tf.keras3().__version__}|{_tf.tf().__version__}"
    key = hashlib.sha256(f"{name}|{TRAINING_VERSION}|{EPOCHS}|{LR}|{versions}".encode()).hexdigest()[:12]
    return cache_dir() / "zoo" / f"{name}-{key}.weights.h5"


def trained(name: str = "digits-keras"):
    """The trained model: weights from the cache, or trained now (≈ 10–30 s) and cached atomically."""
    import os
    import tempfile

    from ..files import read_checksummed, write_checksummed

    path = _cache_path(name)
    model = build(name)
    if read_checksummed(path) is not None:  # None when missing or its checksum does not match
        try:
            model.load_weights(str(path))
            return model
        except Exception:
            path.unlink(missing_ok=True)  # a corrupt cache entry: train again
    trained_model = train(name)
    model.set_weights(trained_model.get_weights())  # the uncompiled copy: no optimizer state travels with it
    with tempfile.TemporaryDirectory() as tmp:  # Keras writes weights to a path; the cache gets them atomically
        file = os.path.join(tmp, "model.weights.h5")
        model.save_weights(file)
        with open(file, "rb") as f:
            write_checksummed(path, f.read())
    return model


def load(split: str = "val", name: str = "digits-keras"):
    from ..backends.keras import KerasModel
    from ..tasks import Classification

    if split not in ("val", "test"):
        raise DataError(f"split must be 'val' or 'test' (train is for fitting), got {split!r}")
    d = data(name)
    x, y = d[split]
    data_name = "digits-32x32-rgb" if name == "digits-keras-mobilenet" else "digits"
    task = Classification(x, y, train=d["train"], name=f"{data_name}/{split}")
    return KerasModel(trained(name), x[:1]), task
