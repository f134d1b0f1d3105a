"""Every model on tiny data: shapes, the loss falls, known answers, the NaN guard."""

import numpy as np
import pytest
from helpers import make_dataset

from jaxpipe import models
from jaxpipe.models import TrainingError, check_loss, cnn, linreg, logreg, mlp, softmax

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
XOR_Y = np.array([0, 1, 1, 0])


def separable(n: int = 80, d: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int32)


def test_logreg_loss_falls_and_fits() -> None:
    x, y = separable()
    cfg = logreg.Config(steps=50, lr=0.5, l2=0.0, track_accuracy=True)
    fit = logreg.fit(cfg, make_dataset(train=(x, y), test=(x, y)))
    params, history, _ = fit.params, fit.history, fit.info
    loss = np.asarray(history["train_loss"])
    assert params["w"].shape == (3,) and params["c"].shape == ()
    assert loss.shape == (50,) and loss[-1] < loss[0] * 0.6
    assert float(history["test_accuracy"][-1]) > 0.95


def test_logreg_matches_the_write_up_loop() -> None:
    """Two separate grad calls per step (the write-up) and our fused step agree."""
    import jax
    x, y = separable(40)
    cfg = logreg.Config(steps=5, lr=0.1, l2=0.1, w_init=1e-5, c_init=1.0)
    params = logreg.fit(cfg, make_dataset(train=(x, y))).params
    w, c = np.full(3, 1e-5, np.float32), np.float32(1.0)
    yf = y.astype(np.float32)

    def loss(w, c):
        return logreg.loss({"w": w, "c": c}, x, yf, 0.1)

    for _ in range(5):
        gw, gc = jax.grad(loss, 0)(w, c), jax.grad(loss, 1)(w, c)
        w, c = w - 0.1 * gw, c - 0.1 * gc
    np.testing.assert_allclose(params["w"], w, rtol=1e-5)
    np.testing.assert_allclose(params["c"], c, rtol=1e-5)


def test_softmax_learns_three_classes() -> None:
    rng = np.random.default_rng(1)
    centers = np.array([[3, 0], [-3, 0], [0, 3]], dtype=np.float32)
    y = np.repeat(np.arange(3), 30)
    x = (centers[y] + rng.normal(size=(90, 2))).astype(np.float32)
    cfg = softmax.Config(steps=200, lr=0.1)
    fit = softmax.fit(cfg, make_dataset(train=(x, y)))
    params, history = fit.params, fit.history
    probs = softmax.predict(cfg, params, x)
    assert probs.shape == (90, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.mean(probs.argmax(1) == y) > 0.95
    assert history["train_loss"][-1] < history["train_loss"][0]


def test_xor_converges_with_the_write_up_recipe() -> None:
    cfg = mlp.Config()
    fit = mlp.fit(cfg, make_dataset(train=(XOR_X, XOR_Y)))
    params, history, info = fit.params, fit.history, fit.info
    assert info["converged"] and info["steps"] % 10 == 0
    assert len(history["train_loss"]) == info["steps"]
    assert np.array_equal(mlp.predict(cfg, params, XOR_X) > 0.5, XOR_Y == 1)


def test_xor_stops_at_max_steps_when_it_cannot_converge() -> None:
    cfg = mlp.Config(lr=1e-6, max_steps=30)
    fit = mlp.fit(cfg, make_dataset(train=(XOR_X, XOR_Y)))
    _, history, info = fit.params, fit.history, fit.info
    assert not info["converged"] and info["steps"] == 30 and len(history["train_loss"]) == 30


def test_linreg_recovers_known_weights() -> None:
    """The write-up's recipe lands within 0.1 of the closed-form least-squares fit."""
    rng = np.random.default_rng(0)
    x = (10 * rng.uniform(size=(1000, 2))).astype(np.float32)
    y = (x @ np.array([3.0, 4.0]) + rng.uniform(size=1000) + 5.0).astype(np.float32)
    fit = linreg.fit(linreg.Config(), make_dataset(train=(x, y)))
    params, history = fit.params, fit.history
    design = np.column_stack([x, np.ones(len(x))]).astype(np.float64)
    exact = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)[0]
    np.testing.assert_allclose(params["w"], exact[:2], atol=0.1)
    assert abs(float(params["b"]) - exact[2]) < 0.1
    assert history["train_loss"][-1] < 0.1 * history["train_loss"][0]


def test_cnn_shapes_and_a_short_run_lowers_loss() -> None:
    rng = np.random.default_rng(0)
    y = np.arange(128) % 10
    x = rng.uniform(0, 0.2, size=(128, 28, 28, 1)).astype(np.float32)
    for i, label in enumerate(y):
        x[i, 2 * label: 2 * label + 3, 4:24, 0] = 1.0
    cfg = cnn.Config(epochs=3, batch_size=16, lr=3e-3, eval_batch_size=50)
    data = make_dataset(train=(x, y.astype(np.int32)), val=(x[:60], y[:60].astype(np.int32)))
    fit = cnn.fit(cfg, data)
    params, history, info = fit.params, fit.history, fit.info
    probs = cnn.predict(cfg, params, x[:55])
    assert probs.shape == (55, 10)  # the last partial batch is scored too
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert info["best_epoch"] == int(np.argmin(history["val_loss"])) + 1


