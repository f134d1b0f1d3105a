"""jaxpipe.data.inputs: the one type for what a prepared data set tells its models, its
checks, and the one place images and rows are scaled (train, stream and predict share it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import mobile_frame

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.data.inputs import Inputs
from jaxpipe.data.prepare import PrepareConfig, prepare_images, prepare_table
from jaxpipe.data.tables import load_dataset, write_dataset

TABLE = Inputs(("a", "b"), (1.0, -2.0), (2.0, 0.5), "y", "scaled", classes=3)
IMAGES = Inputs(("image",), (0.0,), (255.0,), "label", "raw", classes=10, image_shape=(4, 3))


@pytest.mark.parametrize("inputs", [TABLE, IMAGES, Inputs(("x0",), (0.0,), (1.0,), "y",
                                                           "scaled")])
def test_it_survives_its_json_and_its_file(inputs: Inputs, tmp_path: Path) -> None:
    assert Inputs.from_json(json.loads(json.dumps(inputs.to_json())), "t") == inputs
    inputs.write(tmp_path / "inputs.json")
    assert Inputs.read(tmp_path / "inputs.json") == inputs


def test_images_are_scaled_in_one_place_as_float32_with_a_channel() -> None:
    pixels = np.arange(24, dtype=np.uint8).reshape(2, 4, 3) * 10
    x = IMAGES.scale_images(pixels)
    assert x.dtype == np.float32 and x.shape == (2, 4, 3, 1)
    assert np.array_equal(x[..., 0], pixels.astype(np.float32) / np.float32(255.0))


def test_rows_are_standardized_by_their_own_mean_and_scale() -> None:
    x = TABLE.scale_rows(np.array([[1.0, -2.0], [3.0, -1.0]]))
    assert x.dtype == np.float32
    assert x.tolist() == [[0.0, 0.0], [1.0, 2.0]]


def good() -> dict:
    return TABLE.to_json()


@pytest.mark.parametrize(("change", "said"), [
    (lambda d: d.pop("scale"), "missing 'scale'"),
    (lambda d: d.update(colour="red"), "unknown key 'colour'"),
    (lambda d: d.update(features="a"), "'features' needs a list of column names"),
    (lambda d: d.update(features=[]), "'features' needs a list of column names"),
    (lambda d: d.update(mean=[1.0]), "'mean' needs one number per feature (2)"),
    (lambda d: d.update(mean=[1.0, float("nan")]), "'mean' holds a value that is not a finite"),
    (lambda d: d.update(scale=[1.0, True]), "'scale' holds a value that is not a finite"),
    (lambda d: d.update(scale=[1.0, 0.0]), "'scale' holds a value that is not positive"),
    (lambda d: d.update(target=""), "'target' needs a column name"),
    (lambda d: d.update(stored="zipped"), "'stored' is 'zipped', not 'scaled' or 'raw'"),
    (lambda d: d.update(classes=1), "'classes' is 1, not a count from 2"),
    (lambda d: d.update(classes=2.5), "'classes' is 2.5, not a count from 2"),
    (lambda d: d.update(image_shape=[28]), "'image_shape' is [28], not [height, width]"),
    (lambda d: d.update(image_shape=[28, 28]), "images are stored raw and tables scaled"),
])
def test_a_malformed_field_is_named(change, said: str) -> None:
    value = good()
    change(value)
    with pytest.raises(JaxpipeError) as err:
        Inputs.from_json(value, "m.safetensors: inputs")
    assert str(err.value).startswith("m.safetensors: inputs: ")
    assert said in str(err.value)


def test_a_file_that_is_not_json_is_named(tmp_path: Path) -> None:
    (tmp_path / "inputs.json").write_text("{")
    with pytest.raises(JaxpipeError, match=r"inputs\.json: cannot read \(JSONDecodeError\)"):
        Inputs.read(tmp_path / "inputs.json")
    with pytest.raises(JaxpipeError, match=r"missing\.json: not found \(run the prepare"):
        Inputs.read(tmp_path / "missing.json")


@pytest.mark.parametrize(("task", "classes", "classes_kept"), [
    ("classification", None, 4), ("classification", [0, 1], 2), ("regression", None, None)])
def test_prepare_records_the_class_count_of_the_labels_it_keeps(
        task: str, classes: list[int] | None, classes_kept: int | None) -> None:
    cfg = PrepareConfig(kind="table", task=task, target="price_range", classes=classes)
    _, inputs = prepare_table(mobile_frame(), cfg, "t.csv")
    assert inputs.classes == classes_kept
    assert inputs.image_shape is None and inputs.stored == "scaled"
    assert inputs.n_features == 20 and "price_range" not in inputs.features


def test_prepare_records_the_image_shape_and_the_pixel_scale() -> None:
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (30, 6, 5), np.uint8), np.arange(30) % 3
    _, inputs = prepare_images(images, labels, images[:6], labels[:6],
                               PrepareConfig(kind="images", pixel_scale=100.0))
    assert inputs == Inputs(("image",), (0.0,), (100.0,), "label", "raw", 3, (6, 5))


def test_a_table_and_its_images_reach_the_model_scaled_as_inputs_says(tmp_path: Path) -> None:
    """What train reads (the prepared split) is the raw data scaled by ``Inputs``, for a
    table (stored scaled) and for images (stored raw, scaled when read)."""
    frame = mobile_frame()
    cfg = PrepareConfig(kind="table", target="price_range", test_size=0.25)
    write_dataset(tmp_path / "t", *prepare_table(frame, cfg, "t.csv"))
    data = load_dataset(tmp_path / "t")
    train = data.split("train")
    assert data.inputs.features == tuple(train.features)
    means = frame[list(train.features)].to_numpy(np.float64)
    assert not np.allclose(train.x.mean(axis=0), means.mean(axis=0))  # scaled, not raw
    assert np.allclose(train.x.mean(axis=0), 0, atol=1e-5)

    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (20, 5, 4), np.uint8), np.arange(20) % 2
    write_dataset(tmp_path / "i", *prepare_images(images, labels, images, labels,
                                                   PrepareConfig(kind="images")))
    data = load_dataset(tmp_path / "i")
    assert np.array_equal(data.split("test").x, data.inputs.scale_images(images))
