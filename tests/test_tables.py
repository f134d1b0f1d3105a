"""``jaxpipe.data.tables``: prepared folders written and read back: tables have an explicit
schema, targets keep their kind (int32 classes, float32 values), a folder's bytes do not
depend on the order it was built in, and each damaged split or scaler, or a cell that is
not finite, gives one line naming the file, and the column and row (``inputs.json`` itself:
tests/test_inputs.py)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import random_table

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.data.inputs import Inputs
from jaxpipe.data.tables import (
    image_table,
    load_dataset,
    load_split,
    table_from_frame,
    write_dataset,
)

SCALER = Inputs(("a", "b"), (0.0, 0.0), (1.0, 1.0), "y", "scaled")


def _split(tmp_path: Path, **columns: list) -> Path:
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table(columns), path)
    return path


def test_class_targets_read_as_int32_and_values_as_float32(tmp_path: Path) -> None:
    classes = load_split(_split(tmp_path, a=[1.0, 2.0], b=[3, 4], y=[0, 1]), SCALER)
    assert classes.y.dtype == np.int32 and classes.y.tolist() == [0, 1]
    assert classes.x.dtype == np.float32 and classes.x.tolist() == [[1.0, 3.0], [2.0, 4.0]]
    assert classes.features == ["a", "b"]
    values = load_split(_split(tmp_path, a=[1.0, 2.0], b=[3, 4], y=[0.5, 1.5]), SCALER)
    assert values.y.dtype == np.float32 and values.y.tolist() == [0.5, 1.5]


DAMAGED = {
    "no target": ({"a": [1.0], "b": [2.0]}, "needs feature columns and the target 'y'"),
    "no features": ({"y": [1]}, "needs feature columns and the target 'y'"),
    "inf feature": ({"a": [1.0, np.inf], "b": [0.0, 0.0], "y": [0, 1]},
                    "column 'a', row 2: inf is not finite"),
    "nan target": ({"a": [1.0, 2.0, 3.0], "b": [0.0, 0.0, 0.0], "y": [0.0, 1.0, np.nan]},
                   "column 'y', row 3: nan is not finite"),
    "text target": ({"a": [1.0], "b": [0.0], "y": ["one"]}, "column 'y' is not numeric"),
    "text feature": ({"a": ["x"], "b": [0.0], "y": [1]},
                     "columns are not all numbers (ValueError)"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_split_gives_one_exact_line(tmp_path: Path, case: str) -> None:
    columns, line = DAMAGED[case]
    path = _split(tmp_path, **columns)
    with pytest.raises(JaxpipeError) as err:
        load_split(path, SCALER)
    assert str(err.value) == f"{path}: {line}"


def test_a_folder_without_its_training_split_is_named(tmp_path: Path) -> None:
    test = pa.table({"a": [1.0], "b": [2.0], "y": [1]})
    write_dataset(tmp_path, {"test": test}, SCALER)
    with pytest.raises(JaxpipeError) as err:
        load_dataset(tmp_path)
    assert str(err.value) == f"{tmp_path / 'train.parquet'}: not found (run the prepare stage)"
    write_dataset(tmp_path, {"test": test, "train": pa.table({"a": [1.0], "b": [2.0], "y": [0]})},
                  SCALER)
    data = load_dataset(tmp_path)
    assert sorted(data.splits) == ["test", "train"] and data.split("test").y.tolist() == [1]


def test_a_non_finite_cell_is_named_by_column_row_and_value(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, np.inf], "y": [0, 1, 0]})
    table = table_from_frame(frame, "y", pa.int64())
    write_dataset(tmp_path / "d", {"train": table, "test": table}, SCALER)
    with pytest.raises(JaxpipeError) as err:
        load_dataset(tmp_path / "d")
    assert str(err.value).endswith("column 'b', row 3: inf is not finite")


def test_tables_have_an_explicit_schema_with_a_typed_required_target() -> None:
    frame = pd.DataFrame({"a": [1, 2], "y": [0, 1]})
    table = table_from_frame(frame, "y", pa.uint8())
    assert table.schema.field("a").type == pa.float64()
    assert table.schema.field("y").type == pa.uint8()
    assert not any(field.nullable for field in table.schema)
    assert table.column("y").to_pylist() == [0, 1]


def test_a_prepared_folder_is_identical_whatever_the_order_of_its_splits(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    splits = {"train": random_table(40), "test": random_table(10),
              "val": image_table(rng.integers(0, 255, (4, 3, 3), dtype=np.uint8),
                                 np.arange(4))}
    inputs = Inputs(("a", "b"), (0.1, 0.2), (1.0, 2.0), "y", "scaled")
    write_dataset(tmp_path / "one", splits, inputs)
    write_dataset(tmp_path / "two", dict(reversed(list(splits.items()))), inputs)
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == ["inputs.json", "manifest.json", "test.parquet", "train.parquet",
                     "val.parquet"]
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
