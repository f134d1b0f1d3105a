"""End to end: the real `dvc repro` of the data stages in a temporary copy of the repo."""

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jaxpipe.workspace import dvc, make_workspace, ran_stages

ROOT = Path(__file__).parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
DATA_STAGES = ["download", "generate", "prepare"]


@pytest.fixture(scope="module")
def data_workspace(tmp_path_factory: pytest.TempPathFactory, fake_mirror: Path):
    mirror = SHARED if SHARED.is_dir() else fake_mirror
    ws = make_workspace(ROOT, tmp_path_factory.mktemp("ws"), mirror=mirror,
                        profile=ROOT / "profiles" / "small.yaml")
    first = dvc(ws, "repro", *DATA_STAGES, mirror=mirror)
    return ws, mirror, first.stdout


@pytest.mark.e2e
def test_data_stages_write_parquet_for_every_dataset(data_workspace) -> None:
    ws, _, output = data_workspace
    assert {"download@mnist", "download@mobile_price", "generate@xor"} <= set(ran_stages(output))
    for name in ("mobile_binary", "mobile_multiclass", "xor", "linear", "synthetic", "mnist"):
        for split in ("train", "test"):
            assert pq.read_metadata(ws / "data" / "prepared" / name / f"{split}.parquet").num_rows
    assert pq.read_metadata(ws / "data/prepared/mnist/val.parquet").num_rows > 0


@pytest.mark.e2e
def test_second_repro_runs_nothing(data_workspace) -> None:
    ws, mirror, _ = data_workspace
    again = dvc(ws, "repro", *DATA_STAGES, mirror=mirror)
    assert ran_stages(again.stdout) == []
    assert "up to date" in again.stdout


@pytest.mark.e2e
def test_bad_param_fails_in_one_line_and_keeps_outputs(data_workspace, tmp_path: Path) -> None:
    ws, _, _ = data_workspace
    params = tmp_path / "params.yaml"
    params.write_text((ws / "params.yaml").read_text().replace("columns_from: pc",
                                                               "columns_from: nope"))
    out = ws / "data" / "prepared" / "mobile_binary"
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir())
    proc = subprocess.run([sys.executable, "stages/prepare.py", "mobile_binary", "--input",
                           "data/raw/mobile_price/train.csv", "--out", str(out),
                           "--params", str(params)], cwd=ws, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: data/raw/mobile_price/train.csv: missing column 'nope' (columns_from)")
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir()) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]
