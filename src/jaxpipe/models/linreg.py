"""Linear regression with minibatch SGD (system 3): ``y = X.w + b``, RMSE loss.

Each step draws a minibatch with replacement (a bootstrap) from a key split off the seed;
the whole run is one compiled ``lax.scan``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxpipe.core.config import MAX_STEPS, in_range
from jaxpipe.data.tables import Dataset
from jaxpipe.models import Fit, Task, TrainConfig

Params = dict[str, jax.Array]
TASK: Task = "regression"
MAX_BATCH = 1_000_000  # rows drawn per step: 4 MB a feature, far above system 3's 100


@dataclass(frozen=True)
class Config(TrainConfig):
    """params.yaml ``train.<model>`` for kind ``linreg``."""

    steps: int = 5000
    lr: float = 0.01
    batch_size: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        in_range(self.steps, "steps", 1, MAX_STEPS)
        in_range(self.batch_size, "batch_size", 1, MAX_BATCH)


def forward(params: Params, x: jax.Array) -> jax.Array:
    return x @ params["w"] + params["b"]


def rmse(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.mean((forward(params, x) - y) ** 2))


@partial(jax.jit, static_argnames=("steps", "batch_size"))
def _sgd_loop(params: Params, x, y, key, lr, steps: int, batch_size: int):
    grad = jax.value_and_grad(rmse)

    def step(p: Params, k):
        idx = jax.random.randint(k, (batch_size,), 0, x.shape[0])
        loss, g = grad(p, x[idx], y[idx])
        return jax.tree.map(lambda a, b: a - lr * b, p, g), {"train_loss": loss}

    return jax.lax.scan(step, params, jax.random.split(key, steps))


def _keys(cfg: Config) -> tuple[jax.Array, jax.Array]:
    """The keys of the start and of the minibatch draws, split off ``key(seed)``."""
    init_key, batch_key = jax.random.split(jax.random.key(cfg.seed))
    return init_key, batch_key


def init(cfg: Config, n_features: int) -> Params:
    """A random start from ``key(seed)``."""
    kw, kb = jax.random.split(_keys(cfg)[0])
    return {"w": jax.random.normal(kw, (n_features,)), "b": jax.random.normal(kb, ())}


def fit(cfg: Config, data: Dataset) -> Fit:
    """SGD from a random start; history is each step's minibatch RMSE."""
    train = data.split("train")
    params = init(cfg, train.x.shape[1])
    params, history = _sgd_loop(params, train.x, jnp.asarray(train.y, jnp.float32), _keys(cfg)[1],
                                cfg.lr, cfg.steps, cfg.batch_size)
    return Fit(params, history)


def predict(cfg: Config, params: Params, x: np.ndarray) -> np.ndarray:
    """Predicted values, computed by XLA as in training."""
    return np.asarray(forward(params, jnp.asarray(x)))


def metrics(cfg: Config, params: Params, info: dict) -> dict:
    """The learned coefficients and intercept, to read beside the closed-form fit."""
    out = {f"coef_{i}": round(float(c), 6) for i, c in enumerate(np.ravel(params["w"]))}
    out["intercept"] = round(float(np.ravel(params["b"])[0]), 6)
    return out
