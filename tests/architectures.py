"""The architectures people bring, built small with random weights (seeded), for the coverage matrix
(tests/test_coverage.py): each builder returns (model, inputs, training inputs).

torchvision cannot be installed beside the CPU build of torch 2.13 that this project pins (its wheels need the
CUDA build of a newer torch), so resnet18 and mobilenet_v3_small are written here layer for layer as torchvision
defines them (BasicBlock [2, 2, 2, 2]; inverted residuals with squeeze-excitation and hardswish), at the
widths torchvision uses but on 32x32 inputs. The BERT-like encoder is Hugging Face's BertForSequenceClassification
from a tiny config.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SEQ, WIDTH, VOCAB, CLASSES = 6, 32, 100, 10
#: evaluation and training samples per architecture
SAMPLES, TRAIN = 16, 64
#: the names of the builders below, without importing a framework
TORCH_NAMES = ("TransformerEncoder", "TransformerEncoder (seq first)", "MultiheadAttention", "LSTM",
               "LSTM (bidirectional)", "GRU", "GRU (bidirectional)", "Embedding", "EmbeddingBag",
               "depthwise-separable CNN", "grouped + dilated CNN", "residual MLP", "resnet18", "mobilenet_v3_small",
               "BERT (tiny config)")
KERAS_NAMES = ("functional, residual adds", "SeparableConv2D", "LSTM", "MultiHeadAttention", "subclassed model")


def _floats(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _tokens(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, VOCAB, shape).astype(np.int64)


# -- torch ------------------------------------------------------------------------------------------------

def torch_models() -> dict[str, Callable[[], tuple]]:
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Head(nn.Module):
        """Mean over the sequence, then class scores."""

        def __init__(self, width: int = WIDTH):
            super().__init__()
            self.fc = nn.Linear(width, CLASSES)

        def forward(self, x):
            return self.fc(x.mean(1))

    class Encoder(nn.Module):
        def __init__(self, batch_first: bool):
            super().__init__()
            self.batch_first = batch_first
            layer = nn.TransformerEncoderLayer(WIDTH, nhead=4, dim_feedforward=64, dropout=0.1,
                                               batch_first=batch_first)
            self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
            self.head = Head()

        def forward(self, x):
            if not self.batch_first:
                return self.head(self.encoder(x.transpose(0, 1)).transpose(0, 1))
            return self.head(self.encoder(x))

    class SelfAttention(nn.Module):
        """nn.MultiheadAttention on its own: forward returns its (output, weights) tuple."""

        def __init__(self):
            super().__init__()
            self.attention = nn.MultiheadAttention(WIDTH, num_heads=4, batch_first=True)

        def forward(self, x):
            return self.attention(x, x, x)

    class Recurrent(nn.Module):
        def __init__(self, cell: type, bidirectional: bool):
            super().__init__()
            self.rnn = cell(WIDTH, WIDTH, num_layers=1, batch_first=True, bidirectional=bidirectional)
            self.fc = nn.Linear(WIDTH * (2 if bidirectional else 1), CLASSES)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.fc(out[:, -1])

    class Embedded(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(VOCAB, WIDTH)
            self.fc1 = nn.Linear(WIDTH, WIDTH)
            self.fc2 = nn.Linear(WIDTH, CLASSES)

        def forward(self, tokens):
            return self.fc2(F.relu(self.fc1(self.embedding(tokens).mean(1))))

    class Bagged(nn.Module):
        def __init__(self):
            super().__init__()
            self.bag = nn.EmbeddingBag(VOCAB, WIDTH, mode="mean")
            self.fc = nn.Linear(WIDTH, CLASSES)

        def forward(self, tokens):
            return self.fc(self.bag(tokens))

    def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, dilation: int = 1,
                act: type = nn.ReLU) -> nn.Sequential:
        pad = dilation * (k // 2)
        return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=False),
                             nn.BatchNorm2d(cout), act())

    def classifier(width: int) -> nn.Sequential:
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, CLASSES))

    def separable() -> nn.Module:
        return nn.Sequential(conv_bn(3, 16), conv_bn(16, 16, groups=16), conv_bn(16, 32, k=1),
                             conv_bn(32, 32, stride=2, groups=32), conv_bn(32, 32, k=1), classifier(32))

    def grouped_dilated() -> nn.Module:
        return nn.Sequential(conv_bn(3, 16), conv_bn(16, 32, groups=4), conv_bn(32, 32, dilation=2),
                             conv_bn(32, 32, groups=8, dilation=2), classifier(32))

    class ResidualMLP(nn.Module):
        def __init__(self, blocks: int = 3):
            super().__init__()
            self.stem = nn.Linear(64, WIDTH * 2)
            self.blocks = nn.ModuleList(
                nn.Sequential(nn.LayerNorm(WIDTH * 2), nn.Linear(WIDTH * 2, WIDTH * 4), nn.GELU(),
                              nn.Linear(WIDTH * 4, WIDTH * 2)) for _ in range(blocks))
            self.fc = nn.Linear(WIDTH * 2, CLASSES)

        def forward(self, x):
            x = self.stem(x)
            for block in self.blocks:
                x = x + block(x)
            return self.fc(x)

    class BasicBlock(nn.Module):  # torchvision.models.resnet.BasicBlock
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class ResNet18(nn.Module):  # torchvision.models.resnet18(num_classes=10), widths 64..512
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            layers, cin = [], 64
            for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
                cin = cout
            self.layer1, self.layer2, self.layer3, self.layer4 = layers
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, CLASSES)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    class SqueezeExcitation(nn.Module):  # torchvision.ops.SqueezeExcitation
        def __init__(self, channels: int, squeeze: int):
            super().__init__()
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc1 = nn.Conv2d(channels, squeeze, 1)
            self.fc2 = nn.Conv2d(squeeze, channels, 1)
            self.activation = nn.ReLU()
            self.scale_activation = nn.Hardsigmoid()

        def forward(self, x):
            scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
            return scale * x

    def divisible(v: float) -> int:
        return max(8, int(v + 4) // 8 * 8)

    class InvertedResidual(nn.Module):  # torchvision.models.mobilenetv3.InvertedResidual
        def __init__(self, cin: int, k: int, expanded: int, cout: int, se: bool, act: type, stride: int):
            super().__init__()
            self.use_res_connect = stride == 1 and cin == cout
            layers = [] if expanded == cin else [conv_bn(cin, expanded, 1, act=act)]
            layers.append(conv_bn(expanded, expanded, k, stride, groups=expanded, act=act))
            if se:
                layers.append(SqueezeExcitation(expanded, divisible(expanded // 4)))
            layers.append(nn.Sequential(nn.Conv2d(expanded, cout, 1, bias=False), nn.BatchNorm2d(cout)))
            self.block = nn.Sequential(*layers)

        def forward(self, x):
            out = self.block(x)
            return out + x if self.use_res_connect else out

    class MobileNetV3Small(nn.Module):  # torchvision.models.mobilenet_v3_small(num_classes=10)
        SETTINGS = ((16, 3, 16, 16, True, "RE", 2), (16, 3, 72, 24, False, "RE", 2),
                    (24, 3, 88, 24, False, "RE", 1), (24, 5, 96, 40, True, "HS", 2),
                    (40, 5, 240, 40, True, "HS", 1), (40, 5, 240, 40, True, "HS", 1),
                    (40, 5, 120, 48, True, "HS", 1), (48, 5, 144, 48, True, "HS", 1),
                    (48, 5, 288, 96, True, "HS", 2), (96, 5, 576, 96, True, "HS", 1),
                    (96, 5, 576, 96, True, "HS", 1))

        def __init__(self):
            super().__init__()
            acts = {"RE": nn.ReLU, "HS": nn.Hardswish}
            layers = [conv_bn(3, 16, 3, 2, act=nn.Hardswish)]
            layers += [InvertedResidual(cin, k, exp, cout, se, acts[a], s) for cin, k, exp, cout, se, a, s
                       in self.SETTINGS]
            layers.append(conv_bn(96, 576, 1, act=nn.Hardswish))
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(), nn.Dropout(0.2),
                                            nn.Linear(1024, CLASSES))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    def bert() -> nn.Module:
        from transformers import BertConfig, BertForSequenceClassification
        from transformers.utils import logging

        logging.set_verbosity_error()
        config = BertConfig(vocab_size=VOCAB, hidden_size=WIDTH, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=64, num_labels=CLASSES)
        return BertForSequenceClassification(config)

    sequence = ((SEQ, WIDTH), _floats)
    tokens = ((SEQ,), _tokens)
    image = ((3, 32, 32), _floats)
    flat = ((64,), _floats)
    builders = {
        "TransformerEncoder": (lambda: Encoder(True), sequence),
        "TransformerEncoder (seq first)": (lambda: Encoder(False), sequence),
        "MultiheadAttention": (SelfAttention, sequence),
        "LSTM": (lambda: Recurrent(nn.LSTM, False), sequence),
        "LSTM (bidirectional)": (lambda: Recurrent(nn.LSTM, True), sequence),
        "GRU": (lambda: Recurrent(nn.GRU, False), sequence),
        "GRU (bidirectional)": (lambda: Recurrent(nn.GRU, True), sequence),
        "Embedding": (Embedded, tokens),
        "EmbeddingBag": (Bagged, tokens),
        "depthwise-separable CNN": (separable, image),
        "grouped + dilated CNN": (grouped_dilated, image),
        "residual MLP": (ResidualMLP, flat),
        "resnet18": (ResNet18, image),
        "mobilenet_v3_small": (MobileNetV3Small, image),
        "BERT (tiny config)": (bert, tokens),
    }

    def make(build, kind):
        def build_with_data():
            torch.manual_seed(0)
            model = build()
            shape, draw = kind
            inputs, train = draw((SAMPLES, *shape), 1), draw((TRAIN, *shape), 2)
            _settle_batch_norm(model, torch.from_numpy(train))
            return model.eval(), inputs, train
        return build_with_data

    assert tuple(builders) == TORCH_NAMES
    return {name: make(build, kind) for name, (build, kind) in builders.items()}


def _settle_batch_norm(model, x) -> None:
    """BatchNorm running statistics from the training inputs, as a trained model has them (random ones would
    make every forward pass in train mode, as fine-tuning runs, a different model from the eval-mode one)."""
    import torch
    from torch import nn

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for batch in x.split(16):
            model(batch)
    for m in norms:
        m.momentum = 0.1


# -- Keras ------------------------------------------------------------------------------------------------

def keras_models() -> dict[str, Callable[[], tuple]]:
    import keras
    from keras import layers

    def residual() -> keras.Model:
        inputs = keras.Input((8, 8, 3))
        x = layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
        y = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
        y = layers.Conv2D(16, 3, padding="same")(y)
        x = layers.ReLU()(layers.Add()([x, y]))
        outputs = layers.Dense(CLASSES)(layers.GlobalAveragePooling2D()(x))
        return keras.Model(inputs, outputs, name="residual_cnn")

    def separable() -> keras.Model:
        inputs = keras.Input((8, 8, 3))
        x = layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
        x = layers.SeparableConv2D(32, 3, padding="same", activation="relu")(x)
        x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        outputs = layers.Dense(CLASSES)(layers.GlobalAveragePooling2D()(x))
        return keras.Model(inputs, outputs, name="separable_cnn")

    def lstm() -> keras.Model:
        inputs = keras.Input((SEQ, WIDTH))
        outputs = layers.Dense(CLASSES)(layers.LSTM(WIDTH)(inputs))
        return keras.Model(inputs, outputs, name="lstm")

    def attention() -> keras.Model:
        inputs = keras.Input((SEQ, WIDTH))
        x = layers.MultiHeadAttention(num_heads=4, key_dim=8)(inputs, inputs)
        x = layers.LayerNormalization()(layers.Add()([inputs, x]))
        outputs = layers.Dense(CLASSES)(layers.GlobalAveragePooling1D()(x))
        return keras.Model(inputs, outputs, name="attention")

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__(name="subclassed")
            self.hidden = layers.Dense(WIDTH, activation="relu")
            self.out = layers.Dense(CLASSES)

        def call(self, x):
            return self.out(self.hidden(x))

    def subclassed() -> keras.Model:
        model = Subclassed()
        model(_floats((1, 64), 0))
        return model

    image, sequence, flat = (8, 8, 3), (SEQ, WIDTH), (64,)
    builders = {
        "functional, residual adds": (residual, image),
        "SeparableConv2D": (separable, image),
        "LSTM": (lstm, sequence),
        "MultiHeadAttention": (attention, sequence),
        "subclassed model": (subclassed, flat),
    }

    def make(build, shape):
        def build_with_data():
            keras.utils.set_random_seed(0)
            return build(), _floats((SAMPLES, *shape), 1), _floats((TRAIN, *shape), 2)
        return build_with_data

    assert tuple(builders) == KERAS_NAMES
    return {name: make(build, shape) for name, (build, shape) in builders.items()}
