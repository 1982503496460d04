"""The zoo's speed-minded layers compute exactly what the stock layers compute."""
import numpy as np
import paddle
import paddle.nn as nn

from train.models import Conv2D, Features, build_model
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


def test_features_train_pool_first_with_the_same_outputs_and_gradients_bit_for_bit():
    # Integer inputs make ties in every pooling window (and all-negative windows): the cases where
    # ReLU-then-pool and pool-then-ReLU could route a gradient differently.
    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.integers(-2, 3, (6, 1, 28, 28)).astype("float32"))
    upstream = paddle.to_tensor(rng.standard_normal((6, 10)).astype("float32"))
    for name in ("cnn", "lenet", "lenet-deep"):
        paddle.seed(1)
        ours = build_model(name)
        assert any(isinstance(m, Features) for m in ours.sublayers())
        stock = build_model(name)
        stock.features = nn.Sequential(*stock.features)  # the listed order, run as listed
        stock.set_state_dict(ours.state_dict())
        for mode in ("train", "eval"):
            got = []
            for model in (ours, stock):
                getattr(model, mode)()
                model.clear_gradients()
                paddle.seed(2)  # the same dropout masks
                xi = x.clone()
                xi.stop_gradient = False
                y = model(xi)
                (y * upstream).sum().backward()
                got.append([y.numpy(), xi.grad.numpy()] + [p.grad.numpy() for p in model.parameters() if p.grad is not None])
            assert len(got[0]) == len(got[1]) > 2
            for a, b in zip(*got):
                np.testing.assert_array_equal(a, b)


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
