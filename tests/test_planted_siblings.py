"""Bugs a person plants (not the mutation tool's operators), and their siblings: a configured
value never exercised away from its default, a column never checked against its name, a
figure written on the wrong scale. Each test fails if its bug comes back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import make_dataset
from sklearn.metrics import mean_squared_error, precision_recall_fscore_support

from jaxpipe import models
from jaxpipe.data.prepare import PrepareConfig, fit_scaler
from jaxpipe.evaluate import per_class_rows, regression_metrics
from jaxpipe.models import TrainingError, baseline_loss
from jaxpipe.train import TrainConfig, train


def _logreg_from_far(max_loss_growth: float | None):
    """Logistic regression starting far from the answer: its first losses are about 4.5
    times the loss of a constant prediction (ln 2), then fall."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] < 0).astype(np.int32)  # w_init = +2 points every weight the wrong way
    extra = {} if max_loss_growth is None else {"max_loss_growth": max_loss_growth}
    cfg = models.load("logreg").Config(steps=30, lr=0.5, w_init=2.0, c_init=0.0, **extra)
    return TrainConfig("logreg", cfg), make_dataset(train=(x, y), test=(x, y))


def test_a_configured_max_loss_growth_is_the_one_used() -> None:
    cfg, data = _logreg_from_far(None)
    fit = train(cfg, data)  # the default, 10: these losses are allowed
    first = float(fit.history["train_loss"][0])
    assert 2 * np.log(2) < first < 10 * np.log(2)
    for growth in (1.5, 2.0):  # below the first loss: training stops at step 1
        cfg, data = _logreg_from_far(growth)
        with pytest.raises(TrainingError, match=r"over the ceiling .* at step 1;"):
            train(cfg, data)
    cfg, data = _logreg_from_far(first / np.log(2) * 1.01)  # just above: it runs
    assert len(train(cfg, data).history["train_loss"]) == 30


def test_the_regression_baseline_is_on_the_scale_of_the_rmse() -> None:
    """RMSE is in the target's units: the constant prediction's loss is the target's
    standard deviation (not its variance, nor that of scaled targets)."""
    y = np.array([10.0, 20.0, 30.0, 40.0])
    assert baseline_loss("regression", y) == pytest.approx(np.std(y))  # 11.18, variance 125
    assert baseline_loss("binary", np.array([0, 1])) == pytest.approx(np.log(2))
    assert baseline_loss("multiclass", np.array([0, 3, 1])) == pytest.approx(np.log(4))


def test_every_per_class_column_holds_what_its_name_says() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 300)
    probs = rng.dirichlet(np.ones(4), 300)
    probs[np.arange(300), y] += rng.uniform(0, 1.2, 300)  # right more often than not
    probs /= probs.sum(axis=1, keepdims=True)
    header, rows = per_class_rows(y, probs, 0.5)
    prec, rec, f1, support = precision_recall_fscore_support(y, probs.argmax(axis=1),
                                                             labels=[0, 1, 2, 3])
    assert len({tuple(np.round(v, 4)) for v in (prec, rec, f1)}) == 3  # they differ here
    table = pd.DataFrame(rows, columns=header).set_index("class")
    assert table["precision"].tolist() == pytest.approx(prec, abs=1e-6)
    assert table["recall"].tolist() == pytest.approx(rec, abs=1e-6)
    assert table["f1"].tolist() == pytest.approx(f1, abs=1e-6)
    assert table["support"].tolist() == support.tolist()


def test_the_headline_rmse_is_the_root_of_the_mean_squared_error() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([1.5, 1.0, 3.0, 7.0])  # squared errors 0.25, 1, 0, 9: MSE 2.5625
    metrics = regression_metrics(y, pred)
    assert metrics["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, pred)), abs=1e-6)
    assert metrics["rmse"] == pytest.approx(1.600781, abs=1e-6)


@pytest.mark.parametrize("value", [0.1, 0.3, 1e6 + 0.1, 123.456, 0.0, -7.0])
def test_a_feature_constant_in_training_keeps_its_values(value: float) -> None:
    """A constant column has no spread to divide by: its scale is 1, even when rounding
    makes its computed standard deviation 1e-17 rather than 0."""
    frame = pd.DataFrame({"a": [value] * 1601, "b": np.arange(1601.0), "y": [0, 1] * 800 + [0]})
    inputs = fit_scaler(frame, PrepareConfig(kind="table"))
    assert inputs.scale[0] == 1.0
    assert inputs.scale[1] == pytest.approx(np.std(np.arange(1601.0)))
