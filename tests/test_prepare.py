"""Prepare: selection, stratified split, scaler fitted on train only, Parquet schema."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import mobile_frame

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.core.fileio import md5sum
from jaxpipe.data.prepare import (
    PrepareConfig,
    prepare,
    prepare_images,
    prepare_table,
    select,
)
from jaxpipe.data.tables import load_dataset, write_dataset

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
    features = scaler["features"]
    np.testing.assert_allclose(train[features].mean(), 0, atol=1e-12)
    np.testing.assert_allclose(train[features].std(ddof=0), 1, atol=1e-12)
    assert not np.allclose(test[features].mean(), 0, atol=1e-3)  # fitted on train only


def test_schema_is_explicit(tmp_path: Path) -> None:
    tables, scaler = prepare_table(mobile_frame(), BINARY, "t.csv")
    write_dataset(tmp_path, tables, scaler)
    schema = pq.read_schema(tmp_path / "train.parquet")
    assert schema.field("price_range").type == pa.int64()
    assert all(schema.field(f).type == pa.float64() for f in scaler["features"])
    assert json.loads((tmp_path / "scaler.json").read_text())["features"][0] == "pc"
    split = load_dataset(tmp_path).split("test")
    assert split.x.dtype == np.float32 and split.x.shape[1] == 10


def test_second_run_is_byte_identical(tmp_path: Path) -> None:
    for out in ("a", "b"):
        write_dataset(tmp_path / out, *prepare_table(mobile_frame(), BINARY, "t.csv"))
    for name in ("train.parquet", "test.parquet", "scaler.json"):
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
                              "(an integer)")


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
