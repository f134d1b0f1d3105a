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
from jaxpipe.data.inputs import Inputs
from jaxpipe.data.prepare import PrepareConfig, select, split
from jaxpipe.models import Fit, cnn
from jaxpipe.predict import predict, predict_file

SCALER = {"features": ["a", "b"], "mean": [10.0, -5.0], "scale": [2.0, 4.0], "target": "y",
          "stored": "scaled"}
INPUTS = Inputs.from_json({**SCALER, "classes": 2}, "test")


def trained_logreg(tmp_path: Path) -> Trained:
    rng = np.random.default_rng(0)
    raw = rng.normal([10, -5], [2, 4], size=(200, 2))
    x = ((raw - SCALER["mean"]) / SCALER["scale"]).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32)
    cfg = models.load("logreg").Config(steps=200, lr=0.5)
    fit = models.load("logreg").fit(cfg, make_dataset(INPUTS, train=(x, y)))
    save_trained(tmp_path / "m.st", "m", "logreg", cfg, fit, INPUTS)
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
    save_trained(tmp_path / "c.st", "c", "cnn", cfg, Fit(cnn.init(0)[1], {}, {}),
                 Inputs.of_images((28, 28), 10))
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
    names = {"x.idx": ["x.idx:1", "x.idx:2", "x.idx:3"], "png": ["0.png", "1.png", "2.png"]}
    for source, expected in names.items():  # one input: the same names as among several
        assert predict_file(model, tmp_path / source, tmp_path / "out.csv") == 3
        written = pd.read_csv(tmp_path / "out.csv")
        assert written["predicted"].tolist() == direct["predicted"].tolist()
        assert written["input"].tolist() == expected
    with_channel = predict(model, images[..., None])  # NHWC with one channel is the same
    assert with_channel["predicted"].tolist() == direct["predicted"].tolist()
    shape = r"expected images of shape \(n, 28, 28\), got \(2, 28\)"
    with pytest.raises(JaxpipeError, match=shape):
        predict(model, np.zeros((2, 28)))


