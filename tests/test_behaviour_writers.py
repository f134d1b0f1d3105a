"""Every writer is deterministic whatever order its input was built in (JSON keys, Parquet
splits, safetensors tensors and metadata), and none writes NaN or infinity as a number."""

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jaxpipe.artifacts import load_model, save_model
from jaxpipe.core.fileio import write_csv_rows, write_json, write_parquet
from jaxpipe.data.tables import image_table, write_dataset

META = {"model": "m", "kind": "logreg", "config": {"lr": 0.1, "steps": 5, "l2": 0.0},
        "info": {"steps": 5, "converged": True}, "scaler": {"features": ["a", "b"],
                                                            "mean": [0.5, 1.5]}}


def reordered(value):
    """The same mapping with every dict's keys inserted in reverse order."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    return value


def test_json_is_identical_whatever_the_key_order(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", META)
    write_json(tmp_path / "b.json", reordered(META))
    text = (tmp_path / "a.json").read_text()
    assert text == (tmp_path / "b.json").read_text()
    assert text.endswith("}\n") and text.startswith('{\n  "config": {\n    "l2": 0.0,')
    assert json.loads(text) == META


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_json_refuses_non_finite_numbers_and_leaves_nothing(tmp_path: Path, bad: float) -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        write_json(tmp_path / "m.json", {"accuracy": 0.5, "log_loss": bad})
    assert list(tmp_path.iterdir()) == []


def test_model_files_are_identical_whatever_the_order_of_tensors_and_metadata(
        tmp_path: Path) -> None:
    params = {"w": np.arange(3, dtype=np.float32), "c": np.float32(0.5),
              "layer": {"kernel": np.ones((2, 2), np.float32), "bias": np.zeros(2, np.float32)}}
    save_model(tmp_path / "a.st", params, META)
    save_model(tmp_path / "b.st", reordered(params), reordered(META))
    assert (tmp_path / "a.st").read_bytes() == (tmp_path / "b.st").read_bytes()
    flat, meta = load_model(tmp_path / "a.st")
    assert meta == META and sorted(flat) == ["c", "layer.bias", "layer.kernel", "w"]
    raw = (tmp_path / "a.st").read_bytes()
    header = json.loads(raw[8: 8 + int.from_bytes(raw[:8], "little")])
    stored = header["__metadata__"]["jaxpipe"]
    assert stored == json.dumps(META, sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_model_metadata_refuses_non_finite_numbers(tmp_path: Path, bad: float) -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        save_model(tmp_path / "m.st", {"w": np.zeros(2, np.float32)},
                   {**META, "info": {"final_loss": bad}})
    assert list(tmp_path.iterdir()) == []


def table(n: int = 50) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({"a": rng.normal(size=n), "b": rng.normal(size=n),
                     "y": pa.array(rng.integers(0, 2, n))})


def test_parquet_bytes_depend_on_the_table_only(tmp_path: Path) -> None:
    write_parquet(tmp_path / "a.parquet", table())
    write_parquet(tmp_path / "b.parquet", table().select(["a", "b", "y"]))
    first = (tmp_path / "a.parquet").read_bytes()
    assert first == (tmp_path / "b.parquet").read_bytes()
    meta = pq.ParquetFile(tmp_path / "a.parquet").metadata
    column = meta.row_group(0).column(0)
    assert column.compression == "ZSTD" and column.statistics is not None
    assert not any("DICTIONARY" in encoding for encoding in column.encodings)


def test_a_prepared_folder_is_identical_whatever_the_order_of_splits_and_scaler_keys(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    splits = {"train": table(40), "test": table(10),
              "val": image_table(rng.integers(0, 255, (4, 3, 3), dtype=np.uint8),
                                 np.arange(4))}
    scaler = {"features": ["a", "b"], "mean": [0.1, 0.2], "scale": [1.0, 2.0], "target": "y"}
    write_dataset(tmp_path / "one", splits, scaler)
    write_dataset(tmp_path / "two", dict(reversed(list(splits.items()))), reordered(scaler))
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == ["manifest.json", "scaler.json", "test.parquet", "train.parquet",
                     "val.parquet"]
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_plot_csv_floats_round_trip(tmp_path: Path) -> None:
    value = 0.1 + 0.2
    write_csv_rows(tmp_path / "p.csv", ["epoch", "loss"], [[1, value], [2, 1e-7]])
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines == ["epoch,loss", f"1,{value!r}", "2,1e-07"] and float(lines[1][2:]) == value
