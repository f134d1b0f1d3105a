"""A training set over the memory budget streams from its Parquet file, with the same
batches, and the same trained bytes, as the in-memory path for the same seed."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from jaxpipe.artifacts import flatten
from jaxpipe.data.inputs import Inputs
from jaxpipe.data.tables import image_table, load_dataset, write_dataset
from jaxpipe.models import cnn
from jaxpipe.models.cnn import loop, stream

SCALER = Inputs(("image",), (33.0,), (60.0,), "label", "raw", 10, (28, 28))


def write_images(folder: Path, n_train: int = 256, n_val: int = 100, seed: int = 0) -> Path:
    """A prepared MNIST-shaped folder: a bright bar whose place encodes the label."""
    rng = np.random.default_rng(seed)

    def table(n: int):
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 40, size=(n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label: 4 + 2 * label, 4:24] = 250
        return image_table(images, labels)

    write_dataset(folder, {"train": table(n_train), "val": table(n_val), "test": table(50)},
                  SCALER)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images(tmp_path_factory.mktemp("images"), n_train=5000)


def test_rows_read_by_scan_are_the_rows_loaded_whole(folder: Path) -> None:
    whole = load_dataset(folder).split("train")
    source = stream.ImageRows(folder / "train.parquet", SCALER)
    rows = np.array([0, 1, 4095, 4096, 4999])  # both sides of a SCAN_ROWS boundary
    np.testing.assert_array_equal(source.scaled(source.read(rows)), whole.x[rows])
    np.testing.assert_array_equal(source.labels, whole.y)
    assert stream.ImageRows(folder / "train.parquet", SCALER, limit=10).n == 10


def test_streamed_batches_are_the_in_memory_batches_in_order(folder: Path) -> None:
    whole = load_dataset(folder).split("train")
    source = stream.ImageRows(folder / "train.parquet", SCALER)
    order = loop.batch_order(0, 1, source.n, 64)
    share = slice(16, 48)  # the second of two processes, say, with 32 rows each
    got = list(stream.batches(source, order, share, window=7))
    assert len(got) == len(order) == 5000 // 64
    for (x, y), rows in zip(got, order[:, share], strict=True):
        np.testing.assert_array_equal(x, whole.x[rows])
        np.testing.assert_array_equal(y, whole.y[rows])


def test_a_window_keeps_two_windows_of_raw_rows_within_the_budget() -> None:
    assert stream.window_batches(1 << 20, 64, 784) == (1 << 20) // (2 * 64 * 784)
    assert stream.window_batches(1, 64, 784) == 1  # never less than one batch


def test_training_over_the_budget_streams_and_gives_the_same_bytes(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="jaxpipe.models.cnn")
    data = load_dataset(write_images(tmp_path))
    # 256 images are 0.8 MB as float32; 0.1 MB holds two windows of 2 batches of 32
    runs = {budget: cnn.fit(cnn.Config(epochs=2, batch_size=32, eval_batch_size=100,
                                       memory_budget_mb=budget), data)
            for budget in (None, 0.1)}
    assert "streaming it" in caplog.text
    held, streamed = (flatten(runs[b].params) for b in (None, 0.1))
    assert held.keys() == streamed.keys()
    for name in held:
        np.testing.assert_array_equal(held[name], streamed[name], err_msg=name)
    assert runs[None].history == runs[0.1].history


def test_a_file_that_is_not_an_image_table_is_named(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jaxpipe.core.errors import JaxpipeError

    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"label": [1, 2]}), plain)  # no image_shape in its metadata
    for path, why in ((plain, "KeyError"), (tmp_path / "gone.parquet", "FileNotFoundError")):
        with pytest.raises(JaxpipeError) as err:
            stream.ImageRows(path, SCALER)
        assert str(err.value) == f"{path}: cannot stream images ({why})"


@pytest.mark.parametrize(("devices", "limit"), [(1, None), (2, None), (1, 120)])
def test_the_budget_holds_float32_images_on_each_local_device_up_to_its_edge(
        tmp_path: Path, devices: int, limit: int | None) -> None:
    """4 bytes a pixel and 4 a label, a copy per device of this process, for the images
    trained on (``max_train_images``): a set exactly the budget's size, or a byte under, is
    held in memory; a byte over it, streamed."""
    data = load_dataset(write_images(tmp_path, n_train=200))
    size = (limit or 200) * (28 * 28 * 4 + 4) * devices  # 200 images: 628,000 bytes a device

    def streams(budget_bytes: int) -> bool:
        cfg = cnn.Config(memory_budget_mb=budget_bytes / cnn.MB, max_train_images=limit)
        return isinstance(cnn._source(cfg, data, devices), stream.ImageRows)

    assert [streams(size + 1), streams(size), streams(size - 1)] == [False, False, True]


@pytest.mark.parametrize("budget", [0.1, 0.5])
def test_a_streamed_run_reads_windows_sized_by_its_budget(tmp_path: Path, budget: float) -> None:
    """The budget also sizes the streaming window: two windows of raw (uint8) rows of this
    process's share of a batch fit ``memory_budget_mb`` MiB."""
    from jaxpipe.models.cnn import mesh

    data = load_dataset(write_images(tmp_path, n_train=256))
    cfg = cnn.Config(batch_size=32, memory_budget_mb=budget)
    grid = mesh.data_mesh(1)
    runner = cnn._runner(cfg, grid, cnn._read(cfg, data, 1), ())
    assert isinstance(runner, loop.Streamed)
    assert runner.window == int(budget * (1 << 20)) // (2 * 32 * 28 * 28)  # 2 and 10
