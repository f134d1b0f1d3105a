"""The models: one module per family, each owning its whole contract, and a lazy registry.

Every model module defines the same names:

- ``Config``: a frozen dataclass subclassing ``TrainConfig`` (seed, lr, the divergence
  rule), params.yaml ``train.<model>`` less its ``kind``;
- ``TASK``: ``"binary"``, ``"multiclass"`` or ``"regression"``;
- ``fit(cfg, data) -> Fit``: train on a prepared ``Dataset``;
- ``predict(cfg, params, x) -> np.ndarray``: the probability of class 1 (binary), class
  probabilities (multiclass) or values (regression);
- ``init(cfg, n_features)``: the initial parameters, from which ``template`` (below) traces
  the shapes a model file must hold; or, where those depend on more than the feature count,
  its own ``template(cfg, inputs)`` (``inputs``: the data set's ``data.inputs.Inputs``);
- ``metrics(cfg, params, info) -> dict``: what the family adds to its task's metrics.

A family is found by its name: ``kind: NAME`` in params.yaml is the module
``jaxpipe.models.NAME`` (a file ``NAME.py`` or a package ``NAME/``). There is no table to
edit: adding a family adds one module and touches no file another stage depends on, and
``load(kind)`` imports a family only when that kind is used, so a stage depends on the code
of its own model and no other. ``jaxpipe new family NAME`` writes one.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Literal

import numpy as np

from jaxpipe.core.config import SEED_MAX, check, in_range
from jaxpipe.core.errors import ConfigError, JaxpipeError
from jaxpipe.data.inputs import Inputs

Task = Literal["binary", "multiclass", "regression"]


class TrainingError(JaxpipeError):
    """Training produced a NaN or infinite loss."""


@dataclass(frozen=True)
class Fit:
    """What every ``fit`` returns: parameters, per-step (or per-epoch) history, and facts."""

    params: Any
    history: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)


_phase_seconds: dict[str, float] = defaultdict(float)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Add the wall time of the ``with`` block to phase ``name`` of this process's training
    (for a train stage's ``--timing`` report and the benchmarks; never an output)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        _phase_seconds[name] += time.perf_counter() - started


def phase_times() -> dict[str, float]:
    """Seconds per phase so far, in the order the phases first ran."""
    return {name: round(seconds, 4) for name, seconds in _phase_seconds.items()}


_epoch_watchers: list[Callable[..., None]] = []


@contextmanager
def watching_epochs(watcher: Callable[..., None]) -> Iterator[None]:
    """Call ``watcher(epoch, **figures)`` for every epoch a family reports in the block
    (``jaxpipe.live``); a watcher only looks: it cannot change the training."""
    _epoch_watchers.append(watcher)
    try:
        yield
    finally:
        _epoch_watchers.remove(watcher)


def epoch_done(epoch: int, **figures: float) -> None:
    """A family's training loop reports a finished epoch (counted from 1) and its figures."""
    for watcher in list(_epoch_watchers):
        watcher(epoch, **figures)


@functools.cache
def _data_product() -> Callable:
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def product(x: Any, x_t: Any, w: Any) -> Any:
        return x @ w

    def forward(x: Any, x_t: Any, w: Any) -> tuple:
        return x @ w, (x, x_t)

    def backward(saved: tuple, g: Any) -> tuple:
        x, x_t = saved  # the data is not trained: its cotangents are zero
        return jnp.zeros_like(x), jnp.zeros_like(x_t), x_t @ g

    product.defvjp(forward, backward)
    return product


def data_product(x: Any, x_t: Any, w: Any) -> Any:
    """``x @ w`` for a data matrix ``x`` (rows: examples), whose gradient in ``w`` is taken
    as ``x_t @ g`` from ``x_t``, ``x``'s transpose stored row major. Differentiating ``x @ w``
    itself gives ``x.T @ g``, a product with a transposed left operand, which YNNPACK refuses;
    XLA then hands it to oneDNN, whose AVX-512 and AVX2 kernels add in other orders (other
    bytes per CPU). YNNPACK's consistent arithmetic gives the same bytes on every CPU."""
    return _data_product()(x, x_t, w)


def families() -> list[str]:
    """The model families this installation has: the modules and packages in this folder."""
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def module_name(kind: str) -> str:
    """The module that implements ``kind``: ``jaxpipe.models.<kind>``."""
    if not isinstance(kind, str) or not kind.isidentifier() or kind not in families():
        raise ConfigError(f"kind: {kind!r} is not one of {families()} (the modules of "
                          "src/jaxpipe/models/)")
    return f"{__name__}.{kind}"


def load(kind: str) -> ModuleType:
    """Import the model family of ``kind``."""
    return importlib.import_module(module_name(kind))


@dataclass(frozen=True)
class TrainConfig:
    """What every model config shares, checked here once: the seed of its random draws, its
    learning rate and the divergence rule's threshold. A family's ``Config`` subclasses it
    (redeclaring ``seed`` or ``lr`` changes only the default) and adds its own fields."""

    seed: int = 0
    lr: float = 0.1
    # training stops when a loss exceeds this many times the loss of a constant prediction
    max_loss_growth: float = 10.0
    seed_max: ClassVar[int] = SEED_MAX  # a family that derives seeds (seed + 1) lowers it

    def __post_init__(self) -> None:
        in_range(self.seed, "seed", 0, self.seed_max)
        check(self.lr > 0, "lr", "must be positive")
        check(1.0 < self.max_loss_growth <= 1e6, "max_loss_growth", "must be in (1, 1e6]")


def template(module: ModuleType, cfg: Any, inputs: Inputs) -> Any:
    """The parameter pytree (``jax.ShapeDtypeStruct`` leaves: shapes only, nothing
    initialised) a model of ``module``'s family holds for ``inputs``: the family's own
    ``template(cfg, inputs)`` if it has one, else its ``init(cfg, n_features)`` traced."""
    own = getattr(module, "template", None)
    if own is not None:
        return own(cfg, inputs)
    import jax

    return jax.eval_shape(lambda: module.init(cfg, inputs.n_features))


def baseline_loss(task: Task, y: np.ndarray) -> float:
    """The loss of the best constant prediction that knows nothing: ln 2 (binary), ln K
    (K classes), the standard deviation of ``y`` (regression, RMSE)."""
    y = np.asarray(y)
    if task == "regression":
        return float(np.std(y.astype(np.float64))) or 1.0
    return float(np.log(max(int(y.max()) + 1, 2) if task == "multiclass" else 2))


def check_loss(losses: np.ndarray, ceiling: float, first_step: int = 0) -> None:
    """Stop a run whose loss stopped being a number or rose above ``ceiling``, naming the
    step (1-based), before a broken model is written."""
    losses = np.asarray(losses, np.float64)
    bad = np.flatnonzero(~np.isfinite(losses) | (losses > ceiling))
    if bad.size:
        step, loss = first_step + int(bad[0]) + 1, losses[bad[0]]
        why = f"loss is {loss}" if not np.isfinite(loss) else (
            f"loss {loss:.4g} is over the ceiling {ceiling:.4g} (max_loss_growth times the loss "
            "of a constant prediction; lower lr?)")
        raise TrainingError(f"training diverged: {why} at step {step}; no model written")
