"""``jaxpipe.models`` and its families (logreg, softmax, mlp, linreg, cnn): every model on
tiny data (shapes, the loss falls, known answers, the NaN guard); each trains to a known
answer (the learning rate is the one configured, the kept CNN parameters are the best
validation epoch's, XOR stops at the published step); every model config's checks, on
both sides of each bound: a value just inside is taken, one just outside fails naming its
key (the line a user sees for a bad params.yaml); and the details each family reports."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import committed_tree, make_dataset

from jaxpipe import models
from jaxpipe.core.config import MAX_STEPS, SEED_MAX, parse, read_yaml
from jaxpipe.core.errors import ConfigError, JaxpipeError
from jaxpipe.data.prepare import PrepareConfig, prepare_images
from jaxpipe.data.tables import write_dataset
from jaxpipe.models import TrainingError, check_loss, cnn, linreg, logreg, mlp, softmax
from jaxpipe.models.cnn import MAX_BATCH, MAX_EPOCHS
from jaxpipe.models.mlp import MAX_HIDDEN

ROOT = Path(__file__).parents[1]
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
    assert cnn.compiled_steps(good).forward(graphdef, params, x).shape == (2, 10)
    bad = (("xla_cpu_experimental_ynn_fusion_type", "NOT_A_TYPE"),)
    with pytest.raises(Exception, match="NOT_A_TYPE|not a valid"):
        cnn.compiled_steps(bad).forward(graphdef, params, x)


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
    losses.append(jnp.asarray([1.0, 1.0, 4.0]))  # a call of several steps: one loss each
    assert mean.add(losses) == 2.0 and mean.count == 7


def test_the_cnns_second_convolution_has_autodiffs_gradient() -> None:
    """conv3x3 writes its gradients out (so YNNPACK runs them inside a scan too): the same
    values as differentiating XLA's convolution."""
    import jax

    rng = np.random.default_rng(0)
    x, k, g = (rng.normal(size=s).astype(np.float32)
               for s in ((3, 14, 14, 32), (3, 3, 32, 64), (3, 14, 14, 64)))

    def plain(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    np.testing.assert_allclose(cnn.net.conv3x3(x, k), plain(x, k), rtol=1e-5, atol=1e-4)
    ours = jax.grad(lambda x, k: (cnn.net.conv3x3(x, k) * g).sum(), (0, 1))(x, k)
    theirs = jax.grad(lambda x, k: (plain(x, k) * g).sum(), (0, 1))(x, k)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-3)
        assert float(np.abs(a).max()) > 1.0


