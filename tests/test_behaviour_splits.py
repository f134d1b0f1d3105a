"""Splits are reproducible from their seed, differ between seeds, and are stratified where
asked: the table train/test split and MNIST's validation hold-out."""

import numpy as np
import pandas as pd
import pytest

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.data.prepare import PrepareConfig, prepare_images, split
from jaxpipe.data.tables import load_images


def frame(n_per_class: tuple[int, ...] = (60, 30, 10)) -> pd.DataFrame:
    """Rows with a unique id, so a split is known by which ids land where."""
    y = np.repeat(np.arange(len(n_per_class)), n_per_class)
    return pd.DataFrame({"id": np.arange(len(y), dtype=np.float64), "y": y})


def ids(part: pd.DataFrame) -> list[int]:
    return sorted(part["id"].astype(int))


def table_cfg(**kw) -> PrepareConfig:
    return PrepareConfig(kind="table", **kw)


def test_the_table_split_is_reproducible_from_its_seed_and_differs_between_seeds() -> None:
    data = frame()
    first = split(data, table_cfg(test_size=0.2, seed=1))
    again = split(data, table_cfg(test_size=0.2, seed=1))
    other = split(data, table_cfg(test_size=0.2, seed=2))
    assert ids(first[1]) == ids(again[1]) and ids(first[0]) == ids(again[0])
    assert ids(first[1]) != ids(other[1])
    assert sorted(ids(first[0]) + ids(first[1])) == list(range(100))  # a partition
    assert len(first[1]) == 20


def test_the_classification_split_keeps_each_class_share() -> None:
    for seed in range(5):
        train, test = split(frame(), table_cfg(test_size=0.2, seed=seed))
        assert test["y"].value_counts().sort_index().tolist() == [12, 6, 2]
        assert train["y"].value_counts().sort_index().tolist() == [48, 24, 8]


def test_a_regression_split_is_seeded_too() -> None:
    data = frame().assign(y=np.linspace(0, 1, 100))
    cfg = table_cfg(task="regression", test_size=0.3, seed=4)
    assert ids(split(data, cfg)[1]) == ids(split(data, cfg)[1])
    assert ids(split(data, cfg)[1]) != ids(split(data, table_cfg(task="regression",
                                                                 test_size=0.3, seed=5))[1])


def test_test_on_train_scores_on_every_training_row() -> None:
    train, test = split(frame(), table_cfg(test_size=0.0, test_on_train=True))
    assert ids(train) == ids(test) == list(range(100))


def test_a_class_too_small_to_stratify_is_named() -> None:
    with pytest.raises(JaxpipeError, match="class 2 of 'y' has one row"):
        split(frame((5, 5, 1)), table_cfg(test_size=0.2))


def images(n_per_class: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Images whose first pixel is their index (mod 256) and second its index // 256."""
    y = np.repeat(np.arange(len(n_per_class)), n_per_class).astype(np.uint8)
    x = np.zeros((len(y), 4, 4), np.uint8)
    x[:, 0, 0], x[:, 0, 1] = np.arange(len(y)) % 256, np.arange(len(y)) // 256
    return x, y


def index_of(table) -> list[int]:
    pixels = load_images(table)
    return (pixels[:, 0, 0].astype(int) + 256 * pixels[:, 0, 1].astype(int)).tolist()


def hold_out(seed: int, val_size: float = 0.1):
    x, y = images([10 * (c + 1) for c in range(10)])  # 10, 20, ... 100 of classes 0..9
    test_x, test_y = images([1] * 10)
    cfg = PrepareConfig(kind="images", val_size=val_size, seed=seed)
    return prepare_images(x, y, test_x, test_y, cfg)[0], y


def test_the_mnist_validation_hold_out_is_stratified() -> None:
    for seed in (0, 1, 2):
        tables, _ = hold_out(seed)
        val_labels = tables["val"]["label"].to_numpy()
        assert np.bincount(val_labels, minlength=10).tolist() == list(range(1, 11))
        train_labels = tables["train"]["label"].to_numpy()
        assert np.bincount(train_labels, minlength=10).tolist() == [9 * c for c in range(1, 11)]


def test_the_mnist_hold_out_is_reproducible_from_its_seed_and_keeps_order() -> None:
    (first, y), (again, _), (other, _) = hold_out(7), hold_out(7), hold_out(8)
    assert index_of(first["val"]) == index_of(again["val"])
    assert index_of(first["val"]) != index_of(other["val"])
    val, train = index_of(first["val"]), index_of(first["train"])
    assert val == sorted(val) and train == sorted(train)  # original order within each part
    assert sorted(val + train) == list(range(len(y)))
    labels = first["val"]["label"].to_numpy()
    assert labels.tolist() == y[val].tolist()  # each image keeps its own label
    assert index_of(first["test"]) == list(range(10))  # the official test set, untouched


def test_no_hold_out_keeps_every_training_image() -> None:
    tables, y = hold_out(0, val_size=0.0)
    assert "val" not in tables and index_of(tables["train"]) == list(range(len(y)))
