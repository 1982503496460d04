"""The zoo's speed-minded layers compute exactly what the stock layers compute."""
import numpy as np
import paddle
import paddle.nn as nn

from train.models import Conv2D
from train.optim import WeightAverage


def test_conv2d_bias_form_matches_paddle_conv2d_forward_and_backward():
    paddle.seed(0)
    stock, ours = nn.Conv2D(3, 7, 5, padding=2), Conv2D(3, 7, 5, padding=2)
    ours.set_state_dict(stock.state_dict())  # same parameter names: checkpoints are interchangeable
    x = paddle.randn([4, 3, 13, 11])
    grads = []
    for layer in (stock, ours):
        xi = x.clone()
        xi.stop_gradient = False
        y = layer(xi)
        (y * paddle.arange(y.size, dtype="float32").reshape(y.shape) / y.size).sum().backward()
        grads.append([y.numpy(), layer.weight.grad.numpy(), layer.bias.grad.numpy(), xi.grad.numpy()])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_weight_average_ramps_up_and_round_trips():
    layer = nn.Linear(3, 2)
    ema = WeightAverage(layer, decay=0.999)
    start = layer.weight.numpy().copy()
    paddle.assign(layer.weight + 1.0, layer.weight)
    ema.update(layer)  # step 1: decay min(0.999, 2/11), so the average moves most of the way
    np.testing.assert_allclose(ema.shadow["weight"].numpy(), start + 1 - 2 / 11, rtol=1e-6)
    other = WeightAverage(nn.Linear(3, 2), decay=0.999)
    other.set_state_dict(ema.state_dict())
    assert other.steps == 1
    np.testing.assert_array_equal(other.shadow["weight"].numpy(), ema.shadow["weight"].numpy())
