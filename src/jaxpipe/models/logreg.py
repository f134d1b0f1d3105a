"""Binary logistic regression written by hand (systems 1 and 5).

``p = sigmoid(X.w + c)``, loss = mean binary cross-entropy + ``0.5*l2*(w.w + c^2)``,
full-batch gradient descent. One jitted update per step moves ``w`` and ``c`` together, and
the whole loop is one compiled ``lax.scan`` that records the loss after every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxpipe.core.config import MAX_STEPS, check, in_range
from jaxpipe.data.tables import Dataset
from jaxpipe.models import Fit, Task, TrainConfig

Params = dict[str, jax.Array]
TASK: Task = "binary"


@dataclass(frozen=True)
class Config(TrainConfig):
    """params.yaml ``train.<model>`` for kind ``logreg``."""

    steps: int = 100
    lr: float = 0.1
    l2: float = 0.0
    w_init: float | Literal["normal"] = 1e-5
    c_init: float = 1.0
    seed: int = 0
    track_accuracy: bool = False  # record train and test accuracy after every step

    def __post_init__(self) -> None:
        super().__post_init__()
        in_range(self.steps, "steps", 1, MAX_STEPS)
        check(self.l2 >= 0, "l2", "must be non-negative")


def init(cfg: Config, n_features: int) -> Params:
    """``w`` constant (system 1) or standard normal from ``key(seed)`` (system 5); ``c`` fixed."""
    if cfg.w_init == "normal":
        w = jax.random.normal(jax.random.key(cfg.seed), (n_features,))
    else:
        w = jnp.full((n_features,), cfg.w_init)
    return {"w": w, "c": jnp.asarray(cfg.c_init, jnp.float32)}


def logits(params: Params, x: jax.Array) -> jax.Array:
    return x @ params["w"] + params["c"]


def loss(params: Params, x: jax.Array, y: jax.Array, l2: float) -> jax.Array:
    """Mean binary cross-entropy (in its stable softplus form) plus the L2 penalty."""
    z = logits(params, x)
    bce = jnp.mean(jax.nn.softplus(z) - y * z)  # = -y log p - (1-y) log(1-p), stable
    return bce + 0.5 * l2 * (params["w"] @ params["w"] + params["c"] ** 2)


def _accuracy(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((logits(params, x) > 0) == (y > 0.5))


@partial(jax.jit, static_argnames=("steps", "track"))
def _loop(params: Params, x, y, x_test, y_test, lr, l2, steps: int, track: bool):
    grad = jax.value_and_grad(loss)

    def step(p: Params, _):
        _, g = grad(p, x, y, l2)
        p = jax.tree.map(lambda a, b: a - lr * b, p, g)
        record = {"train_loss": loss(p, x, y, l2)}
        if track:
            record["train_accuracy"] = _accuracy(p, x, y)
            record["test_accuracy"] = _accuracy(p, x_test, y_test)
        return p, record

    return jax.lax.scan(step, params, None, length=steps)


def fit(cfg: Config, data: Dataset) -> Fit:
    """Full-batch gradient descent; history holds the loss (and accuracies) after each step."""
    train = data.split("train")
    test = data.split("test") if cfg.track_accuracy else train
    params = init(cfg, train.x.shape[1])
    y, y_test = jnp.asarray(train.y, jnp.float32), jnp.asarray(test.y, jnp.float32)
    params, history = _loop(params, train.x, y, test.x, y_test, cfg.lr, cfg.l2, cfg.steps,
                            cfg.track_accuracy)
    return Fit(params, history)


def predict(cfg: Config, params: Params, x: np.ndarray) -> np.ndarray:
    """Probability of class 1 (computed by XLA, as in training, whatever the input type)."""
    return np.asarray(jax.nn.sigmoid(logits(params, jnp.asarray(x))))


def metrics(cfg: Config, params: Params, info: dict) -> dict:
    """Nothing beyond the classification metrics."""
    return {}
