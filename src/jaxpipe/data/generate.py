"""The synthetic data sets of docs/SYSTEMS.md systems 2, 3 and 5, every draw seeded.

Each kind (``generate.<name>.kind``) is a function registered with ``synthetic``: a new kind
is one more such function, and no other kind's data changes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from jaxpipe.core.config import MAX_ROWS, SEED_MAX, check, in_range
from jaxpipe.data.tables import table_from_frame

MAX_FEATURES = 10_000


@dataclass(frozen=True)
class GenerateConfig:
    """params.yaml ``generate.<name>``."""

    kind: str  # a registered synthetic kind: "xor", "linear" or "classification" (``KINDS``)
    seed: int = 0
    n_samples: int = 4
    n_features: int = 2
    weights: list[float] = field(default_factory=list)
    intercept: float = 0.0
    x_scale: float = 1.0

    def __post_init__(self) -> None:
        check(self.kind in KINDS, "kind", f"{self.kind!r} is not one of {sorted(KINDS)}")
        in_range(self.n_samples, "n_samples", 1, MAX_ROWS)
        in_range(self.n_features, "n_features", 1, MAX_FEATURES)
        check(self.n_samples * self.n_features <= MAX_ROWS * 10, "n_samples",
              f"times n_features is over {MAX_ROWS * 10:_} cells")
        in_range(self.seed, "seed", 0, SEED_MAX)
        KINDS[self.kind].check(self)


Draw = Callable[[GenerateConfig], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Kind:
    """A synthetic data set: how to draw it, what its config must satisfy beyond the shared
    bounds, and its target's type (int64 labels or float64 values)."""

    draw: Draw
    check: Callable[[GenerateConfig], None]
    target: pa.DataType


KINDS: dict[str, Kind] = {}
LABELS, VALUES = pa.int64(), pa.float64()


def synthetic(name: str, target: pa.DataType = LABELS,
              check: Callable[[GenerateConfig], None] = lambda cfg: None
              ) -> Callable[[Draw], Draw]:
    """Register ``draw(cfg) -> (x, y)`` as the synthetic kind ``name`` (params.yaml
    ``generate.<name>.kind``)."""
    def register(draw: Draw) -> Draw:
        KINDS[name] = Kind(draw, check, target)
        return draw
    return register


@synthetic("xor")
def _xor(cfg: GenerateConfig) -> tuple[np.ndarray, np.ndarray]:
    """The four rows of XOR (system 2)."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    return x, np.logical_xor(x[:, 0], x[:, 1]).astype(np.int64)


def _linear_ok(cfg: GenerateConfig) -> None:
    check(len(cfg.weights) == cfg.n_features, "weights",
          f"needs n_features={cfg.n_features} values, got {len(cfg.weights)}")


@synthetic("linear", target=VALUES, check=_linear_ok)
def _linear(cfg: GenerateConfig) -> tuple[np.ndarray, np.ndarray]:
    """Uniform features times the weights, plus uniform noise and the intercept (system 3)."""
    rng = np.random.default_rng(cfg.seed)
    x = cfg.x_scale * rng.uniform(size=(cfg.n_samples, cfg.n_features))
    return x, x @ np.asarray(cfg.weights) + rng.uniform(size=cfg.n_samples) + cfg.intercept


def _classification_ok(cfg: GenerateConfig) -> None:  # make_classification's 2 + 2 features
    in_range(cfg.n_features, "n_features", 4, MAX_FEATURES)
    in_range(cfg.n_samples, "n_samples", 4, MAX_ROWS)


@synthetic("classification", check=_classification_ok)
def _classification(cfg: GenerateConfig) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ``make_classification``, two classes (system 5)."""
    from sklearn.datasets import make_classification  # 1 s to import: only when used

    x, y = make_classification(n_samples=cfg.n_samples, n_features=cfg.n_features,
                               n_classes=2, random_state=cfg.seed)
    return x, y.astype(np.int64)


def generate(cfg: GenerateConfig) -> pd.DataFrame:
    """Return the data set ``cfg`` describes: feature columns x0..xN and a target column y."""
    x, y = KINDS[cfg.kind].draw(cfg)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    frame["y"] = y
    return frame


def generate_table(cfg: GenerateConfig) -> pa.Table:
    """The data set as an explicit-schema table: float64 features, then ``y`` (int64 labels,
    or float64 values for the regression set)."""
    return table_from_frame(generate(cfg), "y", KINDS[cfg.kind].target)
