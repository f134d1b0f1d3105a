"""End to end: the real `dvc repro` of the whole pipeline in a temporary copy of the repo."""

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from jaxpipe.preflight import stage_items
from jaxpipe.tools.workspace import dvc, ran_stages

ITEMS = stage_items(Path(__file__).parents[1] / "dvc.yaml")
MODELS, DATASETS = list(ITEMS["train"]), list(ITEMS["prepare"])  # what dvc.yaml runs
pytestmark = pytest.mark.e2e


def test_every_stage_ran_and_wrote_parquet(pipeline) -> None:
    ran = set(ran_stages(pipeline.first_output))
    assert {f"{kind}@{n}" for kind, names in ITEMS.items() for n in names} <= ran
    for name in DATASETS:
        for split in ("train", "test"):
            path = pipeline.root / "data" / "prepared" / name / f"{split}.parquet"
            assert pq.read_metadata(path).num_rows > 0
    assert pq.read_metadata(pipeline.root / "data/prepared/mnist/val.parquet").num_rows > 0


def test_metrics_show_lists_every_model(pipeline) -> None:
    shown = json.loads(dvc(pipeline.root, "metrics", "show", "--json").stdout)
    files = next(iter(shown.values()))["data"]
    for model in MODELS:
        data = files[f"metrics/{model}.json"]["data"]
        assert ("accuracy" in data) or ("r2" in data), model
    names = {name for model in MODELS for name in files[f"metrics/{model}.json"]["data"]}
    assert names == {"accuracy", "log_loss", "roc_auc", "sklearn_accuracy",  # one column each
                     "rmse", "r2", "sklearn_r2"}
    assert not any("details" in path for path in files)  # the details are not listed...
    cnn = json.loads(dvc(pipeline.root, "metrics", "show", "--json",
                         "metrics/details/cnn_mnist.json").stdout)  # ...but can be shown
    cnn = next(iter(cnn.values()))["data"]["metrics/details/cnn_mnist.json"]["data"]
    assert cnn["train_images"] == 1024 and cnn["rows"] == 10000 and cnn["best_epoch"] == 1
    predictions = (pipeline.root / "plots/cnn_mnist/eval/predictions.csv").read_text()
    assert len(predictions.splitlines()) == 10001  # every test image scored, plus the header
    assert files["metrics/xor_mlp.json"]["data"]["accuracy"] == 1.0


def test_plots_show_writes_html(pipeline, tmp_path: Path) -> None:
    dvc(pipeline.root, "plots", "show", "-o", str(tmp_path / "plots"))
    html = (tmp_path / "plots" / "index.html").read_text()
    for title in ("Confusion matrix", "ROC curve", "CNN loss", "Predicted vs actual"):
        assert title in html


def test_the_exported_plots_show_counts_and_each_curves_auc(pipeline, tmp_path: Path) -> None:
    """`jaxpipe plots` on the pipeline's outputs: every cell count of the CNN's confusion
    matrix is printed in the SVG, and the ROC legend's AUC is each model's roc_auc."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([sys.executable, "-m", "jaxpipe.cli", "plots", "--out", str(tmp_path)],
                   cwd=pipeline.root, env=env, check=True, capture_output=True, text=True)
    rows = (pipeline.root / "plots/cnn_mnist/eval/predictions.csv").read_text().splitlines()
    header = rows[0].split(",")
    a, p = header.index("actual"), header.index("predicted")
    counts = Counter((r.split(",")[a], r.split(",")[p]) for r in rows[1:])
    texts = re.findall(r"<text[^>]*>([^<]*)</text>",
                       (tmp_path / "confusion-matrix-cnn_mnist.svg").read_text())
    for count in set(counts.values()):
        assert str(count) in texts, count
    legend = re.findall(r"<text[^>]*>([^<]*)</text>", (tmp_path / "roc-curve-binary-models.svg"
                                                        ).read_text())
    for model in ("logreg_mobile", "logreg_synthetic", "xor_mlp"):
        auc = json.loads((pipeline.root / f"metrics/{model}.json").read_text())["roc_auc"]
        assert f"{model}  (AUC {auc:.3f})" in legend, legend


def test_second_repro_runs_nothing(pipeline) -> None:
    """Nothing runs but dvc.yaml's environment check (always_changed), which passes: every
    stage that writes outputs says it did not change."""
    again = dvc(pipeline.root, "repro", mirror=pipeline.mirror)
    skipped = again.stdout.count("didn't change, skipping")
    writers = [s for s in yaml.safe_load((pipeline.root / "dvc.lock").read_text())["stages"]
               .values() if s.get("outs")]
    assert ran_stages(again.stdout) == [] and skipped == len(writers) > 20


def test_bad_param_fails_in_one_line_and_keeps_outputs(pipeline, tmp_path: Path) -> None:
    ws = pipeline.root
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


def test_bad_train_param_names_the_key(pipeline, tmp_path: Path) -> None:
    params = yaml.safe_load((pipeline.root / "params.yaml").read_text())
    params["train"]["xor_mlp"]["lr"] = "fast"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    model = tmp_path / "xor.safetensors"
    proc = subprocess.run([sys.executable, "stages/train.py", "xor_mlp", "--data",
                           "data/prepared/xor", "--out", str(model), "--history",
                           str(tmp_path / "h.csv"), "--params", str(tmp_path / "params.yaml")],
                          cwd=pipeline.root, capture_output=True, text=True)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.endswith("train.xor_mlp.lr: expected float, got 'fast'")
    assert not model.exists() and not (tmp_path / "h.csv").exists()
