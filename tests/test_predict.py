"""`jaxpipe predict`: raw tables and images in, the scaler from the model file applied."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import make_dataset

from jaxpipe import models
from jaxpipe.artifacts import Trained, load_trained, save_trained
from jaxpipe.core.config import load_config
from jaxpipe.core.errors import JaxpipeError
from jaxpipe.data.idx import read_idx, write_idx
from jaxpipe.data.prepare import PrepareConfig, select, split
from jaxpipe.models import Fit, cnn
from jaxpipe.predict import predict, predict_file

SCALER = {"features": ["a", "b"], "mean": [10.0, -5.0], "scale": [2.0, 4.0], "target": "y",
          "stored": "scaled"}


def trained_logreg(tmp_path: Path) -> Trained:
    rng = np.random.default_rng(0)
    raw = rng.normal([10, -5], [2, 4], size=(200, 2))
    x = ((raw - SCALER["mean"]) / SCALER["scale"]).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32)
    cfg = models.load("logreg").Config(steps=200, lr=0.5)
    fit = models.load("logreg").fit(cfg, make_dataset(SCALER, train=(x, y)))
    save_trained(tmp_path / "m.st", "m", "logreg", cfg, fit, SCALER)
    return load_trained(tmp_path / "m.st")


def test_raw_rows_are_scaled_with_the_stored_scaler(tmp_path: Path) -> None:
    model = trained_logreg(tmp_path)
    frame = pd.DataFrame({"b": [-5.0, 3.0, -13.0], "a": [10.0, 14.0, 6.0], "extra": [1, 2, 3]})
    out = predict(model, frame)  # columns matched by name, whatever their order
    assert list(out.columns) == ["predicted", "p_0", "p_1"]
    assert out["predicted"].tolist() == [1, 1, 0]  # raw (14, 3) is far on the positive side
    np.testing.assert_allclose(out["p_0"] + out["p_1"], 1.0)
    scaled = ((frame[["a", "b"]].to_numpy() - SCALER["mean"]) / SCALER["scale"]).astype("f4")
    np.testing.assert_allclose(out["p_1"], model.predict(scaled), rtol=1e-6)


def test_bad_tables_get_one_line_naming_the_column(tmp_path: Path) -> None:
    model = trained_logreg(tmp_path)
    needs = r"new.csv: missing column 'b' \(the model needs 2: a, b\)"
    with pytest.raises(JaxpipeError, match=needs):
        predict(model, pd.DataFrame({"a": [1.0]}), "new.csv")
    with pytest.raises(JaxpipeError, match=r"column 'a', row 2: 'x' is not a finite number"):
        predict(model, pd.DataFrame({"a": ["1", "x"], "b": [1, 2]}), "t")
    with pytest.raises(JaxpipeError, match="expected a table"):
        predict(model, np.zeros((3, 2)), "t")


def cnn_model(tmp_path: Path) -> Trained:
    cfg = cnn.Config()
    scaler = {"features": ["image"], "mean": [0.0], "scale": [255.0], "target": "label",
              "stored": "raw"}
    save_trained(tmp_path / "c.st", "c", "cnn", cfg, Fit(cnn.init(0)[1], {}, {}), scaler)
    return load_trained(tmp_path / "c.st")


def test_images_from_an_array_idx_and_png_agree(tmp_path: Path) -> None:
    from PIL import Image

    model = cnn_model(tmp_path)
    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    direct = predict(model, images)
    assert direct.shape == (3, 11) and direct["predicted"].between(0, 9).all()
    write_idx(tmp_path / "x.idx", images)
    (tmp_path / "png").mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "png" / f"{i}.png")
    for source in (tmp_path / "x.idx", tmp_path / "png"):
        assert predict_file(model, source, tmp_path / "out.csv") == 3
        written = pd.read_csv(tmp_path / "out.csv")
        assert written["predicted"].tolist() == direct["predicted"].tolist()
    assert written["input"].tolist() == ["0.png", "1.png", "2.png"]
    with_channel = predict(model, images[..., None])  # NHWC with one channel is the same
    assert with_channel["predicted"].tolist() == direct["predicted"].tolist()
    shape = r"expected images of shape \(n, 28, 28\), got \(2, 28\)"
    with pytest.raises(JaxpipeError, match=shape):
        predict(model, np.zeros((2, 28)))


@pytest.mark.e2e
def test_predicting_raw_test_rows_reproduces_the_evaluate_stage(pipeline, tmp_path: Path) -> None:
    ws = pipeline.root
    for model, dataset in (("logreg_mobile", "mobile_binary"),
                           ("softmax_mobile", "mobile_multiclass")):
        cfg = load_config(PrepareConfig, ws / "params.yaml", "prepare", dataset)
        raw = pd.read_csv(ws / "data/raw/mobile_price/train.csv")
        _, test = split(select(raw, cfg, "raw"), cfg)
        test.drop(columns=[cfg.target]).to_csv(tmp_path / f"{model}.csv", index=False)
        out = tmp_path / f"{model}-predictions.csv"
        subprocess.run([sys.executable, "-m", "jaxpipe.cli", "predict",
                        str(ws / f"data/models/{model}.safetensors"),
                        str(tmp_path / f"{model}.csv"), "--out", str(out)], check=True)
        accuracy = (pd.read_csv(out)["predicted"] == test[cfg.target].to_numpy()).mean()
        metrics = json.loads((ws / f"metrics/{model}.json").read_text())
        assert round(accuracy, 6) == metrics["accuracy"], model
    out = tmp_path / "cnn.csv"
    subprocess.run([sys.executable, "-m", "jaxpipe.cli", "predict",
                    str(ws / "data/models/cnn_mnist.safetensors"),
                    str(ws / "data/raw/mnist/t10k-images-idx3-ubyte.gz"), "--out", str(out)],
                   check=True)
    labels = read_idx(ws / "data/raw/mnist/t10k-labels-idx1-ubyte.gz")
    accuracy = (pd.read_csv(out)["predicted"].to_numpy() == labels).mean()
    assert round(accuracy, 6) == json.loads((ws / "metrics/cnn_mnist.json").read_text())[
        "accuracy"]
