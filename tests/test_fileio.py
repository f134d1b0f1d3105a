"""A stage's outputs change all together or not at all; a killed run's temps are swept."""

from pathlib import Path

import pytest

from jaxpipe.core.fileio import atomic_dir, output_set, write_json


def _old_set(tmp_path: Path) -> tuple[Path, Path]:
    model, plots = tmp_path / "models" / "m.st", tmp_path / "plots" / "eval"
    model.parent.mkdir()
    model.write_text("old model")
    plots.mkdir(parents=True)
    (plots / "roc.csv").write_text("old roc")
    return model, plots


def test_outputs_are_replaced_together(tmp_path: Path) -> None:
    model, plots = _old_set(tmp_path)
    with output_set(model, plots) as (model_tmp, plots_tmp):
        model_tmp.write_text("new model")
        plots_tmp.mkdir()
        write_json(plots_tmp / "metrics.json", {"a": 1})
    assert model.read_text() == "new model"
    assert [p.name for p in plots.iterdir()] == ["metrics.json"]
    assert not list(tmp_path.rglob(".*.tmp"))


def test_a_failure_midway_leaves_the_old_set_and_no_temps(tmp_path: Path) -> None:
    model, plots = _old_set(tmp_path)
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
    model, plots = _old_set(tmp_path)
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
