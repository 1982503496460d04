"""The model zoo, selected by name. Every model maps [N, 1, 28, 28] normalized images to 10 logits.

Models return logits, never probabilities: the loss applies log-softmax itself, and export adds
softmax to the published graph. So the course's "softmax twice" pitfall cannot happen by default;
`softmax_in_model=True` exists only so the experiment table can show what it costs.
"""
from __future__ import annotations

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

NUM_CLASSES = 10


class Linear(nn.Layer):
    """Multinomial logistic regression: the course's house-price model, made a classifier."""

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.fc = nn.Linear(28 * 28, NUM_CLASSES)

    def forward(self, x):
        return self.fc(paddle.flatten(x, 1))


class MLP(nn.Layer):
    """Two hidden layers with ReLU: non-linearity, but no notion of neighbouring pixels."""

    def __init__(self, dropout: float = 0.0, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(28 * 28, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, NUM_CLASSES),
        )

    def forward(self, x):
        return self.net(x)


class Conv2D(nn.Conv2D):
    """nn.Conv2D with the bias added over [N, C, H*W] instead of broadcasting [1, C, 1, 1].

    The same layer, parameters and result; on CPU Paddle's [N, C, H, W] + [1, C, 1, 1] broadcast
    add and its backward reduction cost ~3.5x the CPU time of this form (bench: lenet spent 38% of
    its training step there). State dicts are interchangeable with nn.Conv2D's.
    """

    def forward(self, x):
        if self.bias is None or self._data_format != "NCHW":
            return super().forward(x)
        y = F.conv2d(x, self.weight, None, self._stride, self._padding, self._dilation, self._groups, self._data_format)
        c, h, w = y.shape[1], y.shape[2], y.shape[3]
        return paddle.reshape(paddle.reshape(y, [0, c, -1]) + paddle.reshape(self.bias, [c, 1]), [0, c, h, w])


class Features(nn.Sequential):
    """nn.Sequential that trains each ReLU + max-pool pair in the other order: max-pool through
    Paddle's indexed kernel, then ReLU. The same outputs and the same gradients (both functions are
    monotone and ReLU's zero stays a zero; each window's first maximum gets the gradient, ties
    included), with the ReLU on a quarter of the values and a max-pool backward that scatters
    through the saved indices instead of searching every window again: `cnn` trains 1.15-1.2x
    as many images a second on one core, with the same weights bit for bit (README, Training
    speed). Evaluation and export run the layers as listed, ReLU first, which inference engines
    fuse into the convolution."""

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        layers = list(self._sub_layers.values())
        pooled = False  # the layer was run with the ReLU before it
        for layer, after in zip(layers, layers[1:] + [None]):
            if pooled:
                pooled = False
            elif isinstance(layer, nn.ReLU) and isinstance(after, nn.MaxPool2D) and not after.return_mask and after.data_format == "NCHW":
                x = F.relu(F.max_pool2d(x, after.ksize, after.stride, after.padding, return_mask=True,
                                        ceil_mode=after.ceil_mode, data_format=after.data_format)[0])
                pooled = True
            else:
                x = layer(x)
        return x


class LeNet(nn.Layer):
    """The course's CNN: conv 5x5 -> max-pool -> conv 5x5 -> max-pool -> fully connected.

    `extra_block` adds the course homework's "one more conv + pool" variant.
    """

    def __init__(self, dropout: float = 0.0, channels: int = 20, extra_block: bool = False):
        super().__init__()
        layers = [
            Conv2D(1, channels, 5, padding=2), nn.ReLU(), nn.MaxPool2D(2, 2),
            Conv2D(channels, channels, 5, padding=2), nn.ReLU(), nn.MaxPool2D(2, 2),
        ]
        side = 7
        if extra_block:
            layers += [Conv2D(channels, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2D(2, 2)]
            side = 3
        self.features = Features(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels * side * side, NUM_CLASSES)

    def forward(self, x):
        return self.fc(self.dropout(paddle.flatten(self.features(x), 1)))


def _conv_bn(cin: int, cout: int, k: int) -> list[nn.Layer]:
    return [nn.Conv2D(cin, cout, k, padding=k // 2, bias_attr=False), nn.BatchNorm2D(cout), nn.ReLU()]


class CNN(nn.Layer):
    """The default: three conv + batch-norm blocks, dropout and a small head.

    Sized for a 2-core CPU: about 8 M multiply-adds per image, ~0.1 M parameters.
    """

    def __init__(self, dropout: float = 0.3):
        super().__init__()
        self.features = Features(
            *_conv_bn(1, 32, 5), nn.MaxPool2D(2, 2),      # 28 -> 14
            *_conv_bn(32, 64, 3), nn.MaxPool2D(2, 2),     # 14 -> 7
            *_conv_bn(64, 128, 3), nn.MaxPool2D(2, 2),    # 7 -> 3
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(128 * 3 * 3, NUM_CLASSES)

    def forward(self, x):
        return self.fc(self.dropout(paddle.flatten(self.features(x), 1)))


class WithSoftmax(nn.Layer):
    """Wraps a logits model so it outputs probabilities: used by export, and by the pitfall demo."""

    def __init__(self, net: nn.Layer):
        super().__init__()
        self.net = net

    def forward(self, x):
        return F.softmax(self.net(x), axis=-1)


ZOO = {
    "linear": Linear,
    "mlp": MLP,
    "lenet": LeNet,
    "lenet-deep": lambda dropout=0.0: LeNet(dropout, extra_block=True),
    "cnn": CNN,
}
DEFAULT_MODEL = "cnn"


def build_model(name: str, dropout: float = 0.0, softmax_in_model: bool = False) -> nn.Layer:
    """A fresh model from the zoo by name."""
    if name not in ZOO:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(ZOO)}")
    model = ZOO[name](dropout=dropout)
    return WithSoftmax(model) if softmax_in_model else model


def count_parameters(model: nn.Layer) -> int:
    return int(sum(p.size for p in model.parameters()))
