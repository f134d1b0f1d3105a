"""Multinomial logistic regression (softmax) with Optax Adam, beyond the write-ups.

Full-batch Adam on mean cross-entropy plus ``0.5*l2*|W|^2``; ``W`` starts small from
``key(seed)``, ``b`` at zero. The whole loop is one compiled ``lax.scan``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpipe.core.config import MAX_STEPS, check, in_range
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.data.inputs import Inputs
from jaxpipe.data.tables import Dataset
from jaxpipe.models import Fit, Task, TrainConfig, data_product

Params = dict[str, jax.Array]
TASK: Task = "multiclass"


@dataclass(frozen=True)
class Config(TrainConfig):
    """params.yaml ``train.<model>`` for kind ``softmax``."""

    steps: int = 500
    lr: float = 0.05
    l2: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        in_range(self.steps, "steps", 1, MAX_STEPS)
        check(self.l2 >= 0, "l2", "must be non-negative")


def init(cfg: Config, n_features: int, n_classes: int) -> Params:
    w = 0.01 * jax.random.normal(jax.random.key(cfg.seed), (n_features, n_classes))
    return {"W": w, "b": jnp.zeros((n_classes,))}


def _loss(params: Params, x, x_t, y_onehot, l2: float) -> jax.Array:
    logp = jax.nn.log_softmax(data_product(x, x_t, params["W"]) + params["b"])
    return -jnp.mean(jnp.sum(y_onehot * logp, axis=1)) + 0.5 * l2 * jnp.sum(params["W"] ** 2)


@partial(jax.jit, static_argnames=("steps",))
def _loop(params: Params, x, x_t, y_onehot, l2, lr, steps: int):
    tx = optax.adam(lr)  # lr is an array: another lr runs the same compiled loop
    grad = jax.value_and_grad(_loss)

    def step(carry, _):
        p, state = carry
        loss, g = grad(p, x, x_t, y_onehot, l2)
        updates, state = tx.update(g, state, p)
        return (optax.apply_updates(p, updates), state), {"train_loss": loss}

    (params, _), history = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
    return params, history


def fit(cfg: Config, data: Dataset) -> Fit:
    """Full-batch Adam over every class present in the training labels."""
    train = data.split("train")
    n_classes = data.inputs.classes
    if n_classes is None:
        raise JaxpipeError(f"{data.path}: softmax needs class labels; this data set is a "
                           "regression's (prepare task)")
    params = init(cfg, train.x.shape[1], n_classes)
    params, history = _loop(params, train.x, np.ascontiguousarray(train.x.T),
                            jax.nn.one_hot(train.y, n_classes), cfg.l2,
                            np.float32(cfg.lr), cfg.steps)
    return Fit(params, history, {"n_classes": n_classes})


def predict(cfg: Config, params: Params, x: np.ndarray) -> np.ndarray:
    """Class probabilities, shape (n, classes), computed by XLA as in training."""
    return np.asarray(jax.nn.softmax(jnp.asarray(x) @ params["W"] + params["b"]))


def template(cfg: Config, inputs: Inputs) -> Any:
    """Parameter shapes for the data's features and classes."""
    if inputs.classes is None:
        raise JaxpipeError("inputs: softmax needs a class count ('classes' is null)")
    return jax.eval_shape(lambda: init(cfg, inputs.n_features, inputs.classes))


def metrics(cfg: Config, params: Params, info: dict) -> dict:
    """Nothing beyond the classification metrics."""
    return {}
