"""``jaxpipe.train``: what training returns, and the history CSV it writes."""

from pathlib import Path

import numpy as np
from helpers import make_dataset

from jaxpipe import models
from jaxpipe.train import TrainConfig, train, write_history


def test_the_history_csv_has_a_column_per_series_and_a_row_per_step(tmp_path: Path) -> None:
    write_history(tmp_path / "h.csv", {"step": np.array([1, 2, 3]),
                                       "train_loss": np.array([0.5, 0.25, 0.125])})
    assert (tmp_path / "h.csv").read_text().splitlines() == [
        "step,train_loss", "1,0.5", "2,0.25", "3,0.125"]


def test_train_returns_numpy_parameters_and_a_numbered_history() -> None:
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    data = make_dataset(None, train=(x, np.array([0, 1, 1, 1], np.int32)),
                        test=(x, np.array([0, 1, 1, 1], np.int32)))
    fit = train(TrainConfig("logreg", models.load("logreg").Config(steps=7)), data)
    assert all(type(v) is np.ndarray for v in fit.params.values())
    assert fit.history["step"].tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert list(fit.history)[0] == "step" and len(fit.history["train_loss"]) == 7
