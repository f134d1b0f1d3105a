"""Property-based hostile inputs (hypothesis): random params, tables, IDX bytes, zip archives
and damaged model files either work or fail with a JaxpipeError naming what is at fault;
no other exception, no file outside its folder."""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxpipe import models
from jaxpipe.artifacts import load_trained, save_model
from jaxpipe.core.config import parse
from jaxpipe.core.errors import ConfigError, JaxpipeError
from jaxpipe.data.generate import GenerateConfig
from jaxpipe.data.idx import read_idx
from jaxpipe.data.kaggle import safe_extract
from jaxpipe.data.prepare import PrepareConfig, prepare_table
from jaxpipe.data.schema import ColumnSpec, SchemaSpec
from jaxpipe.evaluate import EvalConfig

# The same examples every run (CI stays deterministic); HYPOTHESIS_EXAMPLES=1000 searches anew.
DEEP = os.environ.get("HYPOTHESIS_EXAMPLES")
FAST = settings(max_examples=int(DEEP or 60), derandomize=DEEP is None, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
CONFIGS = [models.load(k).Config for k in ("logreg", "softmax", "mlp", "linreg")] + [
    GenerateConfig, PrepareConfig, EvalConfig]
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
                   st.lists(st.integers(-5, 5), max_size=3))


@st.composite
def raw_params(draw: st.DrawFn, cls: type) -> dict:
    names = [f.name for f in dataclasses.fields(cls)] + ["bogus"]
    keys = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
    return {k: draw(VALUES) for k in keys}


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: f"{c.__module__}.{c.__name__}")
@FAST
@given(data=st.data())
def test_random_params_parse_or_name_the_key(cls: type, data: st.DataObject) -> None:
    raw = data.draw(raw_params(cls))
    try:
        parse(cls, raw, "p")
    except ConfigError as exc:
        assert str(exc).startswith("p"), exc
        key = str(exc).split(":")[0].removeprefix("p.")
        assert key == "p" or key.split("[")[0].split(".")[0] in raw or "missing key" in str(exc)


@FAST
@given(payload=st.binary(max_size=600), gz=st.booleans())
def test_random_bytes_as_idx(tmp_path: Path, payload: bytes, gz: bool) -> None:
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    path.write_bytes(payload)
    try:
        array = read_idx(path, max_bytes=10_000)
    except JaxpipeError as exc:
        assert str(path) in str(exc)
    else:
        assert isinstance(array, np.ndarray) and array.nbytes <= 10_000


@FAST
@given(dims=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4),
       payload=st.binary(max_size=64))
def test_idx_headers_declaring_any_size(tmp_path: Path, dims: list[int], payload: bytes) -> None:
    path = tmp_path / "h.idx"
    path.write_bytes(bytes([0, 0, 8, len(dims)]) + np.asarray(dims, ">u4").tobytes() + payload)
    try:
        array = read_idx(path, max_bytes=1_000)
    except JaxpipeError as exc:
        assert str(path) in str(exc)
    else:
        assert list(array.shape) == dims and array.nbytes == len(payload)


NAMES = st.one_of(st.sampled_from(["../up.csv", "/abs.csv", "a/../../b.csv", "ok/../c.csv",
                                   "d/", "train.csv", "..", "a\\..\\..\\e.csv"]),
                  st.text("abc./\\", min_size=1, max_size=8))


@pytest.mark.filterwarnings("ignore:Duplicate name")
@FAST
@given(entries=st.lists(st.tuples(NAMES, st.binary(max_size=50), st.booleans()), max_size=5))
def test_random_zip_archives_never_write_outside(tmp_path: Path, entries: list) -> None:
    case = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
    dest, archive = case / "out", case / "a.zip"
    dest.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data, link in entries:
            info = zipfile.ZipInfo(name)
            if link:
                info.external_attr = 0o120777 << 16
            zf.writestr(info, data)
    try:
        written = safe_extract(archive, dest, max_entries=4, max_bytes=120)
    except JaxpipeError as exc:
        assert str(archive) in str(exc)
    else:
        assert all(p.resolve().is_relative_to(dest.resolve()) for p in written)
    outside = [p for p in case.rglob("*") if not p.resolve().is_relative_to(dest.resolve())]
    assert [p.name for p in outside] == ["a.zip"]


@FAST
@given(payload=st.binary(max_size=300))
def test_random_bytes_as_zip(tmp_path: Path, payload: bytes) -> None:
    (tmp_path / "r.zip").write_bytes(payload)
    with pytest.raises(JaxpipeError, match="r.zip"):
        safe_extract(tmp_path / "r.zip", tmp_path / "out")


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("model") / "m.st"
    scaler = {"features": ["a", "b"], "mean": [0.0, 1.0], "scale": [1.0, 2.0], "target": "y"}
    meta = {"model": "m", "kind": "logreg", "task": "binary", "config": {}, "info": {},
            "scaler": scaler}
    save_model(path, {"w": np.ones(2, np.float32), "c": np.zeros((), np.float32)}, meta)
    return path.read_bytes()


@FAST
@given(data=st.data())
def test_damaged_model_files(tmp_path: Path, model_bytes: bytes, data: st.DataObject) -> None:
    damaged = bytearray(model_bytes)
    for _ in range(data.draw(st.integers(1, 4))):
        damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(damaged)))
    (tmp_path / "d.st").write_bytes(bytes(damaged[:cut] if data.draw(st.booleans()) else damaged))
    try:
        trained = load_trained(tmp_path / "d.st")
    except JaxpipeError as exc:
        assert "d.st" in str(exc)
    else:
        assert all(np.isfinite(np.asarray(v)).all() for v in trained.params.values())


CELLS = st.one_of(st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
                  st.sampled_from(["x", "", "1e400"]))
SCHEMA = SchemaSpec({"a": ColumnSpec("float"), "b": ColumnSpec("int", min=0, max=9),
                     "y": ColumnSpec("int", values=[0, 1])})


@FAST
@given(rows=st.lists(st.tuples(CELLS, CELLS, st.one_of(st.sampled_from([0, 1]), CELLS)),
                     min_size=0, max_size=12))
def test_random_tables_prepare_or_name_column_and_row(rows: list) -> None:
    frame = pd.DataFrame(rows, columns=["a", "b", "y"]) if rows else pd.DataFrame(
        {"a": [], "b": [], "y": []})
    cfg = PrepareConfig(kind="table", target="y", test_size=0.5, seed=0)
    try:
        tables, scaler = prepare_table(frame, cfg, "t.csv", SCHEMA)
    except JaxpipeError as exc:
        assert str(exc).startswith("t.csv")
    else:
        for table in tables.values():
            values = np.column_stack([table[c].to_numpy() for c in ("a", "b")])
            assert np.isfinite(values).all()
            assert set(table["y"].to_pylist()) <= {0, 1}
        assert np.isfinite(scaler["mean"]).all() and np.isfinite(scaler["scale"]).all()
