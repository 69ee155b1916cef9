"""The numpy network: gradients match finite differences, training learns, seeds repeat."""

import numpy as np

from spotify_mpc import model


def test_gradient_check():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 5))
    y = (rng.random(7) < 0.5).astype(float)
    params = model.init_params(5, seed=3)
    for k in params:  # non-zero biases so every ReLU branch is exercised
        params[k] = params[k] + 0.05 * rng.standard_normal(params[k].shape)
    z, cache = model.forward(params, x)
    grads = model.backward(params, cache, z, y)
    eps = 1e-6
    for name, p in params.items():
        for idx in [tuple(rng.integers(0, s) for s in p.shape) for _ in range(6)]:
            old = p[idx]
            p[idx] = old + eps
            up = model.bce_with_logits(model.forward(params, x)[0], y)
            p[idx] = old - eps
            down = model.bce_with_logits(model.forward(params, x)[0], y)
            p[idx] = old
            numeric = (up - down) / (2 * eps)
            assert abs(numeric - grads[name][idx]) < 1e-6 + 1e-4 * abs(numeric), (name, idx)


def test_architecture_is_128_64_1():
    p = model.init_params(11)
    assert p["W1"].shape == (11, 128) and p["W2"].shape == (128, 64) and p["W3"].shape == (64, 1)


def test_training_learns_and_is_seeded():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30000, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
    a = model.train(x, y, feature_names=list("abcd"), epochs=4, seed=5)
    b = model.train(x, y, feature_names=list("abcd"), epochs=4, seed=5)
    assert a["params"] == b["params"]
    assert a["train_loss"][-1] < 0.5 * a["train_loss"][0]
    p = model.predict(a, x)
    assert ((p > 0.5) == (y > 0.5)).mean() > 0.95
    assert a["batch_size"] == 1024 and a["layers"] == [128, 64]
