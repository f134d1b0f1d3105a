"""``jaxpipe.core.fileio``: a stage's outputs change all together or not at all; a killed
run's temps are swept. Every writer (JSON, Parquet, plot CSV) gives the same bytes
whatever order its input was built in, and JSON never holds NaN or infinity."""

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import MODEL_META, old_output_set, random_table, reordered

from jaxpipe.core.fileio import atomic_dir, output_set, write_csv_rows, write_json, write_parquet


def test_outputs_are_replaced_together(tmp_path: Path) -> None:
    model, plots = old_output_set(tmp_path)
    with output_set(model, plots) as (model_tmp, plots_tmp):
        model_tmp.write_text("new model")
        plots_tmp.mkdir()
        write_json(plots_tmp / "metrics.json", {"a": 1})
    assert model.read_text() == "new model"
    assert [p.name for p in plots.iterdir()] == ["metrics.json"]
    assert not list(tmp_path.rglob(".*.tmp"))


def test_a_failure_midway_leaves_the_old_set_and_no_temps(tmp_path: Path) -> None:
    model, plots = old_output_set(tmp_path)
    with pytest.raises(RuntimeError), output_set(model, plots) as (model_tmp, plots_tmp):
        model_tmp.write_text("new model")  # written, then the plots fail
        raise RuntimeError("disk full")
    assert model.read_text() == "old model" and (plots / "roc.csv").read_text() == "old roc"
    assert not list(tmp_path.rglob(".*.tmp"))
    with pytest.raises(FileNotFoundError, match="eval: the stage wrote no output"):
        with output_set(model, plots) as (model_tmp, _):
            model_tmp.write_text("new model")
    assert model.read_text() == "old model"


def test_temps_of_a_killed_run_are_swept_by_the_next(tmp_path: Path) -> None:
    model, plots = old_output_set(tmp_path)
    stale_file = model.parent / ".m.st.abc123.tmp"
    stale_file.write_text("half a model")
    stale_dir = plots.parent / ".eval.xyz.tmp"
    stale_dir.mkdir()
    with output_set(model, plots) as (model_tmp, plots_tmp):
        model_tmp.write_text("new")
        plots_tmp.mkdir()
    assert not stale_file.exists() and not stale_dir.exists()
    leftover = tmp_path / ".prepared.q1.tmp"
    leftover.mkdir()
    with atomic_dir(tmp_path / "prepared") as tmp:
        (tmp / "train.parquet").write_text("x")
    assert not leftover.exists() and (tmp_path / "prepared" / "train.parquet").exists()


def test_json_is_identical_whatever_the_key_order(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", MODEL_META)
    write_json(tmp_path / "b.json", reordered(MODEL_META))
    text = (tmp_path / "a.json").read_text()
    assert text == (tmp_path / "b.json").read_text()
    assert text.endswith("}\n") and text.startswith('{\n  "config": {\n    "l2": 0.0,')
    assert json.loads(text) == MODEL_META


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_json_refuses_non_finite_numbers_and_leaves_nothing(tmp_path: Path, bad: float) -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        write_json(tmp_path / "m.json", {"accuracy": 0.5, "log_loss": bad})
    assert list(tmp_path.iterdir()) == []


def test_parquet_bytes_depend_on_the_table_only(tmp_path: Path) -> None:
    write_parquet(tmp_path / "a.parquet", random_table())
    write_parquet(tmp_path / "b.parquet", random_table().select(["a", "b", "y"]))
    first = (tmp_path / "a.parquet").read_bytes()
    assert first == (tmp_path / "b.parquet").read_bytes()
    meta = pq.ParquetFile(tmp_path / "a.parquet").metadata
    column = meta.row_group(0).column(0)
    assert column.compression == "ZSTD" and column.statistics is not None
    assert not any("DICTIONARY" in encoding for encoding in column.encodings)


def test_plot_csv_floats_round_trip(tmp_path: Path) -> None:
    value = 0.1 + 0.2
    write_csv_rows(tmp_path / "p.csv", ["epoch", "loss"], [[1, value], [2, 1e-7]])
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines == ["epoch,loss", f"1,{value!r}", "2,1e-07"] and float(lines[1][2:]) == value
