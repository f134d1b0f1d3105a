"""``jaxpipe.data.generate``: the synthetic data sets of docs/SYSTEMS.md systems 2, 3 and 5:
exact values from a given seed, the documented formulas, shapes, dtypes, class balance,
and every bound of ``generate.<name>``."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.datasets import make_classification

from jaxpipe.core.config import MAX_ROWS, SEED_MAX
from jaxpipe.data.generate import MAX_FEATURES, GenerateConfig, generate, generate_table

LINEAR = {"kind": "linear", "seed": 0, "n_samples": 1000, "n_features": 2, "x_scale": 10.0,
          "weights": [3.0, 4.0], "intercept": 5.0}  # params.yaml generate.linear
SYNTHETIC = {"kind": "classification", "seed": 6, "n_samples": 500, "n_features": 20}


def sha256(frame: pd.DataFrame) -> str:
    return hashlib.sha256(frame.to_numpy().tobytes()).hexdigest()


def test_xor_is_the_four_rows_of_the_truth_table() -> None:
    frame = generate(GenerateConfig(kind="xor", seed=5, n_samples=100, n_features=7))
    assert list(frame.columns) == ["x0", "x1", "y"]
    assert frame.to_dict("list") == {"x0": [0.0, 0.0, 1.0, 1.0], "x1": [0.0, 1.0, 0.0, 1.0],
                                     "y": [0, 1, 1, 0]}
    assert frame.dtypes.tolist() == [np.float64, np.float64, np.int64]


def test_linear_follows_the_seeds_md_formula_from_one_seeded_generator() -> None:
    """System 3: X = x_scale * U(0,1); y = X.w + U(0,1) + intercept, both draws from one
    ``default_rng(seed)`` in that order."""
    cfg = GenerateConfig(kind="linear", seed=3, n_samples=3, n_features=2, x_scale=2.0,
                         weights=[1.0, -2.0], intercept=0.5)
    frame = generate(cfg)
    rng = np.random.default_rng(3)
    x = 2.0 * rng.uniform(size=(3, 2))
    y = x @ np.array([1.0, -2.0]) + rng.uniform(size=3) + 0.5
    assert list(frame.columns) == ["x0", "x1", "y"]
    np.testing.assert_array_equal(frame[["x0", "x1"]].to_numpy(), x)
    np.testing.assert_array_equal(frame["y"].to_numpy(), y)
    np.testing.assert_allclose(frame["x0"], [0.17129833428724872, 1.6025489304127938,
                                             0.18825728448079837], rtol=1e-15)
    np.testing.assert_allclose(frame["y"], [0.20310760604368394, -0.06636029920759878,
                                            -0.3096733250558823], rtol=1e-15)
    assert frame.dtypes.tolist() == [np.float64] * 3


def test_linear_as_in_params_is_pinned() -> None:
    frame = generate(GenerateConfig(**LINEAR))
    assert frame.shape == (1000, 3)
    assert frame.iloc[0].tolist() == [6.369616873214543, 2.697867137638703, 35.87760023641751]
    assert sha256(frame) == "e5dd113a30f250e255aac1a15fe5120762b16e0b18e57ba1f6cd2b156940f501"
    noise = frame["y"] - frame["x0"] * 3.0 - frame["x1"] * 4.0 - 5.0  # U(0,1)
    assert 0.0 <= noise.min() and noise.max() < 1.0
    assert 0.0 <= frame[["x0", "x1"]].min().min() and frame[["x0", "x1"]].max().max() < 10.0
    assert generate(GenerateConfig(**LINEAR)).equals(frame)  # same seed, same data
    assert not generate(GenerateConfig(**{**LINEAR, "seed": 1})).equals(frame)


def test_classification_is_scikit_learns_two_class_set_from_the_seed() -> None:
    frame = generate(GenerateConfig(**SYNTHETIC))
    x, y = make_classification(n_samples=500, n_features=20, n_classes=2, random_state=6)
    assert list(frame.columns) == [f"x{i}" for i in range(20)] + ["y"]
    np.testing.assert_array_equal(frame.drop(columns="y").to_numpy(), x)
    np.testing.assert_array_equal(frame["y"].to_numpy(), y)
    assert frame["y"].dtype == np.int64
    assert frame["y"].value_counts().to_dict() == {0: 251, 1: 249}
    assert sha256(frame) == "5abb021ee60ba958b393c5649038ebeafcc3aa651498dac1c280b32edfe62ff4"
    small = generate(GenerateConfig(kind="classification", seed=6, n_samples=4, n_features=4))
    assert small.shape == (4, 5) and sorted(small["y"].tolist()) == [0, 0, 1, 1]


def test_tables_have_float_features_and_the_target_type_of_their_kind() -> None:
    xor = generate_table(GenerateConfig(kind="xor"))
    assert xor.schema == pa.schema([pa.field("x0", pa.float64(), nullable=False),
                                    pa.field("x1", pa.float64(), nullable=False),
                                    pa.field("y", pa.int64(), nullable=False)])
    assert xor.column("y").to_pylist() == [0, 1, 1, 0]
    linear = generate_table(GenerateConfig(**{**LINEAR, "n_samples": 5}))
    assert linear.schema.field("y").type == pa.float64()
    assert linear.column("y").to_pylist() == generate(
        GenerateConfig(**{**LINEAR, "n_samples": 5}))["y"].tolist()
    synthetic = generate_table(GenerateConfig(**{**SYNTHETIC, "n_samples": 8}))
    assert synthetic.schema.field("y").type == pa.int64() and synthetic.num_columns == 21


@pytest.mark.parametrize(("fields", "message"), [
    ({"n_samples": 0}, f"n_samples: 0 is outside [1, {MAX_ROWS:_}]"),
    ({"n_samples": MAX_ROWS + 1}, f"n_samples: {MAX_ROWS + 1} is outside [1, {MAX_ROWS:_}]"),
    ({"n_features": 0}, f"n_features: 0 is outside [1, {MAX_FEATURES:_}]"),
    ({"n_features": MAX_FEATURES + 1},
     f"n_features: {MAX_FEATURES + 1} is outside [1, {MAX_FEATURES:_}]"),
    ({"n_samples": MAX_ROWS, "n_features": 11},
     "n_samples: times n_features is over 100_000_000 cells"),
    ({"n_samples": 9_090_910, "n_features": 11},
     "n_samples: times n_features is over 100_000_000 cells"),
    ({"seed": -1}, f"seed: -1 is outside [0, {SEED_MAX:_}]"),
    ({"seed": SEED_MAX + 1}, f"seed: {SEED_MAX + 1} is outside [0, {SEED_MAX:_}]"),
])
def test_out_of_range_xor_settings_name_the_key_and_bounds(fields: dict, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        GenerateConfig(kind="xor", **fields)
    assert str(caught.value) == message


@pytest.mark.parametrize("fields", [
    {"n_samples": 1, "n_features": 1, "seed": 0},
    {"n_samples": MAX_ROWS, "n_features": 10, "seed": SEED_MAX},
    {"n_samples": 9_090_909, "n_features": 11},
    {"n_samples": 10, "n_features": MAX_FEATURES},
])
def test_settings_on_the_bounds_are_accepted(fields: dict) -> None:
    cfg = GenerateConfig(kind="xor", **fields)
    assert (cfg.n_samples, cfg.n_features) == (fields["n_samples"], fields["n_features"])


def test_classification_needs_four_features_and_four_rows() -> None:
    with pytest.raises(ValueError) as caught:
        GenerateConfig(kind="classification", n_samples=10, n_features=3)
    assert str(caught.value) == f"n_features: 3 is outside [4, {MAX_FEATURES:_}]"
    with pytest.raises(ValueError) as caught:
        GenerateConfig(kind="classification", n_samples=3, n_features=4)
    assert str(caught.value) == f"n_samples: 3 is outside [4, {MAX_ROWS:_}]"
    top = GenerateConfig(kind="classification", n_samples=MAX_ROWS // MAX_FEATURES,
                         n_features=MAX_FEATURES)
    assert top.n_features == MAX_FEATURES
    assert GenerateConfig(kind="classification", n_samples=MAX_ROWS, n_features=4).n_samples \
        == MAX_ROWS
    # the other kinds may have fewer
    assert GenerateConfig(kind="linear", n_samples=1, n_features=1, weights=[2.0]).n_samples == 1


def test_linear_needs_one_weight_per_feature() -> None:
    with pytest.raises(ValueError) as caught:
        GenerateConfig(kind="linear", n_features=2, weights=[1.0])
    assert str(caught.value) == "weights: needs n_features=2 values, got 1"
    with pytest.raises(ValueError) as caught:
        GenerateConfig(kind="linear", n_features=1, weights=[1.0, 2.0])
    assert str(caught.value) == "weights: needs n_features=1 values, got 2"
    assert GenerateConfig(kind="xor", n_features=2).weights == []  # only linear has weights
    assert GenerateConfig(kind="classification", n_features=4).weights == []


def test_synthetic_kinds_are_a_registry_and_a_new_kind_is_one_function() -> None:
    """``generate.<name>.kind`` names a function registered with ``synthetic``, with its own
    checks and target type; an unknown kind is named with the kinds there are."""
    from jaxpipe.core.config import parse
    from jaxpipe.core.errors import ConfigError
    from jaxpipe.data import generate as module

    assert {"xor", "linear", "classification"} <= set(module.KINDS)
    with pytest.raises(ConfigError) as err:
        parse(GenerateConfig, {"kind": "spiral"}, "generate.s")
    assert str(err.value) == f"generate.s.kind: 'spiral' is not one of {sorted(module.KINDS)}"

    def even(cfg: GenerateConfig) -> None:
        if cfg.n_samples % 2:
            raise ValueError("n_samples: must be even")

    @module.synthetic("ramp", target=pa.float64(), check=even)
    def ramp(cfg: GenerateConfig) -> tuple[np.ndarray, np.ndarray]:
        x = np.arange(cfg.n_samples, dtype=np.float64)[:, None]
        return x, 2 * x[:, 0]

    try:
        table = generate_table(parse(GenerateConfig, {"kind": "ramp", "n_samples": 4}, "g"))
        assert table.column("y").to_pylist() == [0.0, 2.0, 4.0, 6.0]
        assert table.schema.field("y").type == pa.float64()
        with pytest.raises(ConfigError, match=r"^g\.n_samples: must be even$"):
            parse(GenerateConfig, {"kind": "ramp", "n_samples": 3}, "g")
    finally:
        del module.KINDS["ramp"]
