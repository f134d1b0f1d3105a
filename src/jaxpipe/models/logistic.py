"""Logistic models: the hand-written binary one (systems 1 and 5) and a softmax with Optax.

Binary: ``p = sigmoid(X.w + c)``, loss = mean binary cross-entropy + ``0.5*l2*(w.w + c^2)``,
full-batch gradient descent. One jitted update per step moves ``w`` and ``c`` together, and
the whole loop is one compiled ``lax.scan`` that records the loss after every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from jaxpipe.config import check

Params = dict[str, jax.Array]


@dataclass(frozen=True)
class LogRegConfig:
    """params.yaml ``train.<model>`` for kind ``logreg``."""

    steps: int = 100
    lr: float = 0.1
    l2: float = 0.0
    w_init: float | Literal["normal"] = 1e-5
    c_init: float = 1.0
    seed: int = 0
    track_accuracy: bool = False

    def __post_init__(self) -> None:
        check(self.steps > 0, "steps", "must be positive")
        check(self.lr > 0, "lr", "must be positive")
        check(self.l2 >= 0, "l2", "must be non-negative")


@dataclass(frozen=True)
class SoftmaxConfig:
    """params.yaml ``train.<model>`` for kind ``softmax``."""

    steps: int = 500
    lr: float = 0.05
    l2: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.steps > 0, "steps", "must be positive")
        check(self.lr > 0, "lr", "must be positive")


def logreg_init(cfg: LogRegConfig, n_features: int) -> Params:
    """``w`` constant (system 1) or standard normal from ``key(seed)`` (system 5); ``c`` fixed."""
    if cfg.w_init == "normal":
        w = jax.random.normal(jax.random.key(cfg.seed), (n_features,))
    else:
        w = jnp.full((n_features,), cfg.w_init)
    return {"w": w, "c": jnp.asarray(cfg.c_init, jnp.float32)}


def logreg_logits(params: Params, x: jax.Array) -> jax.Array:
    return x @ params["w"] + params["c"]


def logreg_predict(params: Params, x: jax.Array) -> jax.Array:
    """Probability of class 1."""
    return jax.nn.sigmoid(logreg_logits(params, x))


def logreg_loss(params: Params, x: jax.Array, y: jax.Array, l2: float) -> jax.Array:
    z = logreg_logits(params, x)
    bce = jnp.mean(jax.nn.softplus(z) - y * z)  # = -y log p - (1-y) log(1-p), stable
    return bce + 0.5 * l2 * (params["w"] @ params["w"] + params["c"] ** 2)


def _accuracy(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((logreg_logits(params, x) > 0) == (y > 0.5))


@partial(jax.jit, static_argnames=("steps", "track"))
def _logreg_loop(params: Params, x, y, x_test, y_test, lr, l2, steps: int, track: bool):
    grad = jax.value_and_grad(logreg_loss)

    def step(p: Params, _):
        _, g = grad(p, x, y, l2)
        p = jax.tree.map(lambda a, b: a - lr * b, p, g)
        record = {"train_loss": logreg_loss(p, x, y, l2)}
        if track:
            record["train_accuracy"] = _accuracy(p, x, y)
            record["test_accuracy"] = _accuracy(p, x_test, y_test)
        return p, record

    return jax.lax.scan(step, params, None, length=steps)


def logreg_fit(cfg: LogRegConfig, x, y, x_test, y_test) -> tuple[Params, dict]:
    """Full-batch gradient descent; history holds the loss (and accuracies) after each step."""
    params = logreg_init(cfg, x.shape[1])
    y, y_test = jnp.asarray(y, jnp.float32), jnp.asarray(y_test, jnp.float32)
    return _logreg_loop(params, x, y, x_test, y_test, cfg.lr, cfg.l2, cfg.steps,
                        cfg.track_accuracy)


def softmax_predict(params: Params, x: jax.Array) -> jax.Array:
    """Class probabilities, shape (n, classes)."""
    return jax.nn.softmax(x @ params["W"] + params["b"])


def _softmax_loss(params: Params, x, y_onehot, l2: float) -> jax.Array:
    logp = jax.nn.log_softmax(x @ params["W"] + params["b"])
    return -jnp.mean(jnp.sum(y_onehot * logp, axis=1)) + 0.5 * l2 * jnp.sum(params["W"] ** 2)


@partial(jax.jit, static_argnames=("steps", "lr"))
def _softmax_loop(params: Params, x, y_onehot, l2, steps: int, lr: float):
    tx = optax.adam(lr)
    grad = jax.value_and_grad(_softmax_loss)

    def step(carry, _):
        p, state = carry
        loss, g = grad(p, x, y_onehot, l2)
        updates, state = tx.update(g, state, p)
        return (optax.apply_updates(p, updates), state), {"train_loss": loss}

    (params, _), history = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
    return params, history


def softmax_fit(cfg: SoftmaxConfig, x, y, x_test, y_test) -> tuple[Params, dict]:
    """Multinomial logistic regression, full-batch Adam; W drawn small from ``key(seed)``."""
    n_classes = int(jnp.max(y)) + 1
    w = 0.01 * jax.random.normal(jax.random.key(cfg.seed), (x.shape[1], n_classes))
    params = {"W": w, "b": jnp.zeros((n_classes,))}
    return _softmax_loop(params, x, jax.nn.one_hot(y, n_classes), cfg.l2, cfg.steps, cfg.lr)
