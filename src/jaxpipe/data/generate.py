"""The synthetic data sets of docs/SYSTEMS.md systems 2, 3 and 5, every draw seeded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from jaxpipe.core.config import MAX_ROWS, SEED_MAX, check, in_range
from jaxpipe.data.tables import table_from_frame

MAX_FEATURES = 10_000


@dataclass(frozen=True)
class GenerateConfig:
    """params.yaml ``generate.<name>``."""

    kind: Literal["xor", "linear", "classification"]
    seed: int = 0
    n_samples: int = 4
    n_features: int = 2
    weights: list[float] = field(default_factory=list)
    intercept: float = 0.0
    x_scale: float = 1.0

    def __post_init__(self) -> None:
        in_range(self.n_samples, "n_samples", 1, MAX_ROWS)
        in_range(self.n_features, "n_features", 1, MAX_FEATURES)
        check(self.n_samples * self.n_features <= MAX_ROWS * 10, "n_samples",
              f"times n_features is over {MAX_ROWS * 10:_} cells")
        in_range(self.seed, "seed", 0, SEED_MAX)
        if self.kind == "classification":  # make_classification's 2 informative + 2 redundant
            in_range(self.n_features, "n_features", 4, MAX_FEATURES)
            in_range(self.n_samples, "n_samples", 4, MAX_ROWS)
        if self.kind == "linear":
            check(len(self.weights) == self.n_features, "weights",
                  f"needs n_features={self.n_features} values, got {len(self.weights)}")


def generate(cfg: GenerateConfig) -> pd.DataFrame:
    """Return the data set ``cfg`` describes: feature columns x0..xN and a target column y."""
    if cfg.kind == "xor":
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
        y = np.logical_xor(x[:, 0], x[:, 1]).astype(np.int64)
    elif cfg.kind == "linear":
        rng = np.random.default_rng(cfg.seed)
        x = cfg.x_scale * rng.uniform(size=(cfg.n_samples, cfg.n_features))
        y = x @ np.asarray(cfg.weights) + rng.uniform(size=cfg.n_samples) + cfg.intercept
    else:
        from sklearn.datasets import make_classification  # 1 s to import: only when used

        x, y = make_classification(n_samples=cfg.n_samples, n_features=cfg.n_features,
                                   n_classes=2, random_state=cfg.seed)
        y = y.astype(np.int64)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    frame["y"] = y
    return frame


def generate_table(cfg: GenerateConfig) -> pa.Table:
    """The data set as an explicit-schema table: float64 features, then ``y`` (int64 labels,
    or float64 values for the regression set)."""
    target_type = pa.float64() if cfg.kind == "linear" else pa.int64()
    return table_from_frame(generate(cfg), "y", target_type)
