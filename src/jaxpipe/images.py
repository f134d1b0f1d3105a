"""Images for ``jaxpipe predict``: PNG files read as 8-bit grey levels (a colour image by its
luminance, said in one line), and a warning when raw images look unlike MNIST's."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from jaxpipe.core.errors import JaxpipeError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png",)
BORDER = 2  # pixels: MNIST digits are centred, so an image's frame is background


def read_pngs(files: list[Path], shape: tuple[int, int] | None = None) -> np.ndarray:
    """PNG files as one uint8 array (n, h, w), all of one size (the first file's, unless
    ``shape`` is given; another size is named); a colour image is read as its luminance,
    with one note for all of them."""
    read = [_read_png(f) for f in files]
    images = [image for image, _ in read]
    colour = [(path, mode) for path, (_, mode) in zip(files, read, strict=True) if mode]
    if colour:
        which = (f"{colour[0][0]} is a colour image ({colour[0][1]})" if len(colour) == 1 else
                 f"{len(colour)} colour images (the first: {colour[0][0]}, {colour[0][1]})")
        log.warning("%s: read as grayscale by luminance, L = 0.299 R + 0.587 G + 0.114 B "
                    "(ITU-R 601-2, as Pillow's convert('L'))", which)
    want = shape or images[0].shape
    for path, image in zip(files, images, strict=True):
        if image.shape != tuple(want):
            raise JaxpipeError(f"{path}: {image.shape[1]}x{image.shape[0]} pixels, expected "
                               f"{want[1]}x{want[0]} like {files[0].name}"
                               if shape is None else
                               f"{path}: {image.shape[1]}x{image.shape[0]} pixels, the model "
                               f"expects {want[1]}x{want[0]}")
    return np.stack(images)


GREY_MODES = ("L", "1", "LA", "I;16")


def _read_png(path: Path) -> tuple[np.ndarray, str | None]:
    """The image's 8-bit grey levels, and its mode if it was a colour image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            grey = image.mode in GREY_MODES or (image.mode == "P" and _grey_palette(image))
            colour = None if grey else ("palette" if image.mode == "P" else image.mode)
            return np.asarray(image.convert("L"), dtype=np.uint8), colour
    except (UnidentifiedImageError, OSError) as exc:
        raise JaxpipeError(f"{path}: not a readable PNG ({exc.__class__.__name__})") from None


def _grey_palette(image: object) -> bool:
    palette = np.asarray(image.convert("RGB"))  # type: ignore[attr-defined]
    return bool((palette[..., 0] == palette[..., 1]).all()
                and (palette[..., 1] == palette[..., 2]).all())


def unlike_training(images: np.ndarray, source: str) -> str | None:
    """A warning if raw images look unlike MNIST's: light backgrounds (a dark digit on
    white, which the model reads as another digit) or values already scaled to [0, 1]."""
    if images.ndim == 4:
        images = images[..., 0]
    if images.ndim != 3 or min(images.shape[1:]) <= 2 * BORDER:
        return None
    frame = np.concatenate([images[:, :BORDER].reshape(len(images), -1),
                            images[:, -BORDER:].reshape(len(images), -1),
                            images[:, :, :BORDER].reshape(len(images), -1),
                            images[:, :, -BORDER:].reshape(len(images), -1)], axis=1)
    light = int((frame.mean(axis=1) > 127).sum())
    if light:
        return (f"{source}: {light} of {len(images)} images have a light background (a dark "
                "digit on white?); the model was trained on light digits on black, so expect "
                "wrong answers: invert them (255 - pixel) first")
    if images.size and float(np.max(images)) <= 1.0:
        return (f"{source}: every pixel is in [0, 1]; the model expects raw 0-255 pixel values "
                "(it divides by 255 itself)")
    return None
