"""``jaxpipe.data.prepare``: selection, stratified split, scaler fitted on train only, Parquet
schema; a raw CSV and an MNIST folder prepared; splits reproducible from their seed,
different between seeds, and stratified where asked (the table train/test split and
MNIST's validation hold-out)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import committed_tree, mobile_frame, write_fake_mirror

from jaxpipe.core.config import load_config
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.core.fileio import md5sum
from jaxpipe.data.prepare import (
    PrepareConfig,
    prepare,
    prepare_images,
    prepare_table,
    select,
    split,
)
from jaxpipe.data.schema import load_schema
from jaxpipe.data.tables import load_dataset, load_images, write_dataset

BINARY = PrepareConfig(kind="table", target="price_range", columns_from="pc", classes=[0, 1],
                       test_size=0.2, seed=42)


def test_select_keeps_columns_from_pc_and_two_classes() -> None:
    frame = mobile_frame()
    out = select(frame, BINARY, "t.csv")
    assert list(out.columns)[0] == "pc" and list(out.columns)[-1] == "price_range"
    assert len(out.columns) == 11 and set(out["price_range"]) == {0, 1}
    assert len(frame.columns) == 21  # input not mutated


def test_missing_column_is_named() -> None:
    frame = mobile_frame().drop(columns=["pc"])
    with pytest.raises(JaxpipeError, match="t.csv: missing column 'pc'"):
        select(frame, BINARY, "t.csv")


def test_split_is_stratified_and_scaler_fitted_on_train_only() -> None:
    frame = mobile_frame(400)
    tables, scaler = prepare_table(frame, BINARY, "t.csv")
    train, test = tables["train"].to_pandas(), tables["test"].to_pandas()
    n = len(select(frame, BINARY, "t.csv"))
    assert len(train) + len(test) == n and abs(len(test) - 0.2 * n) <= 1
    assert abs(train["price_range"].mean() - test["price_range"].mean()) < 0.05
    features = list(scaler.features)
    np.testing.assert_allclose(train[features].mean(), 0, atol=1e-12)
    np.testing.assert_allclose(train[features].std(ddof=0), 1, atol=1e-12)
    assert not np.allclose(test[features].mean(), 0, atol=1e-3)  # fitted on train only


def test_schema_is_explicit(tmp_path: Path) -> None:
    tables, scaler = prepare_table(mobile_frame(), BINARY, "t.csv")
    write_dataset(tmp_path, tables, scaler)
    schema = pq.read_schema(tmp_path / "train.parquet")
    assert schema.field("price_range").type == pa.int64()
    assert all(schema.field(f).type == pa.float64() for f in scaler.features)
    assert json.loads((tmp_path / "inputs.json").read_text())["features"][0] == "pc"
    split = load_dataset(tmp_path).split("test")
    assert split.x.dtype == np.float32 and split.x.shape[1] == 10


def test_second_run_is_byte_identical(tmp_path: Path) -> None:
    for out in ("a", "b"):
        write_dataset(tmp_path / out, *prepare_table(mobile_frame(), BINARY, "t.csv"))
    for name in ("train.parquet", "test.parquet", "inputs.json"):
        assert md5sum(tmp_path / "a" / name) == md5sum(tmp_path / "b" / name)


def test_images_keep_test_set_and_hold_out_validation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train_x = rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    train_y = (np.arange(50) % 5).astype(np.uint8)
    test_x, test_y = train_x[:7], train_y[:7]
    cfg = PrepareConfig(kind="images", target="label", val_size=0.2, seed=0)
    tables, scaler = prepare_images(train_x, train_y, test_x, test_y, cfg)
    assert {k: v.num_rows for k, v in tables.items()} == {"train": 40, "val": 10, "test": 7}
    write_dataset(tmp_path, tables, scaler)
    image_type = pq.read_schema(tmp_path / "test.parquet").field("image").type
    assert image_type == pa.binary(784)
    test = load_dataset(tmp_path).split("test")
    assert test.x.shape == (7, 28, 28, 1) and test.x.dtype == np.float32
    np.testing.assert_allclose(test.x[..., 0], test_x / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(test.y, test_y)


def test_a_text_feature_column_is_named() -> None:
    frame = mobile_frame().astype({"ram": object})
    frame.loc[3, "ram"] = "lots"
    with pytest.raises(JaxpipeError) as err:
        select(frame, BINARY, "t.csv")
    assert str(err.value) == "t.csv: column 'ram' is not numeric"


def test_a_missing_value_is_refused_with_the_source() -> None:
    frame = mobile_frame().astype({"ram": float})
    frame.loc[3, "ram"] = np.nan
    with pytest.raises(JaxpipeError) as err:
        select(frame, BINARY, "t.csv")
    assert str(err.value) == "t.csv: missing values in the selected columns"


def test_a_fractional_class_label_names_its_row() -> None:
    frame = mobile_frame().astype({"price_range": float})
    frame.loc[6, "price_range"] = 1.5
    with pytest.raises(JaxpipeError) as err:
        select(frame, BINARY, "t.csv")
    assert str(err.value) == ("t.csv: column 'price_range', row 7: 1.5 is not a class label "
                              "(an integer from 0)")
    frame.loc[6, "price_range"] = -1
    with pytest.raises(JaxpipeError) as err:
        select(frame, BINARY, "t.csv")
    assert str(err.value) == ("t.csv: column 'price_range', row 7: -1 is not a class label "
                              "(an integer from 0)")


def test_test_size_zero_needs_test_on_train() -> None:
    with pytest.raises(ValueError) as err:
        PrepareConfig(kind="table", test_size=0.0)
    assert str(err.value) == ("test_size: 0 leaves no test rows; set test_on_train: true to "
                              "score on the training rows")
    assert PrepareConfig(kind="table", test_size=0.0, test_on_train=True).test_on_train


def test_a_regression_target_stays_a_float() -> None:
    frame = mobile_frame(100).assign(price=lambda f: f["ram"] / 7.0)
    cfg = PrepareConfig(kind="table", task="regression", target="price", columns_from="pc",
                        seed=1)
    tables, _ = prepare_table(frame.drop(columns=["price_range"]), cfg, "t.csv")
    assert tables["train"].schema.field("price").type == pa.float64()
    both = np.concatenate([tables[s]["price"].to_numpy() for s in ("train", "test")])
    np.testing.assert_allclose(np.sort(both), np.sort(frame["price"].to_numpy()))


def test_prepare_names_the_raw_file_in_its_errors(tmp_path: Path) -> None:
    source = tmp_path / "raw.csv"
    mobile_frame(50).drop(columns=["price_range"]).to_csv(source, index=False)
    with pytest.raises(JaxpipeError) as err:
        prepare(source, BINARY)
    assert str(err.value) == f"{source}: missing target column 'price_range'"


ROOT = Path(__file__).parents[1]


def test_prepare_reads_a_csv_source(tmp_path: Path) -> None:
    source = tmp_path / "train.csv"
    mobile_frame(n=200).to_csv(source, index=False)
    cfg = load_config(PrepareConfig, committed_tree() / "params.yaml", "prepare",
                      "mobile_multiclass")
    tables, scaler = prepare(source, cfg, load_schema(ROOT / "schemas" / "mobile_price.yaml"))
    assert sorted(tables) == ["test", "train"]
    assert tables["train"].num_rows + tables["test"].num_rows == 200
    assert tables["test"].num_rows == 40
    assert scaler.target == "price_range" and scaler.n_features == 20


def test_prepare_reads_an_mnist_folder_and_checks_it(tmp_path: Path) -> None:
    mnist = write_fake_mirror(tmp_path / "mirror", n_train=100, n_test=30) / "mnist"
    cfg = PrepareConfig(kind="images", target="label", val_size=0.2, seed=0)
    schema = load_schema(ROOT / "schemas" / "mnist.yaml")
    tables, scaler = prepare(mnist, cfg, schema)
    assert {k: t.num_rows for k, t in tables.items()} == {"train": 80, "val": 20, "test": 30}
    assert scaler.features == ("image",) and scaler.scale == (255.0,)
    write_dataset(tmp_path / "prepared", tables, scaler)
    data = load_dataset(tmp_path / "prepared")
    assert data.split("test").x.shape == (30, 28, 28, 1)  # NHWC, one channel
    assert float(data.split("test").x.max()) == pytest.approx(250 / 255)


def test_image_and_label_counts_must_agree() -> None:
    images, labels = np.zeros((5, 28, 28), np.uint8), np.arange(4, dtype=np.uint8)
    with pytest.raises(JaxpipeError) as err:
        prepare_images(images, labels, images[:2], labels[:2], PrepareConfig(kind="images"))
    assert str(err.value) == "MNIST images and labels differ in count"


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


def test_data_kinds_are_a_registry_and_a_new_kind_is_one_function(tmp_path: Path) -> None:
    """``prepare.<dataset>.kind`` names a function registered with ``data_kind``: the two the
    pipeline uses, and a team's own, are found the same way; an unknown one is named with
    the kinds there are."""
    from jaxpipe.core.config import parse
    from jaxpipe.core.errors import ConfigError
    from jaxpipe.data import prepare as module
    from jaxpipe.data.inputs import Inputs

    assert {"table", "images"} <= set(module.KINDS)
    with pytest.raises(ConfigError) as err:
        parse(PrepareConfig, {"kind": "sound"}, "prepare.x")
    assert str(err.value) == (f"prepare.x.kind: 'sound' is not one of {sorted(module.KINDS)}")

    @module.data_kind("constant")
    def constant(source: Path, cfg: PrepareConfig, schema: object
                 ) -> tuple[dict[str, pa.Table], Inputs]:
        table = pa.table({"a": [float(source.stat().st_size)], "y": [0]})
        return {"train": table, "test": table}, Inputs(("a",), (0.0,), (1.0,), "y", "scaled")

    try:
        (tmp_path / "raw").write_text("12345")
        cfg = parse(PrepareConfig, {"kind": "constant"}, "prepare.x")
        tables, inputs = module.prepare(tmp_path / "raw", cfg)
        assert tables["train"]["a"].to_pylist() == [5.0] and inputs.features == ("a",)
    finally:
        del module.KINDS["constant"]
