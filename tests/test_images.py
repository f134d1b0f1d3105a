"""PNG files read for `jaxpipe predict` (jaxpipe.images): grey levels, a colour image by
its luminance with one note, and a warning for images unlike MNIST's."""

from pathlib import Path

import numpy as np
import pytest
from test_predict import cnn_model, digits, save_png

from jaxpipe.images import read_pngs, unlike_training
from jaxpipe.predict import predict


def test_colour_images_are_read_by_luminance_with_one_note(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from PIL import Image

    model = cnn_model(tmp_path)
    rgb = np.zeros((28, 28, 3), np.uint8)
    rgb[8:20, 10:18] = (200, 100, 50)  # an orange digit on black
    (tmp_path / "c").mkdir()
    Image.fromarray(rgb).save(tmp_path / "c" / "a.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "c" / "b.png")
    save_png(tmp_path / "c" / "g.png", digits(1)[0])
    with caplog.at_level("WARNING", logger="jaxpipe.images"):
        images = read_pngs(sorted((tmp_path / "c").iterdir()))
        assert caplog.messages == [
            f"2 colour images (the first: {tmp_path / 'c' / 'a.png'}, RGB): read as grayscale "
            "by luminance, L = 0.299 R + 0.587 G + 0.114 B (ITU-R 601-2, as Pillow's "
            "convert('L'))"]
        caplog.clear()
        read_pngs([tmp_path / "c" / "g.png"])
        assert caplog.messages == []  # grayscale: no note
    luminance = round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    assert images[0, 10, 12] == luminance and images[0, 0, 0] == 0
    assert abs(int(images[1, 10, 12]) - luminance) <= 2  # the palette's nearest orange
    one = read_pngs([tmp_path / "c" / "a.png"])
    assert one.shape == (1, 28, 28)
    assert f"{tmp_path / 'c' / 'a.png'} is a colour image (RGB): read as" in caplog.messages[-1]
    assert predict(model, images)["predicted"].between(0, 9).all()


def test_images_unlike_mnists_are_named() -> None:
    images = digits(4)
    assert unlike_training(images, "raw") is None
    assert "every pixel is in [0, 1]" in unlike_training(images / 255.0, "scaled")
    assert "3 of 4 images have a light background" in unlike_training(
        np.concatenate([255 - images[:3], images[3:]]), "inverted")