def digits(n: int, size: int = 28, seed: int = 0) -> np.ndarray:
    """MNIST-like raw images: a light blob on a black background."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size), np.uint8)
    images[:, 8:size - 8, 10:size - 10] = rng.integers(150, 256, (n, size - 16, size - 20))
    return images


def save_png(path: Path, image: np.ndarray, mode: str = "L") -> Path:
    from PIL import Image

    Image.fromarray(image).convert(mode).save(path)
    return path


def test_one_png_file_and_several_inputs_are_read(tmp_path: Path) -> None:
    model = cnn_model(tmp_path)
    images = digits(3)
    files = [save_png(tmp_path / f"d{i}.png", image) for i, image in enumerate(images)]
    direct = predict(model, images)["predicted"].tolist()
    assert predict_file(model, files[0], tmp_path / "one.csv") == 1
    one = pd.read_csv(tmp_path / "one.csv")
    assert one["input"].tolist() == ["d0.png"] and one["predicted"].tolist() == direct[:1]
    (tmp_path / "more").mkdir()
    save_png(tmp_path / "more" / "e.png", images[2])
    write_idx(tmp_path / "x.idx", images[:2])
    assert predict_file(model, [files[0], files[1], tmp_path / "more", tmp_path / "x.idx"],
                        tmp_path / "many.csv") == 5
    many = pd.read_csv(tmp_path / "many.csv")
    assert many["input"].tolist() == ["d0.png", "d1.png", "e.png", "x.idx:1", "x.idx:2"]
    assert many["predicted"].tolist() == [*direct, *direct[:2]]


def test_images_of_another_size_or_colour_are_named_in_one_line(tmp_path: Path) -> None:
    model = cnn_model(tmp_path)
    (tmp_path / "mixed").mkdir()
    save_png(tmp_path / "mixed" / "a.png", digits(1)[0])
    save_png(tmp_path / "mixed" / "b.png", digits(1, size=32)[0])
    with pytest.raises(JaxpipeError) as caught:
        predict_file(model, tmp_path / "mixed", tmp_path / "out.csv")
    assert str(caught.value) == f"{tmp_path / 'mixed' / 'b.png'}: 32x32 pixels, the model " \
        "expects 28x28"
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(JaxpipeError, match=r"text.png: not a readable PNG"):
        predict_file(model, tmp_path / "text.png", tmp_path / "out.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(JaxpipeError, match=r"empty: expected 1 to 100000 .png files, found 0"):
        predict_file(model, tmp_path / "empty", tmp_path / "out.csv")
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    good = save_png(tmp_path / "d.png", digits(1)[0])
    with pytest.raises(JaxpipeError, match=r"t.csv: a table, while other inputs are images"):
        predict_file(model, [tmp_path / "t.csv", good], tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_out_dash_is_standard_output_and_no_out_prints_a_table(tmp_path: Path) -> None:
    trained_logreg(tmp_path)
    pd.DataFrame({"a": [10.0, 14.0, 6.0], "b": [-5.0, 3.0, -13.0]}).to_csv(
        tmp_path / "t.csv", index=False)

    def command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "jaxpipe.cli", "predict", "m.st", "t.csv",
                               *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, check=True)

    piped = command("--out", "-").stdout
    assert not (tmp_path / "-").exists() and not list(tmp_path.glob("*.csv"))[1:]
    command("--out", "p.csv")
    assert piped == (tmp_path / "p.csv").read_text()  # the same bytes as the file
    assert piped.splitlines()[0] == "input,predicted,p_0,p_1"
    assert [line.split(",")[0] for line in piped.splitlines()[1:]] == ["t.csv:1", "t.csv:2",
                                                                       "t.csv:3"]
    table = command().stdout.splitlines()
    assert table[0].split() == ["input", "predicted", "p_0", "p_1"]
    written = pd.read_csv(tmp_path / "p.csv")
    for line, (_, row) in zip(table[1:], written.iterrows(), strict=True):
        assert line.split() == [row["input"], str(row["predicted"]), f"{row['p_0']:.4f}",
                                f"{row['p_1']:.4f}"]
    assert len({len(line) for line in table}) == 1  # aligned columns


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path: Path) -> None:
    """`--out - | head -2` (and the table into `head`): more than a pipe holds is written,
    the reader leaves after two lines, and the command exits 0 without an error line."""
    trained_logreg(tmp_path)
    rows = np.random.default_rng(1).normal(size=(30_000, 2)) * 3
    pd.DataFrame(rows, columns=["a", "b"]).to_csv(tmp_path / "big.csv", index=False)
    for out in ("--out -", ""):
        proc = subprocess.run(["bash", "-o", "pipefail", "-c",
                               f"{sys.executable} -m jaxpipe.cli predict m.st big.csv {out} "
                               "| head -2"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        assert len(proc.stdout.splitlines()) == 2 and "error" not in proc.stderr, proc.stderr


def test_the_command_exits_2_with_one_line_on_a_mixed_folder(tmp_path: Path) -> None:
    cnn_model(tmp_path)
    (tmp_path / "mixed").mkdir()
    save_png(tmp_path / "mixed" / "a.png", digits(1)[0])
    save_png(tmp_path / "mixed" / "b.png", digits(1, size=32)[0])
    proc = subprocess.run([sys.executable, "-m", "jaxpipe.cli", "predict", "c.st", "mixed/a.png",
                           "--out", "one.csv"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0 and len(pd.read_csv(tmp_path / "one.csv")) == 1
    proc = subprocess.run([sys.executable, "-m", "jaxpipe.cli", "predict", "c.st", "mixed",
                           "--out", "out.csv"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: mixed/b.png: 32x32 pixels, the model expects 28x28"]
    assert not (tmp_path / "out.csv").exists()


def test_inverted_or_prescaled_images_get_a_warning(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    model = cnn_model(tmp_path)
    images = digits(4)
    write_idx(tmp_path / "ok.idx", images)
    write_idx(tmp_path / "inv.idx", np.concatenate([255 - images[:3], images[3:]]))
    with caplog.at_level("WARNING", logger="jaxpipe.predict"):
        predict_file(model, tmp_path / "ok.idx", tmp_path / "out.csv")
        assert caplog.messages == []
        predict_file(model, tmp_path / "inv.idx", tmp_path / "out.csv")
    assert caplog.messages == [
        f"{tmp_path / 'inv.idx'}: 3 of 4 images have a light background (a dark digit on "
        "white?); the model was trained on light digits on black, so expect wrong answers: "
        "invert them (255 - pixel) first"]


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


def test_images_reach_the_model_scaled_exactly_as_training_read_them(tmp_path: Path) -> None:
    """predict and train scale pixels through the one ``Inputs`` of the prepared data."""
    from jaxpipe.data.prepare import prepare_images
    from jaxpipe.data.tables import load_dataset, write_dataset
    from jaxpipe.predict import model_inputs

    rng = np.random.default_rng(3)
    images, labels = rng.integers(0, 256, (12, 28, 28), np.uint8), np.arange(12) % 10
    tables, inputs = prepare_images(images, labels, images, labels, PrepareConfig(kind="images"))
    write_dataset(tmp_path / "mnist", tables, inputs)
    model = cnn_model(tmp_path)
    assert model.inputs == inputs
    trained_on = load_dataset(tmp_path / "mnist").split("test").x
    assert model_inputs(model, images).tobytes() == trained_on.tobytes()