def test_steps_scanned_in_one_call_are_the_same_bytes_as_one_call_each() -> None:
    """The device-held set trains STEPS_PER_CALL steps a dispatch (a lax.scan): the same
    parameters, Adam state and losses, bit for bit, as calling the step once a batch."""
    import jax
    import jax.numpy as jnp

    from jaxpipe.models.cnn import net, xla_options

    options = xla_options(cnn.Config().compiler_options)
    steps = cnn.compiled_steps(options)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((256, 28, 28, 1), np.float32))
    y = jnp.asarray(rng.integers(0, 10, 256).astype(np.int32))
    rows = jnp.asarray(rng.permutation(256)[:4 * 16].reshape(4, 16).astype(np.int32))
    graphdef, params = cnn.init(0)
    tx = net.optimizer()

    def fresh():
        return jax.tree.map(jnp.copy, (params, net.optimizer_state(params, 1e-3)))

    p, o = fresh()
    losses = []
    for i in range(4):
        p, o, loss = steps.indexed(graphdef, tx, p, o, x, y, rows[i])
        losses.append(loss)
    one_by_one = (p, o, jnp.stack(losses))
    scanned = steps.scanned(graphdef, tx, *fresh(), x, y, rows)
    for a, b in zip(jax.tree.leaves(one_by_one), jax.tree.leaves(scanned), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(jax.tree.leaves(p)[0], jax.tree.leaves(params)[0])  # it trained


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


def blobs(n: int = 40, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x, (x[:, 0] - 0.5 * x[:, 1] > 0).astype(np.int32)


def test_logreg_one_step_is_the_hand_computed_gradient_step() -> None:
    """One full-batch step of BCE + L2 from the configured start, computed here in NumPy."""
    x, y = blobs()
    cfg = logreg.Config(steps=1, lr=0.3, l2=0.2, w_init=0.5, c_init=-0.25)
    fit = logreg.fit(cfg, make_dataset(train=(x, y)))
    w, c = np.full(3, 0.5), -0.25
    p = 1 / (1 + np.exp(-(x.astype(np.float64) @ w + c)))
    grad_w = x.T @ (p - y) / len(y) + 0.2 * w
    grad_c = np.mean(p - y) + 0.2 * c
    np.testing.assert_allclose(fit.params["w"], w - 0.3 * grad_w, rtol=1e-5)
    np.testing.assert_allclose(fit.params["c"], c - 0.3 * grad_c, rtol=1e-5)
    w_1, c_1 = np.asarray(fit.params["w"], np.float64), float(fit.params["c"])
    z = x @ w_1 + c_1
    bce = np.mean(np.log1p(np.exp(z)) - y * z)
    penalty = 0.1 * (w_1 @ w_1 + c_1**2)
    assert float(fit.history["train_loss"][0]) == pytest.approx(bce + penalty, rel=1e-5)


def _one_step(kind: str, lr: float) -> tuple[dict, dict]:
    """Start and end parameters of exactly one training step with learning rate ``lr``."""
    x, y = blobs()
    data = make_dataset(train=(x, y), test=(x, y))
    if kind == "logreg":
        cfg = logreg.Config(steps=1, lr=lr, w_init="normal", seed=3)
        start = logreg.init(cfg, 3)
        return start, logreg.fit(cfg, data).params
    if kind == "softmax":
        cfg = softmax.Config(steps=1, lr=lr, seed=3)
        return softmax.init(cfg, 3, 2), softmax.fit(cfg, data).params
    if kind == "linreg":
        cfg = linreg.Config(steps=1, lr=lr, batch_size=8, seed=3)
        reg = make_dataset(train=(x, x @ np.array([1.0, -2.0, 0.5], np.float32)))
        return linreg.init(cfg, 3), linreg.fit(cfg, reg).params
    cfg = mlp.Config(lr=lr, check_every=1, max_steps=1, seed=3)
    return mlp.init(cfg, 3), mlp.fit(cfg, data).params


@pytest.mark.parametrize("kind", ["logreg", "softmax", "linreg", "mlp"])
def test_the_first_step_moves_each_parameter_by_lr_times_its_gradient(kind: str) -> None:
    """Plain gradient descent: the move divided by lr is the gradient, whatever lr is."""
    start, small = _one_step(kind, 0.01)
    _, large = _one_step(kind, 0.25)
    for name in start:
        moved_small = (np.asarray(small[name]) - np.asarray(start[name])) / 0.01
        moved_large = (np.asarray(large[name]) - np.asarray(start[name])) / 0.25
        assert np.abs(moved_small).max() > 1e-4, name
        np.testing.assert_allclose(moved_small, moved_large, rtol=2e-3, atol=1e-4)


@pytest.mark.parametrize("kind", models.families())
@pytest.mark.parametrize("lr", [0.0, -0.1])
def test_every_model_refuses_a_learning_rate_that_is_not_positive(kind: str, lr: float) -> None:
    module = models.load(kind)
    with pytest.raises(ConfigError, match=r"^train\.m\.lr: must be positive$"):
        parse(module.Config, {"lr": lr}, "train.m")
    assert parse(module.Config, {"lr": 1e-9}, "train.m").lr == 1e-9


def test_xor_stops_at_the_published_step() -> None:
    """The write-up (system 2: key 9, lr 1, checked every 10 steps) converges at step 210."""
    fit = mlp.fit(mlp.Config(), make_dataset(train=(XOR_X, XOR_Y)))
    assert fit.info["steps"] == 210 and fit.info["converged"]
    assert len(fit.history["train_loss"]) == 210
    assert float(fit.info["final_loss"]) == float(fit.history["train_loss"][-1])


def test_xor_checks_exactly_every_check_every_steps() -> None:
    """Checked after every step it stops at the first right step; checked every k steps, at
    the first multiple of k at or after it."""
    data = make_dataset(train=(XOR_X, XOR_Y))
    first = mlp.fit(mlp.Config(check_every=1), data).info["steps"]
    assert 200 < first <= 210
    for k in (7, 10, 25):
        assert mlp.fit(mlp.Config(check_every=k), data).info["steps"] == math.ceil(first / k) * k
    capped = mlp.fit(mlp.Config(check_every=10, max_steps=first - 1), data)
    assert capped.info["steps"] == (first - 1) // 10 * 10 and not capped.info["converged"]


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose label is the row of a bright bar (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 10).astype(np.int32)
    x = rng.uniform(0, 0.2, size=(n, 28, 28, 1)).astype(np.float32)
    for i, label in enumerate(y):
        x[i, 2 * label: 2 * label + 3, 4:24, 0] = 1.0
    return x, y


@pytest.mark.parametrize("lr", [1e-3, 4e-3])
def test_cnn_first_adam_step_moves_weights_by_the_configured_lr(lr: float) -> None:
    """Adam's first step moves every weight with a gradient by lr (g / |g|)."""
    x, y = _images(32)
    cfg = cnn.Config(epochs=1, batch_size=32, lr=lr, seed=5, eval_batch_size=32)
    fit = cnn.fit(cfg, make_dataset(train=(x, y), val=(x, y)))
    start = cnn.init(5)[1]
    moved = np.abs(np.asarray(fit.params["fc2"]["kernel"][...])
                   - np.asarray(start["fc2"]["kernel"][...]))
    assert np.median(moved) == pytest.approx(lr, rel=0.01)
    assert moved.max() <= lr * 1.001


def _val_loss(cfg: cnn.Config, params, x: np.ndarray, y: np.ndarray) -> float:
    probs = cnn.predict(cfg, params, x)
    return float(-np.mean(np.log(probs[np.arange(len(y)), y])))


def test_cnn_keeps_the_best_validation_epoch_not_the_last() -> None:
    """Validation labels that disagree with training: learning makes validation worse, so the
    best epoch is an early one, and the parameters returned score exactly its loss."""
    x, y = _images(64)
    wrong = (y + 1) % 10
    cfg = cnn.Config(epochs=3, batch_size=16, lr=3e-3, eval_batch_size=64)
    fit = cnn.fit(cfg, make_dataset(train=(x, y), val=(x, wrong)))
    val = np.asarray(fit.history["val_loss"])
    best = int(np.argmin(val)) + 1
    assert fit.info["best_epoch"] == best < cfg.epochs and val[-1] > val.min() + 1e-3
    assert fit.info["best_val_loss"] == pytest.approx(val.min(), rel=1e-6)
    assert _val_loss(cfg, fit.params, x, wrong) == pytest.approx(val.min(), rel=1e-4)
    assert fit.history["epoch"] == [1, 2, 3]


def test_softmax_reports_cross_entropy_plus_half_l2_times_the_squared_weights() -> None:
    """The first recorded loss is that of the seeded start: mean cross-entropy plus
    0.5 * l2 * sum(W^2), computed here in NumPy (W starts with negative entries)."""
    x, y = blobs()
    # a learning rate no other test uses: a fresh trace of the jitted loop, so that mutmut's
    # coverage run (which sees only traced calls) counts this test as reaching the loss
    cfg = softmax.Config(steps=1, lr=0.02, l2=10.0, seed=3)
    fit = softmax.fit(cfg, make_dataset(train=(x, y)))
    start = softmax.init(cfg, 3, 2)
    w, b = np.asarray(start["W"], np.float64), np.asarray(start["b"], np.float64)
    assert (w < 0).any()
    z = x.astype(np.float64) @ w + b
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    expected = -np.mean(logp[np.arange(len(y)), y]) + 0.5 * 10.0 * np.sum(w**2)
    assert float(fit.history["train_loss"][0]) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="l2: must be non-negative"):
        softmax.Config(l2=-0.1)


def test_cnn_records_the_start_cross_entropy_and_names_its_phases() -> None:
    """One epoch of one batch: the recorded training loss is the mean cross-entropy of the
    seeded start on that batch; the time goes to the phases the --timing report names."""
    x, y = _images(32)
    cfg = cnn.Config(epochs=1, batch_size=32, lr=1e-3, seed=5, eval_batch_size=32)
    fit = cnn.fit(cfg, make_dataset(train=(x, y), val=(x, y)))
    probs = cnn.predict(cfg, cnn.init(5)[1], x)
    start_loss = -np.mean(np.log(probs[np.arange(len(y)), y]))
    assert fit.history["train_loss"][0] == pytest.approx(start_loss, rel=1e-4)
    phases = set(models.phase_times())
    assert {"read and check the images", "initialise the parameters", "compile the forward pass",
            "place the data on the device(s)", "shuffle", "copy the parameters",
            "validate"} <= phases
    assert phases & {"compile the step", "train steps"}
    assert phases <= {"read and check the images", "initialise the parameters",
                      "compile the forward pass", "place the data on the device(s)", "shuffle",
                      "copy the parameters", "validate", "compile the step", "train steps"}


def test_cnn_keeps_the_first_of_equally_good_epochs() -> None:
    """A learning rate too small to change a float32 weight: every epoch validates the same,
    and the kept epoch is the first (a later epoch must be strictly better to replace it)."""
    x, y = _images(32)
    cfg = cnn.Config(epochs=3, batch_size=16, lr=1e-30, seed=5, eval_batch_size=32)
    fit = cnn.fit(cfg, make_dataset(train=(x, y), val=(x, y)))
    assert len(set(fit.history["val_loss"])) == 1
    assert fit.info["best_epoch"] == 1


def test_cnn_divergence_names_a_step_of_the_epoch_it_happened_in() -> None:
    """A learning rate far too large: training stops in epoch 1, at a step from 1 to the
    number of batches in it."""
    x, y = _images(64)
    cfg = cnn.Config(epochs=2, batch_size=16, lr=1e3, seed=5, eval_batch_size=64,
                     max_loss_growth=1.5)
    with pytest.raises(models.TrainingError) as err:
        cnn.fit(cfg, make_dataset(train=(x, y), val=(x, y)))
    step = int(str(err.value).rsplit("at step ", 1)[1].split(";")[0])
    assert 1 <= step <= 4, str(err.value)


# (config class, key, a good value, a bad value, the message's start)
CASES = [
    (cnn.Config, "epochs", 1, 0, "epochs: 0 is outside [1, 10_000]"),
    (cnn.Config, "epochs", MAX_EPOCHS, MAX_EPOCHS + 1, "epochs: 10001 is outside"),
    (cnn.Config, "batch_size", MAX_BATCH, MAX_BATCH + 1, "batch_size: 65537 is outside"),
    (cnn.Config, "eval_batch_size", 1, 0, "eval_batch_size: 0 is outside"),
    (cnn.Config, "seed", 0, -1, "seed: -1 is outside"),
    (cnn.Config, "seed", SEED_MAX - 1, SEED_MAX, f"seed: {SEED_MAX} is outside"),
    (cnn.Config, "max_train_images", 1, 0, "max_train_images: must be positive or null"),
    (cnn.Config, "max_train_images", None, -5, "max_train_images: must be positive or null"),
    (cnn.Config, "devices", "all", 0, "devices: must be a positive number or 'all'"),
    (cnn.Config, "devices", 2, "some", "devices: must be a positive number or 'all'"),
    (cnn.Config, "memory_budget_mb", 0.5, 0.0, "memory_budget_mb: must be positive or null"),
    (cnn.Config, "max_loss_growth", 1.0001, 1.0, "max_loss_growth: must be in (1, 1e6]"),
    (cnn.Config, "max_loss_growth", 1e6, 1e6 * 1.001, "max_loss_growth: must be in (1, 1e6]"),
    (logreg.Config, "steps", MAX_STEPS, MAX_STEPS + 1, f"steps: {MAX_STEPS + 1} is outside"),
    (logreg.Config, "seed", SEED_MAX, SEED_MAX + 1, f"seed: {SEED_MAX + 1} is outside"),
    (logreg.Config, "l2", 0.0, -1e-9, "l2: must be non-negative"),
    (softmax.Config, "steps", 1, 0, "steps: 0 is outside"),
    (softmax.Config, "seed", 0, -1, "seed: -1 is outside"),
    (softmax.Config, "l2", 0.0, -1e-9, "l2: must be non-negative"),
    (linreg.Config, "batch_size", 1, 0, "batch_size: 0 is outside"),
    (linreg.Config, "steps", 1, 0, "steps: 0 is outside"),
    (linreg.Config, "seed", SEED_MAX, SEED_MAX + 1, f"seed: {SEED_MAX + 1} is outside"),
    (mlp.Config, "hidden", MAX_HIDDEN, MAX_HIDDEN + 1, f"hidden: {MAX_HIDDEN + 1} is outside"),
    (mlp.Config, "eps", 1e-12, 0.0, "eps: must be positive"),
    (mlp.Config, "check_every", 1, 0, "check_every: must be positive"),
    (mlp.Config, "seed", 0, -1, "seed: -1 is outside"),
]


@pytest.mark.parametrize(("cls", "key", "good", "bad", "message"), CASES,
                         ids=[f"{c[0].__module__.rsplit('.', 1)[-1]}.{c[1]}={c[3]}"
                              for c in CASES])
def test_a_value_past_its_bound_is_refused_naming_the_key(cls, key, good, bad, message) -> None:
    assert getattr(cls(**{key: good}), key) == good
    with pytest.raises(ValueError) as err:
        cls(**{key: bad})
    assert str(err.value).startswith(message), str(err.value)


def test_mlp_max_steps_must_cover_one_check() -> None:
    assert mlp.Config(check_every=10, max_steps=10).max_steps == 10
    with pytest.raises(ValueError, match="^max_steps: must be >= check_every$"):
        mlp.Config(check_every=10, max_steps=9)


def test_the_cnn_details_are_its_kept_epoch_and_how_much_it_trained() -> None:
    from jaxpipe import models

    cnn = models.load("cnn")
    info = {"best_epoch": 3, "best_val_loss": 0.12345678, "train_images": 512,
            "train_steps": 24, "other": 1}
    assert cnn.metrics(cnn.Config(), None, info) == {
        "best_epoch": 3, "best_val_loss": 0.123457, "train_images": 512, "train_steps": 24}


@pytest.mark.parametrize("kind", models.families())
def test_every_family_config_shares_the_seed_lr_and_divergence_checks(kind: str) -> None:
    """One place checks what every model has (``models.TrainConfig``): a new family gets
    the checks by subclassing it, and no family can drop them."""
    config = models.load(kind).Config
    assert issubclass(config, models.TrainConfig)
    for key, bad, said in (("seed", -1, "seed: -1 is outside [0, "),
                           ("lr", 0.0, "lr: must be positive"),
                           ("max_loss_growth", 1.0, "max_loss_growth: must be in (1, 1e6]")):
        with pytest.raises(ConfigError) as err:
            parse(config, {key: bad}, "train.m")
        assert str(err.value).startswith(f"train.m.{said}")


def test_a_family_without_its_own_template_is_checked_against_its_init() -> None:
    from helpers import inputs_for

    x, y = separable()
    inputs = inputs_for(x, y)
    assert not hasattr(logreg, "template") and hasattr(cnn, "template")
    shapes = models.template(logreg, logreg.Config(), inputs)
    fit = logreg.fit(logreg.Config(steps=2), make_dataset(inputs, train=(x, y)))
    assert {k: v.shape for k, v in shapes.items()} == {k: np.shape(v)
                                                       for k, v in fit.params.items()}


def test_softmax_takes_its_classes_from_the_data_not_the_labels_it_saw() -> None:
    from helpers import inputs_for

    x, y = separable()
    inputs = inputs_for(x, y)
    four = models.load("softmax").fit(softmax.Config(steps=2), make_dataset(
        type(inputs)(**{**inputs.__dict__, "classes": 4}), train=(x, y)))
    assert four.params["W"].shape == (3, 4) and four.info["n_classes"] == 4
    regression = make_dataset(type(inputs)(**{**inputs.__dict__, "classes": None}),
                              train=(x, y.astype(np.float32)))
    with pytest.raises(JaxpipeError, match="softmax needs class labels"):
        softmax.fit(softmax.Config(steps=2), regression)


@pytest.mark.e2e
def test_an_lr_sweep_compiles_the_cnn_step_once(tmp_path: Path) -> None:
    """Three train@cnn_mnist runs, each a fresh process as `dvc exp run` starts it, that differ
    only in lr: the first compiles every program into the persistent compilation cache, the
    other two add nothing to it (the learning rate is an array in the optimizer's state, not a
    constant of the step) and still train other models."""
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (96, 28, 28), np.uint8), np.arange(96) % 10
    write_dataset(tmp_path / "mnist", *prepare_images(
        images, labels, images[:20], labels[:20], PrepareConfig(kind="images", val_size=0.25)))
    params = read_yaml((committed_tree() / "params.yaml").read_text())
    cache, models, entries = tmp_path / "cache", [], []
    for lr in (1e-3, 2e-3, 5e-4):
        params["train"]["cnn_mnist"].update(lr=lr, epochs=1, batch_size=8)
        (tmp_path / "params.yaml").write_text(json.dumps(params))
        out = tmp_path / f"m{lr}.safetensors"
        subprocess.run([sys.executable, "stages/train.py", "cnn_mnist", "--data",
                        str(tmp_path / "mnist"), "--out", str(out), "--history",
                        str(tmp_path / "h.csv"), "--params", str(tmp_path / "params.yaml")],
                       cwd=ROOT, check=True, capture_output=True, timeout=300,
                       env={**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache)})
        models.append(out.read_bytes())
        entries.append(sorted(p.name for p in cache.iterdir()))
    assert entries[0] and entries[1] == entries[0] and entries[2] == entries[0]
    assert len(set(models)) == 3  # each lr trained its own model


@pytest.mark.parametrize("n_batches", [283, 280, 7, 11])
def test_an_epoch_is_cut_into_calls_of_its_batches_in_order(n_batches: int) -> None:
    """Every batch once, in the epoch's order; the first call takes the rest of
    n_batches / STEPS_PER_CALL, every other call STEPS_PER_CALL."""
    from jaxpipe.models.cnn import loop, mesh

    runner = loop.InMemory.__new__(loop.InMemory)
    runner.mesh, runner.x, runner.y = mesh.data_mesh(1), None, None
    order = np.arange(n_batches * 4).reshape(n_batches, 4)
    calls = [np.asarray(rows) for _, _, rows in runner.steps(order)]
    np.testing.assert_array_equal(np.concatenate(calls), order)
    sizes = [len(c) for c in calls]
    assert set(sizes[1:]) <= {loop.STEPS_PER_CALL}
    assert sizes[0] == (n_batches % loop.STEPS_PER_CALL or min(n_batches, loop.STEPS_PER_CALL))
