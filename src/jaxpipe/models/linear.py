"""Linear regression with minibatch SGD (system 3): ``y = X.w + b``, RMSE loss.

Each step draws a minibatch with replacement (a bootstrap) from a key split off the seed;
the whole run is one compiled ``lax.scan``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from jaxpipe.config import check

Params = dict[str, jax.Array]


@dataclass(frozen=True)
class LinRegConfig:
    """params.yaml ``train.<model>`` for kind ``linreg``."""

    steps: int = 5000
    lr: float = 0.01
    batch_size: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.steps > 0, "steps", "must be positive")
        check(self.lr > 0, "lr", "must be positive")
        check(self.batch_size > 0, "batch_size", "must be positive")


def linreg_predict(params: Params, x: jax.Array) -> jax.Array:
    return x @ params["w"] + params["b"]


def rmse(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.mean((linreg_predict(params, x) - y) ** 2))


@partial(jax.jit, static_argnames=("steps", "batch_size"))
def _sgd_loop(params: Params, x, y, key, lr, steps: int, batch_size: int):
    grad = jax.value_and_grad(rmse)

    def step(p: Params, k):
        idx = jax.random.randint(k, (batch_size,), 0, x.shape[0])
        loss, g = grad(p, x[idx], y[idx])
        return jax.tree.map(lambda a, b: a - lr * b, p, g), {"train_loss": loss}

    return jax.lax.scan(step, params, jax.random.split(key, steps))


def linreg_fit(cfg: LinRegConfig, x, y, x_test, y_test) -> tuple[Params, dict]:
    """SGD from a random start; history is each step's minibatch RMSE."""
    init_key, batch_key = jax.random.split(jax.random.key(cfg.seed))
    kw, kb = jax.random.split(init_key)
    params = {"w": jax.random.normal(kw, (x.shape[1],)), "b": jax.random.normal(kb, ())}
    return _sgd_loop(params, x, jnp.asarray(y, jnp.float32), batch_key, cfg.lr, cfg.steps,
                     cfg.batch_size)