def test_nan_guard_names_the_step() -> None:
    check_loss(np.array([1.0, 0.5, 9.9]), 10.0)
    with pytest.raises(TrainingError, match="at step 3; no model written"):
        check_loss(np.array([1.0, 0.5, np.nan, 0.2]), 10.0)
    with pytest.raises(TrainingError, match="loss is inf at step 12"):
        check_loss(np.array([1.0, np.inf]), 10.0, first_step=10)
    with pytest.raises(TrainingError, match=r"loss 10.5 is over the ceiling 10 .* at step 7;"):
        check_loss(np.array([1.0, 10.5]), 10.0, first_step=5)
    assert models.baseline_loss("binary", np.array([0, 1])) == pytest.approx(np.log(2))
    assert models.baseline_loss("multiclass", np.arange(10)) == pytest.approx(np.log(10))
    assert models.baseline_loss("regression", np.array([1.0, 3.0])) == 1.0


def test_divergent_logreg_run_is_stopped() -> None:
    from jaxpipe.models import check_loss as guard
    x, y = separable()
    cfg = logreg.Config(steps=20, lr=1e30, l2=1e30)
    history = logreg.fit(cfg, make_dataset(train=(x * 1e20, y))).history
    with pytest.raises(TrainingError, match="at step"):
        guard(np.asarray(history["train_loss"]), cfg.max_loss_growth * np.log(2))


def test_shifted_conv_is_the_same_function_as_nnx_conv() -> None:
    from flax import nnx
    conv = nnx.Conv(3, 8, kernel_size=(3, 3), rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).normal(size=(2, 6, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(cnn.conv3x3_shifted(x, conv.kernel[...], conv.bias[...]),
                               conv(x), rtol=1e-5, atol=1e-5)


def test_compiler_options_are_passed_to_xla() -> None:
    good = (("xla_cpu_experimental_ynn_fusion_type", "LIBRARY_FUSION_TYPE_DOT"),)
    graphdef, params = cnn.init(0)
    x = np.zeros((2, 28, 28, 1), np.float32)
    assert cnn.compiled_steps(good)[1](graphdef, params, x).shape == (2, 10)
    bad = (("xla_cpu_experimental_ynn_fusion_type", "NOT_A_TYPE"),)
    with pytest.raises(Exception, match="NOT_A_TYPE|not a valid"):
        cnn.compiled_steps(bad)[1](graphdef, params, x)


@pytest.mark.parametrize("kind", ["logreg", "softmax", "mlp", "linreg"])
def test_an_absurd_learning_rate_stops_training(kind: str) -> None:
    """lr = 1e6 must not finish with garbage metrics: the divergence rule stops it."""
    from jaxpipe.train import TrainConfig, train

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2)).astype(np.float32)
    noisy = x[:, 0] + rng.normal(size=60) > 0  # not separable: huge steps overshoot
    y = noisy.astype(np.int32) if kind != "linreg" else (3 * x[:, 0] + 1).astype("f4")
    module = models.load(kind)
    cfg = module.Config(lr=1e6)
    with pytest.raises(TrainingError, match="training diverged"):
        train(TrainConfig(kind, cfg), make_dataset(train=(x, y), test=(x, y)))


def test_cnn_refuses_labels_and_shapes_it_cannot_learn() -> None:
    x = np.zeros((70, 28, 28, 1), np.float32)
    y = np.arange(70) % 10
    bad = y.copy()
    bad[5] = 200
    with pytest.raises(Exception, match=r"memory/train: row 6: label 200 is not one of"):
        cnn.fit(cnn.Config(epochs=1), make_dataset(train=(x, bad), val=(x, y)))
    with pytest.raises(Exception, match=r"memory/val: expected \(n > 0\) images of \(28, 28\), "
                                        r"got \(70, 784, 1\)"):
        cnn.fit(cnn.Config(epochs=1), make_dataset(train=(x, y), val=(x.reshape(70, 784, 1, 1),
                                                                     y)))


def test_the_bar_shows_the_epochs_mean_loss_so_far() -> None:
    import jax.numpy as jnp

    from jaxpipe.models.cnn.loop import RunningMean

    losses = [jnp.float32(v) for v in (4.0, 2.0)]
    mean = RunningMean()
    assert mean.add(losses) == 3.0
    losses += [jnp.float32(v) for v in (0.0, 2.0)]
    assert mean.add(losses) == 2.0 and mean.read == 4  # only the new ones were read


def test_softmax_gradient_through_its_stored_transpose_is_autodiffs() -> None:
    """The weight gradient is computed as x_t @ g (a product YNNPACK takes, the same bytes
    on every CPU): the same gradient as differentiating x @ W."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = jax.nn.one_hot(rng.integers(0, 3, 64), 3)
    params = {"W": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32), "b": jnp.zeros(3)}

    def plain(p):
        logp = jax.nn.log_softmax(x @ p["W"] + p["b"])
        return -jnp.mean(jnp.sum(y * logp, axis=1)) + 0.5 * 0.01 * jnp.sum(p["W"] ** 2)

    ours = jax.grad(softmax._loss)(params, x, np.ascontiguousarray(x.T), y, 0.01)
    theirs = jax.grad(plain)(params)
    np.testing.assert_allclose(ours["W"], theirs["W"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours["b"], theirs["b"], rtol=1e-5, atol=1e-7)
    assert float(jnp.abs(ours["W"]).max()) > 1e-3
